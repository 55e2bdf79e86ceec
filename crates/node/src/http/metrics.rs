//! `/metrics`: this node's numbers in Prometheus text format (`prometheus-client`, with a
//! registry of our own, no global one).
//!
//! Two kinds of numbers: counters and histograms updated where things happen (the Queue
//! service counts and times every RPC it serves, [`RpcTimer`]), and gauges read when scraped
//! (job counts from the state machine's counters, Raft's metrics, the store's size), so that
//! a scrape costs O(rep groups + peers), never O(jobs).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub rpc: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcResultLabels {
    pub rpc: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// The scheduler group (RAM:time:cores:disk and limit groups).
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route's pattern (`/rest/v1/jobs`), not the path asked, to bound the label set.
    pub route: String,
    pub status: u16,
}

/// Jobs moved by the Queue service's calls on this node (what the client asked for, counted
/// once it was applied): the cluster's total is the sum over nodes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobEventLabels {
    pub event: &'static str,
}

fn rpc_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric this node exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    rpc_duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
    rpc_calls: Family<RpcResultLabels, Counter>,
    job_events: Family<JobEventLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    batch_commands: Histogram,
    entry_write: Histogram,
    jobs: Family<StateLabels, Gauge>,
    raft_term: Gauge,
    raft_leader: Gauge,
    raft_is_leader: Gauge,
    raft_last_log_index: Gauge,
    raft_committed_index: Gauge,
    raft_applied_index: Gauge,
    raft_snapshot_index: Gauge,
    replication_lag: Family<PeerLabels, Gauge>,
    store_bytes: Gauge,
    store_errors: Gauge,
    runners_started: Family<GroupLabels, Gauge>,
    runners_running: Family<GroupLabels, Gauge>,
    /// Scrapes are serialised: the scrape-time gauges are set, then encoded.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("raftq");
        let rpc_duration =
            Family::<RpcLabels, Histogram, fn() -> Histogram>::new_with_constructor(rpc_histogram);
        r.register_with_unit(
            "rpc_duration",
            "Time to serve a Queue RPC on this node (routing, commit and apply included)",
            Unit::Seconds,
            rpc_duration.clone(),
        );
        let rpc_calls = Family::<RpcResultLabels, Counter>::default();
        r.register(
            "rpc_calls",
            "Queue RPCs served by this node, by result",
            rpc_calls.clone(),
        );
        let job_events = Family::<JobEventLabels, Counter>::default();
        r.register(
            "job_events",
            "Jobs added, reserved, archived, released, buried, kicked, killed or deleted \
             through this node (event label)",
            job_events.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        r.register(
            "http_requests",
            "Requests to this node's HTTP port, by route and status",
            http_requests.clone(),
        );
        // 1 .. 8192 commands
        let batch_commands = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        r.register(
            "proposer_batch_commands",
            "Commands in each log entry this node proposed as leader (group commit)",
            batch_commands.clone(),
        );
        let entry_write = rpc_histogram();
        r.register_with_unit(
            "proposer_entry_write",
            "Time from proposing an entry until its outcomes came back: replication, fsync on \
             a majority and apply on this leader",
            Unit::Seconds,
            entry_write.clone(),
        );
        let jobs = Family::<StateLabels, Gauge>::default();
        r.register(
            "jobs",
            "Jobs in each state, from this node's replica",
            jobs.clone(),
        );
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let raft_term = gauge(&mut r, "raft_term", "This node's current Raft term");
        let raft_leader = gauge(
            &mut r,
            "raft_leader",
            "The id of the leader this node knows (0: none)",
        );
        let raft_is_leader = gauge(&mut r, "raft_is_leader", "1 if this node leads");
        let raft_last_log_index = gauge(
            &mut r,
            "raft_last_log_index",
            "Index of the last entry in this node's log",
        );
        let raft_committed_index = gauge(
            &mut r,
            "raft_committed_index",
            "Index of the last entry this node knows is committed",
        );
        let raft_applied_index = gauge(
            &mut r,
            "raft_applied_index",
            "Index of the last entry this node applied",
        );
        let raft_snapshot_index = gauge(
            &mut r,
            "raft_snapshot_index",
            "Index of the last entry in this node's latest snapshot",
        );
        let replication_lag = Family::<PeerLabels, Gauge>::default();
        r.register(
            "raft_replication_lag_entries",
            "On the leader: entries each peer's log is behind the leader's",
            replication_lag.clone(),
        );
        let store_bytes = gauge(
            &mut r,
            "store_bytes",
            "Size of this node's data directory (log, state machine, snapshots) in bytes",
        );
        let store_errors = gauge(
            &mut r,
            "store_read_errors",
            "Store errors on this node's read path since start",
        );
        let runners_started = Family::<GroupLabels, Gauge>::default();
        r.register(
            "scheduler_runners_started",
            "Runners this node's scheduler started per scheduler group since the node started",
            runners_started.clone(),
        );
        let runners_running = Family::<GroupLabels, Gauge>::default();
        r.register(
            "scheduler_runners_running",
            "Live runners per scheduler group at the scheduler's last round (leader only)",
            runners_running.clone(),
        );
        Metrics {
            runners_started,
            runners_running,
            registry: r,
            rpc_duration,
            rpc_calls,
            job_events,
            http_requests,
            batch_commands,
            entry_write,
            jobs,
            raft_term,
            raft_leader,
            raft_is_leader,
            raft_last_log_index,
            raft_committed_index,
            raft_applied_index,
            raft_snapshot_index,
            replication_lag,
            store_bytes,
            store_errors,
            scrape: Mutex::new(()),
        }
    }

    /// Times one call of `rpc`; record its result with [`RpcTimer::done`].
    pub fn rpc(&self, rpc: &'static str) -> RpcTimer<'_> {
        RpcTimer {
            metrics: self,
            rpc,
            start: Instant::now(),
        }
    }

    /// The proposer's observer: records each entry's size and write time.
    pub fn entry_observer(self: &std::sync::Arc<Self>) -> crate::proposer::EntryObserver {
        let m = self.clone();
        std::sync::Arc::new(move |commands, took| {
            m.batch_commands.observe(commands as f64);
            m.entry_write.observe(took.as_secs_f64());
        })
    }

    /// `n` jobs had `event` (added, reserved, archived, ...).
    pub fn jobs_moved(&self, event: &'static str, n: u64) {
        if n > 0 {
            self.job_events
                .get_or_create(&JobEventLabels { event })
                .inc_by(n);
        }
    }

    pub fn http_request(&self, route: &str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_string(),
                status,
            })
            .inc();
    }

    /// Sets the scrape-time gauges from `now` and encodes everything.
    pub fn encode(&self, now: &Snapshot) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.jobs.clear();
        for (state, n) in &now.jobs_by_state {
            self.jobs
                .get_or_create(&StateLabels {
                    state: state.clone(),
                })
                .set(clamp(*n));
        }
        self.raft_term.set(clamp(now.term));
        self.raft_leader.set(clamp(now.leader.unwrap_or(0)));
        self.raft_is_leader.set(i64::from(now.leading));
        self.raft_last_log_index.set(clamp(now.last_log_index));
        self.raft_committed_index.set(clamp(now.committed_index));
        self.raft_applied_index.set(clamp(now.applied_index));
        self.raft_snapshot_index.set(clamp(now.snapshot_index));
        self.replication_lag.clear();
        for (peer, lag) in &now.lag_by_peer {
            self.replication_lag
                .get_or_create(&PeerLabels {
                    peer: peer.to_string(),
                })
                .set(clamp(*lag));
        }
        self.store_bytes.set(clamp(now.store_bytes));
        self.runners_started.clear();
        for (group, n) in &now.runners.started {
            self.runners_started
                .get_or_create(&GroupLabels {
                    group: group.clone(),
                })
                .set(clamp(*n));
        }
        self.runners_running.clear();
        for (group, n) in &now.runners.running {
            self.runners_running
                .get_or_create(&GroupLabels {
                    group: group.clone(),
                })
                .set(clamp(*n));
        }
        self.store_errors.set(clamp(now.store_errors));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What a scrape reads at that moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub jobs_by_state: Vec<(String, u64)>,
    pub term: u64,
    pub leader: Option<u64>,
    pub leading: bool,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub lag_by_peer: Vec<(u64, u64)>,
    pub store_bytes: u64,
    pub store_errors: u64,
    pub runners: crate::scheduler::RunnerCounts,
}

