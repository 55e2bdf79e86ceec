//! Applying one command: the transitions, and the single place (`write_job`) where a job's
//! record, its index entries and the aggregates derived from it are kept in step.

use crate::command::{
    AddJobs, Command, CommandError, JobChange, NoJob, Outcome, ReserveMode, Response, Skip,
};
use crate::fsm::{decode, encode, Meta};
use crate::ids::{FenceToken, JobKey, RunnerId};
use crate::job::{
    fail_reason, Dependency, Job, JobSpec, JobState, Override, Reservation, RunInfo, RunReport,
    StateName,
};
use crate::keys;
use crate::learn::{self, ReqStats};
use crate::limits::{self, invalid};
use crate::store::txn::Txn;
use crate::store::{Space, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Lower bounds for scans of queue-like keyspaces whose heads are deleted all the time: every
/// live key is >= its hint, so a scan can start there instead of walking the tombstones of
/// entries taken earlier. Hints are only ever conservative, and rebuilt empty on open.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hints {
    pub ready: BTreeMap<String, Vec<u8>>,
    pub timers: Vec<u8>,
    pub requests: Vec<u8>,
}

/// A limit group's setting and the slots its jobs hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitState {
    /// -1: unlimited; 0: blocks every job of the group.
    pub limit: i64,
    pub held: u64,
}

/// Derived point entries of a job: (space, key, value).
type Entry = (Space, Vec<u8>, Vec<u8>);

pub(crate) struct Ctx<'s> {
    pub tx: Txn<'s>,
    pub meta: Meta,
    pub hints: Hints,
    pub woken: BTreeSet<String>,
    /// Dependants whose waiting count must change: (job, +1 or -1).
    pending: Vec<(JobKey, i64)>,
    /// Environments whose reference count reached zero during the command; their blobs go
    /// at its end if nothing references them again by then.
    env_unreferenced: BTreeSet<[u8; 32]>,
    /// Req group → learned stats, as of the writes so far in this entry.
    req_cache: BTreeMap<String, Option<ReqStats>>,
}

fn env_refs_key(hash: &[u8; 32]) -> Vec<u8> {
    let mut k = hash.to_vec();
    k.extend_from_slice(b"#refs");
    k
}

/// A job's targets: what others can depend on to wait for it.
fn targets_of(key: &JobKey, spec: &JobSpec) -> Vec<Vec<u8>> {
    let mut t = vec![keys::target_job(key)];
    t.extend(spec.dep_grps.iter().map(|g| keys::target_group(g)));
    t
}

fn target_of(dep: &Dependency) -> Vec<u8> {
    match dep {
        Dependency::Group(g) => keys::target_group(g),
        Dependency::Job(k) => keys::target_job(k),
    }
}

fn describe_target(t: &[u8]) -> String {
    match t.first() {
        Some(b'g') => format!(
            "dep group {:?}",
            String::from_utf8_lossy(&t[1..t.len().saturating_sub(1)])
        ),
        _ => match keys::decode_job_key(&t[1..]) {
            Ok(k) => format!("job {k}"),
            Err(_) => "unknown target".into(),
        },
    }
}

fn describe_job(key: &JobKey, cmd: &str) -> String {
    let short: String = cmd.chars().take(40).collect();
    format!("job {key} ({short:?})")
}

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
fn contributes(job: &Job) -> bool {
    !job.is_complete()
}

fn dedup_keep_order<T: Ord + Clone>(v: &mut Vec<T>) {
    let mut seen = BTreeSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

/// Removes duplicate dep groups and dependencies (each would otherwise count twice).
pub(crate) fn normalize(spec: &mut JobSpec) {
    dedup_keep_order(&mut spec.dep_grps);
    dedup_keep_order(&mut spec.deps);
}

/// Applies `overrides` (`KEY=VALUE`) to `base`: a key that exists is replaced in place, a new
/// one appended.
pub(crate) fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for o in overrides {
        let k = o.split_once('=').map_or(o.as_str(), |(k, _)| k);
        match out
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) == k)
        {
            Some(slot) => *slot = o.clone(),
            None => out.push(o.clone()),
        }
    }
    out
}

/// (content hash, compressed blob) of an environment.
fn env_blob(env: &[String]) -> ([u8; 32], Vec<u8>) {
    let raw = env.join("\0");
    let hash = *blake3::hash(raw.as_bytes()).as_bytes();
    (hash, lz4_flex::compress_prepend_size(raw.as_bytes()))
}

/// Decompresses an environment blob into `KEY=VALUE` entries.
pub fn decode_env(blob: &[u8]) -> Result<Vec<String>, StoreError> {
    let raw = lz4_flex::decompress_size_prepended(blob)
        .map_err(|e| StoreError::Corrupt(format!("env blob: {e}")))?;
    let s = String::from_utf8(raw).map_err(|_| StoreError::Corrupt("env blob not UTF-8".into()))?;
    if s.is_empty() {
        return Ok(Vec::new());
    }
    Ok(s.split('\0').map(str::to_owned).collect())
}

type Res<T> = Result<T, Failure>;

