//! Running one command the way wr does: under `bash` with `set -o pipefail`, in its own
//! process group, in a working directory (the given cwd, or a unique one created under it
//! through hashed levels, with a sister TMPDIR that is always removed), with the job's
//! environment; measuring peak memory (PSS of the process tree), disk and CPU time; keeping the
//! head and tail of stdout and stderr; stopping it on request (kill, time limit).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::watch;

/// Bytes kept from the start and from the end of each output stream.
pub const OUTPUT_HEAD_TAIL_BYTES: usize = 4096;
/// How often memory and disk are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Between SIGTERM and SIGKILL when stopping a command.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// Where a command runs.
#[derive(Clone, Debug)]
pub enum WorkDir {
    /// Exactly this directory (`cwd_matters`); it must exist.
    Exact(PathBuf),
    /// A unique directory under this base, named by `unique` (e.g. the job key and fence).
    Unique { base: PathBuf, unique: String },
}

#[derive(Clone, Debug)]
pub struct ExecSpec {
    pub cmd: String,
    pub shell: String,
    pub dir: WorkDir,
    /// `KEY=VALUE` entries; the command sees exactly these (plus TMPDIR, and HOME when
    /// `change_home`).
    pub env: Vec<String>,
    pub change_home: bool,
    /// Stop the command after this long (None: no limit).
    pub time_limit: Option<Duration>,
    /// Stop the command when its memory goes over this while the host is short of memory.
    pub ram_limit_mb: Option<u64>,
    /// Whether the host is short of memory (None: read /proc/meminfo; tests force it).
    pub host_short_of_memory: Option<bool>,
}

/// The host counts as short of memory when less than this share of it is available.
pub const SHORT_OF_MEMORY_PERCENT: u64 = 10;

/// The host's memory from `/proc/meminfo`, in KiB: (total, available).
pub fn host_memory_kb() -> Option<(u64, u64)> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Whether less than `SHORT_OF_MEMORY_PERCENT` of the host's memory is available.
pub fn host_short_of_memory() -> bool {
    match host_memory_kb() {
        Some((total, avail)) => avail * 100 < total * SHORT_OF_MEMORY_PERCENT,
        None => false,
    }
}

/// Why a command was stopped by the runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Kill requested (by the queue, or the runner is shutting down).
    Requested,
    /// Ran longer than its time limit.
    Time,
    /// Used more memory than it asked for while the host was short of memory.
    Ram,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecResult {
    /// The exit code, or None when a signal ended it.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Set when the runner stopped it.
    pub stopped: Option<StopReason>,
    pub peak_ram_mb: u64,
    pub peak_disk_mb: u64,
    pub cpu_ms: u64,
    pub wall_ms: u64,
    pub stdout: String,
    pub stderr: String,
    /// The directory it ran in.
    pub actual_cwd: PathBuf,
    /// Failure to set up (the command did not start): the reason.
    pub setup_error: Option<String>,
}

/// The unique working directory for `unique` under `base`: three levels named by a hash of
/// `unique`, so that a million jobs put at most a few thousand entries in any directory.
pub fn unique_dir(base: &Path, unique: &str) -> PathBuf {
    let h = stable_hash_hex(unique);
    base.join("raftq")
        .join(&h[0..2])
        .join(&h[2..4])
        .join(&h[4..6])
        .join(unique)
}

