//! The model's losses, driven directly on a backing directory (no FUSE).

use super::*;
use std::fs::OpenOptions;

struct T {
    _dir: tempfile::TempDir,
    root: PathBuf,
    trash: PathBuf,
    m: Model,
}

fn t(tear: bool) -> T {
    let dir = tempfile::TempDir::new().unwrap();
    let root = dir.path().join("root");
    let trash = dir.path().join("trash");
    std::fs::create_dir_all(&root).unwrap();
    let m = Model::new(root.clone(), trash.clone(), tear).unwrap();
    T {
        _dir: dir,
        root,
        trash,
        m,
    }
}

impl T {
    /// Creates `rel` (recorded as a new entry) and opens it.
    fn create(&mut self, rel: &str) -> (u64, File) {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.root.join(rel))
            .unwrap();
        self.m.created(Path::new(rel));
        (self.m.ino_of(Path::new(rel)), f)
    }

    fn open(&mut self, rel: &str) -> (u64, File) {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.root.join(rel))
            .unwrap();
        (self.m.ino_of(Path::new(rel)), f)
    }

    fn write(&mut self, f: &(u64, File), offset: u64, data: &[u8]) {
        self.m.write(f.0, &f.1, offset, data).unwrap();
    }

    fn read(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(rel)).ok()
    }

    fn cut(&mut self, seed: u64) -> CutReport {
        self.m.cut(&mut Rng::new(seed))
    }

    fn trash_entries(&self) -> usize {
        std::fs::read_dir(&self.trash).unwrap().count()
    }
}

#[test]
fn unsynced_writes_are_lost_and_synced_ones_kept() {
    let mut t = t(false);
    let f = t.create("wal");
    t.m.sync_dir(Path::new(""));
    t.write(&f, 0, b"synced ");
    t.m.sync_file(f.0);
    t.write(&f, 7, b"lost");
    assert_eq!(t.read("wal").unwrap(), b"synced lost");
    assert_eq!(
        t.m.pending(),
        Pending {
            files: 1,
            ops: 1,
            changes: 0
        }
    );
    let r = t.cut(1);
    assert_eq!((r.files, r.changes, r.errors), (1, 0, 0));
    assert_eq!(t.read("wal").unwrap(), b"synced ");
}

#[test]
fn overwrites_and_truncations_come_back() {
    let mut t = t(false);
    std::fs::write(t.root.join("f"), b"0123456789").unwrap();
    let f = t.open("f");
    t.write(&f, 2, b"ab");
    t.write(&f, 8, b"xyzw");
    t.m.truncate(f.0, &f.1, 3).unwrap();
    t.write(&f, 5, b"!");
    assert_eq!(t.read("f").unwrap(), b"01a\0\0!");
    t.cut(1);
    assert_eq!(t.read("f").unwrap(), b"0123456789");
}

#[test]
fn a_new_file_needs_its_directory_synced() {
    let mut t = t(false);
    let a = t.create("a");
    t.write(&a, 0, b"data");
    t.m.sync_file(a.0);
    let b = t.create("b");
    t.write(&b, 0, b"data");
    t.m.sync_file(b.0);
    t.m.sync_dir(Path::new(""));
    let c = t.create("c");
    t.write(&c, 0, b"data");
    t.m.sync_file(c.0);
    let r = t.cut(1);
    assert_eq!(r.changes, 1);
    assert_eq!(t.read("a").unwrap(), b"data");
    assert_eq!(t.read("b").unwrap(), b"data");
    assert_eq!(
        t.read("c"),
        None,
        "a file whose directory was not synced survived"
    );
}

#[test]
fn a_directory_sync_covers_only_that_directory() {
    let mut t = t(false);
    std::fs::create_dir(t.root.join("d")).unwrap();
    t.m.created(Path::new("d"));
    let f = t.create("d/f");
    t.m.sync_file(f.0);
    t.m.sync_dir(Path::new("d"));
    // d/f is durable in d, but d itself never was in the root
    t.cut(1);
    assert!(!t.root.join("d").exists());
}

