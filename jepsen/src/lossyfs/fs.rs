//! The FUSE side: a pass-through filesystem over the backing directory whose every change
//! goes through the [`Model`], so that a power cut can take back what was not synced.
//!
//! One worker thread (fuser's default) serves the kernel, and one lock holds the model and
//! the open files: requests are handled one at a time, in the order the kernel sends them.
//! What a request does to the backing directory is in [`super::requests`]; this file maps
//! the kernel's requests to it and its results to replies.

use super::model::Model;
use super::requests::{attr, errno};
use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, OpenAccMode, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// How long the kernel may cache attributes and names: every change comes through here, so
/// the cache stays right; a cut ends the mount, so nothing stale outlives it.
const TTL: Duration = Duration::from_secs(1);

pub(super) struct Open {
    pub(super) ino: u64,
    pub(super) file: File,
}

pub(super) struct Inner {
    pub(super) model: Model,
    pub(super) files: HashMap<u64, Open>,
    pub(super) next_fh: u64,
    /// Set by the cut: from then on every request fails (the "machine" is off).
    pub(super) dead: bool,
}

pub struct LossyFs {
    inner: Arc<Mutex<Inner>>,
}

impl LossyFs {
    pub fn new(model: Model) -> LossyFs {
        LossyFs {
            inner: Arc::new(Mutex::new(Inner {
                model,
                files: HashMap::new(),
                next_fh: 1,
                dead: false,
            })),
        }
    }

    /// The state the control socket works on.
    pub(super) fn shared(&self) -> Arc<Mutex<Inner>> {
        self.inner.clone()
    }

    /// The state, or EIO once the power is cut (or the lock was poisoned by a panic).
    fn lock(&self) -> Result<MutexGuard<'_, Inner>, Errno> {
        match self.inner.lock() {
            Ok(g) if !g.dead => Ok(g),
            _ => Err(Errno::EIO),
        }
    }
}

macro_rules! lock_or_reply {
    ($self:ident, $reply:ident) => {
        match $self.lock() {
            Ok(g) => g,
            Err(e) => return $reply.error(e),
        }
    };
}

