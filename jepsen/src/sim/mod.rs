//! # A deterministic simulation of the replicated queue
//!
//! `raftq-jepsen sim --seed N` runs the queue's state machine ([`queue_fsm::Fsm`] over
//! [`queue_fsm::MemStore`], one per replica) under a simulated Raft, simulated clients and a
//! seeded fault schedule, all in virtual time, then judges the history with the same checkers
//! as a real run ([`crate::checker::check_all`]). One thread, a discrete-event loop ordered by
//! (virtual ms, sequence number), one seeded generator per concern ([`crate::rng::Rng`]),
//! `BTreeMap`s only, no wall clock: the same seed and options give the same history, byte for
//! byte, on any machine. A failing seed is a reproducer.
//!
//! ## What it models
//! - **Replicas**: N state machines, each with its own clock offset (±30 ms); a third of them,
//!   drawn from the seed, sit on a slow link (+10–40 ms) and lag behind the leader.
//! - **A simulated Raft**: one log of entries (the leader's stamp from its own clock, the
//!   requests it batched); a client's request reaches the leader, which appends it with
//!   whatever else is pending (group commit by the node's own `raftq_node::proposer::Batcher`
//!   with the node's default bounds: at most 4,096 commands an entry, 8 entries in flight),
//!   replicates it (delays of 1–5 ms, 3% of messages
//!   10–60 ms, 1% lost; a 50 ms heartbeat re-sends what a follower lacks), commits an entry of
//!   its own term once a majority holds it, and answers the client when it has applied it.
//!   Followers learn the commit index from the leader and apply in order with random lag (now
//!   and then 50–250 ms). A follower 20 entries or more behind sometimes gets a snapshot (the
//!   leader's state machine exported and imported) instead of entries.
//! - **Elections** 0.3–0.8 s after the leader crashed or stopped reaching a majority: the
//!   majority side elects a replica whose log is at least as long as those of a majority
//!   (Raft's election restriction: it holds every committed entry); the log is cut to the
//!   winner's length; what the old leader held is lost (its clients hear "outcome unknown" if
//!   it is alive, else time out). The new leader's timers are the node's own
//!   `raftq_node::ticker::Timers`: `RenewLeases` first, then `Tick` whenever its state
//!   machine's next deadline has passed by its own clock, one at a time.
//! - **Idempotent request ids and client retries**: a call has one request id; a lost request
//!   or reply (4% of replies are lost), a 300 ms attempt timeout, a refused connection or a
//!   leader change make the client retry with the same id after a backoff, until the call's
//!   1.2 s deadline; then the call is `info`. A refusal of the state machine is `fail`. A
//!   request sent before the deadline may still take effect after it.
//! - **Leases and fences**: workers reserve with a 1 s TTR; 10% of them stall 1.2–3.5 s before
//!   they touch and finish with their fence, so leases expire (a lost job returns after
//!   1.5 s) and fences move on.
//! - **Faults** on a seeded schedule, one at a time (quiet 0.3–1.2 s, fault 0.3–2 s): `kill`
//!   one replica, the leader, a minority or every replica (the state machine is lost, the log
//!   kept; on restart it is rebuilt from a live peer's snapshot, or by replaying the log from
//!   the first entry); `partition` isolating one replica, the leader or a minority from the
//!   rest; `clock`: the leader's clock jumps by ±0.5–5 s (stamps jump; the state machine's
//!   clock only moves forward).
//! - **Workload and final phase** as `raftq-jepsen test --workload queue`: one adder and one
//!   worker per node (adders add unique jobs `true p<proc>-<n>` one per call, every
//!   150–450 ms; workers reserve, sometimes touch, archive 75% / release 12% / bury 13%), with
//!   the same operations in the history; then heal, kick buried jobs and drain, a final read
//!   from the leader (once it has applied every committed entry and an entry of its term),
//!   and every replica's digest after catch-up.
//!
//! `--steps` counts events of the loop in the workload phase: 20,000 are about 50 s of
//! virtual time on 3 nodes (5 nodes make two to three times the events per virtual second).
//!
//! ## What it does not model
//! openraft itself (votes and terms beyond the election restriction, its log storage and
//! compaction, snapshot transfer, membership; an election is one step, and a rejoining
//! minority never disrupts the leader), gRPC and the client library (clients know the leader
//! at once; no forwarding between nodes; reserve does not long-poll: a worker waits 100–300 ms
//! after "none ready"), RocksDB, fsync and power loss (a replica's log survives a crash
//! intact; messages in flight from a crashed node are dropped), pauses (SIGSTOP), one-way and
//! ring partitions, linearizable reads other than the final phase's. The real
//! `raftq-jepsen test` covers those layers. A valid sim run says that the queue state machine,
//! its request ids, leases and fences, snapshot export/import and replay, and the node's
//! group-commit and timer decisions hold up under this model's faults; nothing more.
//!
//! The proposer's and ticker's decisions are shipped code; their async drivers (tasks,
//! channels, `tokio::time`) are not run here. Running openraft itself under the seed would
//! need: a single-threaded tokio runtime with paused time driven by the event loop (or an
//! openraft `AsyncRuntime` of our own), an in-memory `RaftNetworkV2` whose delays, losses and
//! partitions come from the seeded generator, in-memory log and state-machine stores
//! (`queue_fsm::MemStore` behind `RaftLogStorage`/`RaftStateMachine`), and openraft's own
//! randomness (election timeouts) drawn from the seed; with those, the sim could run the real
//! `raftq_node::node::Node` over a `Consensus` per replica. Not attempted.
//!
//! Bugs can be planted in the simulated layer with [`SimBugs`] (tests only, not on the
//! command line) to show that the checkers catch them.
//!
//! ## Layout
//! - this file: options, stats, the event queue, the `World` and its event loop.
//! - `raft`: replicas, the log, replication, commit and apply, the leader's group commit
//!   (`raftq_node::proposer::Batcher`) and timers (`raftq_node::ticker::Timers`).
//! - `election`: elections with Raft's restriction, and stepping down.
//! - `recovery`: snapshots to lagging followers, crashes and restarts.
//! - `client`: the simulated clients (adders, workers, the coordinator) and their retries.
//! - `nemesis`: the fault schedule.
//! - `final_phase`: heal, drain, the final read and the digests.
//! - `output`: the summary lines and the run directory's files.
//! - `tests`: validity over seeds, determinism, planted bugs.

