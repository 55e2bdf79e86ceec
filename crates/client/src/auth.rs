//! The cluster token: every call to a node carries `authorization: Bearer <token>` ([`Auth`]),
//! and the token comes from a file readable by its owner only ([`read_token_file`]). The one
//! writer of that file is here too ([`write_token_file`], [`ensure_token_file`]): the node
//! makes it on first start, `raftq up` and the test launcher before their nodes start, jepsen
//! on each node's disk. Checking incoming tokens is the node's (`raftq_node::auth`).

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
    #[error("writing token file {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// A new random token, hex encoded (32 random bytes' worth: two v4 UUIDs).
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

/// Writes `token` to `path` (mode 0600), durable when this returns: its directories made and
/// synced, the file written in full under a temporary name, fsynced, renamed, the directory
/// fsynced. A node that lost power just after must not come back with an empty token file and
/// refuse to start.
pub fn write_token_file(path: &Path, token: &str) -> Result<(), TokenError> {
    let write = |source| TokenError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        raftq_durable::create_dir_all(dir).map_err(write)?;
    }
    let text = format!("{}\n", token.trim());
    raftq_durable::replace_file(path, text.as_bytes(), 0o600).map_err(write)
}

/// Reads the token file, first creating it with a new random token ([`write_token_file`]) if
/// it does not exist.
pub fn ensure_token_file(path: &Path) -> Result<String, TokenError> {
    if !path.exists() {
        write_token_file(path, &new_token())?;
    }
    read_token_file(path)
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

    #[test]
    fn the_token_file_is_made_once_private_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("raftq-token-{}", uuid::Uuid::new_v4().simple()));
        let p = dir.join("sub/token");
        let t = ensure_token_file(&p).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(ensure_token_file(&p).unwrap(), t);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!dir.join("sub/token.tmp").exists());
        // Reading checks the mode.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ensure_token_file(&p),
            Err(TokenError::Exposed { .. })
        ));
        // A given token replaces the file, trimmed.
        write_token_file(&p, " 0123456789abcdef0123\n").unwrap();
        assert_eq!(read_token_file(&p).unwrap(), "0123456789abcdef0123");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
