//! Reports of a runner on its reservation: started, touch, archive, release and bury.

use super::reserve::not_held;
use super::{Ctx, Res};
use crate::command::{CommandError, HandBack, Response};
use crate::fsm::encode;
use crate::ids::{FenceToken, JobKey};
use crate::job::{Job, JobState, Override, Reservation, RunInfo, RunReport};
use crate::learn;
use crate::limits::{self, invalid};
use crate::store::{Space, StoreError};
use crate::verdict::FailReason;

impl Ctx<'_> {
    pub(super) fn started(
        &mut self,
        key: JobKey,
        fence: FenceToken,
        host: String,
        pid: u32,
    ) -> Res<Response> {
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

    pub(super) fn touch(&mut self, key: JobKey, fence: FenceToken) -> Res<Response> {
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

    pub(super) fn check_report(report: &RunReport) -> Result<(), CommandError> {
        limits::check_text(
            "report.actual_cwd",
            &report.actual_cwd,
            limits::MAX_PATH_BYTES,
        )?;
        limits::check_text("report.stdout", &report.stdout, limits::MAX_OUTPUT_BYTES)?;
        limits::check_text("report.stderr", &report.stderr, limits::MAX_OUTPUT_BYTES)?;
        Ok(())
    }

    pub(super) fn archive(
        &mut self,
        key: JobKey,
        fence: FenceToken,
        mut report: RunReport,
    ) -> Res<Response> {
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

    pub(super) fn release_delay(&self, attempts: u32) -> u64 {
        let c = &self.meta.config;
        let shift = attempts.saturating_sub(1).min(20);
        c.release_delay_ms
            .saturating_mul(1u64 << shift)
            .min(c.max_release_delay_ms)
    }

    /// Back to the queue after a failure; a failed *run* uses up one retry, and the last one
    /// buries the job. Returns the new state.
    pub(super) fn fail_back(
        &mut self,
        job: &mut Job,
        ran: bool,
        reason: &str,
    ) -> Result<(), StoreError> {
        job.run.fail_reason = reason.to_string();
        match FailReason::parse(reason) {
            Some(FailReason::Ram) => {
                job.spec.requirements.ram_mb =
                    learn::more_ram(job.effective.ram_mb.max(job.spec.requirements.ram_mb));
                if job.spec.override_mode == Override::Learned {
                    job.spec.override_mode = Override::LearnedIfHigher;
                }
            }
            Some(FailReason::Time) => {
                job.spec.requirements.time_s =
                    learn::more_time(job.effective.time_s.max(job.spec.requirements.time_s));
                if job.spec.override_mode == Override::Learned {
                    job.spec.override_mode = Override::LearnedIfHigher;
                }
            }
            _ => {}
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
    pub(super) fn failed_run(&self, h: &mut HandBack) -> Res<(Job, Job, bool)> {
        limits::check_text("reason", &h.reason, limits::MAX_REASON_BYTES)?;
        if let Some(r) = &h.report {
            Self::check_report(r)?;
        }
        let old = self.fenced(&h.key, h.fence)?;
        let ran = matches!(
            old.state,
            JobState::Running(_) | JobState::Lost { started: true, .. }
        );
        let mut job = old.clone();
        if let Some(report) = h.report.take() {
            job.run.report = Some(report);
        }
        Ok((old, job, ran))
    }

    pub(super) fn release(&mut self, mut h: HandBack) -> Res<Response> {
        let (old, mut job, ran) = self.failed_run(&mut h)?;
        self.fail_back(&mut job, ran, &h.reason)?;
        let state = job.state.name();
        self.save(&old, &job)?;
        Ok(Response::Released { state })
    }

    pub(super) fn bury(&mut self, mut h: HandBack) -> Res<Response> {
        let (old, mut job, _) = self.failed_run(&mut h)?;
        job.run.fail_reason = h.reason;
        job.state = JobState::Buried;
        self.save(&old, &job)?;
        Ok(Response::Ok)
    }
}
