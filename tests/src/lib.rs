//! Harness for end-to-end tests: clusters of real `raftq node` processes on ephemeral
//! loopback ports, each with its own data directory under one temp dir, stopped (and their
//! files removed) when the `Cluster` is dropped. Waits are on conditions with deadlines.
//!
//! The `raftq` binary is found next to the test executable (cargo builds it with
//! `cargo test --workspace`), or at `$RAFTQ_BIN`.

use raftq_client::Client;
use raftq_local::LocalCluster;
use raftq_proto::pb;
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;

pub mod http;
pub mod webdriver;

pub use raftq_client;
pub use raftq_local;
pub use raftq_proto;

/// The `raftq` executable to test.
pub fn raftq_bin() -> PathBuf {
    raftq_local::raftq_for_tests().unwrap_or_else(|e| panic!("{e}"))
}

pub struct Cluster {
    pub dir: TempDir,
    pub local: LocalCluster,
}

/// Test timing: shorter election timeouts than production so failover tests run fast, still
/// far above the heartbeat on a loaded 2-core machine.
const TEST_CONFIG: &str =
    "heartbeat_ms = 100\nelection_timeout_min_ms = 600\nelection_timeout_max_ms = 1200\n";

impl Cluster {
    /// Starts `n` nodes of a new cluster.
    pub fn start(n: u64) -> Cluster {
        Cluster::start_with(n, "")
    }

    /// Starts `n` nodes with extra TOML settings (e.g. snapshot thresholds; a `[fsm]` table
    /// must come last).
    pub fn start_with(n: u64, extra_config: &str) -> Cluster {
        Cluster::start_as(n, extra_config, true)
    }

    /// Starts `n` nodes serving plaintext (`raftq node --plaintext`), for tests of plaintext
    /// itself; every other cluster has TLS, as `raftq node` has by default (a cluster CA and
    /// node certificates made by `raftq cert` in `DIR/certs`, which the clients trust).
    pub fn start_plaintext(n: u64, extra_config: &str) -> Cluster {
        Cluster::start_as(n, extra_config, false)
    }

    fn start_as(n: u64, extra_config: &str, tls: bool) -> Cluster {
        let mut cluster = Cluster::prepare(n, extra_config);
        if !tls {
            cluster.local.use_plaintext();
        }
        cluster.local.start_all().expect("start nodes");
        cluster
    }

