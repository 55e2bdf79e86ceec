//! What a simulation leaves: the summary lines and the files of a run directory.

use super::{SimOptions, SimOutcome, SimStats};
use crate::history;
use crate::store::write_json;
use serde_json::json;
use std::path::Path;

/// A line per checker, as `raftq-jepsen test` prints them.
pub fn summary(out: &SimOutcome) -> String {
    let mut s = String::new();
    for (name, v) in &out.results {
        s.push_str(&format!("  {name:<22} {:?}\n", v.valid));
    }
    s
}

/// One line on what the simulated layer went through.
pub fn stats_line(st: &SimStats) -> String {
    format!(
        "{} events, {:.1} s virtual ({:.1} s workload), {} log entries, {} faults ({} crashes, \
         {} partitions, {} clock jumps), {} elections, {} snapshots installed, {} replays, \
         {} entries cut, {} replies lost, {} retries, {}",
        st.events,
        st.virtual_ms as f64 / 1e3,
        st.workload_ms as f64 / 1e3,
        st.log_entries,
        st.faults,
        st.crashes,
        st.partitions,
        st.clock_jumps,
        st.elections,
        st.snapshots_installed,
        st.restarts_replayed,
        st.truncated_entries,
        st.lost_replies,
        st.client_retries,
        if st.drained {
            "drained"
        } else {
            "drain timed out"
        }
    )
}

/// Writes `history.jsonl`, `results.json` (as a real run's) and `test.json` (the options and
/// the stats; with it, `raftq-jepsen check DIR` checks the history again) into `dir`.
pub fn write_outputs(dir: &Path, opts: &SimOptions, out: &SimOutcome) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("history.jsonl");
    let f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    history::write_jsonl(&out.history, &mut w).map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::Write::flush(&mut w).map_err(|e| format!("{}: {e}", path.display()))?;
    write_json(
        &dir.join("results.json"),
        &json!({ "valid": out.valid, "checkers": out.results }),
    )?;
    let mut test = json!({
        "name": opts.name(),
        "mode": "simulation",
        "nodes": opts.nodes,
        "workload": "queue",
        "nemesis": ["kill", "partition", "clock"],
        "seed": opts.seed,
        "steps": opts.steps,
        "stats": out.stats,
    });
    if opts.bugs.any() {
        test["planted_bugs"] = json!(opts.bugs);
    }
    write_json(&dir.join("test.json"), &test)
}