/// Why a command stopped: refused (the state is untouched) or storage failed (fatal).
pub(crate) enum Failure {
    Refused(CommandError),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Self {
        Failure::Refused(e)
    }
}

impl<'s> Ctx<'s> {
    pub fn new(tx: Txn<'s>, meta: Meta, hints: Hints) -> Ctx<'s> {
        Ctx {
            tx,
            meta,
            hints,
            woken: BTreeSet::new(),
            pending: Vec::new(),
            env_unreferenced: BTreeSet::new(),
            req_cache: BTreeMap::new(),
        }
    }

    fn now(&self) -> u64 {
        self.meta.clock_ms
    }

    /// Runs one command; a refusal drops its writes and leaves meta and hints as they were.
    pub fn run(&mut self, cmd: Command) -> Result<Outcome, StoreError> {
        let meta = self.meta.clone();
        let hints = self.hints.clone();
        let woken = self.woken.clone();
        match self.dispatch(cmd) {
            Ok(resp) => {
                for h in std::mem::take(&mut self.env_unreferenced) {
                    if self.counter(Space::Env, &env_refs_key(&h))? == 0 {
                        self.tx.delete(Space::Env, h.to_vec());
                    }
                }
                self.tx.commit_command();
                Ok(Ok(resp))
            }
            Err(Failure::Refused(e)) => {
                self.tx.discard_command();
                self.pending.clear();
                self.env_unreferenced.clear();
                self.req_cache.clear();
                self.meta = meta;
                self.hints = hints;
                self.woken = woken;
                Ok(Err(e))
            }
            Err(Failure::Store(e)) => Err(e),
        }
    }

    fn dispatch(&mut self, cmd: Command) -> Res<Response> {
        match cmd {
            Command::Add(a) => self.add(a),
            Command::Reserve {
                runner,
                group,
                ttr_ms,
            } => self.reserve(runner, group, ttr_ms),
            Command::Started {
                key,
                fence,
                host,
                pid,
            } => self.started(key, fence, host, pid),
            Command::Touch { key, fence } => self.touch(key, fence),
            Command::Archive { key, fence, report } => self.archive(key, fence, report),
            Command::Release {
                key,
                fence,
                report,
                reason,
            } => self.release(key, fence, report, reason),
            Command::Bury {
                key,
                fence,
                report,
                reason,
            } => self.bury(key, fence, report, reason),
            Command::Kick { keys } => self.kick(keys),
            Command::Delete { keys } => self.delete(keys),
            Command::Kill { keys } => self.kill(keys),
            Command::Modify { keys, change } => self.modify(keys, change),
            Command::SetLimit { group, limit } => self.set_limit(group, limit),
            Command::SetReserving { mode } => {
                self.meta.reserving = mode;
                Ok(Response::Ok)
            }
            Command::Tick => self.tick(),
            Command::RenewLeases => self.renew_leases(),
        }
    }

    // ---- storage helpers -------------------------------------------------------------------

    pub fn get_job(&self, key: &JobKey) -> Result<Option<Job>, StoreError> {
        match self.tx.get(Space::Jobs, &keys::job(key))? {
            Some(b) => Ok(Some(decode("job", &b)?)),
            None => Ok(None),
        }
    }

    fn must_job(&self, key: &JobKey) -> Res<Job> {
        self.get_job(key)?
            .ok_or(Failure::Refused(CommandError::NotFound { key: *key }))
    }

    fn counter(&self, space: Space, key: &[u8]) -> Result<u64, StoreError> {
        match self.tx.get(space, key)? {
            Some(b) => keys::decode_u64(&b),
            None => Ok(0),
        }
    }

    /// Adds `delta` to a counter; returns (old, new). A counter at zero is removed.
    fn bump(&mut self, space: Space, key: Vec<u8>, delta: i64) -> Result<(u64, u64), StoreError> {
        let old = self.counter(space, &key)?;
        let new = old as i64 + delta;
        if new < 0 {
            return Err(StoreError::Corrupt(format!(
                "counter {}:{:?} would go below zero",
                space.name(),
                String::from_utf8_lossy(&key)
            )));
        }
        if new == 0 {
            self.tx.delete(space, key);
        } else {
            self.tx.put(space, key, keys::u64_value(new as u64));
        }
        Ok((old, new as u64))
    }

    pub fn limit_state(&self, name: &str) -> Result<Option<LimitState>, StoreError> {
        match self.tx.get(Space::Limits, name.as_bytes())? {
            Some(b) => Ok(Some(decode("limit", &b)?)),
            None => Ok(None),
        }
    }

    fn put_limit(&mut self, name: &str, l: &LimitState) {
        if l.limit == -1 && l.held == 0 {
            self.tx.delete(Space::Limits, name.as_bytes().to_vec());
        } else {
            self.tx
                .put(Space::Limits, name.as_bytes().to_vec(), encode(l));
        }
    }

    /// Learned requirements of a req group, read once per entry (an Add of many jobs of one
    /// group would otherwise read them once per job).
    fn req_stats(&mut self, req_grp: &str) -> Result<Option<ReqStats>, StoreError> {
        if let Some(s) = self.req_cache.get(req_grp) {
            return Ok(s.clone());
        }
        let s: Option<ReqStats> = match self.tx.get(Space::ReqStats, req_grp.as_bytes())? {
            Some(b) => Some(decode("req stats", &b)?),
            None => None,
        };
        self.req_cache.insert(req_grp.to_string(), s.clone());
        Ok(s)
    }

    fn dependants_of(&self, target: &[u8]) -> Result<Vec<JobKey>, StoreError> {
        let mut out = Vec::new();
        for r in self.tx.scan(Space::Dependants, target, b"") {
            let (k, _) = r?;
            if k.len() == target.len() + 16 {
                out.push(keys::trailing_job_key(&k)?);
            }
        }
        Ok(out)
    }

    fn has_dependants(&self, target: &[u8]) -> Result<bool, StoreError> {
        for r in self.tx.scan(Space::Dependants, target, b"") {
            let (k, _) = r?;
            if k.len() == target.len() + 16 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn group_members(&self, group: &str) -> Result<Vec<JobKey>, StoreError> {
        let p = keys::name_prefix(group);
        let mut out = Vec::new();
        for r in self.tx.scan(Space::DepMembers, &p, b"") {
            let (k, _) = r?;
            out.push(keys::trailing_job_key(&k)?);
        }
        Ok(out)
    }

    /// Whether a dependency target currently makes its dependants wait.
    fn target_unsatisfied(&self, target: &[u8]) -> Result<bool, StoreError> {
        match target.first() {
            Some(b'g') => Ok(self.counter(Space::GroupIncomplete, &target[1..])? > 0),
            _ => {
                let key = keys::decode_job_key(&target[1..])?;
                Ok(self.get_job(&key)?.is_some_and(|j| contributes(&j)))
            }
        }
    }

    // ---- the one writer of jobs ------------------------------------------------------------

    /// Moves a job from `old` to `new` (either may be absent): writes the record, the index
    /// entries that differ, and the aggregates; queues waiting-count changes for dependants.
    fn write_job(&mut self, old: Option<&Job>, new: Option<&Job>) -> Result<(), StoreError> {
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
            let Some(j) = job else { continue };
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
        }
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

    /// Carries out queued waiting-count changes, and those they cause in turn.
    fn settle(&mut self) -> Result<(), StoreError> {
        while let Some((key, delta)) = self.pending.pop() {
            let Some(old) = self.get_job(&key)? else {
                continue;
            };
            let mut job = old.clone();
            let waiting = job.waiting as i64 + delta;
            if waiting < 0 {
                return Err(StoreError::Corrupt(format!(
                    "waiting count of job {key} would go below zero"
                )));
            }
            job.waiting = waiting as u32;
            if old.waiting == 0 && job.waiting > 0 {
                match job.state {
                    JobState::Ready | JobState::Delayed { .. } => job.state = JobState::Dependent,
                    JobState::Complete => {
                        // Live dependencies: a completed job whose dep group gained a new
                        // member runs again after it.
                        job.state = JobState::Dependent;
                        job.until_buried = job.spec.retries.saturating_add(1);
                    }
                    _ => {}
                }
            } else if old.waiting > 0 && job.waiting == 0 && job.state == JobState::Dependent {
                self.make_ready(&mut job)?;
            }
            self.write_job(Some(&old), Some(&job))?;
        }
        Ok(())
    }

    fn make_ready(&mut self, job: &mut Job) -> Result<(), StoreError> {
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
    fn requeue(&mut self, job: &mut Job, delay_ms: u64) -> Result<(), StoreError> {
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

    fn save(&mut self, old: &Job, new: &Job) -> Result<(), StoreError> {
        self.write_job(Some(old), Some(new))?;
        self.settle()
    }

    // ---- Add -------------------------------------------------------------------------------

    fn add(&mut self, a: AddJobs) -> Res<Response> {
        limits::check_count("jobs", a.jobs.len(), limits::MAX_JOBS_PER_ADD)?;
        limits::env_ok("env", &a.env).map_err(|(f, r)| invalid(f, r))?;
        for (index, spec) in a.jobs.iter().enumerate() {
            limits::validate_spec(spec).map_err(|(field, reason)| CommandError::InvalidJob {
                index,
                field,
                reason,
            })?;
            let merged = merge_env(&a.env, &spec.env_override);
            if merged.iter().map(|e| e.len() + 1).sum::<usize>() > limits::MAX_ENV_BYTES {
                return Err(CommandError::InvalidJob {
                    index,
                    field: "env".into(),
                    reason: format!("with its overrides exceeds {} bytes", limits::MAX_ENV_BYTES),
                }
                .into());
            }
        }
        let base_env = (!a.env.is_empty()).then(|| env_blob(&a.env));
        let mut added = 0u64;
        let mut existed = 0u64;
        let mut out_keys = Vec::new();
        for (index, mut spec) in a.jobs.into_iter().enumerate() {
            normalize(&mut spec);
            let key = spec.key();
            if a.return_keys {
                out_keys.push(key);
            }
            self.set_limits_from(&spec)?;
            let env = if spec.env_override.is_empty() {
                base_env.clone()
            } else {
                Some(env_blob(&merge_env(&a.env, &spec.env_override)))
            };
            match self.get_job(&key)? {
                Some(old) if !old.is_complete() || a.ignore_complete => existed += 1,
                Some(old) => {
                    // A completed job added again runs again, with the new description.
                    self.check_cycle(index, &key, &spec)?;
                    let mut job = old.clone();
                    job.spec = spec;
                    job.env_hash = self.store_env(env);
                    job.until_buried = job.spec.retries.saturating_add(1);
                    self.write_job(Some(&old), None)?;
                    job.waiting = self.count_waiting(&job.spec)?;
                    self.requeue(&mut job, 0)?;
                    self.write_job(None, Some(&job))?;
                    self.settle()?;
                    added += 1;
                }
                None => {
                    self.check_cycle(index, &key, &spec)?;
                    let env_hash = self.store_env(env);
                    let serial = self.meta.next_serial;
                    self.meta.next_serial += 1;
                    let mut job = Job {
                        key,
                        serial,
                        until_buried: spec.retries.saturating_add(1),
                        spec,
                        env_hash,
                        effective: Default::default(),
                        sched_group: String::new(),
                        state: JobState::Dependent,
                        waiting: 0,
                        seq: 0,
                        attempts: 0,
                        added_ms: self.now(),
                        run: RunInfo::default(),
                    };
                    job.waiting = self.count_waiting(&job.spec)?;
                    self.requeue(&mut job, 0)?;
                    self.write_job(None, Some(&job))?;
                    self.settle()?;
                    added += 1;
                }
            }
        }
        Ok(Response::Added {
            added,
            existed,
            keys: out_keys,
        })
    }

    /// Stores an environment blob (if new) and returns its hash; the reference count is kept
    /// by `write_job`.
    fn store_env(&mut self, env: Option<([u8; 32], Vec<u8>)>) -> Option<[u8; 32]> {
        let (hash, blob) = env?;
        // Only written when absent: identical content has an identical blob.
        if !matches!(self.tx.get(Space::Env, &hash), Ok(Some(_))) {
            self.tx.put(Space::Env, hash.to_vec(), blob);
        }
        Some(hash)
    }

    fn set_limits_from(&mut self, spec: &JobSpec) -> Result<(), StoreError> {
        for g in &spec.limit_grps {
            if let Ok((name, Some(n))) = limits::parse_limit_grp(g) {
                let mut l = self
                    .limit_state(name)?
                    .unwrap_or(LimitState { limit: -1, held: 0 });
                l.limit = n;
                self.put_limit(name, &l);
            }
        }
        Ok(())
    }

    /// How many of a job's dependencies are currently unsatisfied.
    fn count_waiting(&self, spec: &JobSpec) -> Result<u32, StoreError> {
        let mut n = 0;
        for d in &spec.deps {
            if self.target_unsatisfied(&target_of(d))? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Refuses a job whose dependencies lead back to itself. Only a job that others already
    /// wait on (through its key or one of its dep groups) can close a cycle, so most jobs
    /// skip the search.
    fn check_cycle(&self, index: usize, key: &JobKey, spec: &JobSpec) -> Res<()> {
        if spec.deps.is_empty() {
            return Ok(());
        }
        let own: BTreeSet<Vec<u8>> = targets_of(key, spec).into_iter().collect();
        let first: Vec<Vec<u8>> = spec.deps.iter().map(target_of).collect();
        let name = describe_job(key, &spec.cmd);
        for t in &first {
            if own.contains(t) {
                return Err(CommandError::Cycle {
                    index,
                    cycle: vec![name.clone(), describe_target(t), name],
                }
                .into());
            }
        }
        let mut any = false;
        for t in &own {
            if self.has_dependants(t)? {
                any = true;
                break;
            }
        }
        if !any {
            return Ok(());
        }
        // Depth-first over "target -> member job -> its dependency targets".
        let mut parent: BTreeMap<Vec<u8>, Option<(Vec<u8>, String)>> = BTreeMap::new();
        let mut stack: Vec<Vec<u8>> = Vec::new();
        for t in first {
            if parent.insert(t.clone(), None).is_none() {
                stack.push(t);
            }
        }
        while let Some(t) = stack.pop() {
            let members: Vec<JobKey> = if t[0] == b'g' {
                let g = String::from_utf8_lossy(&t[1..t.len() - 1]).into_owned();
                self.group_members(&g)?
            } else {
                vec![keys::decode_job_key(&t[1..])?]
            };
            for m in members {
                if m == *key {
                    continue;
                }
                let Some(mj) = self.get_job(&m)? else {
                    continue;
                };
                let mname = describe_job(&m, &mj.spec.cmd);
                for d in &mj.spec.deps {
                    let t2 = target_of(d);
                    if own.contains(&t2) {
                        // Rebuild the path from the new job to here.
                        let mut path = vec![describe_target(&t2), mname.clone()];
                        let mut cur = t.clone();
                        loop {
                            path.push(describe_target(&cur));
                            match parent.get(&cur).cloned().flatten() {
                                Some((prev, via)) => {
                                    path.push(via);
                                    cur = prev;
                                }
                                None => break,
                            }
                        }
                        path.push(name.clone());
                        path.reverse();
                        path.push(name);
                        return Err(CommandError::Cycle { index, cycle: path }.into());
                    }
                    if !parent.contains_key(&t2) {
                        parent.insert(t2.clone(), Some((t.clone(), mname.clone())));
                        stack.push(t2);
                    }
                }
            }
        }
        Ok(())
    }

    // ---- reservations ----------------------------------------------------------------------

    /// The first ready entry of a group: (ready key, job key).
    fn first_ready(&mut self, group: &str) -> Result<Option<(Vec<u8>, JobKey)>, StoreError> {
        let prefix = keys::name_prefix(group);
        let from = self.hints.ready.get(group).cloned().unwrap_or_default();
        let first = self
            .tx
            .scan(Space::Ready, &prefix, &from)
            .next()
            .transpose()?;
        match first {
            Some((k, v)) => {
                self.hints.ready.insert(group.to_string(), k.clone());
                Ok(Some((k, keys::decode_job_key(&v)?)))
            }
            None => Ok(None),
        }
    }

    /// Whether a job's limit groups let it take a slot now.
    fn limits_allow(&self, spec: &JobSpec) -> Result<bool, StoreError> {
        for name in spec.limit_names() {
            if let Some(l) = self.limit_state(name)? {
                if l.limit >= 0 && l.held >= l.limit as u64 {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn reserve(&mut self, runner: RunnerId, group: Option<String>, ttr_ms: u64) -> Res<Response> {
        limits::check_ttr(ttr_ms)?;
        match self.meta.reserving {
            ReserveMode::Open => {}
            ReserveMode::Paused => return Ok(Response::NoJob(NoJob::Paused)),
            ReserveMode::Draining => return Ok(Response::NoJob(NoJob::Draining)),
        }
        let groups: Vec<String> = match group {
            Some(g) => {
                limits::check_text("group", &g, limits::MAX_NAME_BYTES * 4)?;
                vec![g]
            }
            None => {
                let mut v = Vec::new();
                for r in self.tx.scan(Space::SchedReady, b"", b"") {
                    let (k, _) = r?;
                    v.push(String::from_utf8_lossy(&k).into_owned());
                }
                v
            }
        };
        // Best candidate across groups by (priority, FIFO); jobs of one scheduler group share
        // their limit groups, so only each group's first job needs the limit check.
        let mut best: Option<(Vec<u8>, Job)> = None;
        for g in groups {
            let Some((rk, key)) = self.first_ready(&g)? else {
                continue;
            };
            let job = self.get_job(&key)?.ok_or_else(|| {
                StoreError::Corrupt(format!("ready index names missing job {key}"))
            })?;
            if !self.limits_allow(&job.spec)? {
                continue;
            }
            let order = keys::ready_order(&rk[g.len() + 1..]).to_vec();
            if best.as_ref().is_none_or(|(o, _)| order < *o) {
                best = Some((order, job));
            }
        }
        let Some((_, old)) = best else {
            return Ok(Response::NoJob(NoJob::NoneReady));
        };
        let fence = FenceToken(self.meta.next_fence);
        self.meta.next_fence += 1;
        let mut job = old.clone();
        job.state = JobState::Reserved(Reservation {
            runner,
            fence,
            ttr_ms,
            lease_until_ms: self.now().saturating_add(ttr_ms),
            kill_requested: false,
        });
        self.save(&old, &job)?;
        Ok(Response::Reserved {
            job: Box::new(job),
            fence,
        })
    }

    /// The job, if `fence` is its current reservation's.
    fn fenced(&self, key: &JobKey, fence: FenceToken) -> Res<Job> {
        let job = self.must_job(key)?;
        match job.state.reservation() {
            Some(r) if r.fence == fence => Ok(job),
            r => Err(CommandError::StaleFence {
                key: *key,
                presented: fence,
                current: r.map(|r| r.fence),
            }
            .into()),
        }
    }

    fn started(&mut self, key: JobKey, fence: FenceToken, host: String, pid: u32) -> Res<Response> {
        limits::check_text("host", &host, limits::MAX_NAME_BYTES)?;
        let old = self.fenced(&key, fence)?;
        let mut job = old.clone();
        let now = self.now();
        let (mut r, first) = match old.state.clone() {
            JobState::Reserved(r) => (r, true),
            JobState::Running(r) => (r, false),
            JobState::Lost { held, started, .. } => (held, !started),
            _ => return Err(not_held(&old)),
        };
        r.lease_until_ms = now.saturating_add(r.ttr_ms);
        if first {
            job.attempts += 1;
        }
        job.run = RunInfo {
            host,
            pid,
            report: None,
            fail_reason: String::new(),
        };
        job.state = JobState::Running(r);
        self.save(&old, &job)?;
        Ok(Response::Ok)
    }

    fn touch(&mut self, key: JobKey, fence: FenceToken) -> Res<Response> {
        let old = self.fenced(&key, fence)?;
        let mut job = old.clone();
        let now = self.now();
        let renew = |mut r: Reservation| {
            r.lease_until_ms = now.saturating_add(r.ttr_ms);
            r
        };
        job.state = match old.state.clone() {
            JobState::Reserved(r) => JobState::Reserved(renew(r)),
            JobState::Running(r) => JobState::Running(renew(r)),
            // The runner is alive after all: its reservation is live again.
            JobState::Lost { held, started, .. } => {
                if started {
                    JobState::Running(renew(held))
                } else {
                    JobState::Reserved(renew(held))
                }
            }
            _ => return Err(not_held(&old)),
        };
        let kill = job.state.reservation().is_some_and(|r| r.kill_requested);
        self.save(&old, &job)?;
        Ok(Response::Touched { kill })
    }

    fn check_report(report: &RunReport) -> Result<(), CommandError> {
        limits::check_text(
            "report.actual_cwd",
            &report.actual_cwd,
            limits::MAX_PATH_BYTES,
        )?;
        limits::check_text("report.stdout", &report.stdout, limits::MAX_OUTPUT_BYTES)?;
        limits::check_text("report.stderr", &report.stderr, limits::MAX_OUTPUT_BYTES)?;
        Ok(())
    }

    fn archive(&mut self, key: JobKey, fence: FenceToken, mut report: RunReport) -> Res<Response> {
        Self::check_report(&report)?;
        let old = self.fenced(&key, fence)?;
        if report.exited && report.exit_code != 0 {
            return Err(invalid(
                "report.exit_code",
                format!(
                    "is {}; only a successful run can be archived (release or bury a failed one)",
                    report.exit_code
                ),
            )
            .into());
        }
        let mut job = old.clone();
        // Output is kept for failed runs only.
        report.stdout.clear();
        report.stderr.clear();
        let req_grp = job.spec.effective_req_grp().to_string();
        let mut stats = self.req_stats(&req_grp)?.unwrap_or_default();
        stats.record(&report, self.meta.config.learn_window as usize);
        self.tx.put(
            Space::ReqStats,
            req_grp.clone().into_bytes(),
            encode(&stats),
        );
        self.req_cache.insert(req_grp, Some(stats));
        job.run.report = Some(report);
        job.run.fail_reason.clear();
        if job.waiting > 0 {
            // A dependency appeared while it ran: it runs again after that one.
            job.state = JobState::Dependent;
        } else {
            job.state = JobState::Complete;
        }
        self.save(&old, &job)?;
        Ok(Response::Ok)
    }

    fn release_delay(&self, attempts: u32) -> u64 {
        let c = &self.meta.config;
        let shift = attempts.saturating_sub(1).min(20);
        c.release_delay_ms
            .saturating_mul(1u64 << shift)
            .min(c.max_release_delay_ms)
    }

    /// Back to the queue after a failure; a failed *run* uses up one retry, and the last one
    /// buries the job. Returns the new state.
    fn fail_back(&mut self, job: &mut Job, ran: bool, reason: &str) -> Result<(), StoreError> {
        job.run.fail_reason = reason.to_string();
        if reason == fail_reason::RAM {
            job.spec.requirements.ram_mb =
                learn::more_ram(job.effective.ram_mb.max(job.spec.requirements.ram_mb));
            if job.spec.override_mode == Override::Learned {
                job.spec.override_mode = Override::LearnedIfHigher;
            }
        } else if reason == fail_reason::TIME {
            job.spec.requirements.time_s =
                learn::more_time(job.effective.time_s.max(job.spec.requirements.time_s));
            if job.spec.override_mode == Override::Learned {
                job.spec.override_mode = Override::LearnedIfHigher;
            }
        }
        if ran {
            job.until_buried = job.until_buried.saturating_sub(1);
            if job.until_buried == 0 {
                job.state = JobState::Buried;
                return Ok(());
            }
        }
        let delay = self.release_delay(job.attempts);
        self.requeue(job, delay)
    }

    /// The common start of Release and Bury: validate, check the fence, record the report.
    /// Returns (the job as stored, the job with the report, whether it had started).
    fn failed_run(
        &self,
        key: &JobKey,
        fence: FenceToken,
        report: Option<RunReport>,
        reason: &str,
    ) -> Res<(Job, Job, bool)> {
        limits::check_text("reason", reason, limits::MAX_REASON_BYTES)?;
        if let Some(r) = &report {
            Self::check_report(r)?;
        }
        let old = self.fenced(key, fence)?;
        let ran = matches!(
            old.state,
            JobState::Running(_) | JobState::Lost { started: true, .. }
        );
        let mut job = old.clone();
        if report.is_some() {
            job.run.report = report;
        }
        Ok((old, job, ran))
    }

    fn release(
        &mut self,
        key: JobKey,
        fence: FenceToken,
        report: Option<RunReport>,
        reason: String,
    ) -> Res<Response> {
        let (old, mut job, ran) = self.failed_run(&key, fence, report, &reason)?;
        self.fail_back(&mut job, ran, &reason)?;
        let state = job.state.name();
        self.save(&old, &job)?;
        Ok(Response::Released { state })
    }

    fn bury(
        &mut self,
        key: JobKey,
        fence: FenceToken,
        report: Option<RunReport>,
        reason: String,
    ) -> Res<Response> {
        let (old, mut job, _) = self.failed_run(&key, fence, report, &reason)?;
        job.run.fail_reason = reason;
        job.state = JobState::Buried;
        self.save(&old, &job)?;
        Ok(Response::Ok)
    }

    // ---- by key ----------------------------------------------------------------------------

    fn kick(&mut self, keys: Vec<JobKey>) -> Res<Response> {
        limits::check_count("keys", keys.len(), limits::MAX_KEYS_PER_REQUEST)?;
        let mut n = 0;
        for key in keys {
            let Some(old) = self.get_job(&key)? else {
                continue;
            };
            if old.state != JobState::Buried {
                continue;
            }
            let mut job = old.clone();
            job.until_buried = job.spec.retries.saturating_add(1);
            self.requeue(&mut job, 0)?;
            self.save(&old, &job)?;
            n += 1;
        }
        Ok(Response::Count(n))
    }

    fn kill(&mut self, keys: Vec<JobKey>) -> Res<Response> {
        limits::check_count("keys", keys.len(), limits::MAX_KEYS_PER_REQUEST)?;
        let mut n = 0;
        for key in keys {
            let Some(old) = self.get_job(&key)? else {
                continue;
            };
            let mut job = old.clone();
            match &mut job.state {
                JobState::Reserved(r) | JobState::Running(r) => r.kill_requested = true,
                JobState::Lost { .. } => {
                    job.state = JobState::Buried;
                    job.run.fail_reason = fail_reason::KILLED.into();
                }
                _ => continue,
            }
            self.save(&old, &job)?;
            n += 1;
        }
        Ok(Response::Count(n))
    }

    fn deletable(job: &Job) -> Option<Skip> {
        match job.state.name() {
            s @ (StateName::Reserved | StateName::Running | StateName::Lost) => Some(Skip::Held(s)),
            StateName::Complete => Some(Skip::Complete),
            _ => None,
        }
    }

    fn delete(&mut self, keys: Vec<JobKey>) -> Res<Response> {
        limits::check_count("keys", keys.len(), limits::MAX_KEYS_PER_REQUEST)?;
        let mut skipped = Vec::new();
        let mut jobs: BTreeMap<JobKey, Job> = BTreeMap::new();
        let mut order = Vec::new();
        for key in keys {
            if jobs.contains_key(&key) {
                continue;
            }
            match self.get_job(&key)? {
                None => skipped.push((key, Skip::NotFound)),
                Some(j) => match Self::deletable(&j) {
                    Some(s) => skipped.push((key, s)),
                    None => {
                        order.push(key);
                        jobs.insert(key, j);
                    }
                },
            }
        }
        // A job stays only if someone outside the set still depends on it; repeat until no
        // more drop out (dropping one can strand those it depends on).
        loop {
            let mut dropped = None;
            'outer: for key in &order {
                let job = &jobs[key];
                for t in targets_of(key, &job.spec) {
                    for d in self.dependants_of(&t)? {
                        if !jobs.contains_key(&d) {
                            dropped = Some((*key, d));
                            break 'outer;
                        }
                    }
                }
            }
            match dropped {
                Some((key, d)) => {
                    jobs.remove(&key);
                    order.retain(|k| *k != key);
                    skipped.push((key, Skip::HasDependant(d)));
                }
                None => break,
            }
        }
        let mut deleted = 0;
        for key in order {
            // Re-read: deleting an earlier job of the set may have changed this one.
            let Some(job) = self.get_job(&key)? else {
                continue;
            };
            self.write_job(Some(&job), None)?;
            self.settle()?;
            deleted += 1;
        }
        Ok(Response::Deleted { deleted, skipped })
    }

    fn modify(&mut self, keys: Vec<JobKey>, change: JobChange) -> Res<Response> {
        limits::check_count("keys", keys.len(), limits::MAX_KEYS_PER_REQUEST)?;
        let mut modified = Vec::new();
        let mut skipped = Vec::new();
        for (index, key) in keys.into_iter().enumerate() {
            let Some(old) = self.get_job(&key)? else {
                skipped.push((key, Skip::NotFound));
                continue;
            };
            if let Some(s) = Self::deletable(&old) {
                skipped.push((key, s));
                continue;
            }
            let mut spec = old.spec.clone();
            apply_change(&mut spec, &change);
            limits::validate_spec(&spec).map_err(|(f, r)| invalid(format!("change.{f}"), r))?;
            normalize(&mut spec);
            let new_key = spec.key();
            if new_key != key && self.get_job(&new_key)?.is_some() {
                skipped.push((key, Skip::KeyExists(new_key)));
                continue;
            }
            self.check_cycle(index, &new_key, &spec)?;
            self.set_limits_from(&spec)?;
            self.write_job(Some(&old), None)?;
            self.settle()?;
            let mut job = old.clone();
            job.key = new_key;
            if change.retries.is_some() {
                job.until_buried = spec.retries.saturating_add(1);
            }
            job.spec = spec;
            job.waiting = self.count_waiting(&job.spec)?;
            if job.state != JobState::Buried {
                let delay = match job.state {
                    JobState::Delayed { until_ms } => until_ms.saturating_sub(self.now()),
                    _ => 0,
                };
                self.requeue(&mut job, delay)?;
            }
            self.write_job(None, Some(&job))?;
            self.settle()?;
            modified.push((key, new_key));
        }
        Ok(Response::Modified { modified, skipped })
    }

    fn set_limit(&mut self, group: String, limit: i64) -> Res<Response> {
        limits::check_name("group", &group)?;
        if group.contains(':') || group.contains(',') || group.contains('~') {
            return Err(invalid("group", "must not contain ':', ',' or '~'").into());
        }
        if !(-1..=limits::MAX_LIMIT).contains(&limit) {
            return Err(invalid(
                "limit",
                format!(
                    "is {limit}; it must be -1 (unlimited) to {}",
                    limits::MAX_LIMIT
                ),
            )
            .into());
        }
        let mut l = self.limit_state(&group)?.unwrap_or_default();
        l.limit = limit;
        self.put_limit(&group, &l);
        // Raising a limit can let waiting runners of any group reserve.
        let mut groups = Vec::new();
        for r in self.tx.scan(Space::SchedReady, b"", b"") {
            groups.push(String::from_utf8_lossy(&r?.0).into_owned());
        }
        self.woken.extend(groups);
        Ok(Response::Ok)
    }

    // ---- timers ----------------------------------------------------------------------------

    fn tick(&mut self) -> Res<Response> {
        let now = self.now();
        let mut due = Vec::new();
        {
            let from = self.hints.timers.clone();
            for r in self.tx.scan(Space::Timers, b"", &from) {
                let (k, _) = r?;
                let (deadline, key) = keys::decode_timer(&k)?;
                if deadline > now || due.len() >= limits::MAX_TIMERS_PER_TICK {
                    break;
                }
                due.push(key);
            }
        }
        let (mut expired, mut returned, mut ended) = (0, 0, 0);
        for key in due {
            let Some(old) = self.get_job(&key)? else {
                continue;
            };
            let mut job = old.clone();
            match old.state.clone() {
                JobState::Delayed { .. } => {
                    self.requeue(&mut job, 0)?;
                    ended += 1;
                }
                JobState::Reserved(r) | JobState::Running(r) => {
                    let started = matches!(old.state, JobState::Running(_));
                    job.state = JobState::Lost {
                        held: r,
                        started,
                        return_ms: now.saturating_add(self.meta.config.lost_return_delay_ms),
                    };
                    job.run.fail_reason = fail_reason::LOST.into();
                    expired += 1;
                }
                JobState::Lost { started, .. } => {
                    self.fail_back(&mut job, started, fail_reason::LOST)?;
                    // The runner is presumed dead: no delay beyond the wait already spent.
                    if let JobState::Delayed { .. } = job.state {
                        self.requeue(&mut job, 0)?;
                    }
                    returned += 1;
                }
                _ => continue,
            }
            self.save(&old, &job)?;
        }
        Ok(Response::Ticked {
            leases_expired: expired,
            lost_returned: returned,
            delays_ended: ended,
        })
    }

    fn renew_leases(&mut self) -> Res<Response> {
        let now = self.now();
        // Every reserved or running job has its lease in `timers`.
        let mut held = Vec::new();
        for r in self.tx.scan(Space::Timers, b"", b"") {
            held.push(keys::decode_timer(&r?.0)?.1);
        }
        let mut n = 0;
        for key in held {
            let Some(old) = self.get_job(&key)? else {
                continue;
            };
            let mut job = old.clone();
            match &mut job.state {
                JobState::Reserved(r) | JobState::Running(r) => {
                    r.lease_until_ms = now.saturating_add(r.ttr_ms);
                }
                _ => continue,
            }
            self.save(&old, &job)?;
            n += 1;
        }
        Ok(Response::Renewed(n))
    }
}

/// `fenced()` only returns held jobs; a job that is not held here means a broken invariant.
fn not_held(job: &Job) -> Failure {
    Failure::Store(StoreError::Corrupt(format!(
        "job {} has a fence but is {}",
        job.key,
        job.state.name()
    )))
}

fn apply_change(spec: &mut JobSpec, c: &JobChange) {
    fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
        if let Some(v) = v {
            *slot = v.clone();
        }
    }
    set(&mut spec.cmd, &c.cmd);
    set(&mut spec.cwd, &c.cwd);
    set(&mut spec.cwd_matters, &c.cwd_matters);
    set(&mut spec.change_home, &c.change_home);
    set(&mut spec.rep_grp, &c.rep_grp);
    set(&mut spec.req_grp, &c.req_grp);
    set(&mut spec.requirements, &c.requirements);
    set(&mut spec.override_mode, &c.override_mode);
    set(&mut spec.priority, &c.priority);
    set(&mut spec.retries, &c.retries);
    set(&mut spec.dep_grps, &c.dep_grps);
    set(&mut spec.deps, &c.deps);
    set(&mut spec.behaviours, &c.behaviours);
    set(&mut spec.limit_grps, &c.limit_grps);
}
