//! The cluster token, as a client uses it: every call to a node carries
//! `authorization: Bearer <token>` ([`Auth`]), and the token comes from a file readable by its
//! owner only ([`read_token_file`]). Checking tokens and creating the file are the node's
//! (`raftq_node::auth`).

use std::path::{Path, PathBuf};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Metadata key the token travels in.
pub const AUTH_HEADER: &str = "authorization";

/// Why a token or its file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Others may read the file: the token would not be secret.
    #[error("token file {} is readable by others; run: chmod 600 {}", .path.display(), .path.display())]
    Exposed { path: PathBuf },
    #[error("token file {} holds no token (16+ characters)", .path.display())]
    Empty { path: PathBuf },
    #[error("the token must be printable ASCII")]
    NotAscii,
}

/// The header value for `token`: `Bearer <token>`, surrounding whitespace dropped. The node
/// compares incoming headers against the same value.
pub fn bearer(token: &str) -> String {
    format!("Bearer {}", token.trim())
}

/// Adds the token to every outgoing call.
#[derive(Clone, Default)]
pub struct Auth {
    header: Option<MetadataValue<Ascii>>,
}

impl Auth {
    pub fn new(token: Option<&str>) -> Result<Auth, TokenError> {
        let header = match token {
            None => None,
            Some(t) => Some(bearer(t).parse().map_err(|_| TokenError::NotAscii)?),
        };
        Ok(Auth { header })
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert(AUTH_HEADER, h.clone());
        }
        Ok(req)
    }
}

/// Reads a token file, refusing one that others can read.
pub fn read_token_file(path: &Path) -> Result<String, TokenError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(TokenError::Exposed {
            path: path.to_path_buf(),
        });
    }
    let t = std::fs::read_to_string(path).map_err(io)?;
    let t = t.trim().to_string();
    if t.len() < 16 {
        return Err(TokenError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("raftq-token-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("token");
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&p).unwrap(), "0123456789abcdef0123");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_token_file(&p)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_header_carries_the_trimmed_token() {
        let req = Auth::new(Some(" abc\n"))
            .unwrap()
            .call(Request::new(()))
            .unwrap();
        assert_eq!(req.metadata().get(AUTH_HEADER).unwrap(), "Bearer abc");
        assert!(Auth::new(Some("a\u{1}b")).is_err());
    }
}
