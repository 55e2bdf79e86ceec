//! Values that the tests of every conversion module share: a job key, and a spec, a report
//! and a job with every field set (so that a round trip that drops a field shows).

use super::ConvertError;
use queue_fsm::{
    Action, Behaviour, Dependency, FenceToken, Job, JobKey, JobSpec, JobState, Override,
    Requirements, Reservation, RunInfo, RunReport, RunnerId, Trigger,
};

pub(super) fn key(s: &str) -> JobKey {
    JobKey::of(s, "", false, "")
}

pub(super) fn full_requirements() -> Requirements {
    Requirements {
        ram_mb: 2048,
        time_s: 3600,
        cores_milli: 1500,
        disk_gb: 10,
        other: [
            ("gpu".to_string(), "a100".to_string()),
            ("x".into(), "y".into()),
        ]
        .into_iter()
        .collect(),
    }
}

pub(super) fn full_report() -> RunReport {
    RunReport {
        exited: true,
        exit_code: -3,
        peak_ram_mb: 100,
        peak_disk_mb: 200,
        cpu_ms: 300,
        wall_ms: 400,
        started_ms: 500,
        ended_ms: 900,
        actual_cwd: "/tmp/w".into(),
        stdout: "out".into(),
        stderr: "err ✓".into(),
    }
}

pub(super) fn full_spec() -> JobSpec {
    JobSpec {
        cmd: "echo hi".into(),
        cwd: "/home/u".into(),
        cwd_matters: true,
        change_home: true,
        mounts: "m1".into(),
        rep_grp: "rep".into(),
        req_grp: "req".into(),
        requirements: full_requirements(),
        override_mode: Override::LearnedIfHigher,
        priority: 255,
        retries: 7,
        dep_grps: vec!["g1".into(), "g2".into()],
        deps: vec![Dependency::Group("other".into()), Dependency::Job(key("a"))],
        behaviours: vec![
            Behaviour {
                when: Trigger::OnSuccess,
                action: Action::Cleanup,
            },
            Behaviour {
                when: Trigger::OnFailure,
                action: Action::Run("notify".into()),
            },
            Behaviour {
                when: Trigger::OnExit,
                action: Action::CleanupAll,
            },
            Behaviour {
                when: Trigger::OnFailure,
                action: Action::Remove,
            },
        ],
        env_override: vec!["A=1".into()],
        limit_grps: vec!["l".into(), "m:3".into()],
    }
}

pub(super) fn reservation() -> Reservation {
    Reservation {
        runner: RunnerId(9),
        fence: FenceToken(42),
        ttr_ms: 60_000,
        lease_until_ms: 123_456,
        kill_requested: true,
    }
}

pub(super) fn full_job(state: JobState) -> Job {
    Job {
        serial: 9,
        key: full_spec().key(),
        spec: full_spec(),
        env_hash: Some([0xab; 32]),
        effective: full_requirements(),
        sched_group: "2048:60:1500:10".into(),
        state,
        waiting: 0,
        seq: 17,
        attempts: 2,
        until_buried: 5,
        added_ms: 1_000,
        run: RunInfo {
            host: "node1".into(),
            pid: 4321,
            report: Some(full_report()),
            fail_reason: "command used too much RAM".into(),
        },
    }
}

pub(super) fn field_of<T: std::fmt::Debug>(r: Result<T, ConvertError>) -> String {
    r.expect_err("conversion should fail").field
}
