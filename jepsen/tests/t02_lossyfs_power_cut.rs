//! The lose-unsynced-writes filesystem through the real kernel: mounted with FUSE, used with
//! plain file calls, cut, mounted again. Needs root and /dev/fuse (CI runs as root).

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

fn write_file(path: &Path, data: &[u8], sync: bool) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
    if sync {
        f.sync_all().unwrap();
    }
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn mounted(mountpoint: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let m = mountpoint.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(m))
}

#[test]
fn a_cut_loses_what_was_not_synced_and_keeps_what_was() {
    let Some(common::Mounted {
        dir: _dir,
        options,
        mut mount,
    }) = common::mount_in_tempdir(7)
    else {
        return;
    };
    let m = options.mountpoint.clone();
    assert!(
        mounted(&m),
        "{m:?} not in {}",
        std::fs::read_to_string("/proc/self/mounts").unwrap()
    );

    // Synced file and directory entry.
    std::fs::create_dir(m.join("snapshots")).unwrap();
    write_file(&m.join("snapshots/current"), b"snapshot 1", true);
    write_file(&m.join("token"), b"secret", true);
    sync_dir(&m.join("snapshots"));
    sync_dir(&m);
    // An append that is never synced.
    let mut token = OpenOptions::new()
        .append(true)
        .open(m.join("token"))
        .unwrap();
    token.write_all(b" and more").unwrap();
    drop(token);
    // A file whose entry is synced but whose data is not.
    write_file(&m.join("new-data"), b"lost", false);
    sync_dir(&m);
    // The snapshot pattern without the directory fsync: temp file, fsync, rename over.
    write_file(&m.join("snapshots/current.tmp"), b"snapshot 2", true);
    std::fs::rename(m.join("snapshots/current.tmp"), m.join("snapshots/current")).unwrap();
    // An unlink that is never synced.
    std::fs::write(m.join("doomed"), b"d").unwrap();
    File::open(m.join("doomed")).unwrap().sync_all().unwrap();
    sync_dir(&m);
    // From here on the root directory is not synced again.
    std::fs::remove_file(m.join("doomed")).unwrap();
    // A file whose data is synced but whose directory entry is not.
    write_file(&m.join("new-entry"), b"x", true);
    assert_eq!(
        std::fs::read(m.join("snapshots/current")).unwrap(),
        b"snapshot 2"
    );
    let status = mount.status().unwrap();
    assert!(status.starts_with("ok files="), "{status}");

    let report = mount.cut_and_remount().unwrap();
    assert!(report.contains("errors=0"), "{report}");
    assert!(mounted(&m), "not mounted again after the cut");

    assert_eq!(std::fs::read(m.join("token")).unwrap(), b"secret");
    assert!(
        !m.join("new-entry").exists(),
        "an un-synced directory entry survived"
    );
    assert_eq!(std::fs::read(m.join("new-data")).unwrap(), b"");
    assert_eq!(
        std::fs::read(m.join("snapshots/current")).unwrap(),
        b"snapshot 1",
        "an un-synced rename survived"
    );
    assert!(!m.join("snapshots/current.tmp").exists());
    assert_eq!(std::fs::read(m.join("doomed")).unwrap(), b"d");

    // What is synced after the remount survives the next cut.
    write_file(&m.join("after"), b"kept", true);
    sync_dir(&m);
    mount.cut_and_remount().unwrap();
    assert_eq!(std::fs::read(m.join("after")).unwrap(), b"kept");

    mount.stop().unwrap();
    assert!(!mounted(&m), "still mounted after stop");
    // The backing directory holds the survivors; the trash is empty.
    assert_eq!(
        std::fs::read(options.backing.join("after")).unwrap(),
        b"kept"
    );
}
