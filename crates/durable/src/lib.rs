//! Files and directories that survive a power loss once these calls return.
//!
//! A file's bytes are durable after an fsync of the file; its name is durable only after an
//! fsync of the directory holding it, and so is a directory's own name in its parent. A node
//! whose data directory was made without that could come back from a power cut with no data
//! directory at all, and start as a new, empty member.

use std::io::{self, Write};
use std::path::Path;

/// fsync of directory `dir`: the names in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `create_dir_all` whose result is durable: each directory it makes is followed by an fsync
/// of its parent, and `dir`'s parent is fsynced even when `dir` existed already (whoever made
/// it, e.g. the token file's writer, may not have).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    make_dirs(dir)?;
    sync_dir(parent_of(dir))
}

fn parent_of(p: &Path) -> &Path {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn make_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        make_dirs(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent_of(dir)),
        // Made by someone else meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Puts the file `staged`, written by the caller (e.g. streamed, too large to hold in memory),
/// in place of `path`, durably: `staged` is fsynced, renamed over `path`, then the directory
/// fsynced. `staged` must be in `path`'s directory (a rename does not cross file systems).
pub fn install_file(staged: &Path, path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(staged)?
        .sync_all()?;
    std::fs::rename(staged, path)?;
    sync_dir(parent_of(path))
}

/// Replaces `path` with `data`, all or nothing, durably: a temporary file beside it, written
/// and fsynced, renamed over `path`, then the directory fsynced. `mode` sets the new file's
/// permission bits (e.g. 0o600 for a secret).
pub fn replace_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = parent_of(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} names no file", path.display())))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_dir_all_makes_every_level_and_accepts_existing() {
        let t = tempfile::TempDir::new().unwrap();
        let d = t.path().join("a/b/c");
        create_dir_all(&d).unwrap();
        assert!(d.is_dir());
        create_dir_all(&d).unwrap();
        std::fs::write(t.path().join("file"), b"x").unwrap();
        assert!(create_dir_all(&t.path().join("file")).is_err());
    }

    #[test]
    fn install_file_moves_the_staged_file_over_the_target() {
        let t = tempfile::TempDir::new().unwrap();
        let (staged, p) = (t.path().join("big.tmp"), t.path().join("big"));
        std::fs::write(&p, b"old").unwrap();
        std::fs::write(&staged, b"new").unwrap();
        install_file(&staged, &p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(!staged.exists());
        assert!(
            install_file(&staged, &p).is_err(),
            "a missing staged file is an error"
        );
    }

    #[test]
    fn replace_file_swaps_contents_and_sets_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::TempDir::new().unwrap();
        let p = t.path().join("token");
        replace_file(&p, b"one", 0o600).unwrap();
        replace_file(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!t.path().join("token.tmp").exists());
    }
}
