//! # lossyfs: a filesystem that loses what was not synced, on command
//!
//! `raftq-jepsen lossyfs --backing DIR --mountpoint MNT --control SOCK --seed N [--tear]`
//! mounts a FUSE filesystem at MNT that passes everything through to DIR, and remembers, per
//! file, what was written since its last `fsync`/`fdatasync`, and per directory, the entries
//! created, renamed and removed since its last `fsync` ([`model`]). A line on the control
//! socket SOCK then acts:
//! - `cut`: the power cut. Everything un-synced is taken back (with `--tear`, each file keeps
//!   a seeded random prefix of its un-synced writes, the last one torn at a random byte), the
//!   reply is `ok files=.. bytes=.. torn=.. changes=.. errors=..`, and the filesystem is
//!   unmounted and the program exits. A restart mounts DIR again, as a machine coming back
//!   after the cut would find its disk.
//! - `stop`: a clean shutdown: everything stays; unmount and exit.
//! - `status`: `ok files=.. ops=.. changes=..`, what a cut would take now.
//!
//! The Jepsen `power` nemesis runs every node's data directory on one of these ([`Mount`]):
//! SIGKILL the node, `cut`, mount again, restart the node.
//!
//! Layout: [`model`] (what is un-synced and how to take it back; no FUSE), [`fs`] (the FUSE
//! requests, through fuser) and `requests` (their work on the backing directory), this file (the program and its control socket, and [`Mount`], the
//! harness's handle on one).

pub mod fs;
pub mod model;
mod requests;

use crate::rng::Rng;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The source name of every lossyfs mount in the mount table.
const FS_NAME: &str = "raftq-lossyfs";

/// What `raftq-jepsen lossyfs` is given.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the data lives.
    pub backing: PathBuf,
    /// Where the filesystem is mounted (created if missing).
    pub mountpoint: PathBuf,
    /// The control socket (replaced if present).
    pub control: PathBuf,
    /// Seed of the tearing draws.
    pub seed: u64,
    /// Tear: keep a random prefix of each file's un-synced writes, cutting the last one.
    pub tear: bool,
}

/// The trash of `backing`: a sibling directory, so that moving a file there is a rename.
pub fn trash_of(backing: &Path) -> PathBuf {
    let name = backing
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backing".into());
    backing.with_file_name(format!("{name}.lossyfs-trash"))
}

/// Mounts and serves until `cut` or `stop` (the `raftq-jepsen lossyfs` command).
pub fn serve(o: &Options) -> io::Result<()> {
    std::fs::create_dir_all(&o.backing)?;
    std::fs::create_dir_all(&o.mountpoint)?;
    let trash = trash_of(&o.backing);
    // A trash left by an earlier mount that ended without a cut or stop holds only changes
    // that were never undone: they count as done.
    if trash.exists() {
        std::fs::remove_dir_all(&trash)?;
    }
    let model = model::Model::new(o.backing.clone(), trash, o.tear)?;
    let filesystem = fs::LossyFs::new(model);
    let shared = filesystem.shared();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(FS_NAME.into()),
        fuser::MountOption::RW,
    ];
    let session = fuser::spawn_mount(filesystem, &o.mountpoint, &config)?;
    let connection = connection_of(&o.mountpoint);
    let _ = std::fs::remove_file(&o.control);
    let listener = UnixListener::bind(&o.control)?;
    eprintln!(
        "lossyfs: {} mounted on {} (control {})",
        o.backing.display(),
        o.mountpoint.display(),
        o.control.display()
    );
    let mut rng = Rng::new(o.seed);
    for stream in listener.incoming() {
        // A caller that went away (the harness probes the socket to see that the mount is
        // up) must not end the mount: errors of one connection stay with it.
        let Ok(mut stream) = stream else { continue };
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_err() || line.trim().is_empty() {
            continue;
        }
        let (reply, end) = command(&shared, line.trim(), &mut rng)?;
        if end {
            // Unmount before answering, so the caller can mount again at once. The mount is
            // also in the mount namespace of every node started while it was there (`ip netns
            // exec` copies the host's mounts, and a private root mount does not pass the
            // unmount on): those copies would keep the connection, and this program, alive.
            // Aborting the connection ends them all.
            if let Some(c) = &connection {
                abort_connection(c);
            }
            let unmounted = session.umount_and_join();
            let _ = std::fs::remove_file(&o.control);
            let reply = match unmounted {
                Ok(()) => reply,
                Err(e) => format!("{reply} (unmount: {e})"),
            };
            let _ = writeln!(stream, "{reply}");
            eprintln!("lossyfs: {}: {reply}", line.trim());
            return Ok(());
        }
        let _ = writeln!(stream, "{reply}");
    }
    Ok(())
}

/// Carries out one control command; returns the reply and whether the mount ends now.
fn command(
    shared: &std::sync::Mutex<fs::Inner>,
    command: &str,
    rng: &mut Rng,
) -> io::Result<(String, bool)> {
    let mut g = shared
        .lock()
        .map_err(|_| io::Error::other("lossyfs state lock poisoned"))?;
    Ok(match command {
        "status" => {
            let p = g.model.pending();
            (
                format!("ok files={} ops={} changes={}", p.files, p.ops, p.changes),
                false,
            )
        }
        "cut" => {
            g.dead = true;
            (format!("ok {}", g.model.cut(rng)), true)
        }
        "stop" => {
            g.model.finish();
            g.dead = true;
            ("ok".to_string(), true)
        }
        other => (
            format!("error: unknown command {other:?} (cut, stop, status)"),
            false,
        ),
    })
}

