//! Reserve and leases: picking the best ready job across scheduler groups within limits,
//! issuing a fence, and checking the fence of later commands.

use super::{Ctx, Failure, Res};
use crate::command::{CommandError, NoJob, ReserveMode, Response};
use crate::ids::{FenceToken, JobKey, RunnerId};
use crate::job::{Job, JobSpec, JobState, Reservation};
use crate::keys;
use crate::limits;
use crate::store::{Space, StoreError};

impl Ctx<'_> {
    /// The first ready entry of a group: (ready key, job key).
    pub(super) fn first_ready(
        &mut self,
        group: &str,
    ) -> Result<Option<(Vec<u8>, JobKey)>, StoreError> {
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
    pub(super) fn limits_allow(&self, spec: &JobSpec) -> Result<bool, StoreError> {
        for name in spec.limit_names() {
            if let Some(l) = self.limit_state(name)? {
                if l.limit >= 0 && l.held >= l.limit as u64 {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    pub(super) fn reserve(
        &mut self,
        runner: RunnerId,
        group: Option<String>,
        ttr_ms: u64,
    ) -> Res<Response> {
        limits::check_ttr(ttr_ms)?;
        match self.meta.reserving {
            ReserveMode::Open => {}
            ReserveMode::Paused => return Ok(Response::NoJob(NoJob::Paused)),
            ReserveMode::Draining => return Ok(Response::NoJob(NoJob::Draining)),
        }
        let groups: Vec<String> = match group {
            Some(g) => {
                limits::check_text("group", &g, limits::MAX_SCHED_GROUP_BYTES)?;
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
    pub(super) fn fenced(&self, key: &JobKey, fence: FenceToken) -> Res<Job> {
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
}

/// `fenced()` only returns held jobs; a job that is not held here means a broken invariant.
pub(super) fn not_held(job: &Job) -> Failure {
    Failure::Store(StoreError::Corrupt(format!(
        "job {} has a fence but is {}",
        job.key,
        job.state.name()
    )))
}
