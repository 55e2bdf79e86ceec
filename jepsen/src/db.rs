//! The cluster under test: one `raftq node` process per network namespace, started, killed
//! (SIGKILL), paused (SIGSTOP/SIGCONT) and restarted by the harness through the shared
//! launcher (`raftq_local::LocalCluster`, which runs each node inside `ip netns exec`). Each
//! node's output goes to `node-N.log` in the run's directory, appended across restarts.
//! Nodes are numbered 0.. here (the nemesis' host indexes); their raftq ids are 1...

use crate::lossyfs::{self, Mount};
use crate::net::Net;
use raftq_client::{Client, ClientConfig};
use raftq_local::{LocalCluster, LocalNode};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The port every node listens on, inside its own namespace.
pub const PORT: u16 = 7700;

/// The release delay in [`NODE_CONFIG`] (the ordering checker's lower bound).
pub const RELEASE_DELAY_MS: u64 = 200;

/// How long a lost job waits for its runner in [`NODE_CONFIG`] (and in the simulation): the
/// fencing checker's lease bound is TTR + this.
pub const LOST_RETURN_DELAY_MS: u64 = 1_500;

/// [`NODE_CONFIG`] with a snapshot every `entries` log entries and the log kept a third of
/// that (at most 1000 entries) behind each; 3000 gives `NODE_CONFIG` itself.
pub fn node_config(entries: u64) -> String {
    NODE_CONFIG
        .replace(
            "snapshot_every_entries = 3000\n",
            &format!("snapshot_every_entries = {entries}\n"),
        )
        .replace(
            "logs_kept_after_snapshot = 1000\n",
            &format!("logs_kept_after_snapshot = {}\n", (entries / 3).min(1000)),
        )
}

/// Node settings for the tests: short timeouts so that faults and the final drain play out
/// within seconds, and frequent snapshots so that catch-up by snapshot happens under faults.
pub const NODE_CONFIG: &str = "\
heartbeat_ms = 100
election_timeout_min_ms = 600
election_timeout_max_ms = 1200
snapshot_every_entries = 3000
logs_kept_after_snapshot = 1000

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

impl NodeOptions {
    /// The `raftq node` arguments that set these options for `node`. On lossyfs each node
    /// reads the token from its own disk (written there by [`Cluster::put_token_on_disk`]),
    /// so that a token file that was not made durable is lost at a cut like any other file.
    fn args_for(&self, node: &LocalNode, on_lossyfs: bool) -> Vec<String> {
        let mut args = vec![format!("--clock-offset-ms={}", self.clock_offset_ms)];
        if self.power_loss {
            args.push("--power-loss-sim".into());
        }
        if on_lossyfs {
            args.push(format!("--token-file={}", node_token(node).display()));
        }
        args
    }
}

/// Every node's data directory on lossyfs (the `power` nemesis's default, `--power-mode fs`).
#[derive(Clone, Debug)]
pub struct Lossy {
    /// The raftq-jepsen binary (it serves the mounts: `raftq-jepsen lossyfs`).
    pub exe: PathBuf,
    pub tear: bool,
    /// The run's seed; each node's mount draws from its own stream of it.
    pub seed: u64,
}

/// The token file on `node`'s own disk (used on lossyfs).
fn node_token(node: &LocalNode) -> PathBuf {
    node.data_dir.join("token")
}

/// Where node `i`'s data lives under lossyfs (its data directory is the mount point).
pub fn backing_dir(run_dir: &Path, i: usize) -> PathBuf {
    run_dir.join(format!("backing-{}", i + 1))
}

pub struct Cluster {
    /// The nodes' lossyfs mounts (index = node) when the data directories are on lossyfs;
    /// unmounted when the cluster drops, after `Drop` has killed the nodes.
    mounts: Vec<Mount>,
    pub net: Net,
    pub dir: PathBuf,
    pub token: String,
    /// The node processes (id = index + 1).
    local: LocalCluster,
    /// Each node's options, as last started.
    options: Vec<NodeOptions>,
    /// Removed from the cluster (stopped, data wiped) by the membership nemesis.
    removed: Vec<bool>,
    /// One admin client per node, talking to that node only.
    admin: Vec<Client>,
    /// A client of every node (follows the leader), for membership changes.
    all: Client,
    /// Nodes that exited without being killed (crashes), noticed when they were next
    /// touched; the run records them in the history.
    pub exits: Vec<String>,
}