fn stable_hash_hex(s: &str) -> String {
    // A small stable hash (FNV-1a, 64 bit) is enough to spread directories.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Keeps the first and last `n` bytes of a stream.
#[derive(Default)]
struct HeadTail {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    dropped: u64,
    n: usize,
}

impl HeadTail {
    fn new(n: usize) -> HeadTail {
        HeadTail {
            n,
            ..HeadTail::default()
        }
    }

    fn push(&mut self, mut data: &[u8]) {
        if self.head.len() < self.n {
            let take = (self.n - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        for &b in data {
            if self.tail.len() == self.n {
                self.tail.pop_front();
                self.dropped += 1;
            }
            self.tail.push_back(b);
        }
    }

    /// The head and tail as text the queue takes: invalid UTF-8 replaced, NUL bytes shown
    /// as `\0` (the queue refuses NUL in text), each part cut at a character boundary to
    /// [`OUTPUT_PART_BYTES`] (a replaced byte can take 3), so that the whole stays within the
    /// queue's bound on stored output whatever the command printed.
    fn text(&self) -> String {
        let mut s = clean(&self.head, false);
        if self.dropped > 0 {
            s.push_str(&format!("\n... ({} bytes left out) ...\n", self.dropped));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        s.push_str(&clean(&tail, true));
        s
    }
}

/// Bytes of text at most for each of an output's head and tail (the two, with the marker
/// between them, fit the queue's 16 KiB).
pub const OUTPUT_PART_BYTES: usize = 8 * 1024 - 128;
const _: () = assert!(2 * OUTPUT_PART_BYTES + 128 <= queue_fsm::limits::MAX_OUTPUT_BYTES);

/// `bytes` as text the queue takes (see [`HeadTail::text`]); `keep_end`: cut from the start
/// rather than the end.
fn clean(bytes: &[u8], keep_end: bool) -> String {
    let s = String::from_utf8_lossy(bytes).replace('\0', "\\0");
    if s.len() <= OUTPUT_PART_BYTES {
        return s;
    }
    let mut cut = if keep_end {
        s.len() - OUTPUT_PART_BYTES
    } else {
        OUTPUT_PART_BYTES
    };
    if keep_end {
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s[cut..].to_string()
    } else {
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s[..cut].to_string()
    }
}

async fn drain(mut r: impl tokio::io::AsyncRead + Unpin) -> HeadTail {
    let mut ht = HeadTail::new(OUTPUT_HEAD_TAIL_BYTES);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return ht,
            Ok(n) => ht.push(&buf[..n]),
        }
    }
}

/// Processes of the group `pgid` (read from /proc).
fn group_pids(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // fields after the ")" that ends the command name: state ppid pgrp ...
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                if f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// Proportional set size of a process, in kB (0 when unreadable).
fn pss_kb(pid: i32) -> u64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return 0;
    };
    s.lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Bytes used by the files under `dir`.
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: signals the process group this runner created; no memory is touched.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Prepares the working directory and TMPDIR: (cwd, tmpdir to remove afterwards).
fn prepare_dirs(dir: &WorkDir) -> Result<(PathBuf, PathBuf), String> {
    match dir {
        WorkDir::Exact(p) => {
            if !p.is_dir() {
                return Err(format!("working directory {} does not exist", p.display()));
            }
            let tmp = std::env::temp_dir()
                .join(format!("raftq-tmp-{}", std::process::id()))
                .join(stable_hash_hex(&p.display().to_string()));
            std::fs::create_dir_all(&tmp).map_err(|e| format!("creating TMPDIR: {e}"))?;
            Ok((p.clone(), tmp))
        }
        WorkDir::Unique { base, unique } => {
            if !base.is_dir() {
                return Err(format!(
                    "working directory {} does not exist",
                    base.display()
                ));
            }
            let root = unique_dir(base, unique);
            let cwd = root.join("cwd");
            let tmp = root.join("tmp");
            std::fs::create_dir_all(&cwd)
                .and_then(|_| std::fs::create_dir_all(&tmp))
                .map_err(|e| format!("creating {}: {e}", root.display()))?;
            Ok((cwd, tmp))
        }
    }
}

/// The result of a command that could not be started.
fn setup_failed(reason: String, actual_cwd: PathBuf) -> ExecResult {
    ExecResult {
        setup_error: Some(reason),
        actual_cwd,
        ..ExecResult::default()
    }
}

/// Runs the command to its end. `kill` (set to true) stops it; `on_start` gets the pid.
pub async fn run(
    spec: &ExecSpec,
    kill: watch::Receiver<bool>,
    on_start: impl FnOnce(u32),
) -> ExecResult {
    let (cwd, tmp) = match prepare_dirs(&spec.dir) {
        Ok(d) => d,
        Err(e) => return setup_failed(e, PathBuf::default()),
    };
    let mut cmd = command(spec, &cwd, &tmp);
    let start = Instant::now();
    let cpu_before = children_cpu_ms();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return setup_failed(format!("starting {}: {e}", spec.shell), cwd);
        }
    };
    let pid = child.id().unwrap_or(0);
    on_start(pid);
    let pgid = pid as i32;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill().await;
        let _ = std::fs::remove_dir_all(&tmp);
        return setup_failed("the command's output pipes were not created".into(), cwd);
    };
    let out = tokio::spawn(drain(stdout));
    let err = tokio::spawn(drain(stderr));
    let watched = watch_child(&mut child, pgid, spec, &cwd, start, kill).await;
    // Whatever the command left running in its group goes too.
    signal_group(pgid, libc::SIGKILL);
    let wall = start.elapsed();
    let cpu_ms = children_cpu_ms().saturating_sub(cpu_before);
    let stdout = out.await.map(|h| h.text()).unwrap_or_default();
    let stderr = err.await.map(|h| h.text()).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&tmp);
    let mut peak_disk = watched.peak_disk;
    if matches!(spec.dir, WorkDir::Unique { .. }) {
        peak_disk = peak_disk.max(disk_usage(&cwd));
    }
    let (exit_code, signal) = match watched.status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            (s.code(), s.signal())
        }
        Err(_) => (None, None),
    };
    ExecResult {
        exit_code,
        signal,
        stopped: watched.stopped,
        peak_ram_mb: watched.peak_pss_kb.div_ceil(1024),
        peak_disk_mb: peak_disk.div_ceil(1024 * 1024),
        cpu_ms,
        wall_ms: wall.as_millis() as u64,
        stdout,
        stderr,
        actual_cwd: cwd,
        setup_error: None,
    }
}

