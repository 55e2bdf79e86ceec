//! Snapshots and crashes: a leader's state machine exported to a lagging follower, a replica
//! that crashes (its state machine is lost, its log kept) and restarts from a peer's snapshot
//! or by replaying its log.

use super::raft::{ELECTION_MS, MSG_LOSS, RESTART_FROM_SNAPSHOT};
use super::{fsm_config, Ev, SimError, World};
use queue_fsm::snapshot::{Chunk, DEFAULT_CHUNK_BYTES};
use queue_fsm::{Fsm, MemStore};

impl World {
    pub(super) fn export(&self, r: usize) -> Result<(usize, Vec<Chunk>), SimError> {
        let rep = &self.reps[r];
        let fsm = rep
            .fsm
            .as_ref()
            .ok_or_else(|| SimError::Model(format!("n{} has no state to export", r + 1)))?;
        let chunks = fsm
            .export(DEFAULT_CHUNK_BYTES)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rep.applied, chunks))
    }

    pub(super) fn send_snapshot(&mut self, l: usize, f: usize) -> Result<(), SimError> {
        if self.rng_net.chance(MSG_LOSS) {
            return Ok(());
        }
        let (index, chunks) = self.export(l)?;
        let t = self.now + self.link_delay(f) + 5;
        self.q.at(
            t,
            Ev::Snapshot {
                to: f,
                inc: self.reps[f].inc,
                term: self.term,
                index,
                chunks,
            },
        );
        Ok(())
    }

    /// Replaces replica `r`'s state with a snapshot taken at `index`.
    pub(super) fn install(
        &mut self,
        r: usize,
        index: usize,
        chunks: Vec<Chunk>,
    ) -> Result<(), SimError> {
        let mut fsm = Fsm::open(MemStore::default(), fsm_config())?;
        fsm.import(chunks)?;
        let rep = &mut self.reps[r];
        rep.fsm = Some(fsm);
        // planted: off by one, the entry at `index` is never applied
        rep.applied = index + usize::from(self.bugs.skip_entry_after_snapshot);
        rep.log_len = rep.log_len.max(index);
        rep.commit_known = rep.commit_known.max(index);
        self.stats.snapshots_installed += 1;
        Ok(())
    }

    pub(super) fn on_snapshot(
        &mut self,
        to: usize,
        inc: u64,
        term: u64,
        index: usize,
        chunks: Vec<Chunk>,
    ) -> Result<(), SimError> {
        if self.deliverable(to, inc, term).is_none() || self.reps[to].applied >= index {
            return Ok(());
        }
        self.install(to, index, chunks)?;
        let len = self.reps[to].log_len;
        self.schedule_apply(to);
        self.send_ack(to, len);
        Ok(())
    }

    /// Crashes replica `r`: its state machine is gone, its log stays.
    pub(super) fn crash(&mut self, r: usize) {
        let rep = &mut self.reps[r];
        rep.up = false;
        rep.inc += 1;
        rep.fsm = None;
        rep.applied = 0;
        rep.commit_known = 0;
        rep.apply_scheduled = false;
        self.stats.crashes += 1;
        if self.leader == Some(r) {
            self.depose();
            self.schedule_election(ELECTION_MS.0, ELECTION_MS.1);
        }
    }

    /// Restarts replica `r`: a new state machine, rebuilt from a peer's snapshot or by
    /// replaying its log from the first entry.
    pub(super) fn restart(&mut self, r: usize) -> Result<(), SimError> {
        let donors: Vec<usize> = (0..self.reps.len())
            .filter(|&d| {
                d != r
                    && self.reps[d].up
                    && self.reps[d].applied > 0
                    && self.reps[d].fsm.is_some()
                    && self.connected(r, d)
            })
            .collect();
        let from_snapshot = !donors.is_empty() && self.rng_raft.chance(RESTART_FROM_SNAPSHOT);
        let fsm = Fsm::open(MemStore::default(), fsm_config())?;
        {
            let rep = &mut self.reps[r];
            rep.up = true;
            rep.inc += 1;
            rep.applied = 0;
            rep.commit_known = 0;
            rep.apply_scheduled = false;
            rep.fsm = Some(fsm);
        }
        if from_snapshot {
            let d = donors[self.rng_raft.below(donors.len())];
            let (index, chunks) = self.export(d)?;
            self.install(r, index, chunks)?;
        } else {
            self.stats.restarts_replayed += 1;
        }
        if !self.leader_healthy() {
            self.schedule_election(50, 200);
        }
        Ok(())
    }
}
