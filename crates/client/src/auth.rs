//! The cluster token: every call to a node carries `authorization: Bearer <token>` ([`Auth`]),
//! and the token comes from a file readable by its owner only ([`read_token_file`]). The one
//! writer of that file is here too ([`write_token_file`], [`ensure_token_file`]): the node
//! makes it on first start, `raftq up` and the test launcher before their nodes start, jepsen
//! on each node's disk. Checking incoming tokens is the node's (`raftq_node::auth`).
//!
//! Rotation: a token file holds one token per line. The first is the one sent; a node accepts
//! every one. [`rotate_token_file`] puts a new token first and keeps the old ones after it
//! (nodes given the file accept both; clients given it send the new one);
//! [`retire_old_tokens`] keeps only the first. Nodes re-read their file while running, and a
//! client that has a token file re-reads it when a node refuses its token.
//!
//! A line `runner TOKEN` is a runner token ([`Role::Runner`], made by [`add_runner_token`]):
//! it may reserve jobs, report on them and read the queue, nothing else (no adds, kills,
//! removals, changes or membership). Rotation and retirement leave runner lines alone; a
//! runner token is revoked by deleting its line.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
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
    /// A line that is no token: too short, not printable ASCII, or too many lines.
    #[error("token file {} line {line}: {problem}", .path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        problem: &'static str,
    },
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

/// Adds the token to every outgoing call. Clones share the token: [`Auth::set`] changes it
/// for all of them (a re-read token file).
#[derive(Clone, Default)]
pub struct Auth {
    header: Arc<RwLock<Option<MetadataValue<Ascii>>>>,
}

fn header_of(token: Option<&str>) -> Result<Option<MetadataValue<Ascii>>, TokenError> {
    match token {
        None => Ok(None),
        Some(t) => Ok(Some(bearer(t).parse().map_err(|_| TokenError::NotAscii)?)),
    }
}

impl Auth {
    pub fn new(token: Option<&str>) -> Result<Auth, TokenError> {
        Ok(Auth {
            header: Arc::new(RwLock::new(header_of(token)?)),
        })
    }

    /// Sends `token` from now on (every clone); returns whether it differs from before.
    pub fn set(&self, token: &str) -> Result<bool, TokenError> {
        let new = header_of(Some(token))?;
        let mut h = self.header.write().unwrap_or_else(|p| p.into_inner());
        let changed = *h != new;
        *h = new;
        Ok(changed)
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let h = self.header.read().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = &*h {
            req.metadata_mut().insert(AUTH_HEADER, h.clone());
        }
        Ok(req)
    }
}

/// Tokens of one file at most (the current one and those still accepted beside it).
pub const MAX_TOKENS: usize = 64;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything: the cluster token (and what managers send each other without TLS).
    Full,
    /// Reserve, report and read only (`runner TOKEN` lines).
    Runner,
}

/// One line of a token file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub secret: String,
    pub role: Role,
}

/// The prefix of a runner token's line.
const RUNNER_PREFIX: &str = "runner ";

/// Reads a token file's current token (its first line), refusing a file that others can
/// read.
pub fn read_token_file(path: &Path) -> Result<String, TokenError> {
    Ok(read_tokens(path)?.swap_remove(0).secret)
}

/// Every token of a token file, the current one first (never empty), refusing a file that
/// others can read and any line that is no token.
pub fn read_tokens(path: &Path) -> Result<Vec<Token>, TokenError> {
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
    let text = std::fs::read_to_string(path).map_err(io)?;
    let bad = |line, problem| TokenError::BadLine {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let (t, role) = match t.strip_prefix(RUNNER_PREFIX) {
            Some(rest) => (rest.trim(), Role::Runner),
            None => (t, Role::Full),
        };
        if t.len() < 16 {
            return Err(bad(i + 1, "a token has 16 characters or more"));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(i + 1, "a token is printable ASCII without spaces"));
        }
        if tokens.len() == MAX_TOKENS {
            return Err(bad(i + 1, "more tokens than 64: retire or revoke old ones"));
        }
        tokens.push(Token {
            secret: t.to_string(),
            role,
        });
    }
    if tokens.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(tokens)
}