/// The command, ready to spawn: the shell with pipefail, in `cwd`, with exactly the job's
/// environment plus TMPDIR (and HOME in a unique directory when asked), in its own process
/// group so that stopping it stops everything it started.
fn command(spec: &ExecSpec, cwd: &Path, tmp: &Path) -> Command {
    let mut env: BTreeMap<String, String> = spec
        .env
        .iter()
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    env.insert("TMPDIR".into(), tmp.display().to_string());
    if spec.change_home && matches!(spec.dir, WorkDir::Unique { .. }) {
        env.insert("HOME".into(), cwd.display().to_string());
    }
    let mut cmd = Command::new(&spec.shell);
    cmd.arg("-c")
        .arg(format!("set -o pipefail\n{}", spec.cmd))
        .current_dir(cwd)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// What watching a running command found.
struct Watched {
    status: std::io::Result<std::process::ExitStatus>,
    peak_pss_kb: u64,
    peak_disk: u64,
    stopped: Option<StopReason>,
}

/// Waits for the command while sampling its memory and disk, and stops it (SIGTERM, then
/// SIGKILL after `KILL_GRACE`) on request, at its time limit, or over its memory on a host
/// short of memory.
async fn watch_child(
    child: &mut tokio::process::Child,
    pgid: i32,
    spec: &ExecSpec,
    cwd: &Path,
    start: Instant,
    mut kill: watch::Receiver<bool>,
) -> Watched {
    let mut peak_pss_kb = 0u64;
    let mut peak_disk = 0u64;
    let mut stopped: Option<StopReason> = None;
    let mut term_sent: Option<Instant> = None;
    // The first sample comes one period in: most short commands are done by then.
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + SAMPLE_EVERY, SAMPLE_EVERY);
    let status = loop {
        tokio::select! {
            st = child.wait() => break st,
            _ = ticker.tick() => {
                let pss: u64 = group_pids(pgid).into_iter().map(pss_kb).sum();
                peak_pss_kb = peak_pss_kb.max(pss);
                if matches!(spec.dir, WorkDir::Unique { .. }) {
                    peak_disk = peak_disk.max(disk_usage(cwd));
                }
                if stopped.is_none() && spec.time_limit.is_some_and(|l| start.elapsed() > l) {
                    stopped = Some(StopReason::Time);
                }
                if stopped.is_none()
                    && spec.ram_limit_mb.is_some_and(|l| pss.div_ceil(1024) > l)
                    && spec.host_short_of_memory.unwrap_or_else(host_short_of_memory)
                {
                    stopped = Some(StopReason::Ram);
                }
            }
            r = kill.changed(), if stopped.is_none() => {
                if r.is_err() || *kill.borrow() {
                    stopped = Some(StopReason::Requested);
                }
            }
        }
        if stopped.is_some() {
            match term_sent {
                None => {
                    signal_group(pgid, libc::SIGTERM);
                    term_sent = Some(Instant::now());
                }
                Some(t) if t.elapsed() > KILL_GRACE => signal_group(pgid, libc::SIGKILL),
                _ => {}
            }
        }
    };
    Watched {
        status,
        peak_pss_kb,
        peak_disk,
        stopped,
    }
}

/// CPU time of this process's waited-for children so far, in ms. A runner runs one command
/// at a time, so the difference across a run is that command's (and what it waited for).
fn children_cpu_ms() -> u64 {
    // SAFETY: getrusage writes into the struct we pass; nothing else is touched.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}