/// The snapshot-file pattern: write a temp file, fsync it, rename it over the current one
/// (no directory fsync yet).
fn snapshot_renamed_over(t: &mut T) {
    std::fs::write(t.root.join("current"), b"old snapshot").unwrap();
    let tmp = t.create("current.tmp");
    t.write(&tmp, 0, b"new snapshot");
    t.m.sync_file(tmp.0);
    t.m.rename(Path::new("current.tmp"), Path::new("current"))
        .unwrap();
}

#[test]
fn rename_over_a_file_is_undone_without_a_directory_sync() {
    let mut t = t(false);
    snapshot_renamed_over(&mut t);
    assert_eq!(t.read("current").unwrap(), b"new snapshot");
    assert_eq!(t.trash_entries(), 1, "the replaced file waits in the trash");
    t.cut(1);
    assert_eq!(t.read("current").unwrap(), b"old snapshot");
    assert_eq!(t.read("current.tmp"), None);
    assert_eq!(t.trash_entries(), 0);
}

#[test]
fn rename_with_a_directory_sync_stays_and_empties_the_trash() {
    let mut t = t(false);
    snapshot_renamed_over(&mut t);
    t.m.sync_dir(Path::new(""));
    assert_eq!(t.trash_entries(), 0);
    let r = t.cut(1);
    assert_eq!(r, CutReport::default());
    assert_eq!(t.read("current").unwrap(), b"new snapshot");
}

#[test]
fn data_of_a_renamed_file_follows_it() {
    let mut t = t(false);
    let f = t.create("a");
    t.m.sync_dir(Path::new(""));
    t.write(&f, 0, b"unsynced");
    t.m.rename(Path::new("a"), Path::new("b")).unwrap();
    t.m.sync_dir(Path::new(""));
    assert_eq!(t.m.path_of(f.0).unwrap(), PathBuf::from("b"));
    t.cut(1);
    assert_eq!(
        t.read("b").unwrap(),
        b"",
        "un-synced data survived a rename"
    );
}

#[test]
fn unlink_is_undone_until_the_directory_is_synced() {
    let mut t = t(false);
    std::fs::write(t.root.join("token"), b"secret").unwrap();
    std::fs::write(t.root.join("gone"), b"x").unwrap();
    t.m.remove(Path::new("gone")).unwrap();
    t.m.sync_dir(Path::new(""));
    t.m.remove(Path::new("token")).unwrap();
    assert_eq!(t.read("token"), None);
    t.cut(1);
    assert_eq!(t.read("token").unwrap(), b"secret");
    assert_eq!(t.read("gone"), None);
}

#[test]
fn an_open_unlinked_file_keeps_its_bookkeeping() {
    let mut t = t(false);
    let f = t.create("a");
    t.m.sync_dir(Path::new(""));
    t.write(&f, 0, b"unsynced");
    t.m.remove(Path::new("a")).unwrap();
    // the un-synced write is undone in the trash, then the file comes back
    t.cut(1);
    assert_eq!(t.read("a").unwrap(), b"");
}

#[test]
fn tearing_is_seeded() {
    fn run(seed: u64) -> (CutReport, Vec<u8>) {
        let mut t = t(true);
        let f = t.create("wal");
        t.m.sync_dir(Path::new(""));
        t.write(&f, 0, b"durable|");
        t.m.sync_file(f.0);
        for i in 0..5u8 {
            let at = 8 + 10 * u64::from(i);
            t.write(&f, at, &[b'a' + i; 10]);
        }
        let r = t.cut(seed);
        (r, t.read("wal").unwrap())
    }
    let mut shapes = BTreeSet::new();
    for seed in 0..20 {
        let (r, bytes) = run(seed);
        assert_eq!(
            run(seed),
            (r, bytes.clone()),
            "seed {seed} is not repeatable"
        );
        assert!(bytes.starts_with(b"durable|"), "synced bytes lost");
        assert!(bytes.len() <= 58);
        // the survivors are a prefix of what was written, in order
        let written: Vec<u8> = b"durable|"
            .iter()
            .copied()
            .chain((0..5u8).flat_map(|i| [b'a' + i; 10]))
            .collect();
        assert_eq!(&written[..bytes.len()], &bytes[..]);
        shapes.insert(bytes.len());
    }
    assert!(
        shapes.len() > 3,
        "tearing always cut in the same place: {shapes:?}"
    );
}
