//! Elections: after the leader crashed or lost its majority, the majority side elects a
//! replica whose log is at least as long as those of a majority (Raft's election restriction);
//! the log is cut to the winner's length, and the old leader's callers hear "outcome unknown".

use super::raft::{Caller, LeaderState};
use super::{Ev, SimError, World};

impl World {
    /// Schedules an election in `lo..=hi` ms, unless one is pending.
    pub(super) fn schedule_election(&mut self, lo: u64, hi: u64) {
        if !self.election_pending {
            self.election_pending = true;
            let t = self.now + self.rng_raft.range(lo, hi);
            self.q.at(t, Ev::Election);
        }
    }

    /// An election timeout fired: unless the leader is fine, the majority side elects one of
    /// its replicas whose log is at least as long as those of a majority of the cluster.
    pub(super) fn on_election(&mut self) -> Result<(), SimError> {
        self.election_pending = false;
        if self.leader_healthy() {
            return Ok(());
        }
        let Some(side) = self.majority_side() else {
            self.schedule_election(300, 600);
            return Ok(());
        };
        let voters: Vec<usize> = (0..self.reps.len())
            .filter(|&i| self.reps[i].up && self.side[i] == side)
            .collect();
        let candidates: Vec<usize> = if self.bugs.elect_without_committed_log {
            // planted: the shortest log wins, whatever it lacks
            let shortest = voters.iter().map(|&i| self.reps[i].log_len).min();
            voters
                .iter()
                .copied()
                .filter(|&i| Some(self.reps[i].log_len) == shortest)
                .collect()
        } else {
            voters
                .iter()
                .copied()
                .filter(|&c| {
                    let len = self.reps[c].log_len;
                    let votes = voters
                        .iter()
                        .filter(|&&v| self.reps[v].log_len <= len)
                        .count();
                    votes >= self.majority()
                })
                .collect()
        };
        if candidates.is_empty() {
            self.schedule_election(300, 600);
            return Ok(());
        }
        let c = candidates[self.rng_raft.below(candidates.len())];
        self.become_leader(c)
    }

    /// Ends the current leadership: requests it holds get "outcome unknown" when the old
    /// leader is still up (it tells its clients), nothing when it crashed (they time out).
    pub(super) fn depose(&mut self) {
        let Some(old) = self.leader.take() else {
            return;
        };
        let lead = std::mem::take(&mut self.lead);
        let mut callers: Vec<Caller> = lead
            .waiting
            .into_values()
            .flatten()
            .map(|(_, c)| c)
            .collect();
        callers.extend(lead.batcher.into_waiting().filter_map(|(_, c)| c));
        if self.reps[old].up {
            for c in callers {
                self.send_reply(c, Err("leader changed: outcome unknown".into()));
            }
        }
    }

    pub(super) fn become_leader(&mut self, c: usize) -> Result<(), SimError> {
        self.depose();
        self.term += 1;
        self.stats.elections += 1;
        let len = self.reps[c].log_len;
        if len < self.log.len() {
            self.stats.truncated_entries += (self.log.len() - len) as u64;
            self.log.truncate(len);
        }
        for r in &mut self.reps {
            r.log_len = r.log_len.min(len);
            r.commit_known = r.commit_known.min(len);
        }
        // only the planted bug can elect a leader without every committed entry
        self.commit = self.commit.min(len);
        self.leader = Some(c);
        let mut match_len = vec![0; self.reps.len()];
        match_len[c] = len;
        self.lead = LeaderState {
            match_len,
            ..LeaderState::default()
        };
        // the node's timers: a new leader first restarts every live lease
        self.drive_timers()?;
        self.q.at(self.now, Ev::Heartbeat { term: self.term });
        Ok(())
    }
}