    /// A cluster of `n` nodes with their ports and directories chosen, none started yet
    /// (`local.start_all()` starts them), e.g. to restore a backup into node 1's data
    /// directory first.
    pub fn prepare(n: u64, extra_config: &str) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("raftq-e2e-")
            .tempdir()
            .expect("temp dir");
        let local = LocalCluster::on_free_ports(
            raftq_bin(),
            dir.path(),
            n,
            &format!("{TEST_CONFIG}{extra_config}"),
        )
        .expect("free ports");
        Cluster { dir, local }
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.local.node(id).expect("node id").data_dir.clone()
    }

    /// A `raftq` command (add the subcommand) pointed at this cluster: its addresses, token
    /// and CA in the environment.
    pub fn raftq(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(raftq_bin());
        self.local.point_at(&mut cmd);
        cmd
    }

    /// (Re)starts node `id` with its data directory.
    pub fn start_node(&mut self, id: u64) {
        self.local.start(id).expect("start node");
    }

    /// kill -9 of node `id`.
    pub fn kill(&mut self, id: u64) {
        self.local.kill(id);
    }

    /// SIGTERM to node `id`, waiting for it to exit.
    pub fn stop(&mut self, id: u64) {
        self.local.stop(id);
    }

    pub fn addrs(&self) -> Vec<String> {
        self.local.addrs()
    }

    pub fn addr(&self, id: u64) -> String {
        self.local.node(id).expect("node id").addr.clone()
    }

    /// The base URL of node `id`'s HTTP port (web UI, REST, /metrics).
    pub fn http_url(&self, id: u64) -> String {
        let i = self
            .local
            .nodes
            .iter()
            .position(|n| n.id == id)
            .expect("node id");
        self.local.http_urls()[i].clone()
    }

    /// `METHOD path` on node `id`'s HTTP port with the cluster token (HTTPS trusting the
    /// cluster CA when TLS is on), and `body` as JSON.
    pub async fn http(
        &self,
        method: &str,
        id: u64,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<http::HttpResponse> {
        let auth = format!("Bearer {}", self.local.token);
        http::request_with(
            self.local.ca_pem.as_deref(),
            method,
            &self.http_url(id),
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.map(str::as_bytes),
        )
        .await
    }

    /// A client of every node.
    pub fn client(&self) -> Client {
        Client::new(self.addrs(), self.local.client_config()).expect("client")
    }

    /// A client of one node only.
    pub fn client_of(&self, id: u64) -> Client {
        Client::new(vec![self.addr(id)], self.local.client_config()).expect("client")
    }

    /// The leader, once the running nodes agree on one (within `timeout`).
    pub async fn leader(&self, timeout: Duration) -> u64 {
        match self.local.wait_leader(timeout).await {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    /// Waits until every running node has the same state digest.
    pub async fn converged(&self, timeout: Duration) -> String {
        let client = &self.client();
        raftq_local::wait_for(timeout, Duration::from_millis(100), || async move {
            let mut views = Vec::new();
            for (i, n) in self.local.nodes.iter().enumerate() {
                if n.running() {
                    views.push(client.digest_of(i).await.ok());
                }
            }
            match views.first() {
                Some(Some(first))
                    if views
                        .iter()
                        .all(|v| v.as_ref().is_some_and(|v| v.digest == first.digest)) =>
                {
                    Ok(first.digest.clone())
                }
                _ => Err(views),
            }
        })
        .await
        .unwrap_or_else(|views| panic!("replicas did not converge within {timeout:?}: {views:?}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=self.local.nodes.len() as u64 {
            self.local.kill(id);
        }
        if std::thread::panicking() {
            // Keep the logs of a failed test.
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!("node logs kept in {}", kept.keep().display());
        }
    }
}

/// A job spec with just a command.
pub fn job(cmd: impl Into<String>) -> pb::JobSpec {
    raftq_local::small_job(cmd.into(), "e2e")
}

/// An Add of `cmds` with a fresh request id.
pub fn add_request(cmds: impl IntoIterator<Item = String>) -> pb::AddRequest {
    pb::AddRequest {
        request_id: raftq_client::request_id(),
        jobs: cmds.into_iter().map(job).collect(),
        env: vec![],
        ignore_complete: false,
        return_keys: true,
    }
}

/// An Add of ready-made job specs that runners will execute (a minimal PATH), with a fresh
/// request id.
pub fn runnable_add(jobs: Vec<pb::JobSpec>) -> pb::AddRequest {
    pb::AddRequest {
        request_id: raftq_client::request_id(),
        jobs,
        env: vec!["PATH=/usr/bin:/bin".into()],
        ignore_complete: false,
        return_keys: false,
    }
}

/// Total jobs per state name over all rep groups (linearizable read).
pub async fn total(client: &Client, state: &str) -> u64 {
    client
        .stats(false)
        .await
        .expect("stats")
        .states
        .get(state)
        .copied()
        .unwrap_or(0)
}

/// A 16-byte runner id.
pub fn runner_id() -> Vec<u8> {
    raftq_client::request_id()
}

/// Starts `raftq runner` against `cluster` with extra arguments; output goes to
/// `DIR/runner-<name>.log`.
pub fn start_runner(cluster: &Cluster, name: &str, args: &[&str]) -> std::process::Child {
    let log = std::fs::File::create(cluster.dir.path().join(format!("runner-{name}.log")))
        .expect("runner log");
    cluster
        .raftq()
        .arg("runner")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("spawn raftq runner")
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The runner registry of a scheduler (`[scheduler] runner_dir`). Dropping it kills the
/// runners still registered (they outlive the nodes that started them).
pub struct Registry {
    pub dir: PathBuf,
    /// Holds `dir`; apart from the cluster's, so the runners can be found after it is gone.
    _tmp: TempDir,
}

impl Registry {
    pub fn new() -> Registry {
        let tmp = tempfile::Builder::new()
            .prefix("raftq-runners-")
            .tempdir()
            .expect("temp dir");
        Registry {
            dir: tmp.path().join("runners"),
            _tmp: tmp,
        }
    }

    /// The scheduler settings that use this registry, after `extra` settings.
    pub fn settings(&self, extra: &str) -> String {
        format!(
            "[scheduler]\nenabled = true\n{extra}runner_dir = {:?}\n",
            self.dir.display().to_string()
        )
    }

    /// Live registered runners: (pid, scheduler group).
    pub fn live(&self) -> Vec<(u32, String)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let pid: u32 = name.strip_suffix(".runner")?.parse().ok()?;
                let group = std::fs::read_to_string(e.path()).ok()?;
                process_alive(pid).then_some((pid, group))
            })
            .collect()
    }
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        for (pid, _) in self.live() {
            // A runner's command runs in a process group of its own: kill those first.
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            let groups = children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
                .chain([pid as i32]);
            for group in groups {
                // SAFETY: a signal to the process group of a runner the test's cluster started
                // (each runner, and each command it runs, leads its own group).
                unsafe {
                    libc::kill(-group, libc::SIGKILL);
                }
            }
        }
    }
}

/// Lines of node `id`'s log that contain `text`.
pub fn log_lines(cluster: &Cluster, id: u64, text: &str) -> usize {
    std::fs::read_to_string(cluster.local.log_path(id))
        .map(|l| l.lines().filter(|l| l.contains(text)).count())
        .unwrap_or(0)
}

/// [`log_lines`] over every node.
pub fn log_lines_all(cluster: &Cluster, text: &str) -> usize {
    (1..=cluster.local.nodes.len() as u64)
        .map(|id| log_lines(cluster, id, text))
        .sum()
}

/// Checks `check` every 50 ms for `window`, failing at the first time it does not hold: for
/// what must *not* happen during a while.
pub async fn holds_for<F, Fut>(what: &str, window: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        assert!(check().await, "{what} did not hold");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `f` returns Some, polling every 50 ms, up to `timeout`; panics naming `what`
/// when it does not.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let check = || {
        let poll = f();
        async move { poll.await.ok_or(()) }
    };
    match raftq_local::wait_for(timeout, Duration::from_millis(50), check).await {
        Ok(v) => v,
        Err(()) => panic!("timed out waiting for {what}"),
    }
}

/// The key of a job as the node names it (the keys of an `AddResponse`, a `pb::Job`'s key).
pub fn job_key(key: &str) -> queue_fsm::JobKey {
    queue_fsm::JobKey::parse(key).unwrap_or_else(|| panic!("{key:?} is not a job key"))
}

/// [`job_key`] of each key.
pub fn job_keys(keys: &[String]) -> Vec<queue_fsm::JobKey> {
    keys.iter().map(|k| job_key(k)).collect()
}