/// The harness's handle on one running `raftq-jepsen lossyfs`.
pub struct Mount {
    pub options: Options,
    exe: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Mount {
    /// Starts `exe lossyfs ...` (exe: the raftq-jepsen binary) and waits until it is mounted;
    /// its output goes to `log` (appended).
    pub fn start(exe: &Path, options: Options, log: &Path) -> io::Result<Mount> {
        let mut m = Mount {
            options,
            exe: exe.to_path_buf(),
            log: log.to_path_buf(),
            child: None,
        };
        m.mount()?;
        Ok(m)
    }

    fn mount(&mut self) -> io::Result<()> {
        let o = &self.options;
        let _ = std::fs::remove_file(&o.control);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("lossyfs")
            .arg("--backing")
            .arg(&o.backing)
            .arg("--mountpoint")
            .arg(&o.mountpoint)
            .arg("--control")
            .arg(&o.control)
            .arg("--seed")
            .arg(o.seed.to_string());
        if o.tear {
            cmd.arg("--tear");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&o.control).is_err() {
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "lossyfs exited ({status}) before mounting {}; see {}",
                    o.mountpoint.display(),
                    self.log.display()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "lossyfs did not mount {} within 20 s; see {}",
                    o.mountpoint.display(),
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Sends one control command and returns the reply line.
    fn send(&self, command: &str) -> io::Result<String> {
        let mut s = UnixStream::connect(&self.options.control)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        writeln!(s, "{command}")?;
        let mut reply = String::new();
        BufReader::new(&s).read_line(&mut reply)?;
        let reply = reply.trim().to_string();
        if reply.starts_with("ok") {
            Ok(reply)
        } else {
            Err(io::Error::other(format!("lossyfs {command}: {reply:?}")))
        }
    }

    fn wait_exit(&mut self) -> io::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.wait()?;
        }
        Ok(())
    }

    /// What a cut would take now.
    pub fn status(&self) -> io::Result<String> {
        self.send("status")
    }

    /// The power cut: takes back everything un-synced and mounts the backing directory again.
    /// Every process using the mount must be dead by then. Returns the cut's report line.
    pub fn cut_and_remount(&mut self) -> io::Result<String> {
        let reply = self.send("cut")?;
        self.wait_exit()?;
        self.mount()?;
        Ok(reply)
    }

    /// Empties the disk (the membership nemesis's wipe): unmounts, deletes the backing
    /// directory's contents and mounts it again, so that no later cut brings anything back.
    pub fn wipe(&mut self) -> io::Result<()> {
        self.stop()?;
        let backing = &self.options.backing;
        std::fs::remove_dir_all(backing)?;
        std::fs::create_dir_all(backing)?;
        self.mount()
    }

    /// Unmounts cleanly (everything written stays).
    pub fn stop(&mut self) -> io::Result<()> {
        if self.child.is_none() {
            return Ok(());
        }
        let r = self.send("stop").map(drop);
        if r.is_err() {
            // Not answering: make sure nothing is left mounted.
            force_unmount(&self.options.mountpoint);
            if let Some(c) = self.child.as_mut() {
                let _ = c.kill();
            }
        }
        self.wait_exit()?;
        r
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// The kernel's control directory of the FUSE connection mounted at `mountpoint`
/// (`/sys/fs/fuse/connections/<device minor>`).
fn connection_of(mountpoint: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint).ok()?.dev();
    Some(Path::new(FUSECTL).join(libc::minor(dev).to_string()))
}

/// Where the fusectl filesystem lists FUSE connections.
const FUSECTL: &str = "/sys/fs/fuse/connections";

/// Aborts a FUSE connection (mounting fusectl first if it is not mounted); failures are
/// printed, not fatal: the unmount that follows still runs.
fn abort_connection(connection: &Path) {
    // Unmounted, the directory is empty; mounted, it lists this connection at least.
    let mounted = std::fs::read_dir(FUSECTL).is_ok_and(|mut d| d.next().is_some());
    if !mounted {
        let _ = Command::new("mount")
            .args(["-t", "fusectl", "fusectl", FUSECTL])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if let Err(e) = std::fs::write(connection.join("abort"), "1") {
        eprintln!("lossyfs: aborting {}: {e}", connection.display());
    }
}

/// Detaches the lossyfs mounts whose program is gone (a killed run's), or all of them with
/// `force`; returns the mount points detached.
pub fn clean_stale(force: bool) -> Vec<String> {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 3 || f[0] != FS_NAME {
            continue;
        }
        let point = Path::new(f[1]);
        let dead =
            matches!(std::fs::metadata(point), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN));
        if force || dead {
            force_unmount(point);
            out.push(format!("lossyfs mount {}", point.display()));
        }
    }
    out
}

/// Detaches a FUSE mount whatever its state (its program may be dead).
pub fn force_unmount(mountpoint: &Path) {
    let _ = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(mountpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
