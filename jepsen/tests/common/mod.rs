//! What the lossyfs tests share: a mount in a temporary directory.

use raftq_jepsen::lossyfs::{Mount, Options};
use std::path::Path;

pub struct Mounted {
    /// Holds the backing directory, the mount point and the log; removed last.
    pub dir: tempfile::TempDir,
    pub options: Options,
    pub mount: Mount,
}

/// Mounts lossyfs (the raftq-jepsen binary of this build) over `TMP/data` at `TMP/mnt`, or
/// says SKIPPED and returns None when not root (mounting FUSE needs root; CI runs as root).
pub fn mount_in_tempdir(seed: u64) -> Option<Mounted> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: mounting FUSE needs root");
        return None;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let options = Options {
        backing: dir.path().join("data"),
        mountpoint: dir.path().join("mnt"),
        control: dir.path().join("control.sock"),
        seed,
        tear: false,
    };
    let exe = Path::new(env!("CARGO_BIN_EXE_raftq-jepsen"));
    let mount = Mount::start(exe, options.clone(), &dir.path().join("lossyfs.log")).unwrap();
    Some(Mounted {
        dir,
        options,
        mount,
    })
}
