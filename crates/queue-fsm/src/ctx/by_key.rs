//! Actions by key: kick, kill, delete, modify, and setting a limit group's limit.

use super::deps::{normalize, targets_of};
use super::{Ctx, Res};
use crate::command::{JobChange, KeyAction, Response, Skip};
use crate::ids::JobKey;
use crate::job::{Job, JobSpec, JobState, StateName};
use crate::limits::{self, invalid};
use crate::store::{Space, StoreError};
use crate::verdict::FailReason;
use std::collections::BTreeMap;

impl Ctx<'_> {
    pub(super) fn kick(&mut self, keys: Vec<JobKey>) -> Res<Response> {
        self.each_taken(keys, KeyAction::Kick, |ctx, job| {
            job.until_buried = job.spec.retries.saturating_add(1);
            ctx.requeue(job, 0)
        })
    }

    pub(super) fn kill(&mut self, keys: Vec<JobKey>) -> Res<Response> {
        self.each_taken(keys, KeyAction::Kill, |_, job| {
            match &mut job.state {
                JobState::Reserved(r) | JobState::Running(r) => r.kill_requested = true,
                JobState::Lost { .. } => {
                    job.state = JobState::Buried;
                    job.run.fail_reason = FailReason::Killed.as_str().into();
                }
                // `KeyAction::Kill` takes no other state.
                _ => {}
            }
            Ok(())
        })
    }

    /// Changes, with `change`, each job of `keys` that `action` takes (the others are
    /// skipped, unknown keys too); answers how many it changed.
    fn each_taken(
        &mut self,
        keys: Vec<JobKey>,
        action: KeyAction,
        change: impl Fn(&mut Self, &mut Job) -> Result<(), StoreError>,
    ) -> Res<Response> {
        limits::check_count("keys", keys.len(), limits::MAX_KEYS_PER_REQUEST)?;
        let mut n = 0;
        for key in keys {
            let Some(old) = self.get_job(&key)? else {
                continue;
            };
            if !action.accepts(old.state.name()) {
                continue;
            }
            let mut job = old.clone();
            change(self, &mut job)?;
            self.save(&old, &job)?;
            n += 1;
        }
        Ok(Response::Count(n))
    }

    pub(super) fn deletable(job: &Job) -> Option<Skip> {
        match job.state.name() {
            s if KeyAction::Delete.accepts(s) => None,
            StateName::Complete => Some(Skip::Complete),
            s => Some(Skip::Held(s)),
        }
    }

    pub(super) fn delete(&mut self, keys: Vec<JobKey>) -> Res<Response> {
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

    pub(super) fn modify(&mut self, keys: Vec<JobKey>, change: JobChange) -> Res<Response> {
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
            limits::validate_spec(&spec)
                .map_err(|e| invalid(format!("change.{}", e.field), e.reason))?;
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

    pub(super) fn set_limit(&mut self, group: String, limit: i64) -> Res<Response> {
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