fn id_of(i: usize) -> u64 {
    i as u64 + 1
}

impl Cluster {
    /// Creates the namespaces and starts `n` nodes (ids 1..=n) with `options`.
    pub fn start(
        n: usize,
        tag: u32,
        dir: &Path,
        bin: &Path,
        config: &str,
        options: NodeOptions,
        lossy: Option<Lossy>,
    ) -> Result<Cluster, String> {
        let net = Net::create(n, tag)?;
        let addrs: Vec<String> = net
            .hosts
            .iter()
            .map(|h| format!("{}:{PORT}", h.ip))
            .collect();
        let mut local = LocalCluster::new(bin.to_path_buf(), dir, addrs.clone(), config)
            .map_err(|e| e.to_string())?;
        let on_lossyfs = lossy.is_some();
        for (i, node) in local.nodes.iter_mut().enumerate() {
            node.wrapper = net.wrapper(i);
            node.args = options.args_for(node, on_lossyfs);
        }
        let admin_config = ClientConfig {
            deadline: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(1),
            ..local.client_config()
        };
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
        let mut mounts = Vec::new();
        if let Some(l) = &lossy {
            for (i, node) in local.nodes.iter().enumerate() {
                mounts.push(mount(l, dir, i, &node.data_dir)?);
            }
        }
        let mut c = Cluster {
            mounts,
            net,
            dir: dir.to_path_buf(),
            token: local.token.clone(),
            local,
            options: vec![options; n],
            removed: vec![false; n],
            admin,
            all,
            exits: Vec::new(),
        };
        for i in 0..n {
            c.put_token_on_disk(i)?;
            c.start_node(i)?;
        }
        Ok(c)
    }

    pub fn len(&self) -> usize {
        self.local.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.local.nodes.is_empty()
    }

    /// host:port of node `i` (0-based).
    pub fn addr(&self, i: usize) -> String {
        self.local.nodes[i].addr.clone()
    }

    pub fn addrs(&self) -> Vec<String> {
        self.local.addrs()
    }

    /// The settings a client of this cluster needs: its token and its CA (the nodes serve
    /// TLS, as `raftq node` does by default).
    pub fn client_config(&self) -> ClientConfig {
        self.local.client_config()
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.local.log_path(id_of(i))
    }

    /// Notes nodes whose process ended although nobody killed them.
    pub fn reap_exits(&mut self) {
        for (id, status) in self.local.reap_exits() {
            self.exits.push(format!(
                "n{id} exited by itself ({status}); see node-{id}.log"
            ));
        }
    }

    /// Starts node `i` if it is not running (also after it crashed).
    pub fn start_node(&mut self, i: usize) -> Result<(), String> {
        self.reap_exits();
        if self.local.nodes[i].running() {
            return Ok(());
        }
        self.local.start(id_of(i)).map_err(|e| e.to_string())
    }

    /// The power cut of killed node `i`'s disk when it is on lossyfs: everything it had not
    /// synced is dropped and the disk mounted again. Returns what was lost, or None without
    /// lossyfs.
    pub fn power_cut(&mut self, i: usize) -> Result<Option<String>, String> {
        let Some(m) = self.mounts.get_mut(i) else {
            return Ok(None);
        };
        let report = m
            .cut_and_remount()
            .map_err(|e| format!("power cut of n{}: {e}", i + 1))?;
        Ok(Some(report.trim_start_matches("ok ").to_string()))
    }

    /// SIGKILL node `i` (a power loss when it runs in power-loss mode) and reap it.
    pub fn kill_node(&mut self, i: usize) {
        self.local.kill(id_of(i));
    }

    pub fn pause_node(&mut self, i: usize) {
        self.local.pause(id_of(i));
    }

    pub fn resume_node(&mut self, i: usize) {
        self.local.resume(id_of(i));
    }

    /// Restarts node `i` with other options (the clock nemesis).
    pub fn restart_with(&mut self, i: usize, options: NodeOptions) -> Result<(), String> {
        self.kill_node(i);
        self.local.nodes[i].args = options.args_for(&self.local.nodes[i], !self.mounts.is_empty());
        self.options[i] = options;
        self.start_node(i)
    }

