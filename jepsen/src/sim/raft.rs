//! The simulated Raft layer: one log, replicas that hold a prefix of it, a leader that appends,
//! replicates, commits by majority and answers its clients once it has applied an entry.
//! Elections are in `election`, snapshots, crashes and restarts in `recovery`.
//!
//! Every replica's log is a prefix of the one log [`World::log`]: a new leader truncates it to
//! its own length (entries no majority held, and that it does not hold, are gone), so the
//! prefix property holds without storing a log per replica.
//!
//! The leader's group commit and timers are the node's own code, driven in virtual time:
//! [`Batcher`] (`raftq_node::proposer`) decides which pending requests form the next entry and
//! bounds the entries in flight, [`Timers`] (`raftq_node::ticker`) decides when to propose
//! `RenewLeases` and `Tick`, with the node's default bounds.

use super::{fsm_config, Ev, SimError, World};
use crate::rng::Rng;
use queue_fsm::{Command, Fsm, MemStore, Outcome, Request};
use raftq_node::config::NodeConfig;
use raftq_node::proposer::Batcher;
use raftq_node::ticker::{Due, Step, Timers};
use std::collections::BTreeMap;

/// Election timeout: how long followers wait after losing the leader (virtual ms).
pub(super) const ELECTION_MS: (u64, u64) = (300, 800);
/// Heartbeat period of the leader (it also re-sends what a follower misses).
const HEARTBEAT_MS: u64 = 50;
/// A follower this many entries behind the leader's applied index may get a snapshot.
const SNAPSHOT_LAG: usize = 20;
/// Chance per heartbeat that a lagging follower gets a snapshot rather than entries.
const SNAPSHOT_CHANCE: f64 = 0.3;
/// Chance that a message between replicas (append, ack, snapshot) is lost.
pub(super) const MSG_LOSS: f64 = 0.01;
/// Chance that a reply to a client is lost (the client times out and retries).
pub(super) const REPLY_LOSS: f64 = 0.04;
/// Entries one apply step takes at most.
const APPLY_BATCH: usize = 16;
/// Chance that a replica restarting after a crash rebuilds from a peer's snapshot (else it
/// replays its log from the first entry).
pub(super) const RESTART_FROM_SNAPSHOT: f64 = 0.5;

/// One entry of the log: the leader's stamp and the requests it batched.
pub(super) struct Entry {
    pub term: u64,
    pub stamp_ms: u64,
    pub requests: Vec<Request>,
}

/// One replica. Its log (`log_len` entries of [`World::log`]) survives a crash; its state
/// machine does not.
pub(super) struct Replica {
    pub up: bool,
    /// Bumped at each crash and restart: messages to an earlier incarnation are dropped.
    pub inc: u64,
    pub fsm: Option<Fsm<MemStore>>,
    /// Entries applied to `fsm` (the next to apply is `log[applied]`).
    pub applied: usize,
    pub log_len: usize,
    /// The commit index this replica has learnt (volatile).
    pub commit_known: usize,
    pub apply_scheduled: bool,
    /// Constant offset of this replica's clock.
    pub skew_ms: i64,
    /// Latency of this replica's link to the others (a far replica lags behind the leader,
    /// and an election must not pick it when it lacks committed entries).
    pub link_ms: u64,
    /// The clock fault's jump (0 when none).
    pub jump_ms: i64,
}

impl Replica {
    /// A fresh replica, up, with its clock skew (±30 ms) and link latency drawn from `rng`.
    pub fn new(rng: &mut Rng) -> Result<Replica, SimError> {
        Ok(Replica {
            up: true,
            inc: 0,
            fsm: Some(Fsm::open(MemStore::default(), fsm_config())?),
            applied: 0,
            log_len: 0,
            commit_known: 0,
            apply_scheduled: false,
            skew_ms: rng.range(0, 60) as i64 - 30,
            // a third of the replicas are far from the others
            link_ms: if rng.chance(1.0 / 3.0) {
                rng.range(10, 40)
            } else {
                0
            },
            jump_ms: 0,
        })
    }
}

/// A client's attempt waiting for the outcome of its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Caller {
    pub c: usize,
    pub call: u64,
    pub attempt: u32,
}

/// What only the current leader keeps.
pub(super) struct LeaderState {
    /// Log length each replica acknowledged (the leader's own is the log's length).
    pub match_len: Vec<usize>,
    /// Requests not yet in an entry, and the entries in flight (the node's group commit).
    pub batcher: Batcher<(Request, Option<Caller>)>,
    pub propose_scheduled: bool,
    /// Entry index → (position in the entry, caller) of requests this leader appended.
    pub waiting: BTreeMap<usize, Vec<(usize, Caller)>>,
    /// The node's timer decisions (RenewLeases first, then Tick when due).
    pub timers: Timers,
    /// Index of the Tick and of this term's RenewLeases in the log, until the leader applies
    /// them.
    pub tick_index: Option<usize>,
    pub renew_index: Option<usize>,
}

