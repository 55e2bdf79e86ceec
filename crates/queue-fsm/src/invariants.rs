//! `check_invariants()`: recomputes every index and aggregate from the job table and compares
//! them with what is stored. O(jobs); tests run it after every apply.

use crate::ctx::{entries_of_job, LimitState};
use crate::fsm::{decode, Fsm};
use crate::ids::JobKey;
use crate::job::{Dependency, Job, JobState};
use crate::keys;
use crate::store::{Space, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// Spaces whose entries derive one-to-one from jobs.
const DERIVED: [Space; 6] = [
    Space::Ready,
    Space::Timers,
    Space::ByRep,
    Space::ByState,
    Space::DepMembers,
    Space::Dependants,
];

fn err(msg: String) -> StoreError {
    StoreError::Corrupt(format!("invariant broken: {msg}"))
}

/// What the job table says every index and aggregate must hold.
#[derive(Default)]
struct Expected {
    entries: BTreeSet<(Space, Vec<u8>, Vec<u8>)>,
    counts: BTreeMap<Vec<u8>, u64>,
    sched: BTreeMap<Vec<u8>, u64>,
    group_incomplete: BTreeMap<Vec<u8>, u64>,
    held: BTreeMap<String, u64>,
    env_refs: BTreeMap<[u8; 32], u64>,
}

impl<S: Store> Fsm<S> {
    /// Verifies that every index agrees with the job table, each held job has one live fence,
    /// waiting counts match the dependency graph, and the counters are consistent.
    pub fn check_invariants(&self) -> Result<(), StoreError> {
        let jobs = self.checked_jobs()?;
        let mut want = self.expected_from(&jobs)?;
        check_waiting(&jobs, &want.group_incomplete)?;
        self.check_entries(&want.entries)?;
        self.check_counters(&want)?;
        self.check_limits(std::mem::take(&mut want.held))?;
        self.check_env(&want.env_refs)?;
        self.check_requests()
    }

    /// The job table, each job checked to be stored under the key its essence hashes to.
    fn checked_jobs(&self) -> Result<BTreeMap<JobKey, Job>, StoreError> {
        let mut jobs: BTreeMap<JobKey, Job> = BTreeMap::new();
        for r in self.store.scan(Space::Jobs, b"", b"") {
            let (k, v) = r?;
            let key = keys::decode_job_key(&k)?;
            let job: Job = decode("job", &v)?;
            if job.key != key {
                return Err(err(format!(
                    "job stored under {key} says it is {}",
                    job.key
                )));
            }
            if job.spec.key() != key {
                return Err(err(format!(
                    "job {key}: its essence hashes to {}",
                    job.spec.key()
                )));
            }
            jobs.insert(key, job);
        }
        Ok(jobs)
    }

    /// Recomputes indexes and aggregates from the jobs; checks on the way that ready
    /// sequence numbers and fences are unique and were issued.
    fn expected_from(&self, jobs: &BTreeMap<JobKey, Job>) -> Result<Expected, StoreError> {
        let mut want = Expected::default();
        let mut fences = BTreeSet::new();
        let mut seqs = BTreeSet::new();
        for job in jobs.values() {
            want.entries.extend(entries_of_job(job));
            *want
                .counts
                .entry(keys::counts(&job.spec.rep_grp, job.state.name()))
                .or_default() += 1;
            if job.state == JobState::Ready {
                *want
                    .sched
                    .entry(job.sched_group.as_bytes().to_vec())
                    .or_default() += 1;
                if !seqs.insert(job.seq) || job.seq >= self.meta.next_seq {
                    return Err(err(format!(
                        "job {}: ready seq {} reused or unissued",
                        job.key, job.seq
                    )));
                }
            }
            if let Some(r) = job.state.reservation() {
                if !fences.insert(r.fence) || r.fence.0 >= self.meta.next_fence {
                    return Err(err(format!(
                        "job {}: fence {} reused or unissued",
                        job.key, r.fence
                    )));
                }
                let names: BTreeSet<&str> = job.spec.limit_names().collect();
                for n in names {
                    *want.held.entry(n.to_string()).or_default() += 1;
                }
            }
            if let Some(h) = job.env_hash {
                *want.env_refs.entry(h).or_default() += 1;
            }
            if !job.is_complete() {
                let mut gs: Vec<&String> = job.spec.dep_grps.iter().collect();
                gs.dedup();
                for g in gs {
                    *want
                        .group_incomplete
                        .entry(keys::name_prefix(g))
                        .or_default() += 1;
                }
            }
        }
        Ok(want)
    }

    /// The derived keyspaces hold exactly the entries the jobs imply.
    fn check_entries(
        &self,
        expected: &BTreeSet<(Space, Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut actual = BTreeSet::new();
        for s in DERIVED {
            for r in self.store.scan(s, b"", b"") {
                let (k, v) = r?;
                actual.insert((s, k, v));
            }
        }
        if let Some(e) = expected.symmetric_difference(&actual).next() {
            let side = if expected.contains(e) {
                "missing"
            } else {
                "stray"
            };
            return Err(err(format!("{side} {} index entry {:?}", e.0.name(), e.1)));
        }
        Ok(())
    }

    fn counters(&self, s: Space) -> Result<BTreeMap<Vec<u8>, u64>, StoreError> {
        let mut m = BTreeMap::new();
        for r in self.store.scan(s, b"", b"") {
            let (k, v) = r?;
            m.insert(k, keys::decode_u64(&v)?);
        }
        Ok(m)
    }

    fn check_counters(&self, want: &Expected) -> Result<(), StoreError> {
        if self.counters(Space::Counts)? != want.counts {
            return Err(err(
                "counts per rep group and state disagree with the jobs".into()
            ));
        }
        if self.counters(Space::SchedReady)? != want.sched {
            return Err(err(
                "ready counts per scheduler group disagree with the jobs".into(),
            ));
        }
        if self.counters(Space::GroupIncomplete)? != want.group_incomplete {
            return Err(err(
                "incomplete counts per dep group disagree with the jobs".into(),
            ));
        }
        Ok(())
    }

    /// Each limit group's held slots equal the jobs holding one.
    fn check_limits(&self, mut held: BTreeMap<String, u64>) -> Result<(), StoreError> {
        for r in self.store.scan(Space::Limits, b"", b"") {
            let (k, v) = r?;
            let l: LimitState = decode("limit", &v)?;
            let name = String::from_utf8_lossy(&k).into_owned();
            let want = held.remove(&name).unwrap_or(0);
            if l.held != want {
                return Err(err(format!(
                    "limit group {name} holds {} slots; jobs hold {want}",
                    l.held
                )));
            }
        }
        if let Some((name, _)) = held.into_iter().next() {
            return Err(err(format!(
                "limit group {name} has held slots but no record"
            )));
        }
        Ok(())
    }

    /// Environment reference counts equal the jobs using each, and every counted
    /// environment has its blob (and no blob is left without a count).
    fn check_env(&self, env_refs: &BTreeMap<[u8; 32], u64>) -> Result<(), StoreError> {
        let mut refs = BTreeMap::new();
        let mut blobs = BTreeSet::new();
        for r in self.store.scan(Space::Env, b"", b"") {
            let (k, v) = r?;
            if k.len() == 32 {
                blobs.insert(k);
            } else {
                let mut h = [0u8; 32];
                h.copy_from_slice(&k[..32]);
                refs.insert(h, keys::decode_u64(&v)?);
            }
        }
        if refs != *env_refs {
            return Err(err(
                "environment reference counts disagree with the jobs".into()
            ));
        }
        if blobs.len() != refs.len() || refs.keys().any(|h| !blobs.contains(h.as_slice())) {
            return Err(err("environment blobs and references disagree".into()));
        }
        Ok(())
    }

    fn check_requests(&self) -> Result<(), StoreError> {
        let stored = self.store.scan(Space::Requests, b"", b"").count() as u64;
        let expiries = self.store.scan(Space::RequestExpiry, b"", b"").count() as u64;
        if stored != self.meta.requests_stored || expiries != stored {
            return Err(err(format!(
                "request table: {stored} responses, {expiries} expiries, meta says {}",
                self.meta.requests_stored
            )));
        }
        Ok(())
    }
}

/// Waiting counts equal the graph's, and a queued job is dependent exactly when it waits.
fn check_waiting(
    jobs: &BTreeMap<JobKey, Job>,
    group_incomplete: &BTreeMap<Vec<u8>, u64>,
) -> Result<(), StoreError> {
    for job in jobs.values() {
        let mut waiting = 0;
        for d in &job.spec.deps {
            let unsatisfied = match d {
                Dependency::Group(g) => group_incomplete.contains_key(&keys::name_prefix(g)),
                Dependency::Job(k) => jobs.get(k).is_some_and(|j| !j.is_complete()),
            };
            waiting += unsatisfied as u32;
        }
        if waiting != job.waiting {
            return Err(err(format!(
                "job {} waits on {} dependencies; the graph says {waiting}",
                job.key, job.waiting
            )));
        }
        let ok = match job.state {
            JobState::Dependent => waiting > 0,
            JobState::Ready | JobState::Delayed { .. } | JobState::Complete => waiting == 0,
            _ => true,
        };
        if !ok {
            return Err(err(format!(
                "job {} is {} with {waiting} unsatisfied dependencies",
                job.key,
                job.state.name()
            )));
        }
    }
    Ok(())
}
