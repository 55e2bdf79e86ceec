//! The job model: `JobSpec`, `Requirements`, `Dependency`, `Behaviour`, `RunReport` and the
//! stored `Job`. A spec from the network converts fallibly; errors name the field relative
//! to the spec (the request module puts `jobs[i]` in front).

use super::scalars::{bad_enum, byte, hex, job_key, override_mode};
use super::ConvertError;
use crate::pb;
use queue_fsm::{
    Action, Behaviour, Dependency, Job, JobSpec, JobState, Listed, Requirements, RunReport, Trigger,
};

impl From<Requirements> for pb::Requirements {
    fn from(r: Requirements) -> pb::Requirements {
        pb::Requirements {
            ram_mb: r.ram_mb,
            time_s: r.time_s,
            cores_milli: r.cores_milli,
            disk_gb: r.disk_gb,
            other: r.other.into_iter().collect(),
        }
    }
}

/// Cannot fail: every value fits (the state machine checks the limits).
impl From<pb::Requirements> for Requirements {
    fn from(r: pb::Requirements) -> Requirements {
        Requirements {
            ram_mb: r.ram_mb,
            time_s: r.time_s,
            cores_milli: r.cores_milli,
            disk_gb: r.disk_gb,
            other: r.other.into_iter().collect(),
        }
    }
}

impl From<Dependency> for pb::Dependency {
    fn from(d: Dependency) -> pb::Dependency {
        let target = match d {
            Dependency::Group(g) => pb::dependency::Target::DepGroup(g),
            Dependency::Job(k) => pb::dependency::Target::JobKey(k.to_string()),
        };
        pb::Dependency {
            target: Some(target),
        }
    }
}

/// Errors name `target` (absent) or `job_key`.
impl TryFrom<pb::Dependency> for Dependency {
    type Error = ConvertError;

    fn try_from(d: pb::Dependency) -> Result<Dependency, ConvertError> {
        match d.target {
            Some(pb::dependency::Target::DepGroup(g)) => Ok(Dependency::Group(g)),
            Some(pb::dependency::Target::JobKey(k)) => Ok(Dependency::Job(job_key("job_key", &k)?)),
            None => Err(ConvertError::new(
                "target",
                "is missing; set dep_group or job_key",
            )),
        }
    }
}

impl From<Behaviour> for pb::Behaviour {
    fn from(b: Behaviour) -> pb::Behaviour {
        let action = match b.action {
            Action::Cleanup => pb::behaviour::Action::Cleanup(true),
            Action::CleanupAll => pb::behaviour::Action::CleanupAll(true),
            Action::Run(c) => pb::behaviour::Action::Run(c),
            Action::Remove => pb::behaviour::Action::Remove(true),
        };
        pb::Behaviour {
            when: pb::behaviour::When::from(b.when) as i32,
            action: Some(action),
        }
    }
}

/// Errors name `when` (unknown value), `action` (absent) or the action's field (a flag action
/// set to false: the field that is set chooses the action, so false would be ambiguous).
impl TryFrom<pb::Behaviour> for Behaviour {
    type Error = ConvertError;

    fn try_from(b: pb::Behaviour) -> Result<Behaviour, ConvertError> {
        let when = pb::behaviour::When::try_from(b.when)
            .map(Trigger::from)
            .map_err(|_| bad_enum("when", b.when))?;
        let flag = |field: &str, set: bool, action: Action| {
            if set {
                Ok(action)
            } else {
                Err(ConvertError::new(
                    field,
                    "is false; set the action's field to true (the field that is set chooses the action)",
                ))
            }
        };
        let action = match b.action {
            Some(pb::behaviour::Action::Cleanup(v)) => flag("cleanup", v, Action::Cleanup)?,
            Some(pb::behaviour::Action::CleanupAll(v)) => {
                flag("cleanup_all", v, Action::CleanupAll)?
            }
            Some(pb::behaviour::Action::Run(c)) => Action::Run(c),
            Some(pb::behaviour::Action::Remove(v)) => flag("remove", v, Action::Remove)?,
            None => {
                return Err(ConvertError::new(
                    "action",
                    "is missing; set cleanup, cleanup_all, run or remove",
                ))
            }
        };
        Ok(Behaviour { when, action })
    }
}