impl Default for LeaderState {
    fn default() -> Self {
        let node = NodeConfig::default();
        LeaderState {
            match_len: Vec::new(),
            batcher: Batcher::new(node.max_batch_commands, node.max_inflight_entries),
            propose_scheduled: false,
            waiting: BTreeMap::new(),
            timers: Timers::default(),
            tick_index: None,
            renew_index: None,
        }
    }
}

impl World {
    pub(super) fn majority(&self) -> usize {
        self.reps.len() / 2 + 1
    }

    pub(super) fn connected(&self, a: usize, b: usize) -> bool {
        self.side[a] == self.side[b]
    }

    /// Replica `r`'s wall clock (what it stamps entries with and times leases by).
    pub(super) fn clock(&self, r: usize) -> u64 {
        let rep = &self.reps[r];
        (super::BASE_CLOCK_MS as i64 + self.now as i64 + rep.skew_ms + rep.jump_ms).max(0) as u64
    }

    /// The side of the partition whose live replicas form a majority, if any.
    pub(super) fn majority_side(&self) -> Option<u8> {
        let mut up: BTreeMap<u8, usize> = BTreeMap::new();
        for (i, r) in self.reps.iter().enumerate() {
            if r.up {
                *up.entry(self.side[i]).or_default() += 1;
            }
        }
        up.into_iter()
            .find(|&(_, n)| n >= self.majority())
            .map(|(s, _)| s)
    }

    /// A leader that is up and reaches a majority.
    pub(super) fn leader_healthy(&self) -> bool {
        match self.leader {
            Some(l) => self.reps[l].up && self.majority_side() == Some(self.side[l]),
            None => false,
        }
    }

    /// One message's delay between the leader and follower `f` (its link's latency plus
    /// jitter).
    pub(super) fn link_delay(&mut self, f: usize) -> u64 {
        self.reps[f].link_ms + Self::net_delay(&mut self.rng_net)
    }

    pub(super) fn net_delay(rng: &mut Rng) -> u64 {
        if rng.chance(0.03) {
            rng.range(10, 60)
        } else {
            rng.range(1, 5)
        }
    }

    /// A client's request reached node `node`.
    pub(super) fn on_arrive(&mut self, caller: Caller, node: usize, req: Request) {
        if !self.reps[node].up {
            self.send_reply(caller, Err(format!("n{}: connection refused", node + 1)));
            return;
        }
        if self.leader != Some(node) {
            let hint = self
                .leader
                .map_or("none".to_string(), |l| format!("n{}", l + 1));
            self.send_reply(
                caller,
                Err(format!("n{}: not the leader (leader: {hint})", node + 1)),
            );
            return;
        }
        self.lead.batcher.push((req, Some(caller)));
        self.schedule_propose();
    }

    fn schedule_propose(&mut self) {
        if !self.lead.propose_scheduled {
            self.lead.propose_scheduled = true;
            // the group-commit window
            let t = self.now + self.rng_raft.range(0, 2);
            self.q.at(t, Ev::Propose { term: self.term });
        }
    }

    /// The leader appends what is pending as entries stamped with its clock, as many and as
    /// large as the node's [`Batcher`] allows.
    pub(super) fn on_propose(&mut self, term: u64) {
        if term != self.term {
            return;
        }
        self.lead.propose_scheduled = false;
        let Some(l) = self.leader else {
            return;
        };
        if !self.reps[l].up {
            return;
        }
        let mut appended = false;
        while let Some(batch) = self.lead.batcher.next_batch() {
            appended = true;
            let idx = self.log.len();
            let mut requests = Vec::with_capacity(batch.len());
            for (pos, (req, caller)) in batch.into_iter().enumerate() {
                match req.cmd {
                    Command::Tick => self.lead.tick_index = Some(idx),
                    Command::RenewLeases => self.lead.renew_index = Some(idx),
                    _ => {}
                }
                if let Some(c) = caller {
                    self.lead.waiting.entry(idx).or_default().push((pos, c));
                }
                requests.push(req);
            }
            let stamp_ms = self.clock(l);
            self.log.push(Entry {
                term,
                stamp_ms,
                requests,
            });
        }
        if !appended {
            return;
        }
        self.reps[l].log_len = self.log.len();
        self.lead.match_len[l] = self.log.len();
        for f in 0..self.reps.len() {
            self.send_append(f);
        }
        self.recompute_commit();
    }

