//! Add: validating a batch of jobs, then adding each (new, existing, or a complete one
//! queued again).

use super::deps::normalize;
use super::env::{env_blob, merge_env};
use super::{Ctx, LimitState, Res};
use crate::command::{AddJobs, CommandError, Response};
use crate::ids::JobKey;
use crate::job::{Job, JobSpec, JobState, RunInfo};
use crate::limits::{self, FieldError};
use crate::store::StoreError;

impl Ctx<'_> {
    pub(super) fn add(&mut self, a: AddJobs) -> Res<Response> {
        Self::validate_add(&a)?;
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
                    self.add_again(index, old, spec, env)?;
                    added += 1;
                }
                None => {
                    self.add_new(index, key, spec, env)?;
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

    /// Checks the whole batch before anything is written, so an invalid Add changes nothing.
    fn validate_add(a: &AddJobs) -> Result<(), CommandError> {
        limits::check_count("jobs", a.jobs.len(), limits::MAX_JOBS_PER_ADD)?;
        limits::env_ok("env", &a.env).map_err(FieldError::into_invalid)?;
        for (index, spec) in a.jobs.iter().enumerate() {
            limits::validate_spec(spec).map_err(|FieldError { field, reason }| {
                CommandError::InvalidJob {
                    index,
                    field,
                    reason,
                }
            })?;
            let merged = merge_env(&a.env, &spec.env_override);
            if merged.iter().map(|e| e.len() + 1).sum::<usize>() > limits::MAX_ENV_BYTES {
                return Err(CommandError::InvalidJob {
                    index,
                    field: "env".into(),
                    reason: format!("with its overrides exceeds {} bytes", limits::MAX_ENV_BYTES),
                });
            }
        }
        Ok(())
    }

    /// A completed job added again runs again, with the new description.
    fn add_again(
        &mut self,
        index: usize,
        old: Job,
        spec: JobSpec,
        env: Option<([u8; 32], Vec<u8>)>,
    ) -> Res<()> {
        self.check_cycle(index, &old.key, &spec)?;
        let mut job = old.clone();
        job.spec = spec;
        job.env_hash = self.store_env(env);
        job.until_buried = job.spec.retries.saturating_add(1);
        self.write_job(Some(&old), None)?;
        job.waiting = self.count_waiting(&job.spec)?;
        self.requeue(&mut job, 0)?;
        self.write_job(None, Some(&job))?;
        self.settle()?;
        Ok(())
    }

    /// A job whose key is not in the queue: a new record with the next serial.
    fn add_new(
        &mut self,
        index: usize,
        key: JobKey,
        spec: JobSpec,
        env: Option<([u8; 32], Vec<u8>)>,
    ) -> Res<()> {
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
        Ok(())
    }

    pub(super) fn set_limits_from(&mut self, spec: &JobSpec) -> Result<(), StoreError> {
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
}