    /// On lossyfs, writes the cluster token to node `i`'s disk, as an operator installs it on
    /// a new machine: once, when the disk is new (at the start, after a wipe), never again,
    /// so that what a cut takes from it stays lost.
    fn put_token_on_disk(&self, i: usize) -> Result<(), String> {
        if self.mounts.is_empty() {
            return Ok(());
        }
        let path = node_token(&self.local.nodes[i]);
        raftq_client::auth::write_token_file(&path, &self.token).map_err(|e| e.to_string())
    }

    pub fn options(&self, i: usize) -> NodeOptions {
        self.options[i].clone()
    }

    pub fn is_running(&self, i: usize) -> bool {
        let n = &self.local.nodes[i];
        n.running() && !n.paused()
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
        raftq_local::wait_for(timeout, Duration::from_millis(200), || async {
            self.leader().await.ok_or(())
        })
        .await
        .ok()
    }

    /// Removes node `i` from the cluster, stops it and wipes its data (the membership
    /// nemesis); returns the voters after the change.
    pub async fn remove_member(&mut self, i: usize) -> Result<Vec<u64>, String> {
        let id = id_of(i);
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
        match self.mounts.get_mut(i) {
            Some(m) => m.wipe().map_err(|e| format!("wiping n{id}'s disk: {e}"))?,
            None => {
                let data = self.local.nodes[i].data_dir.clone();
                std::fs::remove_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
            }
        }
        self.removed[i] = true;
        // Wiped: it starts without --peers and waits to be added back.
        self.local.nodes[i].joins = true;
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
        self.put_token_on_disk(i)?;
        self.start_node(i)?;
        let id = id_of(i);
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
        self.removed[i] = false;
        Ok(voters)
    }

    /// Adds back every node still removed (the final heal).
    pub async fn readd_removed(&mut self) -> Result<(), String> {
        for i in 0..self.len() {
            if self.removed[i] {
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
            out.push((id_of(i), d));
        }
        out
    }

    /// Heals processes: resumes paused nodes, starts stopped ones with their normal options.
    pub fn heal_processes(&mut self, normal: &NodeOptions) -> Result<(), String> {
        for i in 0..self.len() {
            self.resume_node(i);
            if self.options[i].clock_offset_ms != normal.clock_offset_ms {
                self.restart_with(i, normal.clone())?;
            }
            self.start_node(i)?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Before the fields drop: `net` comes first and deletes the namespaces, which must
        // not happen under running nodes.
        for i in 0..self.len() {
            self.kill_node(i);
        }
    }
}

/// Mounts node `i`'s lossyfs at its data directory `data_dir`.
fn mount(l: &Lossy, run_dir: &Path, i: usize, data_dir: &Path) -> Result<Mount, String> {
    let options = lossyfs::Options {
        backing: backing_dir(run_dir, i),
        mountpoint: data_dir.to_path_buf(),
        // A socket path must fit in 108 bytes: under the temporary directory, not the run's.
        control: std::env::temp_dir().join(format!(
            "raftq-lossyfs-{}-{}.sock",
            std::process::id(),
            i + 1
        )),
        seed: crate::rng::Rng::new(l.seed)
            .fork(1_000 + i as u64)
            .next_u64(),
        tear: l.tear,
    };
    let log = run_dir.join(format!("lossyfs-{}.log", i + 1));
    Mount::start(&l.exe, options, &log)
        .map_err(|e| format!("mounting n{}'s data directory on lossyfs: {e}", i + 1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_config_parses_and_matches_the_release_delay() {
        let line = format!("release_delay_ms = {}\n", super::RELEASE_DELAY_MS);
        assert!(super::NODE_CONFIG.contains(&line), "{}", super::NODE_CONFIG);
        let line = format!("lost_return_delay_ms = {}\n", super::LOST_RETURN_DELAY_MS);
        assert!(super::NODE_CONFIG.contains(&line), "{}", super::NODE_CONFIG);
        assert_eq!(super::node_config(3000), super::NODE_CONFIG);
        let c = super::node_config(150);
        assert!(
            c.contains("snapshot_every_entries = 150\n")
                && c.contains("logs_kept_after_snapshot = 50\n"),
            "{c}"
        );
    }
}