impl From<RunReport> for pb::RunReport {
    fn from(r: RunReport) -> pb::RunReport {
        pb::RunReport {
            exited: r.exited,
            exit_code: r.exit_code,
            peak_ram_mb: r.peak_ram_mb,
            peak_disk_mb: r.peak_disk_mb,
            cpu_ms: r.cpu_ms,
            wall_ms: r.wall_ms,
            started_ms: r.started_ms,
            ended_ms: r.ended_ms,
            actual_cwd: r.actual_cwd,
            stdout: r.stdout,
            stderr: r.stderr,
        }
    }
}

/// Cannot fail: the types are the same (the state machine checks sizes).
impl From<pb::RunReport> for RunReport {
    fn from(r: pb::RunReport) -> RunReport {
        RunReport {
            exited: r.exited,
            exit_code: r.exit_code,
            peak_ram_mb: r.peak_ram_mb,
            peak_disk_mb: r.peak_disk_mb,
            cpu_ms: r.cpu_ms,
            wall_ms: r.wall_ms,
            started_ms: r.started_ms,
            ended_ms: r.ended_ms,
            actual_cwd: r.actual_cwd,
            stdout: r.stdout,
            stderr: r.stderr,
        }
    }
}

impl From<JobSpec> for pb::JobSpec {
    fn from(s: JobSpec) -> pb::JobSpec {
        pb::JobSpec {
            cmd: s.cmd,
            cwd: s.cwd,
            cwd_matters: s.cwd_matters,
            change_home: s.change_home,
            mounts: s.mounts,
            rep_grp: s.rep_grp,
            req_grp: s.req_grp,
            requirements: Some(s.requirements.into()),
            r#override: s.override_mode as u32,
            priority: s.priority.into(),
            retries: s.retries.into(),
            dep_grps: s.dep_grps,
            deps: s.deps.into_iter().map(Into::into).collect(),
            behaviours: s.behaviours.into_iter().map(Into::into).collect(),
            env_override: s.env_override,
            limit_grps: s.limit_grps,
        }
    }
}

/// Absent `requirements` means all zero. Errors name the field relative to the spec
/// (`priority`, `deps[0].job_key`, …).
impl TryFrom<pb::JobSpec> for JobSpec {
    type Error = ConvertError;