/// Puts a new random token first in the token file, the ones it held after it (still
/// accepted by nodes given the file); returns the new token.
pub fn rotate_token_file(path: &Path) -> Result<String, TokenError> {
    let mut tokens = read_tokens(path)?;
    let new = new_token();
    tokens.insert(
        0,
        Token {
            secret: new.clone(),
            role: Role::Full,
        },
    );
    tokens.truncate(MAX_TOKENS);
    write_tokens(path, &tokens)?;
    Ok(new)
}

/// Keeps the token file's first token and its runner tokens, dropping the other full
/// tokens; returns how many it dropped.
pub fn retire_old_tokens(path: &Path) -> Result<usize, TokenError> {
    let tokens = read_tokens(path)?;
    let before = tokens.len();
    let kept: Vec<Token> = tokens
        .into_iter()
        .enumerate()
        .filter(|(i, t)| *i == 0 || t.role == Role::Runner)
        .map(|(_, t)| t)
        .collect();
    write_tokens(path, &kept)?;
    Ok(before - kept.len())
}

/// Adds a new runner token to the token file (after the others) and returns it, for a runner
/// host's own token file.
pub fn add_runner_token(path: &Path) -> Result<String, TokenError> {
    let mut tokens = read_tokens(path)?;
    if tokens.len() >= MAX_TOKENS {
        return Err(TokenError::BadLine {
            path: path.to_path_buf(),
            line: tokens.len(),
            problem: "the file holds 64 tokens already: revoke old runner tokens first",
        });
    }
    let new = new_token();
    tokens.push(Token {
        secret: new.clone(),
        role: Role::Runner,
    });
    write_tokens(path, &tokens)?;
    Ok(new)
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
    let token = Token {
        secret: token.trim().to_string(),
        role: Role::Full,
    };
    write_tokens(path, &[token])
}

/// Writes `tokens`, one per line, as [`write_token_file`] writes one.
fn write_tokens(path: &Path, tokens: &[Token]) -> Result<(), TokenError> {
    let write = |source| TokenError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        raftq_durable::create_dir_all(dir).map_err(write)?;
    }
    let text: String = tokens
        .iter()
        .map(|t| match t.role {
            Role::Full => format!("{}\n", t.secret.trim()),
            Role::Runner => format!("{RUNNER_PREFIX}{}\n", t.secret.trim()),
        })
        .collect();
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

    #[test]
    fn rotation_puts_a_new_token_first_and_retiring_keeps_only_it() {
        let dir =
            std::env::temp_dir().join(format!("raftq-token-{}", uuid::Uuid::new_v4().simple()));
        let p = dir.join("token");
        let old = ensure_token_file(&p).unwrap();
        let runner = add_runner_token(&p).unwrap();
        let new = rotate_token_file(&p).unwrap();
        assert_ne!(new, old);
        let secrets = |p: &Path| {
            read_tokens(p)
                .unwrap()
                .into_iter()
                .map(|t| (t.secret, t.role))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            secrets(&p),
            vec![
                (new.clone(), Role::Full),
                (old.clone(), Role::Full),
                (runner.clone(), Role::Runner)
            ]
        );
        assert_eq!(read_token_file(&p).unwrap(), new);
        assert_eq!(retire_old_tokens(&p).unwrap(), 1);
        assert_eq!(
            secrets(&p),
            vec![(new.clone(), Role::Full), (runner, Role::Runner)]
        );
        assert_eq!(retire_old_tokens(&p).unwrap(), 0);
        // a bad line is named
        std::fs::write(&p, format!("{new}\nshort\n")).unwrap();
        let e = read_tokens(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("16 characters"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clones_of_an_auth_send_the_token_it_was_set_to() {
        let a = Auth::new(Some("0123456789abcdef")).unwrap();
        let mut b = a.clone();
        assert!(a.set("fedcba9876543210").unwrap());
        assert!(!a.set("fedcba9876543210").unwrap());
        let req = b.call(Request::new(())).unwrap();
        assert_eq!(
            req.metadata().get(AUTH_HEADER).unwrap(),
            "Bearer fedcba9876543210"
        );
    }
}