/// One RPC being served; records its duration and result when done.
pub struct RpcTimer<'a> {
    metrics: &'a Metrics,
    rpc: &'static str,
    start: Instant,
}

impl RpcTimer<'_> {
    pub fn done<T, E>(self, r: Result<T, E>) -> Result<T, E> {
        let rpc = self.rpc;
        self.metrics
            .rpc_duration
            .get_or_create(&RpcLabels { rpc })
            .observe(self.start.elapsed().as_secs_f64());
        let result = if r.is_ok() { "ok" } else { "error" };
        self.metrics
            .rpc_calls
            .get_or_create(&RpcResultLabels { rpc, result })
            .inc();
        r
    }
}

/// Bytes of the files under `dir` (not following links), at most `MAX_WALK_ENTRIES` entries.
pub fn dir_bytes(dir: &Path) -> u64 {
    const MAX_WALK_ENTRIES: usize = 100_000;
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > MAX_WALK_ENTRIES {
                return total;
            }
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_metrics_encode_as_prometheus_text() {
        let m = Metrics::new();
        let t = m.rpc("add");
        let _ = t.done::<(), ()>(Ok(()));
        m.jobs_moved("added", 3);
        let text = m.encode(&Snapshot {
            jobs_by_state: vec![("ready".into(), 3)],
            term: 2,
            leader: Some(1),
            leading: true,
            lag_by_peer: vec![(2, 5)],
            ..Default::default()
        });
        for want in [
            "raftq_rpc_duration_seconds_count{rpc=\"add\"} 1",
            "raftq_rpc_calls_total{rpc=\"add\",result=\"ok\"} 1",
            "raftq_job_events_total{event=\"added\"} 3",
            "raftq_jobs{state=\"ready\"} 3",
            "raftq_raft_term 2",
            "raftq_raft_is_leader 1",
            "raftq_raft_replication_lag_entries{peer=\"2\"} 5",
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