impl Filesystem for LossyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut g = lock_or_reply!(self, reply);
        match g.child(parent, name).and_then(|rel| g.entry(&rel)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let g = lock_or_reply!(self, reply);
        let m = match fh.and_then(|h| g.files.get(&h.0)) {
            Some(open) => open.file.metadata().map_err(errno),
            None => g
                .path(ino)
                .and_then(|rel| std::fs::symlink_metadata(g.model.backing(&rel)).map_err(errno)),
        };
        match m {
            Ok(m) => reply.attr(&TTL, &attr(ino.0, &m)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut g = lock_or_reply!(self, reply);
        match g.setattr(ino, mode, (uid, gid), size, fh) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let g = lock_or_reply!(self, reply);
        match g
            .path(ino)
            .and_then(|rel| std::fs::read_link(g.model.backing(&rel)).map_err(errno))
        {
            Ok(target) => reply.data(target.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut g = lock_or_reply!(self, reply);
        let made = g.child(parent, name).and_then(|rel| {
            let path = g.model.backing(&rel);
            std::fs::create_dir(&path).map_err(errno)?;
            g.model.created(&rel);
            std::fs::set_permissions(
                &path,
                std::fs::Permissions::from_mode(mode & !umask & 0o7777),
            )
            .map_err(errno)?;
            g.entry(&rel)
        });
        match made {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut g = lock_or_reply!(self, reply);
        let done = g.child(parent, name).and_then(|rel| {
            let m = std::fs::symlink_metadata(g.model.backing(&rel)).map_err(errno)?;
            if m.is_dir() {
                return Err(Errno::EISDIR);
            }
            g.model.remove(&rel).map_err(errno)
        });
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut g = lock_or_reply!(self, reply);
        let done = g.child(parent, name).and_then(|rel| {
            let path = g.model.backing(&rel);
            if !std::fs::symlink_metadata(&path).map_err(errno)?.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            if std::fs::read_dir(&path).map_err(errno)?.next().is_some() {
                return Err(Errno::ENOTEMPTY);
            }
            g.model.remove(&rel).map_err(errno)
        });
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut g = lock_or_reply!(self, reply);
        let made = g.child(parent, link_name).and_then(|rel| {
            std::os::unix::fs::symlink(target, g.model.backing(&rel)).map_err(errno)?;
            g.model.created(&rel);
            g.entry(&rel)
        });
        match made {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut g = lock_or_reply!(self, reply);
        let done = (|| {
            let from = g.child(parent, name)?;
            let to = g.child(newparent, newname)?;
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                return Err(Errno::EINVAL);
            }
            if flags.contains(RenameFlags::RENAME_NOREPLACE)
                && std::fs::symlink_metadata(g.model.backing(&to)).is_ok()
            {
                return Err(Errno::EEXIST);
            }
            g.model.rename(&from, &to).map_err(errno)
        })();
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut g = lock_or_reply!(self, reply);
        let made = (|| {
            let from = g.path(ino)?;
            let to = g.child(newparent, newname)?;
            std::fs::hard_link(g.model.backing(&from), g.model.backing(&to)).map_err(errno)?;
            g.model.created(&to);
            g.entry(&to)
        })();
        match made {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut g = lock_or_reply!(self, reply);
        let opened = g.path(ino).and_then(|rel| {
            let mut o = OpenOptions::new();
            match flags.acc_mode() {
                OpenAccMode::O_RDONLY => o.read(true),
                OpenAccMode::O_WRONLY => o.write(true),
                OpenAccMode::O_RDWR => o.read(true).write(true),
            };
            o.open(g.model.backing(&rel)).map_err(errno)
        });
        match opened {
            Ok(file) => {
                let fh = g.open_handle(ino.0, file);
                reply.opened(fh, FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let g = lock_or_reply!(self, reply);
        let read = g.handle(fh).and_then(|open| {
            let mut buf = vec![0; size as usize];
            let mut got = 0;
            while got < buf.len() {
                match open.file.read_at(&mut buf[got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(errno(e)),
                }
            }
            buf.truncate(got);
            Ok(buf)
        });
        match read {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut g = lock_or_reply!(self, reply);
        let written = g
            .handle(fh)
            .and_then(|open| Ok((open.ino, open.file.try_clone().map_err(errno)?)))
            .and_then(|(ino, file)| g.model.write(ino, &file, offset, data).map_err(errno));
        match written {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut g = lock_or_reply!(self, reply);
        g.files.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // The backing file itself is not synced: what survives a cut is decided by the model,
        // not by the disk under it.
        let mut g = lock_or_reply!(self, reply);
        match g.handle(fh).map(|o| o.ino) {
            Ok(ino) => {
                g.model.sync_file(ino);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut g = lock_or_reply!(self, reply);
        match g.readdir(ino) {
            Ok(entries) => {
                for (i, (child, kind, name)) in
                    entries.into_iter().enumerate().skip(offset as usize)
                {
                    if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut g = lock_or_reply!(self, reply);
        match g.path(ino) {
            Ok(rel) => {
                g.model.sync_dir(&rel);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let g = lock_or_reply!(self, reply);
        let root = g.model.backing(Path::new(""));
        let Ok(c) = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()) else {
            return reply.error(Errno::EINVAL);
        };
        // SAFETY: statvfs fills the zeroed struct it is given from a NUL-terminated path.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return reply.error(errno(io::Error::last_os_error()));
        }
        reply.statfs(
            s.f_blocks,
            s.f_bfree,
            s.f_bavail,
            s.f_files,
            s.f_ffree,
            s.f_bsize as u32,
            s.f_namemax as u32,
            s.f_frsize as u32,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut g = lock_or_reply!(self, reply);
        match g.create(parent, name, mode & !umask, flags) {
            Ok((a, fh)) => reply.created(&TTL, &a, Generation(0), fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut g = lock_or_reply!(self, reply);
        match g.fallocate(fh, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
