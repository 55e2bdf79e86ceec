//! Model-based property test of the queue state machine.
//!
//! Random command sequences are applied both to the real `Fsm<MemStore>` and to a small
//! reference model written from the semantics documented in `lib.rs`. After every apply:
//! - `check_invariants()` must pass;
//! - the response must be the one the model predicts (refusals included);
//! - every job of the pool must be in the state the model says (with its fence, lease,
//!   delay, retries left, attempts and spec), and the per-state counts, ready counts per
//!   scheduler group, next deadline, clock, reserving mode and next fence must agree;
//! - the woken scheduler groups must include every group that gained a ready job.
//!
//! Commands: Add (pool of 8 commands, priorities 0/10/255, retries 0..=2, ignore_complete,
//! return_keys, dep groups "a"/"b", dependencies on those groups or on pool keys, so cycles
//! are refused now and then), Reserve (any group, either scheduler group, an unknown one;
//! sometimes an invalid TTR), Started, Touch, Archive, Release, Bury (with live, stale or
//! mismatched fences), Kick, Delete, Kill, Modify (priority/retries), Tick, RenewLeases,
//! SetReserving, and repeats of earlier request ids (within and past the request TTL).
//! Time advances by random steps between commands.
//!
//! The model is deliberately naive: jobs live in a `BTreeMap` keyed by their index in the
//! pool, whether a dependency is satisfied is recomputed from scratch every time, and nothing
//! is indexed. Where the semantics leave an order open (several jobs that become ready in one
//! command, e.g. in a Tick or as the dependants of an archived job), the model gives them one
//! shared FIFO position and accepts any of them from Reserve.
//!
//! Every job uses `Override::User` and no limit groups, so its scheduler group follows from
//! its own requirements alone (0 or 1000 milli-cores) and learning from archived runs cannot
//! move it. Not modelled: limit groups, learning, RAM/time fail reasons, Modify of anything
//! but priority and retries, several commands in one entry.

use proptest::prelude::*;
use queue_fsm::learn::sched_group;
use queue_fsm::{
    AddJobs, Command, CommandError, Dependency, FenceToken, Fsm, FsmConfig, JobChange, JobKey,
    JobSpec, JobState, MemStore, NoJob, Outcome, Override, Request, RequestId, Reservation,
    ReserveMode, Response, RunReport, RunnerId, Skip, StateName,
};
use std::collections::{BTreeMap, BTreeSet};

// ---- configuration ---------------------------------------------------------------------------

/// Distinct commands; Adds pick among them, so duplicates and "existed" are common.
const POOL: usize = 8;
const RELEASE_DELAY_MS: u64 = 1_000;
const MAX_RELEASE_DELAY_MS: u64 = 4_000;
const LOST_RETURN_DELAY_MS: u64 = 2_000;
const MIN_TTR_MS: u64 = 1_000;
const MAX_TTR_MS: u64 = 24 * 3600 * 1000;
/// The shortest TTL the config allows; sequences run for minutes of FSM time, so stored
/// responses expire and are pruned during a run.
const REQUEST_TTL_MS: u64 = 60_000;

fn config() -> FsmConfig {
    FsmConfig {
        release_delay_ms: RELEASE_DELAY_MS,
        max_release_delay_ms: MAX_RELEASE_DELAY_MS,
        lost_return_delay_ms: LOST_RETURN_DELAY_MS,
        request_ttl_ms: REQUEST_TTL_MS,
        ..FsmConfig::default()
    }
}

fn cmd_of(i: usize) -> String {
    format!("job {i}")
}

fn key_of(i: usize) -> JobKey {
    JobKey::of(&cmd_of(i), "", false, "")
}

fn index_of(key: &JobKey) -> Option<usize> {
    (0..POOL).find(|&i| key_of(i) == *key)
}

/// The scheduler group of a job (its requirements are the user's: `Override::User`).
fn group_of(spec: &JobSpec) -> String {
    sched_group(&spec.requirements, spec)
}

/// The scheduler groups the generator can produce, plus one that no job is in.
fn group_names() -> [String; 3] {
    let mut big = JobSpec::new("x");
    big.override_mode = Override::User;
    big.requirements.cores_milli = 1000;
    let mut small = big.clone();
    small.requirements.cores_milli = 0;
    [
        group_of(&small),
        group_of(&big),
        "no-such-group".to_string(),
    ]
}

/// Whether job `x` has a dependency on job `y` (index `yi`): on its key or one of its dep
/// groups, whatever their states.
fn depends_on(x: &JobSpec, yi: usize, y: &JobSpec) -> bool {
    x.deps.iter().any(|d| match d {
        Dependency::Job(k) => *k == key_of(yi),
        Dependency::Group(g) => y.dep_grps.contains(g),
    })
}

// ---- the model -------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct Lease {
    runner: u128,
    fence: u64,
    ttr_ms: u64,
    until_ms: u64,
    kill: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum St {
    Dependent,
    Delayed(u64),
    /// With the job's FIFO position (shared by jobs that became ready together).
    Ready(u64),
    Reserved(Lease),
    Running(Lease),
    Lost {
        lease: Lease,
        started: bool,
        return_ms: u64,
    },
    Buried,
    Complete,
}

impl St {
    fn name(&self) -> StateName {
        match self {
            St::Dependent => StateName::Dependent,
            St::Delayed(_) => StateName::Delayed,
            St::Ready(_) => StateName::Ready,
            St::Reserved(_) => StateName::Reserved,
            St::Running(_) => StateName::Running,
            St::Lost { .. } => StateName::Lost,
            St::Buried => StateName::Buried,
            St::Complete => StateName::Complete,
        }
    }

    fn lease(&self) -> Option<&Lease> {
        match self {
            St::Reserved(l) | St::Running(l) | St::Lost { lease: l, .. } => Some(l),
            _ => None,
        }
    }

    fn deadline(&self) -> Option<u64> {
        match self {
            St::Delayed(t) => Some(*t),
            St::Reserved(l) | St::Running(l) => Some(l.until_ms),
            St::Lost { return_ms, .. } => Some(*return_ms),
            _ => None,
        }
    }

