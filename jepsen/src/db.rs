//! The cluster under test: one `raftq node` process per network namespace, started, killed
//! (SIGKILL), paused (SIGSTOP/SIGCONT) and restarted by the harness. Each node's output goes to
//! `node-N.log` in the run's directory, appended across restarts.

use crate::net::Net;
use raftq_client::{Client, ClientConfig};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

/// The port every node listens on, inside its own namespace.
pub const PORT: u16 = 7700;

/// The release delay in [`NODE_CONFIG`] (the ordering checker's lower bound).
pub const RELEASE_DELAY_MS: u64 = 200;

/// How long a lost job waits for its runner in [`NODE_CONFIG`] (and in the simulation): the
/// fencing checker's lease bound is TTR + this.
pub const LOST_RETURN_DELAY_MS: u64 = 1_500;

/// Node settings for the tests: short timeouts so that faults and the final drain play out
/// within seconds, and frequent snapshots so that catch-up by snapshot happens under faults.
pub const NODE_CONFIG: &str = "\
heartbeat_ms = 100
election_timeout_min_ms = 600
election_timeout_max_ms = 1200
snapshot_every_entries = 3000

[fsm]
release_delay_ms = 200
max_release_delay_ms = 1000
lost_return_delay_ms = 1500
";

/// How a node is started.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// Offset of its clock (the clock nemesis).
    pub clock_offset_ms: i64,
    /// Start in power-loss simulation: a SIGKILL loses every write that was not synced.
    pub power_loss: bool,
}

struct NodeProc {
    child: Option<Child>,
    paused: bool,
    options: NodeOptions,
    /// Removed from the cluster (stopped, data wiped) by the membership nemesis.
    removed: bool,
    /// Starts without `--peers` (it was wiped and waits to be added back).
    joins: bool,
}

pub struct Cluster {
    pub net: Net,
    pub dir: PathBuf,
    bin: PathBuf,
    token_file: PathBuf,
    config_file: PathBuf,
    pub token: String,
    nodes: Vec<NodeProc>,
    /// One admin client per node, talking to that node only.
    admin: Vec<Client>,
    /// A client of every node (follows the leader), for membership changes.
    all: Client,
    /// Nodes that exited without being killed (crashes), noticed when they were next
    /// touched; the run records them in the history.
    pub exits: Vec<String>,
}

