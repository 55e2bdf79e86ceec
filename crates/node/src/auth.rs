//! The cluster token, as a node uses it: incoming calls must carry it ([`CheckToken`]), and
//! the node creates the token file on first start ([`ensure_token_file`]). What a client needs
//! (reading the file, sending the header) is `raftq_client::auth`'s.

use raftq_client::auth::{bearer, read_token_file, TokenError, AUTH_HEADER};
use std::path::{Path, PathBuf};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The token file could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("writing token file {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] TokenError),
}

/// Checks incoming calls against the cluster token, in constant time.
#[derive(Clone)]
pub struct CheckToken {
    expected: Vec<u8>,
}

impl CheckToken {
    pub fn new(token: &str) -> CheckToken {
        CheckToken {
            expected: bearer(token).into_bytes(),
        }
    }
}

/// Equality that takes as long for every pair of equal-length inputs, so that the time a
/// refusal takes does not tell how much of a guessed token was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for CheckToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match req.metadata().get(AUTH_HEADER) {
            Some(v) if same(v.as_bytes(), &self.expected) => Ok(req),
            Some(_) => Err(Status::unauthenticated(
                "wrong token: use the cluster's token file (--token-file or RAFTQ_TOKEN_FILE)",
            )),
            None => Err(Status::unauthenticated(
                "no token: give the cluster's token file (--token-file or RAFTQ_TOKEN_FILE)",
            )),
        }
    }
}

/// A new random token, hex encoded (32 random bytes' worth: two v4 UUIDs).
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

/// Reads the token file, creating it (mode 0600, a new random token) if it does not exist.
/// A new file is durable when this returns (written in full under a temporary name, fsynced,
/// renamed, directory fsynced): a node that lost power just after making it must not come
/// back with an empty token file and refuse to start.
pub fn ensure_token_file(path: &Path) -> Result<String, TokenFileError> {
    if !path.exists() {
        let write = |source| TokenFileError::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            raft_store::durable::create_dir_all(dir).map_err(write)?;
        }
        let text = format!("{}\n", new_token());
        raft_store::durable::replace_file(path, text.as_bytes(), 0o600).map_err(write)?;
    }
    Ok(read_token_file(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftq_client::Auth;

    #[test]
    fn token_file_is_created_private_and_checked() {
        let dir =
            std::env::temp_dir().join(format!("raftq-token-{}", uuid::Uuid::new_v4().simple()));
        let p = dir.join("token");
        let t = ensure_token_file(&p).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(ensure_token_file(&p).unwrap(), t);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Reading checks the mode (raftq_client::auth's tests cover the refusal).
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ensure_token_file(&p),
            Err(TokenFileError::Read(TokenError::Exposed { .. }))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn interceptors_agree() {
        let mut out = Auth::new(Some("abc")).unwrap();
        let mut check = CheckToken::new("abc");
        let req = out.call(Request::new(())).unwrap();
        assert!(check.call(req).is_ok());
        let req = Auth::new(Some("abd"))
            .unwrap()
            .call(Request::new(()))
            .unwrap();
        assert_eq!(
            check.call(req).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let err = check.call(Request::new(())).unwrap_err();
        assert!(err.message().contains("no token"));
    }
}