mod client;
mod election;
mod final_phase;
mod nemesis;
mod output;
mod raft;
mod recovery;
#[cfg(test)]
mod tests;

pub use output::{stats_line, summary, write_outputs};

use crate::checker::{self, Validity, Verdict};
use crate::history::{Event, Kind, Op, NEMESIS};
use crate::rng::Rng;
use client::{Client, Role};
use final_phase::Phase;
use nemesis::Fault;
use queue_fsm::snapshot::Chunk;
use queue_fsm::{FsmConfig, Outcome, Request, StoreError};
use raft::{Caller, Entry, LeaderState, Replica};
use serde::Serialize;
use std::collections::BTreeMap;

/// Events of the workload phase when `--steps` is not given.
pub const DEFAULT_STEPS: u64 = 20_000;

/// The state machine's clock at virtual time 0 (so that negative clock offsets stay positive).
const BASE_CLOCK_MS: u64 = 1_000_000_000;
/// How long the final phase may take to drain the queue (virtual).
const DRAIN_TIMEOUT_MS: u64 = 120_000;
/// How long the final read may wait for a leader that can serve it.
const FINAL_READ_TIMEOUT_MS: u64 = 10_000;
/// How long the replicas may take to catch up before the digests are read.
const CATCH_UP_TIMEOUT_MS: u64 = 30_000;
/// A bound on the final phase's events, so that a run always ends.
const FINAL_PHASE_MAX_EVENTS: u64 = 5_000_000;

/// The state machine's settings: those of the real harness's nodes (release delay 200 ms, a
/// lost job returns after 1.5 s).
fn fsm_config() -> FsmConfig {
    FsmConfig {
        release_delay_ms: 200,
        max_release_delay_ms: 2_000,
        lost_return_delay_ms: crate::db::LOST_RETURN_DELAY_MS,
        ..FsmConfig::default()
    }
}

/// Bugs to plant in the simulated layer (tests only). Each of the first three makes some
/// checker false for some seed; the last shows that replaying an entry is harmless.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimBugs {
    /// After installing a snapshot taken at index i, resume applying at i + 1 (off by one).
    pub skip_entry_after_snapshot: bool,
    /// Elect the live replica of the majority side with the shortest log, even one without
    /// every committed entry (no election restriction): committed entries are cut.
    pub elect_without_committed_log: bool,
    /// Clients retry with a fresh request id instead of the call's own.
    pub fresh_request_id_on_retry: bool,
    /// Followers apply an entry twice now and then (harmless: request ids make a replay
    /// return the stored outcome, and timers are idempotent at the same stamp).
    pub reapply_entry: bool,
}

