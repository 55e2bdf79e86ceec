//! Harness for end-to-end tests: clusters of real `raftq node` processes on ephemeral
//! loopback ports, each with its own data directory under one temp dir, stopped (and their
//! files removed) when the `Cluster` is dropped. Waits are on conditions with deadlines.
//!
//! The `raftq` binary is found next to the test executable (cargo builds it with
//! `cargo test --workspace`), or at `$RAFTQ_BIN`.

use raftq_client::{Client, ClientConfig};
use raftq_proto::pb;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

pub use raftq_client;
pub use raftq_proto;

/// The `raftq` executable to test.
pub fn raftq_bin() -> PathBuf {
    if let Ok(p) = std::env::var("RAFTQ_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> → target/<profile>/raftq
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir.join("raftq");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p raftq-node) or set RAFTQ_BIN",
        bin.display()
    );
    bin
}

/// A free loopback port (bound, then released for the node to take).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    pub dir: TempDir,
    pub nodes: Vec<NodeProc>,
    peers: String,
    extra_config: String,
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

    /// Starts `n` nodes with extra TOML settings (e.g. snapshot thresholds).
    pub fn start_with(n: u64, extra_config: &str) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("raftq-e2e-")
            .tempdir()
            .expect("temp dir");
        let nodes: Vec<NodeProc> = (1..=n)
            .map(|id| NodeProc {
                id,
                addr: format!("127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(format!("node-{id}")),
                child: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|p| format!("{}={}", p.id, p.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            dir,
            nodes,
            peers,
            extra_config: extra_config.to_string(),
        };
        for id in 1..=n {
            c.start_node(id);
        }
        c
    }

    fn node(&mut self, id: u64) -> &mut NodeProc {
        self.nodes
            .iter_mut()
            .find(|p| p.id == id)
            .expect("node id in cluster")
    }

    /// (Re)starts node `id` with its data directory.
    pub fn start_node(&mut self, id: u64) {
        let config = self.dir.path().join("node.toml");
        std::fs::write(&config, format!("{TEST_CONFIG}{}", self.extra_config))
            .expect("write config");
        let log = self.dir.path().join(format!("node-{id}.log"));
        let peers = self.peers.clone();
        let p = self.node(id);
        assert!(p.child.is_none(), "node {id} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open node log");
        let child = Command::new(raftq_bin())
            .arg("node")
            .arg("--config")
            .arg(&config)
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(&p.addr)
            .arg("--data-dir")
            .arg(&p.data_dir)
            .arg("--peers")
            .arg(&peers)
            .env("RAFTQ_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn raftq node");
        p.child = Some(child);
    }

    /// kill -9 of node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.node(id).child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM to node `id`, waiting for it to exit.
    pub fn stop(&mut self, id: u64) {
        if let Some(mut c) = self.node(id).child.take() {
            // SAFETY: signals a child process we started; no memory is touched.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|p| p.addr.clone()).collect()
    }

    pub fn addr(&self, id: u64) -> String {
        self.nodes
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.addr.clone())
            .expect("node id")
    }

    /// A client of every node.
    pub fn client(&self) -> Client {
        Client::new(self.addrs(), ClientConfig::default()).expect("client")
    }

    /// A client of one node only.
    pub fn client_of(&self, id: u64) -> Client {
        Client::new(vec![self.addr(id)], ClientConfig::default()).expect("client")
    }

    /// The leader, once the running nodes agree on one (within `timeout`).
    pub async fn leader(&self, timeout: Duration) -> u64 {
        let client = self.client();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for (i, p) in self.nodes.iter().enumerate() {
                if p.child.is_none() {
                    continue;
                }
                if let Ok(s) = client.cluster_status_of(i).await {
                    seen.push(s.leader);
                }
            }
            if let Some(&l) = seen.first() {
                let running = self.nodes.iter().any(|p| p.id == l && p.child.is_some());
                if l != 0 && running && seen.iter().all(|x| *x == l) {
                    return l;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader within {timeout:?} (views: {seen:?}); logs in {}",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running node has the same state digest and applied index.
    pub async fn converged(&self, timeout: Duration) -> String {
        let client = self.client();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut views = Vec::new();
            for (i, p) in self.nodes.iter().enumerate() {
                if p.child.is_some() {
                    views.push(client.digest_of(i).await.ok());
                }
            }
            if let Some(Some(first)) = views.first() {
                if views
                    .iter()
                    .all(|v| v.as_ref().is_some_and(|v| v.digest == first.digest))
                {
                    return first.digest.clone();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "replicas did not converge within {timeout:?}: {views:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.nodes {
            if let Some(mut c) = p.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            // Keep the logs of a failed test.
            let path = self.dir.path().to_path_buf();
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            let _ = kept.keep();
            eprintln!("node logs kept in {}", path.display());
        }
    }
}

/// A job spec with just a command.
pub fn job(cmd: impl Into<String>) -> pb::JobSpec {
    pb::JobSpec {
        cmd: cmd.into(),
        rep_grp: "e2e".into(),
        requirements: Some(pb::Requirements {
            ram_mb: 100,
            time_s: 60,
            cores_milli: 1000,
            ..Default::default()
        }),
        ..Default::default()
    }
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
