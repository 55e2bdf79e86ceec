//! What a power cut may take: the writes and directory changes since the last fsync, kept
//! beside a backing directory that holds everything written so far.
//!
//! Every operation goes through to the backing directory at once (so reads and sizes need no
//! bookkeeping), and the model remembers how to take it back:
//! - per file, each write or truncation since the file's last fsync/fdatasync, with the bytes
//!   it overwrote and the length before it ([`DataOp`]);
//! - per directory change (create, mkdir, symlink, link, unlink, rmdir, rename) since the last
//!   fsync of the directories it touched, how to undo it ([`Change`]). An unlinked file or
//!   removed directory is moved to a trash directory beside the backing one, so that it can
//!   come back; it is deleted for good once its directory is synced.
//!
//! [`Model::cut`] is the power cut: it undoes every un-synced write (newest first), then every
//! un-synced directory change (newest first). With `tear`, each file instead keeps a seeded
//! random prefix of its un-synced writes, the last of them cut at a random byte, as when the
//! disk had written part of the cache when the power went. Files and changes are visited in a
//! fixed order and the random draws come from the seed, so the same seed and the same
//! un-synced state give the same losses.
//!
//! Inodes: the model also keeps the FUSE inode numbers of the paths it has seen, so that a
//! rename or unlink moves the bookkeeping of the files under it.

use crate::rng::Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Undone directory changes a cut names in its log, at most.
const MAX_LOGGED_CHANGES: usize = 50;

/// The FUSE root inode.
pub const ROOT_INO: u64 = 1;

/// One un-synced change of a file's bytes: undone by setting the length back to `len_before`
/// and writing `old` back at `offset`.
#[derive(Debug)]
struct DataOp {
    offset: u64,
    len_before: u64,
    /// The bytes the op overwrote that existed before it (within `len_before`).
    old: Vec<u8>,
    /// How many bytes a write wrote (0 for a truncation).
    written: u64,
    /// What a write wrote (kept only when tearing is on); None for a truncation.
    new: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct FileState {
    ops: Vec<DataOp>,
}

/// One un-synced directory change; paths are relative to the backing root.
#[derive(Debug)]
enum Undo {
    /// A new entry (file, directory, symlink, hard link): removed.
    Remove(PathBuf),
    /// An entry moved to the trash: moved back.
    Restore { path: PathBuf, trash: PathBuf },
    /// A rename: renamed back, and the entry it replaced (in the trash) restored.
    Rename {
        from: PathBuf,
        to: PathBuf,
        replaced: Option<PathBuf>,
    },
}

#[derive(Debug)]
struct Change {
    undo: Undo,
    /// Directories (relative) whose fsync this change still waits for.
    pending: BTreeSet<PathBuf>,
}

/// What a cut took back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files whose un-synced writes were undone (in part, when torn).
    pub files: usize,
    /// Bytes of un-synced writes undone.
    pub bytes: u64,
    /// Writes cut at a random byte.
    pub torn: usize,
    /// Directory changes undone.
    pub changes: usize,
    /// Undo steps that failed (logged; the cut goes on).
    pub errors: usize,
}

impl std::fmt::Display for CutReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "files={} bytes={} torn={} changes={} errors={}",
            self.files, self.bytes, self.torn, self.changes, self.errors
        )
    }
}

/// How much is un-synced now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub files: usize,
    pub ops: usize,
    pub changes: usize,
}

pub struct Model {
    root: PathBuf,
    trash: PathBuf,
    tear: bool,
    next_trash: u64,
    files: HashMap<u64, FileState>,
    changes: Vec<Change>,
    inodes: HashMap<u64, PathBuf>,
    by_path: HashMap<PathBuf, u64>,
    next_ino: u64,
}

