//! The one writer of jobs: `write_job` keeps a job's record, its index entries and the
//! aggregates derived from it in step; `entries_of` says which index entries a job has.
//! Also the moves back into the queue (`requeue`, `make_ready`) that every family uses.

use super::deps::{target_of, targets_of};
use super::env::env_refs_key;
use super::{Ctx, LimitState};
use crate::fsm::encode;
use crate::job::{Job, JobState, StateName};
use crate::keys;
use crate::learn;
use crate::store::{Space, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// Derived point entries of a job (indexes that hold one entry per job or per membership).
fn entries_of(job: &Job) -> Vec<Entry> {
    let key = &job.key;
    let mut e = Vec::with_capacity(4 + job.spec.dep_grps.len() + job.spec.deps.len());
    e.push((
        Space::ByRep,
        keys::named_serial(&job.spec.rep_grp, job.serial),
        key.0.to_vec(),
    ));
    if state_indexed(job.state.name()) {
        e.push((
            Space::ByState,
            keys::by_state(job.state.name(), job.serial),
            key.0.to_vec(),
        ));
    }
    if job.state == JobState::Ready {
        e.push((
            Space::Ready,
            keys::ready(&job.sched_group, job.spec.priority, job.seq, key),
            key.0.to_vec(),
        ));
    }
    if let Some(d) = job.state.deadline_ms() {
        e.push((Space::Timers, keys::timer(d, key), Vec::new()));
    }
    for g in &job.spec.dep_grps {
        e.push((Space::DepMembers, keys::named_job(g, key), Vec::new()));
    }
    for d in &job.spec.deps {
        e.push((
            Space::Dependants,
            keys::dependant(&target_of(d), key),
            Vec::new(),
        ));
    }
    e
}

pub(crate) fn entries_of_job(job: &Job) -> Vec<(Space, Vec<u8>, Vec<u8>)> {
    entries_of(job)
}

/// States listed in the `by_state` index. The others are listed elsewhere already: ready
/// jobs in `ready`, and delayed, reserved, running and lost jobs in `timers`; leaving them out
/// saves about a quarter of the writes of a reserve/start/archive cycle.
pub(crate) fn state_indexed(s: StateName) -> bool {
    matches!(
        s,
        StateName::Dependent | StateName::Buried | StateName::Complete
    )
}

/// Whether a job makes its dependants wait.
pub(super) fn contributes(job: &Job) -> bool {
    !job.is_complete()
}

/// Derived point entries of a job: (space, key, value).
type Entry = (Space, Vec<u8>, Vec<u8>);

impl Ctx<'_> {
    /// Moves a job from `old` to `new` (either may be absent): writes the record, the index
    /// entries that differ, and the aggregates; queues waiting-count changes for dependants.
    pub(super) fn write_job(
        &mut self,
        old: Option<&Job>,
        new: Option<&Job>,
    ) -> Result<(), StoreError> {
        self.write_entries(old, new);
        match new {
            Some(j) => self.tx.put(Space::Jobs, keys::job(&j.key), encode(j)),
            None => {
                if let Some(o) = old {
                    self.tx.delete(Space::Jobs, keys::job(&o.key));
                }
            }
        }
        // Aggregates, as deltas: old leaves, new arrives.
        let mut targets: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (job, sign) in [(old, -1i64), (new, 1i64)] {
            if let Some(j) = job {
                self.count_job(j, sign, &mut targets)?;
            }
        }
        self.propagate_targets(targets)
    }

    /// Writes the index entries of `new` that `old` lacks and deletes those only `old` has,
    /// lowering the scan hints to cover new timer and ready entries.
    fn write_entries(&mut self, old: Option<&Job>, new: Option<&Job>) {
        let old_e = old.map(entries_of).unwrap_or_default();
        let new_e = new.map(entries_of).unwrap_or_default();
        for e in &old_e {
            if !new_e.iter().any(|n| n.0 == e.0 && n.1 == e.1) {
                self.tx.delete(e.0, e.1.clone());
            }
        }
        for e in &new_e {
            if !old_e.contains(e) {
                match e.0 {
                    Space::Timers if e.1 < self.hints.timers => self.hints.timers = e.1.clone(),
                    Space::Ready => {
                        if let Some(h) = self
                            .hints
                            .ready
                            .get_mut(&new.map_or(String::new(), |j| j.sched_group.clone()))
                        {
                            if e.1 < *h {
                                *h = e.1.clone();
                            }
                        }
                    }
                    _ => {}
                }
                self.tx.put(e.0, e.1.clone(), e.2.clone());
            }
        }
    }

    /// Adds (`sign` = 1) or removes (-1) one job's share of the counters: per rep group and
    /// state, ready per scheduler group, limit slots, environment references; and collects
    /// its share of the dependency targets in `targets`.
    fn count_job(
        &mut self,
        j: &Job,
        sign: i64,
        targets: &mut BTreeMap<Vec<u8>, i64>,
    ) -> Result<(), StoreError> {
        self.bump(
            Space::Counts,
            keys::counts(&j.spec.rep_grp, j.state.name()),
            sign,
        )?;
        if j.state == JobState::Ready {
            self.bump(Space::SchedReady, j.sched_group.as_bytes().to_vec(), sign)?;
        }
        if j.state.holds_slot() {
            let names: BTreeSet<&str> = j.spec.limit_names().collect();
            for name in names {
                let mut l = self
                    .limit_state(name)?
                    .unwrap_or(LimitState { limit: -1, held: 0 });
                l.held = (l.held as i64 + sign).max(0) as u64;
                self.put_limit(name, &l);
            }
        }
        if let Some(h) = &j.env_hash {
            let (_, n) = self.bump(Space::Env, env_refs_key(h), sign)?;
            if n == 0 {
                self.env_unreferenced.insert(*h);
            }
        }
        if contributes(j) {
            for t in targets_of(&j.key, &j.spec) {
                *targets.entry(t).or_default() += sign;
            }
        }
        Ok(())
    }

    /// Applies the net change of each dependency target: a dep group's incomplete count
    /// moves, and where a target turns satisfied or unsatisfied its dependants are queued
    /// for `settle`.
    fn propagate_targets(&mut self, targets: BTreeMap<Vec<u8>, i64>) -> Result<(), StoreError> {
        for (t, delta) in targets {
            if delta == 0 {
                continue;
            }
            let flips = if t[0] == b'g' {
                let (o, n) = self.bump(Space::GroupIncomplete, t[1..].to_vec(), delta)?;
                (o == 0) != (n == 0)
            } else {
                true
            };
            if flips {
                let sign = delta.signum();
                for d in self.dependants_of(&t)? {
                    self.pending.push((d, sign));
                }
            }
        }
        Ok(())
    }

    pub(super) fn make_ready(&mut self, job: &mut Job) -> Result<(), StoreError> {
        let stats = self.req_stats(job.spec.effective_req_grp())?;
        job.effective = learn::effective(&job.spec, stats.as_ref());
        job.sched_group = learn::sched_group(&job.effective, &job.spec);
        job.seq = self.meta.next_seq;
        self.meta.next_seq += 1;
        job.state = JobState::Ready;
        self.woken.insert(job.sched_group.clone());
        Ok(())
    }

    /// Puts a job back in the queue: dependent if it waits, delayed if `delay_ms` > 0, else
    /// ready.
    pub(super) fn requeue(&mut self, job: &mut Job, delay_ms: u64) -> Result<(), StoreError> {
        if job.waiting > 0 {
            job.state = JobState::Dependent;
        } else if delay_ms > 0 {
            job.state = JobState::Delayed {
                until_ms: self.now().saturating_add(delay_ms),
            };
        } else {
            self.make_ready(job)?;
        }
        Ok(())
    }

    pub(super) fn save(&mut self, old: &Job, new: &Job) -> Result<(), StoreError> {
        self.write_job(Some(old), Some(new))?;
        self.settle()
    }
}