    /// The leader sends follower `f` everything it lacks, with the leader's commit index.
    fn send_append(&mut self, f: usize) {
        let Some(l) = self.leader else {
            return;
        };
        if f == l || !self.reps[f].up || !self.connected(l, f) || self.rng_net.chance(MSG_LOSS) {
            return;
        }
        let t = self.now + self.link_delay(f);
        self.q.at(
            t,
            Ev::Append {
                to: f,
                inc: self.reps[f].inc,
                term: self.term,
                upto: self.log.len(),
                commit: self.reps[l].commit_known,
            },
        );
    }

    /// Whether a message of `term` from the leader to `to` (incarnation `inc`) is delivered.
    pub(super) fn deliverable(&self, to: usize, inc: u64, term: u64) -> Option<usize> {
        let l = self.leader?;
        let ok = term == self.term
            && self.reps[l].up
            && self.reps[to].up
            && self.reps[to].inc == inc
            && self.connected(l, to);
        ok.then_some(l)
    }

    pub(super) fn on_append(&mut self, to: usize, inc: u64, term: u64, upto: usize, commit: usize) {
        if self.deliverable(to, inc, term).is_none() {
            return;
        }
        let r = &mut self.reps[to];
        r.log_len = r.log_len.max(upto.min(self.log.len()));
        r.commit_known = r.commit_known.max(commit.min(r.log_len));
        let len = r.log_len;
        self.schedule_apply(to);
        self.send_ack(to, len);
    }

    pub(super) fn send_ack(&mut self, from: usize, len: usize) {
        if self.rng_net.chance(MSG_LOSS) {
            return;
        }
        let t = self.now + self.link_delay(from);
        self.q.at(
            t,
            Ev::Ack {
                from,
                term: self.term,
                len,
            },
        );
    }

    pub(super) fn on_ack(&mut self, from: usize, term: u64, len: usize) {
        let Some(l) = self.leader else {
            return;
        };
        if term != self.term || !self.reps[l].up || !self.connected(l, from) {
            return;
        }
        let m = &mut self.lead.match_len[from];
        *m = (*m).max(len.min(self.log.len()));
        self.recompute_commit();
    }

    /// Commits the longest prefix a majority holds, if its last entry is of this term.
    fn recompute_commit(&mut self) {
        let Some(l) = self.leader else {
            return;
        };
        let mut lens: Vec<usize> = (0..self.reps.len())
            .map(|i| {
                if i == l {
                    self.log.len()
                } else {
                    self.lead.match_len[i]
                }
            })
            .collect();
        lens.sort_unstable_by(|a, b| b.cmp(a));
        let cand = lens[self.majority() - 1];
        if cand > self.commit && self.log[cand - 1].term == self.term {
            self.commit = cand;
            self.reps[l].commit_known = cand;
            self.schedule_apply(l);
            // followers learn the new commit index right away
            for f in 0..self.reps.len() {
                self.send_append(f);
            }
        }
    }

    /// What replica `r` may apply: committed entries (as far as it knows) that it holds.
    fn apply_limit(&self, r: usize) -> usize {
        let rep = &self.reps[r];
        rep.commit_known.min(rep.log_len).min(self.log.len())
    }

    pub(super) fn schedule_apply(&mut self, r: usize) {
        let limit = self.apply_limit(r);
        let rep = &self.reps[r];
        if !rep.up || rep.apply_scheduled || rep.applied >= limit {
            return;
        }
        let lag = if self.leader == Some(r) {
            self.rng_raft.range(0, 2)
        } else if self.rng_raft.chance(0.05) {
            // a slow replica now and then
            self.rng_raft.range(50, 250)
        } else {
            self.rng_raft.range(0, 20)
        };
        self.reps[r].apply_scheduled = true;
        let inc = self.reps[r].inc;
        self.q.at(self.now + lag, Ev::Apply { r, inc });
    }