/// The directory holding `rel` ("" for the root).
fn parent_of(rel: &Path) -> PathBuf {
    rel.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl Model {
    /// A model over `root` (everything in it counts as synced), with its trash in `trash`
    /// (created; on the same filesystem as `root`, so that moving there is a rename).
    pub fn new(root: PathBuf, trash: PathBuf, tear: bool) -> io::Result<Model> {
        std::fs::create_dir_all(&trash)?;
        let mut inodes = HashMap::new();
        let mut by_path = HashMap::new();
        inodes.insert(ROOT_INO, PathBuf::new());
        by_path.insert(PathBuf::new(), ROOT_INO);
        Ok(Model {
            root,
            trash,
            tear,
            next_trash: 0,
            files: HashMap::new(),
            changes: Vec::new(),
            inodes,
            by_path,
            next_ino: ROOT_INO + 1,
        })
    }

    /// The backing path of `rel`.
    pub fn backing(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    // ---- inodes ---------------------------------------------------------------------------

    /// The inode of `rel`, given one if it has none.
    pub fn ino_of(&mut self, rel: &Path) -> u64 {
        if let Some(i) = self.by_path.get(rel) {
            return *i;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, rel.to_path_buf());
        self.by_path.insert(rel.to_path_buf(), ino);
        ino
    }

    /// The path of inode `ino`, relative to the root.
    pub fn path_of(&self, ino: u64) -> Option<PathBuf> {
        self.inodes.get(&ino).cloned()
    }

    /// Moves the inodes at or under `from` to `to` (a rename).
    fn move_inodes(&mut self, from: &Path, to: &Path) {
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            let new = match old.strip_prefix(from) {
                Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
                Ok(rest) => to.join(rest),
                Err(_) => continue,
            };
            self.by_path.remove(&old);
            self.by_path.insert(new.clone(), ino);
            self.inodes.insert(ino, new);
        }
    }

    /// Forgets the path of the inodes at or under `rel` (unlinked): their files now live in
    /// the trash at `trash`, where their data bookkeeping follows them.
    fn unlink_inodes(&mut self, rel: &Path, trash: &Path) {
        let gone: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(rel))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in gone {
            self.by_path.remove(&old);
            // An absolute path: outside the root, in the trash.
            let moved = match old.strip_prefix(rel) {
                Ok(rest) if !rest.as_os_str().is_empty() => trash.join(rest),
                _ => trash.to_path_buf(),
            };
            self.inodes.insert(ino, moved);
        }
    }

    // ---- file data ------------------------------------------------------------------------

    /// Writes `data` at `offset` of the open backing `file` (inode `ino`), remembering what it
    /// overwrote.
    pub fn write(&mut self, ino: u64, file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        let len_before = file.metadata()?.len();
        let old = read_range(file, offset, data.len() as u64, len_before)?;
        file.write_all_at(data, offset)?;
        let new = self.tear.then(|| data.to_vec());
        self.files.entry(ino).or_default().ops.push(DataOp {
            offset,
            len_before,
            old,
            written: data.len() as u64,
            new,
        });
        Ok(())
    }

    /// Sets the length of the open backing `file` (inode `ino`), remembering what it cut.
    pub fn truncate(&mut self, ino: u64, file: &File, len: u64) -> io::Result<()> {
        let len_before = file.metadata()?.len();
        let old = if len < len_before {
            read_range(file, len, len_before - len, len_before)?
        } else {
            Vec::new()
        };
        file.set_len(len)?;
        self.files.entry(ino).or_default().ops.push(DataOp {
            offset: len,
            len_before,
            old,
            written: 0,
            new: None,
        });
        Ok(())
    }

    /// fsync/fdatasync of inode `ino`: its bytes are durable.
    pub fn sync_file(&mut self, ino: u64) {
        self.files.remove(&ino);
    }

    // ---- directory changes ----------------------------------------------------------------

    fn record(&mut self, undo: Undo, dirs: impl IntoIterator<Item = PathBuf>) {
        self.changes.push(Change {
            undo,
            pending: dirs.into_iter().collect(),
        });
    }

    /// A new entry `rel` (file, directory, symlink or hard link) was made.
    pub fn created(&mut self, rel: &Path) {
        self.record(Undo::Remove(rel.to_path_buf()), [parent_of(rel)]);
    }

    fn trash_path(&mut self) -> PathBuf {
        self.next_trash += 1;
        self.trash.join(format!("{:08}", self.next_trash))
    }

    /// Removes the entry `rel` (a file, or an empty directory) by moving it to the trash.
    pub fn remove(&mut self, rel: &Path) -> io::Result<()> {
        let trash = self.trash_path();
        std::fs::rename(self.backing(rel), &trash)?;
        self.unlink_inodes(rel, &trash);
        self.record(
            Undo::Restore {
                path: rel.to_path_buf(),
                trash,
            },
            [parent_of(rel)],
        );
        Ok(())
    }

    /// Renames `from` to `to`; an entry at `to` goes to the trash first.
    pub fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let replaced = if std::fs::symlink_metadata(self.backing(to)).is_ok() {
            let trash = self.trash_path();
            std::fs::rename(self.backing(to), &trash)?;
            self.unlink_inodes(to, &trash);
            Some(trash)
        } else {
            None
        };
        if let Err(e) = std::fs::rename(self.backing(from), self.backing(to)) {
            if let Some(t) = &replaced {
                let _ = std::fs::rename(t, self.backing(to));
            }
            return Err(e);
        }
        self.move_inodes(from, to);
        self.record(
            Undo::Rename {
                from: from.to_path_buf(),
                to: to.to_path_buf(),
                replaced,
            },
            [parent_of(from), parent_of(to)],
        );
        Ok(())
    }

    /// fsync of directory `rel`: the changes in it are durable; those that waited for no
    /// other directory are final (their trash is deleted).
    pub fn sync_dir(&mut self, rel: &Path) {
        let mut kept = Vec::with_capacity(self.changes.len());
        for mut c in std::mem::take(&mut self.changes) {
            c.pending.remove(rel);
            if c.pending.is_empty() {
                finalize(&c.undo);
            } else {
                kept.push(c);
            }
        }
        self.changes = kept;
    }

    /// How much would a cut take now.
    pub fn pending(&self) -> Pending {
        Pending {
            files: self.files.len(),
            ops: self.files.values().map(|f| f.ops.len()).sum(),
            changes: self.changes.len(),
        }
    }

    /// A clean shutdown: everything written stays; the trash goes.
    pub fn finish(&mut self) {
        self.files.clear();
        for c in std::mem::take(&mut self.changes) {
            finalize(&c.undo);
        }
    }

    // ---- the power cut --------------------------------------------------------------------

    /// Takes back every un-synced write and directory change (see the module docs).
    pub fn cut(&mut self, rng: &mut Rng) -> CutReport {
        let mut report = CutReport::default();
        // Files in the order of their current path, so the draws do not depend on inode
        // numbers or hash order.
        let mut files: BTreeMap<PathBuf, FileState> = BTreeMap::new();
        for (ino, st) in std::mem::take(&mut self.files) {
            if let Some(p) = self.inodes.get(&ino) {
                files.insert(self.root.join(p), st);
            }
        }
        for (path, st) in files {
            report.files += 1;
            if let Err(e) = self.cut_file(&path, st, rng, &mut report) {
                eprintln!("lossyfs: undoing writes of {} failed: {e}", path.display());
                report.errors += 1;
            }
        }
        for c in std::mem::take(&mut self.changes).into_iter().rev() {
            report.changes += 1;
            if report.changes <= MAX_LOGGED_CHANGES {
                eprintln!("lossyfs: cut: undoing {:?}", c.undo);
            }
            if let Err(e) = self.undo(&c.undo) {
                eprintln!("lossyfs: undoing {:?} failed: {e}", c.undo);
                report.errors += 1;
            }
        }
        report
    }

    fn cut_file(
        &self,
        path: &Path,
        st: FileState,
        rng: &mut Rng,
        report: &mut CutReport,
    ) -> io::Result<()> {
        let file = match std::fs::OpenOptions::new().write(true).open(path) {
            Ok(f) => f,
            // Its creation is un-synced too, or it was removed: the changes take care of it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let n = st.ops.len();
        // With tear: ops [0, keep) stay, op `keep` is cut at a random byte, the rest go.
        let keep = if self.tear { rng.below(n + 1) } else { 0 };
        for op in st.ops[keep..].iter().rev() {
            report.bytes += op.written;
            file.set_len(op.len_before)?;
            file.write_all_at(&op.old, op.offset)?;
        }
        if self.tear {
            if let Some(DataOp {
                offset,
                new: Some(data),
                ..
            }) = st.ops.get(keep)
            {
                if !data.is_empty() {
                    let cut = rng.below(data.len());
                    file.write_all_at(&data[..cut], *offset)?;
                    report.bytes -= cut as u64;
                    report.torn += 1;
                }
            }
        }
        file.sync_all()
    }

    fn undo(&self, undo: &Undo) -> io::Result<()> {
        match undo {
            Undo::Remove(rel) => remove_any(&self.backing(rel)),
            Undo::Restore { path, trash } => std::fs::rename(trash, self.backing(path)),
            Undo::Rename { from, to, replaced } => {
                std::fs::rename(self.backing(to), self.backing(from))?;
                match replaced {
                    Some(t) => std::fs::rename(t, self.backing(to)),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A change became durable: what it moved to the trash is gone for good.
fn finalize(undo: &Undo) {
    let trash = match undo {
        Undo::Restore { trash, .. } => Some(trash),
        Undo::Rename { replaced, .. } => replaced.as_ref(),
        Undo::Remove(_) => None,
    };
    if let Some(t) = trash {
        if let Err(e) = remove_any(t) {
            eprintln!("lossyfs: emptying the trash ({}) failed: {e}", t.display());
        }
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The bytes of `file` in `[offset, offset + len)` that exist (below `file_len`).
fn read_range(file: &File, offset: u64, len: u64, file_len: u64) -> io::Result<Vec<u8>> {
    let end = (offset + len).min(file_len);
    if end <= offset {
        return Ok(Vec::new());
    }
    let mut buf = vec![0; (end - offset) as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

#[cfg(test)]
mod tests;
