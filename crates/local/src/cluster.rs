//! [`LocalCluster`]: node processes under one directory, started, signalled and restarted.
//!
//! Files under the cluster's directory `DIR`: `token` (the cluster token, created if missing),
//! `node.toml` (the settings every node reads), and per node `node-ID/` (data) and
//! `node-ID.log` (stdout and stderr, appended across restarts); with TLS on, `certs/` (the
//! cluster CA and each node's certificate and key, made by `raftq cert`).

use crate::wait::wait_for;
use raftq_client::{Client, ClientConfig, ClientError};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Why a cluster could not be described, a node not started, or no leader seen.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A file or process operation failed (the OS error says whether retrying can help).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The token file could not be created or read (the error names the file).
    #[error(transparent)]
    Token(#[from] raftq_client::auth::TokenError),
    /// No node with this id in the cluster.
    #[error("no node {0}")]
    NoNode(u64),
    /// The node's process is still running (kill or stop it first).
    #[error("node {0} is already running")]
    AlreadyRunning(u64),
    /// The client of the cluster could not be built (bad addresses).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No `raftq` executable where a test looked for it.
    #[error("{0} not found: build it first (cargo build -p raftq-node) or set RAFTQ_BIN")]
    NoExecutable(PathBuf),
    /// The running nodes did not agree on a running leader in time.
    #[error("no agreed leader within {timeout_s} s (views {views:?}); see {dir}/node-N.log")]
    NoLeader {
        timeout_s: u64,
        /// The leader each running node that answered named at the last look (0: none).
        views: Vec<u64>,
        dir: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Io { what, source }
}

/// One node of a [`LocalCluster`] and its process, if running.
pub struct LocalNode {
    pub id: u64,
    pub addr: String,
    /// host:port of its web UI, REST API and /metrics (`--http`): a free loopback port.
    pub http_addr: String,
    pub data_dir: PathBuf,
    /// Started without `--peers`: it waits to be added (`raftq cluster add-node`).
    pub joins: bool,
    /// Extra `raftq node` arguments (e.g. `--power-loss-sim`, `--clock-offset-ms=N`), used
    /// from the next start on.
    pub args: Vec<String>,
    /// A program and its arguments that run the node (e.g. `ip netns exec NS`, which execs
    /// it, so that the child's pid is the node's); empty: the node is the child itself.
    pub wrapper: Vec<OsString>,
    child: Option<Child>,
    paused: bool,
}

impl LocalNode {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its process exists (it may be paused).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Stopped with SIGSTOP and not continued since.
    pub fn paused(&self) -> bool {
        self.paused
    }

    fn signal(&self, sig: i32) -> bool {
        match &self.child {
            // SAFETY: kill(2) on a pid this cluster spawned and has not reaped yet, so it
            // cannot name another process; no memory is touched.
            Some(c) => unsafe { libc::kill(c.id() as libc::pid_t, sig) == 0 },
            None => false,
        }
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A stopped process may not die of SIGKILL until continued on some kernels.
            if self.paused {
                self.signal_child(&c, libc::SIGCONT);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    fn signal_child(&self, c: &Child, sig: i32) {
        // SAFETY: as in `signal`: a pid we spawned and have not reaped.
        unsafe {
            libc::kill(c.id() as libc::pid_t, sig);
        }
    }
}

/// A cluster of `raftq node` processes sharing one directory, token and settings.
pub struct LocalCluster {
    pub dir: PathBuf,
    pub nodes: Vec<LocalNode>,
    exe: PathBuf,
    peers: String,
    /// The settings every node reads (`DIR/node.toml`).
    config: String,
    /// The cluster token (in `DIR/token`).
    pub token: String,
    /// Put nodes in their own process group (they outlive the parent's terminal).
    pub detach: bool,
    /// TLS on (the default, see [`Self::use_tls`]): the certificate directory `DIR/certs`;
    /// None after [`Self::use_plaintext`].
    tls_dir: Option<PathBuf>,
    /// The cluster CA's PEM, which the cluster's clients trust, when TLS is on.
    pub ca_pem: Option<Vec<u8>>,
}

/// The `raftq` executable that tests start: `$RAFTQ_BIN`, else the one cargo builds beside
/// the test executable (`target/<profile>/deps/<test>` → `target/<profile>/raftq`).
pub fn raftq_for_tests() -> Result<PathBuf, LaunchError> {
    if let Some(p) = std::env::var_os("RAFTQ_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(io("finding the test executable"))?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("raftq"))
        .unwrap_or_else(|| PathBuf::from("raftq"));
    if bin.exists() {
        Ok(bin)
    } else {
        Err(LaunchError::NoExecutable(bin))
    }
}

/// The host of `host:port` (`[v6]:port` without its brackets).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A free loopback port (bound, then released for a node to take).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl LocalCluster {
    /// Describes (does not start) a cluster of nodes 1..=N at `addrs` with data under `dir`,
    /// running the `raftq` executable `exe` with the TOML settings `config`, and creates its
    /// token file `DIR/token` if there is none.
    pub fn new(
        exe: PathBuf,
        dir: &Path,
        addrs: Vec<String>,
        config: &str,
    ) -> Result<LocalCluster, LaunchError> {
        let token_path = dir.join("token");
        let token = raftq_client::auth::ensure_token_file(&token_path)?;
        let http_addrs = (0..addrs.len())
            .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io("finding a free port for the HTTP port"))?;
        let nodes: Vec<LocalNode> = addrs
            .into_iter()
            .zip(http_addrs)
            .enumerate()
            .map(|(i, (addr, http_addr))| LocalNode {
                id: i as u64 + 1,
                addr,
                http_addr,
                data_dir: dir.join(format!("node-{}", i + 1)),
                joins: false,
                args: Vec::new(),
                wrapper: Vec::new(),
                child: None,
                paused: false,
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
        let mut cluster = LocalCluster {
            dir: dir.to_path_buf(),
            nodes,
            exe,
            peers,
            config,
            token,
            detach: false,
            tls_dir: None,
            ca_pem: None,
        };
        cluster.use_tls()?;
        Ok(cluster)
    }

    /// TLS for every node (the default, as for `raftq node`): makes the cluster CA in
    /// `DIR/certs` with `raftq cert ca` (the executable under test) unless it is there, and
    /// before a node starts, its certificate (`raftq cert node`, hosts: its address's host,
    /// 127.0.0.1 and localhost) if it has none; nodes get the `--tls-*` flags and the
    /// cluster's clients the CA.
    pub fn use_tls(&mut self) -> Result<(), LaunchError> {
        let dir = self.dir.join("certs");
        let ca = dir.join("ca.pem");
        if !ca.exists() {
            let dir_arg = dir.display().to_string();
            self.raftq_cert(&["ca", "--dir", &dir_arg])?;
        }
        self.ca_pem = Some(std::fs::read(&ca).map_err(io(format!("reading {}", ca.display())))?);
        self.tls_dir = Some(dir);
        Ok(())
    }

    /// Plaintext from each node's next start (`raftq node --plaintext`), and for the
    /// cluster's clients: for tests of plaintext itself and for comparisons (`raftq bench
    /// --plaintext`).
    pub fn use_plaintext(&mut self) {
        self.tls_dir = None;
        self.ca_pem = None;
    }

    /// The certificate directory when TLS is on (`ca.pem`, `node-ID.pem`, ...).
    pub fn tls_dir(&self) -> Option<&Path> {
        self.tls_dir.as_deref()
    }

    /// Runs `raftq cert ARGS`; its output is kept in `DIR/cert.log`.
    pub fn raftq_cert(&self, args: &[&str]) -> Result<(), LaunchError> {
        let what = format!("raftq cert {}", args.join(" "));
        let out = Command::new(&self.exe)
            .arg("cert")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(io(what.clone()))?;
        if out.status.success() {
            return Ok(());
        }
        Err(LaunchError::Io {
            what,
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
        })
    }

    /// The `--tls-*` flags of node `id`, issuing its certificate first if it has none (or
    /// `--plaintext`).
    fn tls_args(&self, id: u64) -> Result<Vec<String>, LaunchError> {
        let Some(dir) = &self.tls_dir else {
            return Ok(vec!["--plaintext".into()]);
        };
        let cert = dir.join(format!("node-{id}.pem"));
        if !cert.exists() {
            let (dir_arg, id_arg) = (dir.display().to_string(), id.to_string());
            let mut args = vec!["node", "--dir", &dir_arg, "--id", &id_arg];
            let own = self.node(id).map(|n| host_of(&n.addr));
            for host in own.iter().copied().chain(["127.0.0.1", "localhost"]) {
                if !args.contains(&host) {
                    args.extend(["--host", host]);
                }
            }
            self.raftq_cert(&args)?;
        }
        let key = dir.join(format!("node-{id}-key.pem"));
        Ok(vec![
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-key-file={}", key.display()),
            format!("--tls-ca-file={}", dir.join("ca.pem").display()),
        ])
    }

    /// `n` nodes on free loopback ports.
    pub fn on_free_ports(
        exe: PathBuf,
        dir: &Path,
        n: u64,
        config: &str,
    ) -> Result<LocalCluster, LaunchError> {
        let addrs = (0..n)
            .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io("finding a free port"))?;
        LocalCluster::new(exe, dir, addrs, config)
    }

    /// Describes (does not start) one more node on a free loopback port, to be added to the
    /// running cluster; returns its id.
    pub fn add_joiner(&mut self) -> Result<u64, LaunchError> {
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        let port = free_port().map_err(io("finding a free port"))?;
        let http_port = free_port().map_err(io("finding a free port"))?;
        self.nodes.push(LocalNode {
            id,
            addr: format!("127.0.0.1:{port}"),
            http_addr: format!("127.0.0.1:{http_port}"),
            data_dir: self.dir.join(format!("node-{id}")),
            joins: true,
            args: Vec::new(),
            wrapper: Vec::new(),
            child: None,
            paused: false,
        });
        Ok(id)
    }

    pub fn start_all(&mut self) -> Result<(), LaunchError> {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            self.start(id)?;
        }
        Ok(())
    }

    pub fn node(&self, id: u64) -> Option<&LocalNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The node to change its arguments, wrapper or `joins` before its next start.
    pub fn node_mut(&mut self, id: u64) -> Result<&mut LocalNode, LaunchError> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or(LaunchError::NoNode(id))
    }

    /// Where node `id` writes its output.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    /// (Re)starts node `id` on its data directory; its output goes to [`Self::log_path`].
    pub fn start(&mut self, id: u64) -> Result<(), LaunchError> {
        if self.node_mut(id)?.child.is_some() {
            return Err(LaunchError::AlreadyRunning(id));
        }
        let config = self.write_config(id)?;
        let tls_args = self.tls_args(id)?;
        let log_path = self.log_path(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        let err_log = log
            .try_clone()
            .map_err(io(format!("opening {}", log_path.display())))?;
        let (exe, peers, detach) = (self.exe.clone(), self.peers.clone(), self.detach);
        let n = self.node_mut(id)?;
        let mut cmd = match n.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.arg("node")
            .arg("--config")
            .arg(&config)
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(&n.addr)
            .arg("--http")
            .arg(&n.http_addr)
            .arg("--data-dir")
            .arg(&n.data_dir)
            .args(&tls_args)
            .args(&n.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log);
        if !n.joins {
            cmd.arg("--peers").arg(peers);
        }
        if detach {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        n.child = Some(cmd.spawn().map_err(io(format!("starting node {id}")))?);
        n.paused = false;
        Ok(())
    }

    /// Writes `DIR/node.toml` for a node that is about to start, and returns its path.
    fn write_config(&self, id: u64) -> Result<PathBuf, LaunchError> {
        // Written to a temp file and renamed: a node that is starting may be reading it, and
        // must never see it half written (it would start with default settings).
        let config = self.dir.join("node.toml");
        let tmp = self.dir.join(format!("node.toml.{id}.tmp"));
        std::fs::write(&tmp, &self.config).map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &config).map_err(io(format!("writing {}", config.display())))?;
        Ok(config)
    }

    /// SIGKILL, as a crash (or a power loss, for a node run with `--power-loss-sim`).
    pub fn kill(&mut self, id: u64) {
        if let Ok(n) = self.node_mut(id) {
            n.kill();
        }
    }

    /// SIGTERM, waiting for a clean exit (SIGKILL after 10 s).
    pub fn stop(&mut self, id: u64) {
        let Ok(n) = self.node_mut(id) else { return };
        if n.paused {
            n.signal(libc::SIGCONT);
            n.paused = false;
        }
        if let Some(mut c) = n.child.take() {
            n.signal_child(&c, libc::SIGTERM);
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

    /// SIGTERM to every node at once, then waits for each as [`Self::stop`] does.
    pub fn stop_all(&mut self) {
        for n in &self.nodes {
            n.signal(libc::SIGTERM);
        }
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            self.stop(id);
        }
    }

    /// SIGSTOP: the node keeps its sockets but does nothing (a long GC pause, a VM freeze).
    pub fn pause(&mut self, id: u64) {
        if let Ok(n) = self.node_mut(id) {
            if n.signal(libc::SIGSTOP) {
                n.paused = true;
            }
        }
    }

    /// SIGCONT to a paused node.
    pub fn resume(&mut self, id: u64) {
        if let Ok(n) = self.node_mut(id) {
            if n.paused {
                n.signal(libc::SIGCONT);
                n.paused = false;
            }
        }
    }

    /// Kills node `id`, gives it other extra arguments and starts it again.
    pub fn restart_with(&mut self, id: u64, args: Vec<String>) -> Result<(), LaunchError> {
        self.kill(id);
        self.node_mut(id)?.args = args;
        self.start(id)
    }

    /// Reaps the nodes whose process ended although nobody killed or stopped it (crashes),
    /// and returns their ids and exit statuses.
    pub fn reap_exits(&mut self) -> Vec<(u64, ExitStatus)> {
        let mut out = Vec::new();
        for n in &mut self.nodes {
            let Some(c) = n.child.as_mut() else { continue };
            if let Ok(Some(status)) = c.try_wait() {
                n.child = None;
                n.paused = false;
                out.push((n.id, status));
            }
        }
        out
    }

    /// Forgets the child processes without stopping them (`raftq up --detach`).
    pub fn release(&mut self) {
        for n in &mut self.nodes {
            n.child = None;
        }
    }

    /// The base URL of each node's HTTP port (https when TLS is on), in node order.
    pub fn http_urls(&self) -> Vec<String> {
        let scheme = if self.tls_dir.is_some() {
            "https"
        } else {
            "http"
        };
        self.nodes
            .iter()
            .map(|n| format!("{scheme}://{}", n.http_addr))
            .collect()
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Client settings with this cluster's token (and CA when TLS is on).
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            token: Some(self.token.clone()),
            ca_pem: self.ca_pem.clone(),
            plaintext: self.tls_dir.is_none(),
            ..ClientConfig::default()
        }
    }

    /// Points a `raftq` client or runner command at this cluster through its environment:
    /// `RAFTQ_CLUSTER` (`http://` addresses when plaintext), `RAFTQ_TOKEN` and
    /// `RAFTQ_CA_FILE`, and none of the caller's own `RAFTQ_TOKEN_FILE` / `RAFTQ_CA_FILE`.
    pub fn point_at(&self, cmd: &mut Command) {
        let scheme = if self.tls_dir.is_none() {
            "http://"
        } else {
            ""
        };
        let addrs: Vec<String> = self
            .addrs()
            .iter()
            .map(|a| format!("{scheme}{a}"))
            .collect();
        cmd.env("RAFTQ_CLUSTER", addrs.join(","))
            .env("RAFTQ_TOKEN", &self.token)
            .env_remove("RAFTQ_TOKEN_FILE")
            .env_remove("RAFTQ_CA_FILE");
        if let Some(dir) = &self.tls_dir {
            cmd.env("RAFTQ_CA_FILE", dir.join("ca.pem"));
        }
    }

    pub fn client(&self) -> Result<Client, ClientError> {
        Client::new(self.addrs(), self.client_config())
    }

    /// The leader once every running node that answers names the same running node.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<u64, LaunchError> {
        let client = self.client()?;
        let (me, client) = (self, &client);
        wait_for(timeout, Duration::from_millis(50), move || async move {
            me.agreed_leader(client).await
        })
        .await
        .map_err(|views| LaunchError::NoLeader {
            timeout_s: timeout.as_secs(),
            views,
            dir: self.dir.display().to_string(),
        })
    }

    /// The leader if every running node that answers names the same running node, else the
    /// leaders they named.
    async fn agreed_leader(&self, client: &Client) -> Result<u64, Vec<u64>> {
        let mut seen = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.running() {
                if let Ok(s) = client.cluster_status_of(i).await {
                    seen.push(s.leader);
                }
            }
        }
        match seen.first() {
            Some(&l)
                if l != 0
                    && self.node(l).is_some_and(LocalNode::running)
                    && seen.iter().all(|x| *x == l) =>
            {
                Ok(l)
            }
            _ => Err(seen),
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}