    /// Replica `r` applies committed entries in order; the leader answers its callers.
    pub(super) fn on_apply(&mut self, r: usize, inc: u64) -> Result<(), SimError> {
        if !self.reps[r].up || self.reps[r].inc != inc {
            return Ok(());
        }
        self.reps[r].apply_scheduled = false;
        let limit = self.apply_limit(r);
        let is_leader = self.leader == Some(r);
        let mut n = 0;
        while self.reps[r].applied < limit && n < APPLY_BATCH {
            n += 1;
            let idx = self.reps[r].applied;
            let entry = &self.log[idx];
            let (stamp, requests) = (entry.stamp_ms, entry.requests.clone());
            let twice = self.bugs.reapply_entry && !is_leader && self.rng_raft.chance(0.05);
            let fsm = self.reps[r]
                .fsm
                .as_mut()
                .ok_or_else(|| SimError::Model(format!("n{} is up without a state", r + 1)))?;
            let applied = if twice {
                // planted: the entry is applied a second time
                fsm.apply_entry(stamp, requests.clone(), Vec::new())?;
                fsm.apply_entry(stamp, requests, Vec::new())?
            } else {
                fsm.apply_entry(stamp, requests, Vec::new())?
            };
            self.reps[r].applied += 1;
            self.stats.applied_entries += 1;
            if is_leader {
                // an entry of this term is one this leader's batcher proposed: its slot is
                // free (as the node's proposer frees it when the write returns)
                if self.log[idx].term == self.term {
                    self.lead.batcher.finished();
                }
                if let Some(callers) = self.lead.waiting.remove(&idx) {
                    for (pos, c) in callers {
                        let outcome: Outcome = match applied.outcomes.get(pos) {
                            Some(o) => o.clone(),
                            None => {
                                return Err(SimError::Model(format!(
                                    "entry {idx} has no outcome for request {pos}"
                                )))
                            }
                        };
                        self.send_reply(c, Ok(outcome));
                    }
                }
                if self.lead.tick_index == Some(idx) {
                    self.lead.tick_index = None;
                    self.lead.timers.ticked();
                }
                if self.lead.renew_index == Some(idx) {
                    self.lead.renew_index = None;
                    self.lead.timers.renewed(self.term);
                }
            }
        }
        self.schedule_apply(r);
        if is_leader {
            if self.lead.batcher.waiting() > 0 {
                self.schedule_propose();
            }
            self.drive_timers()?;
        }
        Ok(())
    }

    /// Sends a reply to a client (it may be lost).
    pub(super) fn send_reply(&mut self, c: Caller, reply: Result<Outcome, String>) {
        if self.rng_net.chance(REPLY_LOSS) {
            self.stats.lost_replies += 1;
            return;
        }
        let t = self.now + Self::net_delay(&mut self.rng_net);
        self.q.at(
            t,
            Ev::Reply {
                caller: c,
                reply: Box::new(reply),
            },
        );
    }

    /// The leader's timers, as the node's ticker decides them ([`Timers`]): this term's
    /// RenewLeases first, then Tick once the state machine's next deadline has passed by the
    /// leader's own clock; one at a time.
    pub(super) fn drive_timers(&mut self) -> Result<(), SimError> {
        let Some(l) = self.leader else {
            return Ok(());
        };
        if !self.reps[l].up {
            return Ok(());
        }
        let cmd = match self.lead.timers.due(Some(self.term)) {
            Due::Follow | Due::Busy => return Ok(()),
            Due::Renew { .. } => Command::RenewLeases,
            Due::Deadline => {
                let now = self.clock(l);
                let Some(fsm) = self.reps[l].fsm.as_mut() else {
                    return Ok(());
                };
                match self.lead.timers.at(fsm.next_deadline()?, now) {
                    Step::Tick => Command::Tick,
                    Step::Sleep(_) => return Ok(()),
                }
            }
        };
        self.lead.batcher.push((Request::new(None, cmd), None));
        self.schedule_propose();
        Ok(())
    }

    /// The leader re-sends to every follower what it lacks (a snapshot to one far behind, now
    /// and then), checks its timers, and notices when it no longer reaches a majority.
    pub(super) fn on_heartbeat(&mut self, term: u64) -> Result<(), SimError> {
        let Some(l) = self.leader else {
            return Ok(());
        };
        if term != self.term || !self.reps[l].up {
            return Ok(());
        }
        for f in 0..self.reps.len() {
            if f == l || !self.reps[f].up || !self.connected(l, f) {
                continue;
            }
            let leader_applied = self.reps[l].applied;
            let behind = self.lead.match_len[f] + SNAPSHOT_LAG < leader_applied
                && self.reps[f].applied + SNAPSHOT_LAG < leader_applied;
            if behind && self.rng_raft.chance(SNAPSHOT_CHANCE) {
                self.send_snapshot(l, f)?;
            } else {
                self.send_append(f);
            }
        }
        self.drive_timers()?;
        if !self.leader_healthy() {
            self.schedule_election(ELECTION_MS.0, ELECTION_MS.1);
        }
        self.q.at(self.now + HEARTBEAT_MS, Ev::Heartbeat { term });
        Ok(())
    }
}