impl SimBugs {
    fn any(&self) -> bool {
        *self != SimBugs::default()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimOptions {
    pub seed: u64,
    /// Replicas (3 or 5; 1 to 9 work).
    pub nodes: usize,
    /// Events of the discrete-event loop in the workload phase (the final phase runs until
    /// the queue is drained and the replicas caught up, or its timeouts).
    pub steps: u64,
    pub bugs: SimBugs,
}

impl SimOptions {
    pub fn new(seed: u64, nodes: usize, steps: u64) -> SimOptions {
        SimOptions {
            seed,
            nodes,
            steps,
            bugs: SimBugs::default(),
        }
    }

    /// The run's name, as a real run's (`test.json`).
    pub fn name(&self) -> String {
        format!("sim-n{}", self.nodes)
    }
}

/// What happened in the simulated layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Events processed, in all and in the workload phase.
    pub events: u64,
    pub workload_events: u64,
    /// Virtual time at the end and at the end of the workload phase.
    pub virtual_ms: u64,
    pub workload_ms: u64,
    pub log_entries: u64,
    pub applied_entries: u64,
    pub faults: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub clock_jumps: u64,
    pub elections: u64,
    /// Snapshots installed (catch-up and restarts), restarts that replayed the log instead.
    pub snapshots_installed: u64,
    pub restarts_replayed: u64,
    /// Uncommitted entries cut by a new leader.
    pub truncated_entries: u64,
    pub lost_replies: u64,
    pub client_retries: u64,
    pub drained: bool,
}

/// A finished simulation: its history, what happened, and the checkers' verdicts.
pub struct SimOutcome {
    pub history: Vec<Event>,
    pub stats: SimStats,
    pub results: BTreeMap<String, Verdict>,
    pub valid: Validity,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error("state machine store: {0}")]
    Store(#[from] StoreError),
    /// The model reached a state it should not (a bug of the simulation).
    #[error("simulation: {0}")]
    Model(String),
}

/// An event of the discrete-event loop.
enum Ev {
    /// A client's next step.
    Wake {
        c: usize,
    },
    /// A client's request reaches a node.
    Arrive {
        caller: Caller,
        node: usize,
        req: Box<Request>,
    },
    Reply {
        caller: Caller,
        reply: Box<Result<Outcome, String>>,
    },
    AttemptTimeout {
        caller: Caller,
    },
    Retry {
        caller: Caller,
    },
    Propose {
        term: u64,
    },
    Append {
        to: usize,
        inc: u64,
        term: u64,
        upto: usize,
        commit: usize,
    },
    Ack {
        from: usize,
        term: u64,
        len: usize,
    },
    Snapshot {
        to: usize,
        inc: u64,
        term: u64,
        index: usize,
        chunks: Vec<Chunk>,
    },
    Apply {
        r: usize,
        inc: u64,
    },
    Heartbeat {
        term: u64,
    },
    Election,
    /// The next step of the fault schedule.
    Nemesis,
    /// The next step of the final phase.
    Coord,
}

/// Events by (virtual ms, insertion order).
#[derive(Default)]
struct Queue {
    events: BTreeMap<(u64, u64), Ev>,
    seq: u64,
}

impl Queue {
    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.events.insert((t, self.seq), ev);
    }

    fn pop(&mut self) -> Option<(u64, Ev)> {
        self.events.pop_first().map(|((t, _), ev)| (t, ev))
    }
}

