//! Jobs, counts and cluster status as JSON: one shape for `raftq status -o json`, the REST API
//! and the web page, with wr's field names where wr has one.

use raftq_proto::pb;
use serde_json::{json, Value};

/// A state's name as the REST API and the CLI spell it (`buried`).
pub fn state_name(j: &pb::Job) -> String {
    pb::StateName::try_from(j.state)
        .map(|s| s.as_str_name().to_lowercase())
        .unwrap_or_else(|_| "?".into())
}

fn requirements(r: &pb::Requirements) -> Value {
    json!({
        "ram_mb": r.ram_mb,
        "time_s": r.time_s,
        "cores": r.cores_milli as f64 / 1000.0,
        "disk_gb": r.disk_gb,
        "other": r.other,
    })
}

/// A job: what it is, where it is, what its last run did, the requirements asked (`asked`)
/// and those in force (`requirements`: asked and learned combined as `override` says).
pub fn job_json(j: &pb::Job) -> Value {
    let spec = j.spec.clone().unwrap_or_default();
    let run = j.last_run.clone().unwrap_or_default();
    let eff = j.effective.clone().unwrap_or_default();
    let asked = spec.requirements.clone().unwrap_or_default();
    let deps: Vec<Value> = spec
        .deps
        .iter()
        .filter_map(|d| match &d.target {
            Some(pb::dependency::Target::DepGroup(g)) => Some(json!({ "dep_grp": g })),
            Some(pb::dependency::Target::JobKey(k)) => Some(json!({ "key": k })),
            None => None,
        })
        .collect();
    json!({
        "key": j.key,
        "cmd": spec.cmd,
        "cwd": spec.cwd,
        "cwd_matters": spec.cwd_matters,
        "rep_grp": spec.rep_grp,
        "req_grp": spec.req_grp,
        "dep_grps": spec.dep_grps,
        "deps": deps,
        "limit_grps": spec.limit_grps,
        "priority": spec.priority,
        "retries": spec.retries,
        "override": spec.r#override,
        "state": state_name(j),
        "waiting": j.waiting,
        "attempts": j.attempts,
        "until_buried": j.until_buried,
        "similar": j.similar,
        "added_ms": j.added_ms,
        "host": j.host,
        "pid": j.pid,
        "kill_requested": j.kill_requested,
        "exited": run.exited,
        "exit_code": run.exit_code,
        "fail_reason": j.fail_reason,
        "peak_ram_mb": run.peak_ram_mb,
        "peak_disk_mb": run.peak_disk_mb,
        "cpu_ms": run.cpu_ms,
        "wall_ms": run.wall_ms,
        "started_ms": run.started_ms,
        "ended_ms": run.ended_ms,
        "actual_cwd": run.actual_cwd,
        "stdout": run.stdout,
        "stderr": run.stderr,
        "env_hash": j.env_hash,
        "asked": requirements(&asked),
        "requirements": requirements(&eff),
    })
}

/// Counts per rep group and state, and the totals per state (every state present).
pub fn counts_json(stats: &pb::StatsResponse) -> Value {
    let mut totals: std::collections::BTreeMap<String, u64> = queue_fsm::StateName::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    let mut groups = serde_json::Map::new();
    let mut names: Vec<&String> = stats.rep_groups.keys().collect();
    names.sort();
    for g in names {
        let c = &stats.rep_groups[g];
        let mut counts: Vec<(&String, &u64)> = c.counts.iter().collect();
        counts.sort();
        for (s, n) in &counts {
            *totals.entry((*s).clone()).or_default() += **n;
        }
        groups.insert(
            g.clone(),
            counts
                .into_iter()
                .map(|(s, n)| (s.clone(), json!(n)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
    }
    json!({ "states": totals, "rep_groups": groups })
}

/// The cluster as the answering node sees it.
pub fn cluster_json(c: &pb::ClusterStatusResponse) -> Value {
    let nodes: Vec<Value> = c
        .nodes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "addr": n.addr,
                "role": n.role,
                "voter": n.voter,
                "term": n.term,
                "last_log_index": n.last_log_index,
                "applied_index": n.applied_index,
                "lag": n.lag,
                "snapshot_index": n.snapshot_index,
                "purged_index": n.purged_index,
                "store_errors": n.store_errors,
                "last_store_error": n.last_store_error,
            })
        })
        .collect();
    json!({
        "leader": c.leader,
        "term": c.term,
        "answered_by": c.answered_by,
        "nodes": nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_job_json_carries_usage_output_and_requirements() {
        let j = pb::Job {
            key: "k".into(),
            spec: Some(pb::JobSpec {
                cmd: "make".into(),
                requirements: Some(pb::Requirements {
                    ram_mb: 100,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            state: pb::StateName::Buried as i32,
            last_run: Some(pb::RunReport {
                exited: true,
                exit_code: 2,
                peak_ram_mb: 300,
                stderr: "no rule".into(),
                ..Default::default()
            }),
            effective: Some(pb::Requirements {
                ram_mb: 512,
                cores_milli: 1500,
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = job_json(&j);
        assert_eq!(v["state"], "buried");
        assert_eq!(v["exit_code"], 2);
        assert_eq!(v["peak_ram_mb"], 300);
        assert_eq!(v["stderr"], "no rule");
        assert_eq!(v["requirements"]["ram_mb"], 512);
        assert_eq!(v["requirements"]["cores"], 1.5);
        assert_eq!(v["asked"]["ram_mb"], 100);
    }

    #[test]
    fn http_counts_json_totals_every_state() {
        let stats = pb::StatsResponse {
            rep_groups: [(
                "a".to_string(),
                pb::StateCounts {
                    counts: [("ready".to_string(), 2)].into_iter().collect(),
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let v = counts_json(&stats);
        assert_eq!(v["states"]["ready"], 2);
        assert_eq!(v["states"]["buried"], 0);
        assert_eq!(v["rep_groups"]["a"]["ready"], 2);
    }
}
