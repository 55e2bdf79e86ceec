//! The job spec that `raftq bench` adds by the thousand and the e2e tests use as their fixture.

use raftq_proto::pb;

/// A small job (100 MB, 1 minute, 1 core) running `cmd` in rep group `rep`.
pub fn small_job(cmd: String, rep: &str) -> pb::JobSpec {
    pb::JobSpec {
        cmd,
        rep_grp: rep.into(),
        requirements: Some(pb::Requirements {
            ram_mb: 100,
            time_s: 60,
            cores_milli: 1000,
            ..Default::default()
        }),
        ..Default::default()
    }
}
