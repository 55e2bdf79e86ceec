//! Dependencies: a job's targets (its key and dep groups), waiting counts, the cycle search,
//! and `settle`, which carries waiting-count changes through the graph.

use super::write::contributes;
use super::{Ctx, Res};
use crate::command::CommandError;
use crate::ids::JobKey;
use crate::job::{Dependency, JobSpec, JobState};
use crate::keys;
use crate::store::{Space, StoreError};
use std::collections::{BTreeMap, BTreeSet};

/// A job's targets: what others can depend on to wait for it.
pub(super) fn targets_of(key: &JobKey, spec: &JobSpec) -> Vec<Vec<u8>> {
    let mut t = vec![keys::target_job(key)];
    t.extend(spec.dep_grps.iter().map(|g| keys::target_group(g)));
    t
}

pub(super) fn target_of(dep: &Dependency) -> Vec<u8> {
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

fn dedup_keep_order<T: Ord + Clone>(v: &mut Vec<T>) {
    let mut seen = BTreeSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

/// Removes duplicate dep groups and dependencies (each would otherwise count twice).
pub(super) fn normalize(spec: &mut JobSpec) {
    dedup_keep_order(&mut spec.dep_grps);
    dedup_keep_order(&mut spec.deps);
}

impl Ctx<'_> {
    pub(super) fn dependants_of(&self, target: &[u8]) -> Result<Vec<JobKey>, StoreError> {
        let mut out = Vec::new();
        for r in self.tx.scan(Space::Dependants, target, b"") {
            let (k, _) = r?;
            if k.len() == target.len() + 16 {
                out.push(keys::trailing_job_key(&k)?);
            }
        }
        Ok(out)
    }

    pub(super) fn has_dependants(&self, target: &[u8]) -> Result<bool, StoreError> {
        for r in self.tx.scan(Space::Dependants, target, b"") {
            let (k, _) = r?;
            if k.len() == target.len() + 16 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) fn group_members(&self, group: &str) -> Result<Vec<JobKey>, StoreError> {
        let p = keys::name_prefix(group);
        let mut out = Vec::new();
        for r in self.tx.scan(Space::DepMembers, &p, b"") {
            let (k, _) = r?;
            out.push(keys::trailing_job_key(&k)?);
        }
        Ok(out)
    }

    /// Whether a dependency target currently makes its dependants wait.
    pub(super) fn target_unsatisfied(&self, target: &[u8]) -> Result<bool, StoreError> {
        match target.first() {
            Some(b'g') => Ok(self.counter(Space::GroupIncomplete, &target[1..])? > 0),
            _ => {
                let key = keys::decode_job_key(&target[1..])?;
                Ok(self.get_job(&key)?.is_some_and(|j| contributes(&j)))
            }
        }
    }

    /// Carries out queued waiting-count changes, and those they cause in turn.
    pub(super) fn settle(&mut self) -> Result<(), StoreError> {
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

    /// How many of a job's dependencies are currently unsatisfied.
    pub(super) fn count_waiting(&self, spec: &JobSpec) -> Result<u32, StoreError> {
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
    pub(super) fn check_cycle(&self, index: usize, key: &JobKey, spec: &JobSpec) -> Res<()> {
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
        match self.search_cycle(key, &own, first)? {
            Some(mut path) => {
                // The path runs back from the closing edge: name the new job at both ends.
                path.push(name.clone());
                path.reverse();
                path.push(name);
                Err(CommandError::Cycle { index, cycle: path }.into())
            }
            None => Ok(()),
        }
    }

    /// Depth-first over "target -> member job -> its dependency targets", from the new job's
    /// first targets; a path that reaches one of `own` (the new job's targets) is a cycle,
    /// returned as names from the new job back to itself.
    fn search_cycle(
        &self,
        key: &JobKey,
        own: &BTreeSet<Vec<u8>>,
        first: Vec<Vec<u8>>,
    ) -> Result<Option<Vec<String>>, StoreError> {
        // target -> (the target it was reached from, the member job it was reached through).
        let mut parent: Parents = BTreeMap::new();
        let mut stack: Vec<Vec<u8>> = Vec::new();
        for t in first {
            if parent.insert(t.clone(), None).is_none() {
                stack.push(t);
            }
        }
        while let Some(t) = stack.pop() {
            for m in self.members_of_target(&t)? {
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
                        return Ok(Some(cycle_path(&parent, &t, &t2, mname)));
                    }
                    if !parent.contains_key(&t2) {
                        parent.insert(t2.clone(), Some((t.clone(), mname.clone())));
                        stack.push(t2);
                    }
                }
            }
        }
        Ok(None)
    }

    /// The jobs a target stands for: a dep group's members, or the one job of a job key.
    fn members_of_target(&self, t: &[u8]) -> Result<Vec<JobKey>, StoreError> {
        if t[0] == b'g' {
            let g = String::from_utf8_lossy(&t[1..t.len() - 1]).into_owned();
            self.group_members(&g)
        } else {
            Ok(vec![keys::decode_job_key(&t[1..])?])
        }
    }
}

/// How the cycle search reached each target: (previous target, member job name), or `None`
/// for the new job's own dependencies.
type Parents = BTreeMap<Vec<u8>, Option<(Vec<u8>, String)>>;

/// The cycle found at `t2` (one of the new job's targets), reached from target `t` through
/// member `mname`: the names along the path, from the closing edge back to the new job's
/// first dependency.
fn cycle_path(parent: &Parents, t: &[u8], t2: &[u8], mname: String) -> Vec<String> {
    let mut path = vec![describe_target(t2), mname];
    let mut cur = t.to_vec();
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
    path
}