    fn to_fsm(&self) -> JobState {
        let res = |l: &Lease| Reservation {
            runner: RunnerId(l.runner),
            fence: FenceToken(l.fence),
            ttr_ms: l.ttr_ms,
            lease_until_ms: l.until_ms,
            kill_requested: l.kill,
        };
        match self {
            St::Dependent => JobState::Dependent,
            St::Delayed(t) => JobState::Delayed { until_ms: *t },
            St::Ready(_) => JobState::Ready,
            St::Reserved(l) => JobState::Reserved(res(l)),
            St::Running(l) => JobState::Running(res(l)),
            St::Lost {
                lease,
                started,
                return_ms,
            } => JobState::Lost {
                held: res(lease),
                started: *started,
                return_ms: *return_ms,
            },
            St::Buried => JobState::Buried,
            St::Complete => JobState::Complete,
        }
    }
}

#[derive(Clone, Debug)]
struct MJob {
    spec: JobSpec,
    state: St,
    /// Times the job entered running.
    attempts: u32,
    /// Releases after a run left before the job is buried.
    until_buried: u8,
}

#[derive(Clone, Debug)]
struct Model {
    now: u64,
    jobs: BTreeMap<usize, MJob>,
    next_fence: u64,
    next_seq: u64,
    mode: ReserveMode,
    /// Scheduler groups in which a job became ready during the current command.
    woken: BTreeSet<String>,
    /// Every reservation handed out: (job index, fence).
    issued: Vec<(usize, u64)>,
}

fn expect(got: &Outcome, want: Outcome) -> Result<(), String> {
    if *got == want {
        Ok(())
    } else {
        Err(format!("expected {want:?}, got {got:?}"))
    }
}

impl Model {
    fn new() -> Model {
        Model {
            now: 0,
            jobs: BTreeMap::new(),
            next_fence: 1,
            next_seq: 1,
            mode: ReserveMode::Open,
            woken: BTreeSet::new(),
            issued: Vec::new(),
        }
    }

    fn fresh_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    fn unsatisfied(&self, d: &Dependency) -> bool {
        match d {
            Dependency::Group(g) => self
                .jobs
                .values()
                .any(|j| j.state != St::Complete && j.spec.dep_grps.contains(g)),
            Dependency::Job(k) => index_of(k)
                .and_then(|i| self.jobs.get(&i))
                .is_some_and(|j| j.state != St::Complete),
        }
    }

    fn waits(&self, i: usize) -> bool {
        self.jobs[&i].spec.deps.iter().any(|d| self.unsatisfied(d))
    }

    fn job(&mut self, i: usize) -> &mut MJob {
        self.jobs.get_mut(&i).expect("model job")
    }

    fn make_ready(&mut self, i: usize, seq: u64) {
        let g = group_of(&self.jobs[&i].spec);
        self.woken.insert(g);
        self.job(i).state = St::Ready(seq);
    }

    /// Back to the queue: dependent if it waits, else delayed or ready.
    fn requeue(&mut self, i: usize, delay_ms: u64, seq: u64) {
        if self.waits(i) {
            self.job(i).state = St::Dependent;
        } else if delay_ms > 0 {
            let until = self.now + delay_ms;
            self.job(i).state = St::Delayed(until);
        } else {
            self.make_ready(i, seq);
        }
    }

