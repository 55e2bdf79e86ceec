//! The files of a run in the store: the run directory's time stamp, the revision tested, the
//! JSON files (`test.json`, `results.json`) and the `latest` link. Shared by real runs
//! ([`crate::run`]) and the simulation ([`crate::sim`]).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// UTC time as 20261128T210501Z.
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The repository revision the harness runs from (`unknown` outside a git checkout).
pub fn git_revision() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Writes `v` to `path` as pretty JSON with a final newline.
pub fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Points `store/latest` at `dir`.
pub fn link_latest(store: &Path, dir: &Path) {
    let latest = store.join("latest");
    let _ = std::fs::remove_file(&latest);
    let target = dir.strip_prefix(store).unwrap_or(dir);
    let _ = std::os::unix::fs::symlink(target, &latest);
}
