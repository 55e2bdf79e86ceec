//! The work behind the FUSE requests that need more than one step, on the locked state:
//! attributes, paths of inodes, open handles, setattr, create, readdir, fallocate.

use super::fs::{Inner, Open};
use super::model::ROOT_INO;
use fuser::{Errno, FileAttr, FileHandle, FileType, INodeNo};
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(super) fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

pub(super) fn kind_of(m: &Metadata) -> FileType {
    let t = m.file_type();
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

pub(super) fn attr(ino: u64, m: &Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: m.len(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind_of(m),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

impl Inner {
    pub(super) fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.model.path_of(ino.0).ok_or(Errno::ENOENT)
    }

    pub(super) fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    /// The attributes of `rel`, with its inode.
    pub(super) fn entry(&mut self, rel: &Path) -> Result<FileAttr, Errno> {
        let m = std::fs::symlink_metadata(self.model.backing(rel)).map_err(errno)?;
        let ino = self.model.ino_of(rel);
        Ok(attr(ino, &m))
    }

    pub(super) fn open_handle(&mut self, ino: u64, file: File) -> FileHandle {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.files.insert(fh, Open { ino, file });
        FileHandle(fh)
    }

    pub(super) fn handle(&self, fh: FileHandle) -> Result<&Open, Errno> {
        self.files.get(&fh.0).ok_or(Errno::EBADF)
    }

    pub(super) fn setattr(
        &mut self,
        ino: INodeNo,
        mode: Option<u32>,
        owner: (Option<u32>, Option<u32>),
        size: Option<u64>,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr, Errno> {
        let rel = self.path(ino)?;
        let path = self.model.backing(&rel);
        if let Some(mode) = mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(errno)?;
        }
        if owner.0.is_some() || owner.1.is_some() {
            std::os::unix::fs::chown(&path, owner.0, owner.1).map_err(errno)?;
        }
        if let Some(len) = size {
            match fh.and_then(|h| self.files.get(&h.0)) {
                Some(open) => self.model.truncate(ino.0, &open.file, len),
                None => {
                    let file = OpenOptions::new().write(true).open(&path).map_err(errno)?;
                    self.model.truncate(ino.0, &file, len)
                }
            }
            .map_err(errno)?;
        }
        let m = match fh.and_then(|h| self.files.get(&h.0)) {
            Some(open) => open.file.metadata(),
            None => std::fs::symlink_metadata(&path),
        }
        .map_err(errno)?;
        Ok(attr(ino.0, &m))
    }

    pub(super) fn create(
        &mut self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, FileHandle), Errno> {
        let rel = self.child(parent, name)?;
        let path = self.model.backing(&rel);
        let existed = std::fs::symlink_metadata(&path).is_ok();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .create_new(flags & libc::O_EXCL != 0)
            .mode(mode & 0o7777)
            .open(&path)
            .map_err(errno)?;
        if !existed {
            self.model.created(&rel);
        }
        let ino = self.model.ino_of(&rel);
        let a = attr(ino, &file.metadata().map_err(errno)?);
        let fh = self.open_handle(ino, file);
        Ok((a, fh))
    }

    pub(super) fn readdir(&mut self, ino: INodeNo) -> Result<Vec<(u64, FileType, PathBuf)>, Errno> {
        let rel = self.path(ino)?;
        let mut names: Vec<(PathBuf, FileType)> = Vec::new();
        for e in std::fs::read_dir(self.model.backing(&rel)).map_err(errno)? {
            let e = e.map_err(errno)?;
            let kind = match e.file_type().map_err(errno)? {
                t if t.is_dir() => FileType::Directory,
                t if t.is_symlink() => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            names.push((PathBuf::from(e.file_name()), kind));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = vec![
            (ino.0, FileType::Directory, PathBuf::from(".")),
            (ROOT_INO, FileType::Directory, PathBuf::from("..")),
        ];
        for (name, kind) in names {
            let child = self.model.ino_of(&rel.join(&name));
            out.push((child, kind, name));
        }
        Ok(out)
    }

    pub(super) fn fallocate(
        &mut self,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        let open = self.handle(fh)?;
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if mode & libc::FALLOC_FL_KEEP_SIZE != 0 {
            // Space only: no byte or length changes, nothing to take back.
            // SAFETY: a plain syscall on a descriptor this handle owns.
            let r = unsafe {
                libc::fallocate(open.file.as_raw_fd(), mode, offset as i64, length as i64)
            };
            return if r == 0 {
                Ok(())
            } else {
                Err(errno(io::Error::last_os_error()))
            };
        }
        let end = offset + length;
        let len = open.file.metadata().map_err(errno)?.len();
        if end > len {
            let (ino, file) = (open.ino, open.file.try_clone().map_err(errno)?);
            self.model.truncate(ino, &file, end).map_err(errno)?;
        }
        Ok(())
    }
}