    /// Live dependencies: queued jobs (and completed ones) whose dependencies became
    /// unsatisfied wait; dependent jobs whose dependencies are all satisfied become ready (all
    /// at the same FIFO position). Held and buried jobs keep their state.
    fn settle(&mut self) {
        let seq = self.fresh_seq();
        loop {
            let mut changed = false;
            let idx: Vec<usize> = self.jobs.keys().copied().collect();
            for i in idx {
                let waits = self.waits(i);
                let retries = self.jobs[&i].spec.retries;
                match self.jobs[&i].state {
                    St::Ready(_) | St::Delayed(_) if waits => {
                        self.job(i).state = St::Dependent;
                        changed = true;
                    }
                    St::Complete if waits => {
                        // It runs again after the new dependency, with its retries back.
                        let j = self.job(i);
                        j.state = St::Dependent;
                        j.until_buried = retries + 1;
                        changed = true;
                    }
                    St::Dependent if !waits => {
                        self.make_ready(i, seq);
                        changed = true;
                    }
                    _ => {}
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// The release delay: doubled with each attempt, capped.
    fn release_delay(attempts: u32) -> u64 {
        let shift = attempts.saturating_sub(1).min(20);
        (RELEASE_DELAY_MS << shift).min(MAX_RELEASE_DELAY_MS)
    }

    /// The job, if `fence` is its current reservation's; else the refusal.
    fn fenced(&self, key: JobKey, fence: FenceToken) -> Result<usize, CommandError> {
        let Some(i) = index_of(&key).filter(|i| self.jobs.contains_key(i)) else {
            return Err(CommandError::NotFound { key });
        };
        let current = self.jobs[&i].state.lease().map(|l| FenceToken(l.fence));
        if current == Some(fence) {
            Ok(i)
        } else {
            Err(CommandError::StaleFence {
                key,
                presented: fence,
                current,
            })
        }
    }

    /// `fenced`, checking the FSM refused the same way when the model refuses.
    fn fenced_or_refused(
        &self,
        key: JobKey,
        fence: FenceToken,
        got: &Outcome,
    ) -> Result<Option<usize>, String> {
        match self.fenced(key, fence) {
            Ok(i) => Ok(Some(i)),
            Err(e) => expect(got, Err(e)).map(|_| None),
        }
    }

    /// Whether adding `spec` as job `i` (replacing any job `i`) would make `i` wait on itself.
    fn closes_cycle(&self, i: usize, spec: &JobSpec) -> bool {
        let mut specs: BTreeMap<usize, &JobSpec> =
            self.jobs.iter().map(|(k, j)| (*k, &j.spec)).collect();
        specs.insert(i, spec);
        let mut seen = BTreeSet::new();
        let mut stack = vec![i];
        while let Some(x) = stack.pop() {
            for (&y, ys) in &specs {
                if depends_on(specs[&x], y, ys) {
                    if y == i {
                        return true;
                    }
                    if seen.insert(y) {
                        stack.push(y);
                    }
                }
            }
        }
        false
    }

    /// Predicts `cmd`, checks the FSM's outcome `got` against the prediction, and advances
    /// the model (using the FSM's choice where the semantics allow several). Returns whether
    /// the command took effect (false: refused, the model must be left as it was).
    fn exec(&mut self, cmd: &Command, got: &Outcome) -> Result<bool, String> {
        match cmd {
            Command::Add(a) => {
                let (mut added, mut existed) = (0, 0);
                for (index, spec) in a.jobs.iter().enumerate() {
                    let i = index_of(&spec.key()).expect("pool job");
                    match self.jobs.get(&i) {
                        Some(j) if j.state != St::Complete || a.ignore_complete => existed += 1,
                        old => {
                            if self.closes_cycle(i, spec) {
                                // Refused, naming a cycle from the new job back to itself.
                                let me = key_of(i).to_string();
                                return match got {
                                    Err(CommandError::Cycle { index: gi, cycle })
                                        if *gi == index
                                            && cycle.len() >= 3
                                            && cycle[0].contains(&me)
                                            && cycle[cycle.len() - 1].contains(&me) =>
                                    {
                                        Ok(false)
                                    }
                                    _ => {
                                        Err(format!("expected a cycle at job {index}, got {got:?}"))
                                    }
                                };
                            }
                            let attempts = old.map_or(0, |j| j.attempts);
                            self.jobs.insert(
                                i,
                                MJob {
                                    spec: spec.clone(),
                                    state: St::Dependent,
                                    attempts,
                                    until_buried: spec.retries + 1,
                                },
                            );
                            let seq = self.fresh_seq();
                            self.requeue(i, 0, seq);
                            self.settle();
                            added += 1;
                        }
                    }
                }
                let keys = if a.return_keys {
                    a.jobs.iter().map(JobSpec::key).collect()
                } else {
                    Vec::new()
                };
                expect(
                    got,
                    Ok(Response::Added {
                        added,
                        existed,
                        keys,
                    }),
                )?;
                Ok(true)
            }
            Command::Reserve {
                runner,
                group,
                ttr_ms,
            } => {
                if !(MIN_TTR_MS..=MAX_TTR_MS).contains(ttr_ms) {
                    return match got {
                        Err(CommandError::Invalid { field, .. }) if field == "ttr_ms" => Ok(false),
                        _ => Err(format!("expected an invalid ttr_ms, got {got:?}")),
                    };
                }
                match self.mode {
                    ReserveMode::Open => {}
                    ReserveMode::Paused => {
                        expect(got, Ok(Response::NoJob(NoJob::Paused)))?;
                        return Ok(true);
                    }
                    ReserveMode::Draining => {
                        expect(got, Ok(Response::NoJob(NoJob::Draining)))?;
                        return Ok(true);
                    }
                }
                // Highest priority first, then the earliest FIFO position.
                let ready: Vec<(usize, u8, u64)> = self
                    .jobs
                    .iter()
                    .filter(|(_, j)| group.as_ref().is_none_or(|g| *g == group_of(&j.spec)))
                    .filter_map(|(i, j)| match j.state {
                        St::Ready(seq) => Some((*i, j.spec.priority, seq)),
                        _ => None,
                    })
                    .collect();
                let Some(best) = ready.iter().map(|r| (std::cmp::Reverse(r.1), r.2)).min() else {
                    expect(got, Ok(Response::NoJob(NoJob::NoneReady)))?;
                    return Ok(true);
                };
                let candidates: Vec<usize> = ready
                    .iter()
                    .filter(|r| (std::cmp::Reverse(r.1), r.2) == best)
                    .map(|r| r.0)
                    .collect();
                let Ok(Response::Reserved { job, fence }) = got else {
                    return Err(format!(
                        "expected one of jobs {candidates:?} reserved, got {got:?}"
                    ));
                };
                let i = index_of(&job.key)
                    .filter(|i| candidates.contains(i))
                    .ok_or_else(|| {
                        format!(
                            "reserved {:?}; expected one of jobs {candidates:?}",
                            job.key
                        )
                    })?;
                if *fence != FenceToken(self.next_fence) {
                    return Err(format!("fence {fence:?}; expected {}", self.next_fence));
                }
                let st = St::Reserved(Lease {
                    runner: runner.0,
                    fence: self.next_fence,
                    ttr_ms: *ttr_ms,
                    until_ms: self.now + ttr_ms,
                    kill: false,
                });
                if job.state != st.to_fsm() {
                    return Err(format!(
                        "reserved job's state {:?}; expected {st:?}",
                        job.state
                    ));
                }
                self.issued.push((i, self.next_fence));
                self.next_fence += 1;
                self.job(i).state = st;
                Ok(true)
            }
            Command::Started { key, fence, .. } => {
                let Some(i) = self.fenced_or_refused(*key, *fence, got)? else {
                    return Ok(false);
                };
                let now = self.now;
                let j = self.job(i);
                let (mut lease, first) = match j.state.clone() {
                    St::Reserved(l) => (l, true),
                    St::Running(l) => (l, false),
                    St::Lost { lease, started, .. } => (lease, !started),
                    s => unreachable!("fenced job in {s:?}"),
                };
                lease.until_ms = now + lease.ttr_ms;
                if first {
                    j.attempts += 1;
                }
                j.state = St::Running(lease);
                expect(got, Ok(Response::Ok))?;
                Ok(true)
            }
            Command::Touch { key, fence } => {
                let Some(i) = self.fenced_or_refused(*key, *fence, got)? else {
                    return Ok(false);
                };
                let now = self.now;
                let j = self.job(i);
                let (mut lease, running) = match j.state.clone() {
                    St::Reserved(l) => (l, false),
                    St::Running(l) => (l, true),
                    // The runner came back: its reservation is live again.
                    St::Lost { lease, started, .. } => (lease, started),
                    s => unreachable!("fenced job in {s:?}"),
                };
                lease.until_ms = now + lease.ttr_ms;
                let kill = lease.kill;
                j.state = if running {
                    St::Running(lease)
                } else {
                    St::Reserved(lease)
                };
                expect(got, Ok(Response::Touched { kill }))?;
                Ok(true)
            }
            Command::Archive { key, fence, .. } => {
                let Some(i) = self.fenced_or_refused(*key, *fence, got)? else {
                    return Ok(false);
                };
                // A dependency that appeared while it ran makes it run again after that.
                self.job(i).state = if self.waits(i) {
                    St::Dependent
                } else {
                    St::Complete
                };
                self.settle();
                expect(got, Ok(Response::Ok))?;
                Ok(true)
            }
            Command::Release(queue_fsm::HandBack { key, fence, .. }) => {
                let Some(i) = self.fenced_or_refused(*key, *fence, got)? else {
                    return Ok(false);
                };
                let j = self.job(i);
                let ran = matches!(j.state, St::Running(_) | St::Lost { started: true, .. });
                let mut buried = false;
                if ran {
                    j.until_buried = j.until_buried.saturating_sub(1);
                    buried = j.until_buried == 0;
                }
                if buried {
                    j.state = St::Buried;
                } else {
                    let delay = Self::release_delay(j.attempts);
                    let seq = self.fresh_seq();
                    self.requeue(i, delay, seq);
                }
                self.settle();
                let state = self.jobs[&i].state.name();
                expect(got, Ok(Response::Released { state }))?;
                Ok(true)
            }
            Command::Bury(queue_fsm::HandBack { key, fence, .. }) => {
                let Some(i) = self.fenced_or_refused(*key, *fence, got)? else {
                    return Ok(false);
                };
                self.job(i).state = St::Buried;
                self.settle();
                expect(got, Ok(Response::Ok))?;
                Ok(true)
            }
            Command::Kick { keys } => {
                let mut n = 0;
                for key in keys {
                    let Some(i) = index_of(key).filter(|i| self.jobs.contains_key(i)) else {
                        continue;
                    };
                    if self.jobs[&i].state != St::Buried {
                        continue;
                    }
                    let j = self.job(i);
                    j.until_buried = j.spec.retries + 1;
                    let seq = self.fresh_seq();
                    self.requeue(i, 0, seq);
                    n += 1;
                }
                self.settle();
                expect(got, Ok(Response::Count(n)))?;
                Ok(true)
            }
            Command::Kill { keys } => {
                let mut n = 0;
                for key in keys {
                    let Some(i) = index_of(key).filter(|i| self.jobs.contains_key(i)) else {
                        continue;
                    };
                    let j = self.job(i);
                    match &mut j.state {
                        St::Reserved(l) | St::Running(l) => l.kill = true,
                        St::Lost { .. } => j.state = St::Buried,
                        _ => continue,
                    }
                    n += 1;
                }
                self.settle();
                expect(got, Ok(Response::Count(n)))?;
                Ok(true)
            }
            Command::Delete { keys } => self.delete(keys, got),
            Command::Modify { keys, change } => {
                let mut modified = Vec::new();
                let mut skipped = Vec::new();
                for key in keys {
                    let i = index_of(key).expect("pool key");
                    match self.jobs.get(&i).map(|j| j.state.name()) {
                        None => skipped.push((*key, Skip::NotFound)),
                        Some(s @ (StateName::Reserved | StateName::Running | StateName::Lost)) => {
                            skipped.push((*key, Skip::Held(s)))
                        }
                        Some(StateName::Complete) => skipped.push((*key, Skip::Complete)),
                        Some(_) => {
                            // Taken out and put back with the new description: dependants
                            // may be freed meanwhile, and a ready job gets a new FIFO place.
                            let mut job = self.jobs.remove(&i).expect("model job");
                            self.settle();
                            if let Some(p) = change.priority {
                                job.spec.priority = p;
                            }
                            if let Some(r) = change.retries {
                                job.spec.retries = r;
                                job.until_buried = r + 1;
                            }
                            let old = std::mem::replace(&mut job.state, St::Dependent);
                            self.jobs.insert(i, job);
                            match old {
                                St::Buried => self.job(i).state = St::Buried,
                                // A delay keeps what is left of it.
                                St::Delayed(until) => {
                                    let seq = self.fresh_seq();
                                    self.requeue(i, until.saturating_sub(self.now), seq);
                                }
                                _ => {
                                    let seq = self.fresh_seq();
                                    self.requeue(i, 0, seq);
                                }
                            }
                            self.settle();
                            modified.push((*key, *key));
                        }
                    }
                }
                expect(got, Ok(Response::Modified { modified, skipped }))?;
                Ok(true)
            }
            Command::Tick => {
                let now = self.now;
                let due: Vec<usize> = self
                    .jobs
                    .iter()
                    .filter(|(_, j)| j.state.deadline().is_some_and(|d| d <= now))
                    .map(|(i, _)| *i)
                    .collect();
                let seq = self.fresh_seq();
                let (mut expired, mut returned, mut ended) = (0, 0, 0);
                for i in due {
                    let j = self.job(i);
                    match j.state.clone() {
                        St::Delayed(_) => {
                            self.requeue(i, 0, seq);
                            ended += 1;
                        }
                        St::Reserved(lease) | St::Running(lease) => {
                            let started = matches!(j.state, St::Running(_));
                            j.state = St::Lost {
                                lease,
                                started,
                                return_ms: now + LOST_RETURN_DELAY_MS,
                            };
                            expired += 1;
                        }
                        St::Lost { started, .. } => {
                            returned += 1;
                            // Back to the queue; a started run used up a try.
                            if started {
                                j.until_buried = j.until_buried.saturating_sub(1);
                                if j.until_buried == 0 {
                                    j.state = St::Buried;
                                    continue;
                                }
                            }
                            self.requeue(i, 0, seq);
                        }
                        s => unreachable!("deadline in {s:?}"),
                    }
                }
                self.settle();
                expect(
                    got,
                    Ok(Response::Ticked {
                        leases_expired: expired,
                        lost_returned: returned,
                        delays_ended: ended,
                    }),
                )?;
                Ok(true)
            }
            Command::RenewLeases => {
                let now = self.now;
                let mut n = 0;
                for j in self.jobs.values_mut() {
                    if let St::Reserved(l) | St::Running(l) = &mut j.state {
                        l.until_ms = now + l.ttr_ms;
                        n += 1;
                    }
                }
                expect(got, Ok(Response::Renewed(n)))?;
                Ok(true)
            }
            Command::SetReserving { mode } => {
                self.mode = *mode;
                expect(got, Ok(Response::Ok))?;
                Ok(true)
            }
            other => unreachable!("not generated: {other:?}"),
        }
    }

    fn delete(&mut self, keys: &[JobKey], got: &Outcome) -> Result<bool, String> {
        let mut set: Vec<usize> = Vec::new();
        let mut skipped: Vec<(JobKey, Skip)> = Vec::new();
        for key in keys {
            let i = index_of(key).expect("pool key");
            if set.contains(&i) {
                continue;
            }
            match self.jobs.get(&i).map(|j| j.state.name()) {
                None => skipped.push((*key, Skip::NotFound)),
                Some(s @ (StateName::Reserved | StateName::Running | StateName::Lost)) => {
                    skipped.push((*key, Skip::Held(s)))
                }
                Some(StateName::Complete) => skipped.push((*key, Skip::Complete)),
                Some(_) => set.push(i),
            }
        }
        // Keep only jobs no job outside the set depends on (to a fixpoint: keeping one can
        // strand those it depends on).
        let mut dropped: Vec<usize> = Vec::new();
        loop {
            let kept: Vec<usize> = set
                .iter()
                .copied()
                .filter(|x| {
                    self.jobs.iter().any(|(y, yj)| {
                        !set.contains(y) && depends_on(&yj.spec, *x, &self.jobs[x].spec)
                    })
                })
                .collect();
            if kept.is_empty() {
                break;
            }
            set.retain(|x| !kept.contains(x));
            dropped.extend(kept);
        }
        let Ok(Response::Deleted {
            deleted,
            skipped: got_skipped,
        }) = got
        else {
            return Err(format!("expected Deleted, got {got:?}"));
        };
        let fail = |why: &str| {
            Err(format!(
                "{why}: expected {} deleted, skipped {skipped:?} then jobs {dropped:?} for \
                 dependants; got {got:?}",
                set.len()
            ))
        };
        if *deleted != set.len() as u64
            || got_skipped.len() != skipped.len() + dropped.len()
            || got_skipped[..skipped.len()] != skipped[..]
        {
            return fail("wrong deletions");
        }
        let mut named = BTreeSet::new();
        for (key, skip) in &got_skipped[skipped.len()..] {
            let x = index_of(key).expect("pool key");
            let Skip::HasDependant(d) = skip else {
                return fail("wrong skip reason");
            };
            // The dependant named must exist, stay, and depend on the job.
            let ok = index_of(d).is_some_and(|y| {
                !set.contains(&y)
                    && self.jobs.contains_key(&y)
                    && depends_on(&self.jobs[&y].spec, x, &self.jobs[&x].spec)
            });
            if !ok || !dropped.contains(&x) || !named.insert(x) {
                return fail("wrong dependant skip");
            }
        }
        // One at a time, in the order given: a dependant freed by one deletion becomes ready
        // (and wakes its group) before the next is deleted.
        for i in &set {
            self.jobs.remove(i);
            self.settle();
        }
        Ok(true)
    }
}

// ---- generated steps -------------------------------------------------------------------------

/// Which (job, fence) a fenced command presents, resolved against the state when it runs.
#[derive(Clone, Debug)]
enum FenceRef {
    /// A live reservation (reserved, running or lost), if any.
    Live(usize),
    /// Any reservation ever handed out, most of them stale.
    Issued(usize),
    /// A fence handed out, presented for some pool job (usually not its own).
    Mismatch(usize, usize),
}

#[derive(Clone, Debug)]
enum Op {
    Add {
        jobs: Vec<JobSpec>,
        ignore_complete: bool,
        return_keys: bool,
        env: bool,
    },
    Reserve {
        runner: u8,
        /// Index into `group_names()`.
        group: Option<usize>,
        ttr_ms: u64,
    },
    Started(FenceRef),
    Touch(FenceRef),
    Archive(FenceRef),
    Release(FenceRef),
    Bury(FenceRef),
    Kick(Vec<usize>),
    Delete(Vec<usize>),
    Kill(Vec<usize>),
    /// Modify the priority and/or retries of these jobs.
    Modify(Vec<usize>, Option<u8>, Option<u8>),
    Tick,
    RenewLeases,
    SetReserving(ReserveMode),
    /// Send an earlier request (with its id) again.
    Repeat(usize),
}

#[derive(Clone, Debug)]
struct Step {
    advance_ms: u64,
    with_id: bool,
    op: Op,
}

fn spec_strategy() -> impl Strategy<Value = JobSpec> {
    let dep_grps = prop_oneof![
        6 => Just(vec![]),
        2 => Just(vec!["a".to_string()]),
        1 => Just(vec!["b".to_string()]),
        1 => Just(vec!["a".to_string(), "b".to_string()]),
    ];
    let group = |g: &str| Dependency::Group(g.to_string());
    let deps = prop_oneof![
        10 => Just(vec![]),
        3 => Just(vec![group("a")]),
        2 => Just(vec![group("b")]),
        2 => (0..POOL).prop_map(|k| vec![Dependency::Job(key_of(k))]),
        1 => (0..POOL).prop_map(move |k| vec![group("a"), Dependency::Job(key_of(k))]),
    ];
    (
        0..POOL,
        priority(),
        0u8..=2,
        prop::bool::weighted(0.25),
        dep_grps,
        deps,
        any::<bool>(),
    )
        .prop_map(|(i, priority, retries, big, dep_grps, deps, rep)| {
            let mut s = JobSpec::new(cmd_of(i));
            s.priority = priority;
            s.retries = retries;
            s.override_mode = Override::User;
            if big {
                s.requirements.cores_milli = 1000;
            }
            if rep {
                s.rep_grp = "r".into();
            }
            s.dep_grps = dep_grps;
            s.deps = deps;
            s
        })
}

fn priority() -> impl Strategy<Value = u8> {
    prop_oneof![3 => Just(0u8), 2 => Just(10u8), 1 => Just(255u8)]
}

fn fence_ref() -> impl Strategy<Value = FenceRef> {
    prop_oneof![
        7 => (0usize..64).prop_map(FenceRef::Live),
        2 => (0usize..64).prop_map(FenceRef::Issued),
        1 => (0..POOL, 0usize..64).prop_map(|(k, n)| FenceRef::Mismatch(k, n)),
    ]
}

fn pool_keys() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..POOL, 1..=3)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (
            prop::collection::vec(spec_strategy(), 1..=3),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(jobs, ignore_complete, return_keys, env)| Op::Add {
                jobs,
                ignore_complete,
                return_keys,
                env,
            }),
        16 => (
            0u8..3,
            prop_oneof![4 => Just(None), 2 => Just(Some(0)), 2 => Just(Some(1)), 1 => Just(Some(2))],
            prop_oneof![8 => Just(1_000u64), 4 => Just(3_000), 3 => Just(10_000), 1 => Just(999)],
        )
            .prop_map(|(runner, group, ttr_ms)| Op::Reserve { runner, group, ttr_ms }),
        8 => fence_ref().prop_map(Op::Started),
        5 => fence_ref().prop_map(Op::Touch),
        8 => fence_ref().prop_map(Op::Archive),
        7 => fence_ref().prop_map(Op::Release),
        2 => fence_ref().prop_map(Op::Bury),
        4 => pool_keys().prop_map(Op::Kick),
        4 => pool_keys().prop_map(Op::Delete),
        3 => pool_keys().prop_map(Op::Kill),
        3 => (pool_keys(), prop::option::of(priority()), prop::option::of(0u8..=2))
            .prop_map(|(keys, p, r)| Op::Modify(keys, p, r)),
        14 => Just(Op::Tick),
        1 => Just(Op::RenewLeases),
        1 => prop_oneof![
            4 => Just(ReserveMode::Open),
            1 => Just(ReserveMode::Paused),
            1 => Just(ReserveMode::Draining),
        ]
        .prop_map(Op::SetReserving),
        4 => (0usize..1000).prop_map(Op::Repeat),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    (
        prop_oneof![
            8 => Just(0u64),
            1 => Just(1),
            3 => Just(500),
            4 => Just(1_000),
            2 => Just(2_000),
            1 => Just(5_000),
        ],
        prop::bool::weighted(0.9),
        op_strategy(),
    )
        .prop_map(|(advance_ms, with_id, op)| Step {
            advance_ms,
            with_id,
            op,
        })
}

// ---- the harness -----------------------------------------------------------------------------

struct Harness {
    fsm: Fsm<MemStore>,
    /// Whether Adds carry the environment they were generated with (else none).
    with_env: bool,
    model: Model,
    now: u64,
    next_id: u128,
    /// Requests sent with an id, and what they got.
    history: Vec<Sent>,
}

#[derive(Clone, Debug)]
struct Sent {
    req: Request,
    outcome: Outcome,
    /// Until then the response must be kept in the request table (it was stored at
    /// `kept_until - REQUEST_TTL_MS`).
    kept_until: u64,
}

fn store_err(e: impl std::fmt::Debug) -> String {
    format!("store error: {e:?}")
}

impl Harness {
    fn new(with_env: bool) -> Harness {
        Harness {
            fsm: Fsm::open(MemStore::default(), config()).expect("open"),
            with_env,
            model: Model::new(),
            now: 1_000,
            next_id: 1,
            history: Vec::new(),
        }
    }

    fn resolve(&self, r: &FenceRef) -> (JobKey, FenceToken) {
        let live: Vec<(usize, u64)> = self
            .model
            .jobs
            .iter()
            .filter_map(|(i, j)| j.state.lease().map(|l| (*i, l.fence)))
            .collect();
        let issued = &self.model.issued;
        match *r {
            FenceRef::Live(n) if !live.is_empty() => {
                let (i, f) = live[n % live.len()];
                (key_of(i), FenceToken(f))
            }
            FenceRef::Live(n) | FenceRef::Issued(n) => match issued.is_empty() {
                true => (key_of(n % POOL), FenceToken(1 + n as u64 % 3)),
                false => {
                    let (i, f) = issued[n % issued.len()];
                    (key_of(i), FenceToken(f))
                }
            },
            FenceRef::Mismatch(k, n) => {
                let f = match issued.is_empty() {
                    true => 1 + n as u64 % 3,
                    false => issued[n % issued.len()].1,
                };
                (key_of(k), FenceToken(f))
            }
        }
    }

    fn command(&self, op: &Op) -> Command {
        let keys = |v: &[usize]| v.iter().map(|&i| key_of(i)).collect::<Vec<_>>();
        let report = || RunReport {
            exited: true,
            wall_ms: 1_000,
            ..RunReport::default()
        };
        match op {
            Op::Add {
                jobs,
                ignore_complete,
                return_keys,
                env,
            } => Command::Add(AddJobs {
                jobs: jobs.clone(),
                env: if *env && self.with_env {
                    vec!["A=1".into()]
                } else {
                    vec![]
                },
                ignore_complete: *ignore_complete,
                return_keys: *return_keys,
            }),
            Op::Reserve {
                runner,
                group,
                ttr_ms,
            } => Command::Reserve {
                runner: RunnerId(*runner as u128),
                group: group.map(|g| group_names()[g].clone()),
                ttr_ms: *ttr_ms,
            },
            Op::Started(r) => {
                let (key, fence) = self.resolve(r);
                Command::Started {
                    key,
                    fence,
                    host: "host".into(),
                    pid: 42,
                }
            }
            Op::Touch(r) => {
                let (key, fence) = self.resolve(r);
                Command::Touch { key, fence }
            }
            Op::Archive(r) => {
                let (key, fence) = self.resolve(r);
                Command::Archive {
                    key,
                    fence,
                    report: report(),
                }
            }
            Op::Release(r) => {
                let (key, fence) = self.resolve(r);
                Command::Release(queue_fsm::HandBack {
                    key,
                    fence,
                    report: Some(RunReport {
                        exit_code: 1,
                        ..report()
                    }),
                    reason: "failed".into(),
                })
            }
            Op::Bury(r) => {
                let (key, fence) = self.resolve(r);
                Command::Bury(queue_fsm::HandBack {
                    key,
                    fence,
                    report: None,
                    reason: "bad".into(),
                })
            }
            Op::Kick(v) => Command::Kick { keys: keys(v) },
            Op::Delete(v) => Command::Delete { keys: keys(v) },
            Op::Kill(v) => Command::Kill { keys: keys(v) },
            Op::Modify(v, priority, retries) => Command::Modify {
                keys: keys(v),
                change: JobChange {
                    priority: *priority,
                    retries: *retries,
                    ..JobChange::default()
                },
            },
            Op::Tick => Command::Tick,
            Op::RenewLeases => Command::RenewLeases,
            Op::SetReserving(mode) => Command::SetReserving { mode: *mode },
            Op::Repeat(_) => unreachable!("handled by the caller"),
        }
    }

    fn step(&mut self, s: &Step) -> Result<(), String> {
        self.now += s.advance_ms;
        self.model.now = self.now;
        // The request to send, and for a repeat, which earlier one it repeats.
        let (req, repeat) = match &s.op {
            Op::Repeat(n) if !self.history.is_empty() => {
                let h = n % self.history.len();
                (self.history[h].req.clone(), Some(h))
            }
            Op::Repeat(_) => (Request::new(None, Command::Tick), None),
            op => {
                let cmd = self.command(op);
                let id = (s.with_id && cmd != Command::Tick).then(|| {
                    self.next_id += 1;
                    RequestId(self.next_id)
                });
                (Request::new(id, cmd), None)
            }
        };
        let cmd = req.cmd.clone();
        // A repeat is answered from the request table while its response is stored, which it
        // must be for the request TTL; once pruned, the request runs again as a new one.
        let replay = match (repeat, req.id) {
            (Some(h), Some(id)) => {
                let first = &self.history[h];
                let stored = self.fsm.stored_outcome(id).map_err(store_err)?;
                match &stored {
                    None if self.now < first.kept_until => {
                        return Err(format!("the response to {req:?} was pruned within its TTL"));
                    }
                    Some(o) if *o != first.outcome => {
                        return Err(format!(
                            "{req:?} got {:?}, but {o:?} is stored",
                            first.outcome
                        ));
                    }
                    _ => {}
                }
                stored
            }
            _ => None,
        };
        let (got, effects) = self.fsm.apply(self.now, req.clone()).map_err(store_err)?;
        self.fsm.check_invariants().map_err(store_err)?;
        if let Some(first) = replay {
            // The same outcome, no second effect, nothing woken.
            if got != first || !effects.woken_groups.is_empty() {
                return Err(format!(
                    "repeated {req:?}: first got {first:?}, now {got:?} (woke {:?})",
                    effects.woken_groups
                ));
            }
            return self
                .check_state()
                .map_err(|e| format!("after repeating {req:?}: {e}"));
        }

        let mut m = self.model.clone();
        m.woken.clear();
        let seq_start = m.next_seq;
        let took_effect = m.exec(&cmd, &got).map_err(|e| format!("{cmd:?}: {e}"))?;
        if took_effect {
            // Woken: every group with a job that became ready and still is; at most those
            // where some job became ready during the command.
            let required: BTreeSet<String> = m
                .jobs
                .values()
                .filter(|j| matches!(j.state, St::Ready(seq) if seq >= seq_start))
                .map(|j| group_of(&j.spec))
                .collect();
            if !required.is_subset(&effects.woken_groups)
                || !effects.woken_groups.is_subset(&m.woken)
            {
                return Err(format!(
                    "{cmd:?}: woke {:?}; expected at least {required:?}, at most {:?}",
                    effects.woken_groups, m.woken
                ));
            }
            self.model = m;
        } else if !effects.woken_groups.is_empty() {
            return Err(format!("refused {cmd:?} woke {:?}", effects.woken_groups));
        }
        if req.id.is_some() {
            let sent = Sent {
                req,
                outcome: got,
                kept_until: self.now + REQUEST_TTL_MS,
            };
            match repeat {
                Some(h) => self.history[h] = sent,
                None => self.history.push(sent),
            }
        }
        self.check_state()
            .map_err(|e| format!("after {cmd:?}: {e}"))
    }

    /// Every job, the counts and the next deadline agree with the model.
    fn check_state(&mut self) -> Result<(), String> {
        for i in 0..POOL {
            let got = self.fsm.get_job(&key_of(i)).map_err(store_err)?;
            match (got, self.model.jobs.get(&i)) {
                (None, None) => {}
                (Some(g), Some(m)) => {
                    let want = m.state.to_fsm();
                    if g.state != want
                        || g.spec != m.spec
                        || g.attempts != m.attempts
                        || g.until_buried != m.until_buried
                    {
                        return Err(format!(
                            "job {i}: state {:?}, attempts {}, until_buried {}, spec {:?}; \
                             model: state {want:?}, attempts {}, until_buried {}, spec {:?}",
                            g.state,
                            g.attempts,
                            g.until_buried,
                            g.spec,
                            m.attempts,
                            m.until_buried,
                            m.spec
                        ));
                    }
                }
                (g, m) => {
                    return Err(format!(
                        "job {i}: FSM has {:?}, model has {:?}",
                        g.map(|j| j.state),
                        m.map(|j| &j.state)
                    ))
                }
            }
        }
        let mut stats = BTreeMap::new();
        let mut ready = BTreeMap::new();
        for j in self.model.jobs.values() {
            *stats.entry(j.state.name()).or_insert(0u64) += 1;
            if let St::Ready(_) = j.state {
                *ready.entry(group_of(&j.spec)).or_insert(0u64) += 1;
            }
        }
        let got = self.fsm.stats().map_err(store_err)?;
        if got != stats {
            return Err(format!("stats {got:?}; model {stats:?}"));
        }
        let got = self.fsm.ready_by_sched_group().map_err(store_err)?;
        if got != ready {
            return Err(format!("ready per group {got:?}; model {ready:?}"));
        }
        let meta = self.fsm.meta();
        if meta.clock_ms != self.now
            || meta.reserving != self.model.mode
            || meta.next_fence != self.model.next_fence
        {
            return Err(format!(
                "clock {}, reserving {:?}, next fence {}; model: {}, {:?}, {}",
                meta.clock_ms,
                meta.reserving,
                meta.next_fence,
                self.now,
                self.model.mode,
                self.model.next_fence
            ));
        }
        let want = self
            .model
            .jobs
            .values()
            .filter_map(|j| j.state.deadline())
            .min();
        let got = self.fsm.next_deadline().map_err(store_err)?;
        if got != want {
            return Err(format!("next deadline {got:?}; model {want:?}"));
        }
        Ok(())
    }
}

fn run(steps: &[Step], with_env: bool) -> Result<(), String> {
    let mut h = Harness::new(with_env);
    for (n, s) in steps.iter().enumerate() {
        h.step(s).map_err(|e| format!("step {n} ({s:?}): {e}"))?;
    }
    Ok(())
}

proptest! {
    // 256 cases unless PROPTEST_CASES says otherwise (ProptestConfig::default() reads it).
    // Failures are not persisted to a regressions file: pin a failing sequence as a #[test].
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn fsm_agrees_with_model(steps in prop::collection::vec(step_strategy(), 1..250)) {
        if let Err(e) = run(&steps, false) {
            return Err(TestCaseError::fail(e));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The same, with Adds that carry an environment.
    #[test]
    fn fsm_agrees_with_model_with_env(steps in prop::collection::vec(step_strategy(), 1..250)) {
        if let Err(e) = run(&steps, true) {
            return Err(TestCaseError::fail(e));
        }
    }
}

// ---- regressions found by the model (an environment blob deleted while in use) -----------

fn fresh_fsm() -> Fsm<MemStore> {
    Fsm::open(MemStore::default(), config()).expect("open")
}

fn apply_ok(fsm: &mut Fsm<MemStore>, now: u64, cmd: Command) -> Response {
    let (out, _) = fsm.apply(now, Request::new(None, cmd)).expect("store");
    out.expect("command refused")
}

fn add_with_env(fsm: &mut Fsm<MemStore>, cmds: &[usize]) {
    apply_ok(
        fsm,
        1_000,
        Command::Add(AddJobs {
            jobs: cmds.iter().map(|&i| JobSpec::new(cmd_of(i))).collect(),
            env: vec!["A=1".into()],
            ..AddJobs::default()
        }),
    );
}

/// The environment a job was added with, as the runner would fetch it.
fn env_of(fsm: &Fsm<MemStore>, i: usize) -> Option<Vec<String>> {
    let job = fsm.get_job(&key_of(i)).expect("store").expect("job");
    fsm.env(&job.env_hash.expect("env hash")).expect("store")
}

/// `write_job` subtracts the old version's reference before adding the new one's, and
/// deletes the blob when the count passes through zero: the first state change of the only
/// job using an environment deletes it (the reserving runner cannot fetch it).
#[test]
fn env_blob_survives_a_state_change() {
    let mut fsm = fresh_fsm();
    add_with_env(&mut fsm, &[0]);
    assert_eq!(env_of(&fsm, 0), Some(vec!["A=1".to_string()]));
    let reserve = Command::Reserve {
        runner: RunnerId(1),
        group: None,
        ttr_ms: 60_000,
    };
    assert!(matches!(
        apply_ok(&mut fsm, 1_000, reserve),
        Response::Reserved { .. }
    ));
    assert_eq!(env_of(&fsm, 0), Some(vec!["A=1".to_string()]));
    fsm.check_invariants().expect("invariants");
}

/// Modify takes the job out (`write_job(old, None)`: count 0, blob deleted) and puts it
/// back (`write_job(None, new)`: count 1, no blob), so fixing `write_job` alone is not
/// enough.
#[test]
fn env_blob_survives_modify() {
    let mut fsm = fresh_fsm();
    add_with_env(&mut fsm, &[0]);
    let change = JobChange {
        priority: Some(5),
        ..JobChange::default()
    };
    apply_ok(
        &mut fsm,
        1_000,
        Command::Modify {
            keys: vec![key_of(0)],
            change,
        },
    );
    assert_eq!(env_of(&fsm, 0), Some(vec!["A=1".to_string()]));
    fsm.check_invariants().expect("invariants");
}

/// Adding a completed job again with the same environment: `store_env` sees the blob and
/// does not write it, then `write_job(old, None)` deletes it. (Two jobs share the blob until
/// the re-add so that the other paths above are not hit first.)
#[test]
fn env_blob_survives_adding_a_completed_job_again() {
    let mut fsm = fresh_fsm();
    add_with_env(&mut fsm, &[0, 1]);
    let reserve = Command::Reserve {
        runner: RunnerId(1),
        group: None,
        ttr_ms: 60_000,
    };
    let Response::Reserved { job, fence } = apply_ok(&mut fsm, 1_000, reserve) else {
        panic!("nothing reserved");
    };
    let archive = Command::Archive {
        key: job.key,
        fence,
        report: RunReport::default(),
    };
    apply_ok(&mut fsm, 1_000, archive);
    let other = if job.key == key_of(0) { 1 } else { 0 };
    apply_ok(
        &mut fsm,
        1_000,
        Command::Delete {
            keys: vec![key_of(other)],
        },
    );
    fsm.check_invariants()
        .expect("invariants before the re-add");
    let done = index_of(&job.key).expect("pool job");
    add_with_env(&mut fsm, &[done]);
    assert_eq!(env_of(&fsm, done), Some(vec!["A=1".to_string()]));
    fsm.check_invariants().expect("invariants");
}
