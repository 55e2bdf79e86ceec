//! The token file of a local cluster, made before its first node starts so that all nodes
//! read the same token (a node makes one only when it finds none, and nodes starting together
//! would each make their own).
//!
//! The node's own writer is `raftq_node::auth::ensure_token_file` (on raft-store's durable
//! file writes); this crate must not link the server library, so it writes the file itself,
//! with the same steps and the same durability.

use raftq_client::auth::{read_token_file, TokenError};
use std::io::{Read, Write};
use std::path::Path;

/// Token length in bytes before hex encoding (the node's tokens have the same length).
const TOKEN_BYTES: usize = 32;

/// Why the token file could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum LocalTokenError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Read(#[from] TokenError),
}

/// Reads `path`, first creating it (mode 0600, a new random token) if it does not exist.
/// A new file is durable when this returns: written under a temporary name, fsynced,
/// renamed, its directory fsynced; jepsen runs clusters on a filesystem that drops what was
/// not synced.
pub fn ensure_token_file(path: &Path) -> Result<String, LocalTokenError> {
    use std::os::unix::fs::OpenOptionsExt;
    if !path.exists() {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut bytes = [0u8; TOKEN_BYTES];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        writeln!(f, "{hex}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(read_token_file(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::TempDir::new().unwrap();
        let p = dir.path().join("sub/token");
        let t = ensure_token_file(&p).unwrap();
        assert_eq!(t.len(), 2 * TOKEN_BYTES);
        assert_eq!(ensure_token_file(&p).unwrap(), t);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
