//! The cluster token: every call to a node carries `authorization: Bearer <token>`, and nodes
//! refuse calls without the right one. The token lives in a file readable by its owner only.

use std::path::Path;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Token length in bytes before hex encoding.
pub const TOKEN_BYTES: usize = 32;

/// Adds the token to every outgoing call.
#[derive(Clone, Default)]
pub struct Auth {
    header: Option<MetadataValue<Ascii>>,
}

impl Auth {
    pub fn new(token: Option<&str>) -> Result<Auth, String> {
        let header = match token {
            None => None,
            Some(t) => Some(
                format!("Bearer {}", t.trim())
                    .parse()
                    .map_err(|_| "the token must be printable ASCII".to_string())?,
            ),
        };
        Ok(Auth { header })
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

/// Checks incoming calls against the cluster token, in constant time.
#[derive(Clone)]
pub struct CheckToken {
    expected: Vec<u8>,
}

impl CheckToken {
    pub fn new(token: &str) -> CheckToken {
        CheckToken {
            expected: format!("Bearer {}", token.trim()).into_bytes(),
        }
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for CheckToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match req.metadata().get("authorization") {
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

/// A new random token, hex encoded.
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

/// Reads a token file, refusing one that others can read.
pub fn read_token_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "token file {} is readable by others; run: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let t =
        std::fs::read_to_string(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
    let t = t.trim().to_string();
    if t.len() < 16 {
        return Err(format!(
            "token file {} holds no token (16+ characters)",
            path.display()
        ));
    }
    Ok(t)
}

/// Reads the token file, creating it (mode 0600, a new random token) if it does not exist.
/// A new file is durable when this returns (written in full under a temporary name, fsynced,
/// renamed, directory fsynced): a node that lost power just after making it must not come
/// back with an empty token file and refuse to start.
pub fn ensure_token_file(path: &Path) -> Result<String, String> {
    if !path.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("creating token file {}: {e}", tmp.display()))?;
        writeln!(f, "{}", new_token())
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path))
            .and_then(|()| std::fs::File::open(dir)?.sync_all())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    read_token_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_created_private_and_checked() {
        let dir =
            std::env::temp_dir().join(format!("raftq-token-{}", uuid::Uuid::new_v4().simple()));
        let p = dir.join("token");
        let t = ensure_token_file(&p).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(ensure_token_file(&p).unwrap(), t);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_token_file(&p).unwrap_err().contains("chmod 600"));
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
