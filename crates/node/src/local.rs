//! A cluster of real `raftq node` processes on this machine: what `raftq up`, `raftq bench`
//! and the end-to-end tests start. Each node has its own data directory and log file under
//! one directory; nodes can be killed (SIGKILL), stopped (SIGTERM) and restarted.

use raftq_client::{Client, ClientConfig};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct LocalNode {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    /// Started without `--peers`: it waits to be added (`raftq cluster add-node`).
    pub joins: bool,
    child: Option<Child>,
}

impl LocalNode {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

pub struct LocalCluster {
    pub dir: PathBuf,
    pub nodes: Vec<LocalNode>,
    exe: PathBuf,
    peers: String,
    /// TOML appended to every node's config file.
    config: String,
    /// The cluster token (in `DIR/token`).
    pub token: String,
    /// Put nodes in their own process group (they outlive the parent's terminal).
    pub detach: bool,
}

/// A free loopback port (bound, then released for a node to take).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signals a process id this cluster started; no memory is touched.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

impl LocalCluster {
    /// Describes (does not start) a cluster of nodes at `addrs` with data under `dir`, and
    /// creates its token file `DIR/token` if there is none.
    pub fn new(
        exe: PathBuf,
        dir: &Path,
        addrs: Vec<String>,
        config: &str,
    ) -> std::io::Result<LocalCluster> {
        let token_path = dir.join("token");
        let token =
            raftq_client::auth::ensure_token_file(&token_path).map_err(std::io::Error::other)?;
        let nodes: Vec<LocalNode> = addrs
            .into_iter()
            .enumerate()
            .map(|(i, addr)| LocalNode {
                id: i as u64 + 1,
                addr,
                data_dir: dir.join(format!("node-{}", i + 1)),
                joins: false,
                child: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(",");
        // Top-level keys must come before any table the caller's settings open.
        let config = format!(
            "token_file = {:?}\n{config}",
            token_path.display().to_string()
        );
        Ok(LocalCluster {
            dir: dir.to_path_buf(),
            nodes,
            exe,
            peers,
            config,
            token,
            detach: false,
        })
    }

    /// `n` nodes on free loopback ports.
    pub fn on_free_ports(
        exe: PathBuf,
        dir: &Path,
        n: u64,
        config: &str,
    ) -> std::io::Result<LocalCluster> {
        let addrs = (0..n)
            .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<std::io::Result<Vec<_>>>()?;
        LocalCluster::new(exe, dir, addrs, config)
    }

    /// Describes (does not start) one more node on a free loopback port, to be added to the
    /// running cluster; returns its id.
    pub fn add_joiner(&mut self) -> std::io::Result<u64> {
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        self.nodes.push(LocalNode {
            id,
            addr: format!("127.0.0.1:{}", free_port()?),
            data_dir: self.dir.join(format!("node-{id}")),
            joins: true,
            child: None,
        });
        Ok(id)
    }

    pub fn start_all(&mut self) -> std::io::Result<()> {
        for id in 1..=self.nodes.len() as u64 {
            self.start(id)?;
        }
        Ok(())
    }

    fn node_mut(&mut self, id: u64) -> std::io::Result<&mut LocalNode> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or_else(|| std::io::Error::other(format!("no node {id}")))
    }

    pub fn node(&self, id: u64) -> Option<&LocalNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// (Re)starts node `id` on its data directory; its output goes to `DIR/node-ID.log`.
    pub fn start(&mut self, id: u64) -> std::io::Result<()> {
        // Written to a temp file and renamed: a node that is starting may be reading it, and
        // must never see it half written (it would start with default settings).
        let config = self.dir.join("node.toml");
        let tmp = self.dir.join(format!("node.toml.{id}.tmp"));
        std::fs::write(&tmp, &self.config)?;
        std::fs::rename(&tmp, &config)?;
        let log_path = self.dir.join(format!("node-{id}.log"));
        let (exe, peers, detach) = (self.exe.clone(), self.peers.clone(), self.detach);
        let n = self.node_mut(id)?;
        if n.child.is_some() {
            return Err(std::io::Error::other(format!(
                "node {id} is already running"
            )));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)?;
        let mut cmd = Command::new(exe);
        cmd.arg("node")
            .arg("--config")
            .arg(&config)
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(&n.addr)
            .arg("--data-dir")
            .arg(&n.data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if !n.joins {
            cmd.arg("--peers").arg(peers);
        }
        if detach {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        n.child = Some(cmd.spawn()?);
        Ok(())
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self, id: u64) {
        if let Ok(n) = self.node_mut(id) {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// SIGTERM, waiting for a clean exit (SIGKILL after 10 s).
    pub fn stop(&mut self, id: u64) {
        if let Ok(n) = self.node_mut(id) {
            if let Some(mut c) = n.child.take() {
                signal(c.id(), libc::SIGTERM);
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while std::time::Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    pub fn stop_all(&mut self) {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in &ids {
            if let Some(pid) = self.node(*id).and_then(LocalNode::pid) {
                signal(pid, libc::SIGTERM);
            }
        }
        for id in ids {
            self.stop(id);
        }
    }

    /// Forgets the child processes without stopping them (`raftq up --detach`).
    pub fn release(&mut self) {
        for n in &mut self.nodes {
            n.child = None;
        }
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Client settings with this cluster's token.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            token: Some(self.token.clone()),
            ..ClientConfig::default()
        }
    }

    pub fn client(&self) -> Result<Client, raftq_client::ClientError> {
        Client::new(self.addrs(), self.client_config())
    }

    /// The leader once every running node that answers names the same running node.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<u64, String> {
        let client = self.client().map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for (i, n) in self.nodes.iter().enumerate() {
                if n.running() {
                    if let Ok(s) = client.cluster_status_of(i).await {
                        seen.push(s.leader);
                    }
                }
            }
            if let Some(&l) = seen.first() {
                let live = self.node(l).is_some_and(LocalNode::running);
                if l != 0 && live && seen.iter().all(|x| *x == l) {
                    return Ok(l);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "no agreed leader within {} s (views {seen:?}); see {}/node-N.log",
                    timeout.as_secs(),
                    self.dir.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