impl Cluster {
    /// Creates the namespaces and starts `n` nodes (ids 1..=n) with `options`.
    pub fn start(
        n: usize,
        tag: u32,
        dir: &Path,
        bin: &Path,
        options: NodeOptions,
    ) -> Result<Cluster, String> {
        let net = Net::create(n, tag)?;
        let token_file = dir.join("token");
        let token = raftq_client::auth::ensure_token_file(&token_file)?;
        let config_file = dir.join("node.toml");
        std::fs::write(&config_file, NODE_CONFIG).map_err(|e| format!("node.toml: {e}"))?;
        let admin_config = ClientConfig {
            token: Some(token.clone()),
            deadline: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(1),
            ..ClientConfig::default()
        };
        let addrs: Vec<String> = net
            .hosts
            .iter()
            .map(|h| format!("{}:{PORT}", h.ip))
            .collect();
        let mut admin = Vec::new();
        for a in &addrs {
            admin.push(
                Client::new(vec![a.clone()], admin_config.clone()).map_err(|e| e.to_string())?,
            );
        }
        let all_config = ClientConfig {
            deadline: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(5),
            ..admin_config.clone()
        };
        let all = Client::new(addrs, all_config).map_err(|e| e.to_string())?;
        let mut c = Cluster {
            net,
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            token_file,
            config_file,
            token,
            nodes: (0..n)
                .map(|_| NodeProc {
                    child: None,
                    paused: false,
                    options: options.clone(),
                    removed: false,
                    joins: false,
                })
                .collect(),
            admin,
            all,
            exits: Vec::new(),
        };
        for i in 0..n {
            c.start_node(i)?;
        }
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// host:port of node `i` (0-based).
    pub fn addr(&self, i: usize) -> String {
        format!("{}:{PORT}", self.net.hosts[i].ip)
    }

    pub fn addrs(&self) -> Vec<String> {
        (0..self.len()).map(|i| self.addr(i)).collect()
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{}.log", i + 1))
    }

    fn peers(&self) -> String {
        (0..self.len())
            .map(|i| format!("{}={}", i + 1, self.addr(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Notes nodes whose process ended although nobody killed them.
    pub fn reap_exits(&mut self) {
        for i in 0..self.len() {
            let Some(c) = self.nodes[i].child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = c.try_wait() {
                self.nodes[i].child = None;
                self.nodes[i].paused = false;
                self.exits.push(format!(
                    "n{} exited by itself ({status}); see node-{}.log",
                    i + 1,
                    i + 1
                ));
            }
        }
    }

    /// Starts node `i` if it is not running (also after it crashed).
    pub fn start_node(&mut self, i: usize) -> Result<(), String> {
        self.reap_exits();
        if self.nodes[i].child.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(|e| format!("node log: {e}"))?;
        let err = log.try_clone().map_err(|e| format!("node log: {e}"))?;
        let o = self.nodes[i].options.clone();
        let mut cmd = self.net.command(i, &self.bin);
        cmd.args(["node", "--id", &(i + 1).to_string(), "--listen"])
            .arg(self.addr(i))
            .arg("--config")
            .arg(&self.config_file)
            .arg("--data-dir")
            .arg(self.dir.join(format!("node-{}", i + 1)))
            .arg("--token-file")
            .arg(&self.token_file)
            .arg(format!("--clock-offset-ms={}", o.clock_offset_ms))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        if o.power_loss {
            cmd.arg("--power-loss-sim");
        }
        if !self.nodes[i].joins {
            cmd.arg("--peers").arg(self.peers());
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting node {}: {e}", i + 1))?;
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        Ok(())
    }

    /// SIGKILL node `i` (a power loss when it runs in power-loss mode) and reap it.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.nodes[i].paused = false;
    }

    fn signal(&mut self, i: usize, sig: libc::c_int) -> bool {
        match &self.nodes[i].child {
            Some(c) => {
                // The child is the node itself: `ip netns exec` execs it.
                // SAFETY: kill(2) with a pid we spawned and have not reaped.
                unsafe { libc::kill(c.id() as libc::pid_t, sig) == 0 }
            }
            None => false,
        }
    }

    pub fn pause_node(&mut self, i: usize) {
        if self.signal(i, libc::SIGSTOP) {
            self.nodes[i].paused = true;
        }
    }

    pub fn resume_node(&mut self, i: usize) {
        if self.nodes[i].paused {
            self.signal(i, libc::SIGCONT);
            self.nodes[i].paused = false;
        }
    }

    /// Restarts node `i` with other options (the clock nemesis).
    pub fn restart_with(&mut self, i: usize, options: NodeOptions) -> Result<(), String> {
        self.kill_node(i);
        self.nodes[i].options = options;
        self.start_node(i)
    }

    pub fn options(&self, i: usize) -> NodeOptions {
        self.nodes[i].options.clone()
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some() && !self.nodes[i].paused
    }

    /// The leader (0-based index) as the running nodes see it: the one most of those that
    /// answer name, if any.
    pub async fn leader(&self) -> Option<usize> {
        let mut votes = vec![0usize; self.len()];
        for s in self.statuses().await {
            let l = s.leader as usize;
            if l >= 1 && l <= self.len() {
                votes[l - 1] += 1;
            }
        }
        let (best, n) = votes.iter().enumerate().max_by_key(|(_, n)| **n)?;
        (*n > 0).then_some(best)
    }

    /// The cluster status as each running node that answers within a second sees it.
    async fn statuses(&self) -> Vec<raftq_proto::pb::ClusterStatusResponse> {
        let mut out = Vec::new();
        for i in (0..self.len()).filter(|i| self.is_running(*i)) {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_secs(1), self.admin[i].cluster_status_of(0))
                    .await
            {
                out.push(s);
            }
        }
        out
    }

    /// Waits until a majority of the nodes agree on a leader.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader().await {
                return Some(l);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Removes node `i` from the cluster, stops it and wipes its data (the membership
    /// nemesis); returns the voters after the change.
    pub async fn remove_member(&mut self, i: usize) -> Result<Vec<u64>, String> {
        let id = i as u64 + 1;
        let voters = match self.all.remove_node(id).await {
            Ok(v) => v,
            // the outcome is unknown (e.g. the leader removed itself and stepped down before
            // answering): the leader's view says whether it happened
            Err(e) => match self.leader_voters().await {
                Some(v) if !v.contains(&id) => v,
                _ => return Err(format!("removing n{id}: {e}")),
            },
        };
        self.kill_node(i);
        let data = self.dir.join(format!("node-{}", i + 1));
        std::fs::remove_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        self.nodes[i].removed = true;
        self.nodes[i].joins = true;
        Ok(voters)
    }

    /// The voters as the leader sees them, if a node that leads answers.
    async fn leader_voters(&self) -> Option<Vec<u64>> {
        self.statuses()
            .await
            .into_iter()
            .find(|s| s.leader != 0 && s.leader == s.answered_by)
            .map(|s| s.nodes.iter().filter(|n| n.voter).map(|n| n.id).collect())
    }

    /// Starts removed node `i` empty and adds it back; returns the voters after the change.
    pub async fn readd_member(&mut self, i: usize) -> Result<Vec<u64>, String> {
        self.start_node(i)?;
        let id = i as u64 + 1;
        let voters = match self
            .all
            .add_node(id, self.addr(i), Duration::from_secs(60))
            .await
        {
            Ok(v) => v,
            // unknown outcome: the leader's view says whether it happened
            Err(e) => match self.leader_voters().await {
                Some(v) if v.contains(&id) => v,
                _ => return Err(format!("adding n{id} back: {e}")),
            },
        };
        self.nodes[i].removed = false;
        Ok(voters)
    }

    /// Adds back every node still removed (the final heal).
    pub async fn readd_removed(&mut self) -> Result<(), String> {
        for i in 0..self.len() {
            if self.nodes[i].removed {
                self.readd_member(i).await?;
            }
        }
        Ok(())
    }

    /// Every node's digest (None when it did not answer).
    pub async fn digests(&self) -> Vec<(u64, Option<String>)> {
        let mut out = Vec::new();
        for i in 0..self.len() {
            let d = self.admin[i]
                .digest_of(0)
                .await
                .ok()
                .map(|d| format!("{}@{}", d.digest, d.applied_index));
            out.push((i as u64 + 1, d));
        }
        out
    }

    /// Heals processes: resumes paused nodes, starts stopped ones with their normal options.
    pub fn heal_processes(&mut self, normal: &NodeOptions) -> Result<(), String> {
        for i in 0..self.len() {
            self.resume_node(i);
            let o = &self.nodes[i].options;
            if o.clock_offset_ms != normal.clock_offset_ms {
                self.restart_with(i, normal.clone())?;
            }
            self.start_node(i)?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.len() {
            // a stopped process does not die of SIGKILL until continued on some kernels
            self.resume_node(i);
            self.kill_node(i);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_config_parses_and_matches_the_release_delay() {
        let line = format!("release_delay_ms = {}\n", super::RELEASE_DELAY_MS);
        assert!(super::NODE_CONFIG.contains(&line), "{}", super::NODE_CONFIG);
        let line = format!("lost_return_delay_ms = {}\n", super::LOST_RETURN_DELAY_MS);
        assert!(super::NODE_CONFIG.contains(&line), "{}", super::NODE_CONFIG);
    }
}