/// The whole simulated world.
struct World {
    now: u64,
    q: Queue,
    bugs: SimBugs,
    steps: u64,
    rng_raft: Rng,
    rng_net: Rng,
    rng_nem: Rng,
    reps: Vec<Replica>,
    log: Vec<Entry>,
    term: u64,
    leader: Option<usize>,
    /// The cluster's commit index (entries a majority holds, decided by a leader).
    commit: usize,
    lead: LeaderState,
    election_pending: bool,
    /// Partition side of each replica (all 0: no partition).
    side: Vec<u8>,
    clients: Vec<Client>,
    coordinator: usize,
    stop_adds: bool,
    stop_work: bool,
    fault: Option<(&'static str, Fault)>,
    phase: Phase,
    history: Vec<Event>,
    /// (ms, n): the n-th event recorded in that ms, so that times strictly increase.
    last_stamp: (u64, u64),
    stats: SimStats,
}

/// Runs one simulation and checks its history.
pub fn run(opts: &SimOptions) -> Result<SimOutcome, SimError> {
    if !(1..=9).contains(&opts.nodes) {
        return Err(SimError::Options(format!(
            "nodes must be 1 to 9, not {}",
            opts.nodes
        )));
    }
    let mut w = World::new(opts)?;
    w.run()?;
    w.stats.virtual_ms = w.now;
    w.stats.log_entries = w.log.len() as u64;
    let results = checker::check_all(&w.history, true);
    let valid = checker::overall(&results);
    Ok(SimOutcome {
        history: w.history,
        stats: w.stats,
        results,
        valid,
    })
}

impl World {
    fn new(opts: &SimOptions) -> Result<World, SimError> {
        let n = opts.nodes;
        let mut rng = Rng::new(opts.seed);
        let mut rng_raft = rng.fork(1);
        let reps = (0..n)
            .map(|_| Replica::new(&mut rng_raft))
            .collect::<Result<Vec<_>, _>>()?;
        // as the real `queue` workload: one adder and one worker per node, then the
        // coordinator of the final phase
        let mut clients = Vec::new();
        for p in 0..2 * n {
            let role = if p < n { Role::Adder } else { Role::Worker };
            clients.push(Client::new(
                p as u64 + 1,
                p % n,
                role,
                rng.fork(100 + p as u64),
            ));
        }
        clients.push(Client::new(
            2 * n as u64 + 1,
            0,
            Role::Coordinator,
            rng.fork(3),
        ));
        let mut w = World {
            now: 0,
            q: Queue::default(),
            bugs: opts.bugs,
            steps: opts.steps,
            rng_raft,
            rng_net: rng.fork(2),
            rng_nem: rng.fork(4),
            reps,
            log: Vec::new(),
            term: 0,
            leader: None,
            commit: 0,
            lead: LeaderState::default(),
            election_pending: false,
            side: vec![0; n],
            coordinator: clients.len() - 1,
            clients,
            stop_adds: false,
            stop_work: false,
            fault: None,
            phase: Phase::Workload,
            history: Vec::new(),
            last_stamp: (0, 0),
            stats: SimStats::default(),
        };
        w.schedule_election(0, 0);
        for c in 0..w.coordinator {
            let t = 50 + w.clients[c].rng.range(0, 20);
            w.q.at(t, Ev::Wake { c });
        }
        let first = w.rng_nem.range(300, 1_200);
        w.q.at(first, Ev::Nemesis);
        Ok(w)
    }

    fn run(&mut self) -> Result<(), SimError> {
        while let Some((t, ev)) = self.q.pop() {
            self.now = t;
            self.stats.events += 1;
            if self.phase == Phase::Workload && self.stats.events > self.steps {
                self.begin_final()?;
            }
            self.handle(ev)?;
            if self.phase == Phase::Done || self.stats.events > self.steps + FINAL_PHASE_MAX_EVENTS
            {
                break;
            }
        }
        Ok(())
    }

    fn handle(&mut self, ev: Ev) -> Result<(), SimError> {
        match ev {
            Ev::Wake { c } => self.on_wake(c),
            Ev::Arrive { caller, node, req } => self.on_arrive(caller, node, *req),
            Ev::Reply { caller, reply } => self.on_reply(caller, *reply),
            Ev::AttemptTimeout { caller } => self.on_attempt_timeout(caller),
            Ev::Retry { caller } => self.on_retry(caller),
            Ev::Propose { term } => self.on_propose(term),
            Ev::Append {
                to,
                inc,
                term,
                upto,
                commit,
            } => self.on_append(to, inc, term, upto, commit),
            Ev::Ack { from, term, len } => self.on_ack(from, term, len),
            Ev::Snapshot {
                to,
                inc,
                term,
                index,
                chunks,
            } => self.on_snapshot(to, inc, term, index, chunks)?,
            Ev::Apply { r, inc } => self.on_apply(r, inc)?,
            Ev::Heartbeat { term } => self.on_heartbeat(term)?,
            Ev::Election => self.on_election()?,
            Ev::Nemesis => self.on_nemesis()?,
            Ev::Coord => self.on_coord()?,
        }
        Ok(())
    }

    /// Appends an event to the history at the current virtual time.
    fn record(&mut self, process: u64, node: u64, kind: Kind, op: Op, error: Option<String>) {
        let n = if self.last_stamp.0 == self.now {
            self.last_stamp.1 + 1
        } else {
            0
        };
        self.last_stamp = (self.now, n);
        self.history.push(Event {
            process,
            kind,
            op,
            node,
            time_ns: self.now * 1_000_000 + n.min(999_999),
            error,
        });
    }

    fn record_fault(&mut self, name: &str, action: &str, detail: String) {
        let op = |detail: String| Op::Fault {
            name: name.into(),
            action: action.into(),
            detail,
        };
        self.record(NEMESIS, 0, Kind::Invoke, op(String::new()), None);
        self.record(NEMESIS, 0, Kind::Ok, op(detail), None);
    }
}