    fn try_from(s: pb::JobSpec) -> Result<JobSpec, ConvertError> {
        Ok(JobSpec {
            override_mode: override_mode(s.r#override)?,
            priority: byte("priority", s.priority)?,
            retries: byte("retries", s.retries)?,
            deps: deps(s.deps)?,
            behaviours: behaviours(s.behaviours)?,
            cmd: s.cmd,
            cwd: s.cwd,
            cwd_matters: s.cwd_matters,
            change_home: s.change_home,
            mounts: s.mounts,
            rep_grp: s.rep_grp,
            req_grp: s.req_grp,
            requirements: s.requirements.map(Into::into).unwrap_or_default(),
            dep_grps: s.dep_grps,
            env_override: s.env_override,
            limit_grps: s.limit_grps,
        })
    }
}

pub(super) fn deps(ds: Vec<pb::Dependency>) -> Result<Vec<Dependency>, ConvertError> {
    ds.into_iter()
        .enumerate()
        .map(|(i, d)| Dependency::try_from(d).map_err(|e| e.under(&format!("deps[{i}]"))))
        .collect()
}

pub(super) fn behaviours(bs: Vec<pb::Behaviour>) -> Result<Vec<Behaviour>, ConvertError> {
    bs.into_iter()
        .enumerate()
        .map(|(i, b)| Behaviour::try_from(b).map_err(|e| e.under(&format!("behaviours[{i}]"))))
        .collect()
}

/// A stored job as the client sees it. The reservation's fence, lease and kill flag are set
/// for reserved, running and lost jobs; `until_ms` is the delay's end (delayed) or the return
/// time (lost); `similar` is 0 (the `From<Listed>` conversion sets it).
impl From<Job> for pb::Job {
    fn from(j: Job) -> pb::Job {
        let state = pb::StateName::from(j.state.name()) as i32;
        let (fence, lease_until_ms, kill_requested) =
            j.state.reservation().map_or((0, 0, false), |r| {
                (r.fence.0, r.lease_until_ms, r.kill_requested)
            });
        let until_ms = match j.state {
            JobState::Delayed { until_ms } => until_ms,
            JobState::Lost { return_ms, .. } => return_ms,
            _ => 0,
        };
        pb::Job {
            key: j.key.to_string(),
            spec: Some(j.spec.into()),
            effective: Some(j.effective.into()),
            sched_group: j.sched_group,
            state,
            waiting: j.waiting,
            attempts: j.attempts,
            until_buried: j.until_buried.into(),
            added_ms: j.added_ms,
            env_hash: j.env_hash.map_or_else(String::new, |h| hex(&h)),
            host: j.run.host,
            pid: j.run.pid,
            fail_reason: j.run.fail_reason,
            last_run: j.run.report.map(Into::into),
            fence,
            lease_until_ms,
            kill_requested,
            until_ms,
            similar: 0,
        }
    }
}

/// A query result: the job with its `similar` count.
impl From<Listed> for pb::Job {
    fn from(l: Listed) -> pb::Job {
        pb::Job {
            similar: l.similar,
            ..l.job.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::scalars::state_name;
    use crate::convert::testkit::{
        full_job, full_report, full_requirements, full_spec, reservation,
    };
    use queue_fsm::{RunInfo, StateName};

    #[test]
    fn job_model_round_trips() {
        let spec = full_spec();
        assert_eq!(JobSpec::try_from(pb::JobSpec::from(spec.clone())), Ok(spec));
        let default = JobSpec::new("x");
        assert_eq!(
            JobSpec::try_from(pb::JobSpec::from(default.clone())),
            Ok(default)
        );
        let req = full_requirements();
        assert_eq!(Requirements::from(pb::Requirements::from(req.clone())), req);
        for d in full_spec().deps {
            assert_eq!(Dependency::try_from(pb::Dependency::from(d.clone())), Ok(d));
        }
        for b in full_spec().behaviours {
            assert_eq!(Behaviour::try_from(pb::Behaviour::from(b.clone())), Ok(b));
        }
        let rep = full_report();
        assert_eq!(RunReport::from(pb::RunReport::from(rep.clone())), rep);
        for s in StateName::ALL {
            assert_eq!(StateName::from(pb::StateName::from(s)), s);
            assert_eq!(state_name(pb::StateName::from(s) as i32), Ok(s));
        }
    }

    #[test]
    fn spec_without_requirements_defaults() {
        let p = pb::JobSpec {
            cmd: "x".into(),
            ..Default::default()
        };
        assert_eq!(JobSpec::try_from(p), Ok(JobSpec::new("x")));
    }

    #[test]
    fn a_full_job_converts() {
        let j = pb::Job::from(full_job(JobState::Running(reservation())));
        assert_eq!(j.key, full_spec().key().to_string());
        assert_eq!(j.spec, Some(full_spec().into()));
        assert_eq!(j.effective, Some(full_requirements().into()));
        assert_eq!(j.sched_group, "2048:60:1500:10");
        assert_eq!(j.state, pb::StateName::Running as i32);
        assert_eq!((j.attempts, j.until_buried, j.added_ms), (2, 5, 1_000));
        assert_eq!(j.env_hash, "ab".repeat(32));
        assert_eq!((j.host.as_str(), j.pid), ("node1", 4321));
        assert_eq!(j.fail_reason, "command used too much RAM");
        assert_eq!(j.last_run, Some(full_report().into()));
        assert_eq!(
            (j.fence, j.lease_until_ms, j.kill_requested),
            (42, 123_456, true)
        );
        assert_eq!((j.until_ms, j.similar), (0, 0));

        let j = pb::Job::from(full_job(JobState::Lost {
            held: reservation(),
            started: true,
            return_ms: 999,
        }));
        assert_eq!(j.state, pb::StateName::Lost as i32);
        assert_eq!((j.fence, j.until_ms), (42, 999));

        let mut job = full_job(JobState::Delayed { until_ms: 77 });
        job.env_hash = None;
        job.run = RunInfo::default();
        let j = pb::Job::from(Listed { job, similar: 4 });
        assert_eq!(j.state, pb::StateName::Delayed as i32);
        assert_eq!((j.until_ms, j.fence, j.similar), (77, 0, 4));
        assert_eq!(j.env_hash, "");
        assert_eq!(j.last_run, None);
    }
}
