//! Resource learning: per req group, a bounded window of recent successful runs, and the
//! recommendation drawn from it (about the 95th percentile, rounded up). Also the scheduler
//! group, which rounds requirements so that similar jobs share runners.

use crate::job::{JobSpec, Override, Requirements, RunReport};
use crate::limits::{MAX_DISK_GB, MAX_RAM_MB, MAX_TIME_S};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// RAM and disk recommendations are rounded up to this many MB.
pub const RECOMMEND_ROUND_MB: u64 = 100;
/// Time recommendations are rounded up to this many seconds.
pub const RECOMMEND_ROUND_S: u64 = 1800;
/// Below this much RAM, a job that ran out is retried with twice as much; above, ×1.3.
pub const RAM_INCREASE_BREAKPOINT_MB: u32 = 8192;
/// A job that ran out of RAM gets at least this much more.
pub const RAM_INCREASE_MIN_MB: u32 = 1000;
/// A job that ran out of time gets at least this much more.
pub const TIME_INCREASE_MIN_S: u32 = 1800;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub ram_mb: u64,
    pub disk_mb: u64,
    pub time_s: u64,
}

/// Learned requirements of a req group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    pub ram_mb: u32,
    pub disk_gb: u32,
    pub time_s: u32,
}

/// The samples of one req group: a ring of the last `window` runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReqStats {
    pub samples: Vec<Sample>,
    /// Next ring slot to overwrite once the window is full.
    pub next: u32,
    pub total_runs: u64,
    pub recommendation: Recommendation,
}

fn p95(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    // nearest-rank: the smallest value with at least 95% of samples at or below it
    let rank = (v.len() * 95).div_ceil(100);
    v[rank.max(1) - 1]
}

/// `v` rounded up to a multiple of `to`, saturating (a runner may report anything).
fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to).saturating_mul(to)
}

fn clamp_u32(v: u64) -> u32 {
    v.min(u32::MAX as u64) as u32
}

impl ReqStats {
    /// Records a successful run and recomputes the recommendation.
    pub fn record(&mut self, report: &RunReport, window: usize) {
        let s = Sample {
            ram_mb: report.peak_ram_mb,
            disk_mb: report.peak_disk_mb,
            time_s: report.wall_ms.div_ceil(1000),
        };
        if self.samples.len() < window {
            self.samples.push(s);
        } else if window > 0 {
            let i = self.next as usize % self.samples.len();
            self.samples[i] = s;
            self.next = ((i + 1) % self.samples.len()) as u32;
        }
        self.total_runs += 1;
        let ram = p95(self.samples.iter().map(|s| s.ram_mb).collect());
        let disk = p95(self.samples.iter().map(|s| s.disk_mb).collect());
        let time = p95(self.samples.iter().map(|s| s.time_s).collect());
        // Never above what a job may ask for itself (the bounds of limits.rs), however
        // absurd a runner's report.
        self.recommendation = Recommendation {
            ram_mb: clamp_u32(round_up(ram.max(1), RECOMMEND_ROUND_MB)).min(MAX_RAM_MB),
            disk_gb: clamp_u32(round_up(disk, RECOMMEND_ROUND_MB).div_ceil(1024)).min(MAX_DISK_GB),
            time_s: clamp_u32(round_up(time.max(1), RECOMMEND_ROUND_S)).min(MAX_TIME_S),
        };
    }
}

fn combine(user: u32, learned: Option<u32>, mode: Override) -> u32 {
    match (mode, learned) {
        (Override::User, _) | (_, None) => user,
        (Override::Learned, Some(l)) => l,
        (Override::LearnedIfHigher, Some(l)) => l.max(user),
    }
}

/// The requirements in force for a job, given what was learned for its req group.
pub fn effective(spec: &JobSpec, learned: Option<&ReqStats>) -> Requirements {
    let rec = learned
        .filter(|s| s.total_runs > 0)
        .map(|s| s.recommendation);
    let u = &spec.requirements;
    Requirements {
        ram_mb: combine(u.ram_mb, rec.map(|r| r.ram_mb), spec.override_mode),
        time_s: combine(u.time_s, rec.map(|r| r.time_s), spec.override_mode),
        cores_milli: u.cores_milli,
        disk_gb: combine(u.disk_gb, rec.map(|r| r.disk_gb), spec.override_mode),
        other: u.other.clone(),
    }
}

/// A scheduler group: requirements rounded (RAM to 100 MB, time to 30 min) plus the other
/// requirements and the limit groups, so that jobs a runner could run interchangeably share
/// it. Jobs and the ready index store it in its encoding ([`SchedGroup::encode`]); the
/// scheduler reads the requirements back with [`SchedGroup::parse`].
///
/// The encoding is `ram_mb:time_min:cores_milli:disk_gb`, then `:key=value` per other
/// requirement, then `~limit,limit` when there are limit groups (sorted, deduplicated). It is
/// stored (job records, ready keys), so it must never change. Limit group names cannot
/// contain `:`, `,` or `~`; other requirements that contain `:`, `=` or `~` do not parse back
/// exactly, though the four numbers always do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedGroup {
    /// RAM, rounded up to [`RECOMMEND_ROUND_MB`].
    pub ram_mb: u64,
    /// Time, rounded up to [`RECOMMEND_ROUND_S`], in minutes.
    pub time_min: u64,
    pub cores_milli: u32,
    pub disk_gb: u32,
    pub other: BTreeMap<String, String>,
    /// Limit group names (without `:n`), sorted and deduplicated.
    pub limit_grps: Vec<String>,
}

/// A string that is not a scheduler group's encoding.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{group:?} is not a scheduler group: {reason}")]
pub struct SchedGroupError {
    pub group: String,
    pub reason: &'static str,
}

impl SchedGroup {
    /// The group of a job with requirements `req` (in force) and spec `spec`.
    pub fn of(req: &Requirements, spec: &JobSpec) -> SchedGroup {
        let mut limit_grps: Vec<String> = spec.limit_names().map(str::to_owned).collect();
        limit_grps.sort_unstable();
        limit_grps.dedup();
        SchedGroup {
            ram_mb: round_up(req.ram_mb as u64, RECOMMEND_ROUND_MB),
            time_min: round_up(req.time_s as u64, RECOMMEND_ROUND_S) / 60,
            cores_milli: req.cores_milli,
            disk_gb: req.disk_gb,
            other: req.other.clone(),
            limit_grps,
        }
    }

    /// The stored form (see the type's docs).
    pub fn encode(&self) -> String {
        let mut g = format!(
            "{}:{}:{}:{}",
            self.ram_mb, self.time_min, self.cores_milli, self.disk_gb
        );
        for (k, v) in &self.other {
            g.push_str(&format!(":{k}={v}"));
        }
        if !self.limit_grps.is_empty() {
            g.push('~');
            g.push_str(&self.limit_grps.join(","));
        }
        g
    }

    /// Reads an encoded group back.
    pub fn parse(s: &str) -> Result<SchedGroup, SchedGroupError> {
        let bad = |reason| SchedGroupError {
            group: s.to_string(),
            reason,
        };
        let (head, limits) = match s.split_once('~') {
            Some((h, l)) => (h, Some(l)),
            None => (s, None),
        };
        let mut fields = head.split(':');
        let mut number = |what| -> Result<u64, SchedGroupError> {
            fields.next().and_then(|f| f.parse().ok()).ok_or(bad(what))
        };
        let ram_mb = number("RAM is not a number")?;
        let time_min = number("time is not a number")?;
        let cores_milli = number("cores are not a number")?;
        let disk_gb = number("disk is not a number")?;
        let mut other = BTreeMap::new();
        for f in fields {
            let (k, v) = f
                .split_once('=')
                .ok_or(bad("a requirement is not key=value"))?;
            other.insert(k.to_string(), v.to_string());
        }
        let limit_grps = match limits {
            Some(l) => l.split(',').map(str::to_owned).collect(),
            None => Vec::new(),
        };
        Ok(SchedGroup {
            ram_mb,
            time_min,
            cores_milli: u32::try_from(cores_milli).map_err(|_| bad("cores out of range"))?,
            disk_gb: u32::try_from(disk_gb).map_err(|_| bad("disk out of range"))?,
            other,
            limit_grps,
        })
    }
}

impl std::fmt::Display for SchedGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.encode())
    }
}

/// The encoded scheduler group of a job (see [`SchedGroup`]).
pub fn sched_group(req: &Requirements, spec: &JobSpec) -> String {
    SchedGroup::of(req, spec).encode()
}

/// RAM to ask for after a run that ran out of it.
pub fn more_ram(ram_mb: u32) -> u32 {
    let scaled = if ram_mb < RAM_INCREASE_BREAKPOINT_MB {
        ram_mb as u64 * 2
    } else {
        (ram_mb as u64 * 13).div_ceil(10)
    };
    clamp_u32(scaled.max(ram_mb as u64 + RAM_INCREASE_MIN_MB as u64)).min(crate::limits::MAX_RAM_MB)
}

/// Time to ask for after a run that ran out of it.
pub fn more_time(time_s: u32) -> u32 {
    clamp_u32((time_s as u64 * 2).max(time_s as u64 + TIME_INCREASE_MIN_S as u64))
        .min(crate::limits::MAX_TIME_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_requirements_that_would_break_the_group_encoding_are_refused() {
        for (k, v, field) in [
            ("a:b", "1", "requirements.other key"),
            ("a=b", "1", "requirements.other key"),
            ("gpu", "2~x", "requirements.other value"),
            ("gpu", "a:1", "requirements.other value"),
        ] {
            let mut spec = JobSpec {
                cmd: "true".into(),
                ..JobSpec::default()
            };
            spec.requirements.other.insert(k.into(), v.into());
            let e = crate::limits::validate_spec(&spec).unwrap_err();
            assert_eq!(e.field, field, "{k}={v}: {e:?}");
        }
    }

    #[test]
    fn the_longest_group_fits_a_reserve_and_parses_back() {
        use crate::limits::{
            MAX_LIMIT_GRPS_PER_JOB, MAX_NAME_BYTES, MAX_OTHER_REQUIREMENTS, MAX_SCHED_GROUP_BYTES,
        };
        let name =
            |c: char, i: usize| format!("{i:03}{}", c.to_string().repeat(MAX_NAME_BYTES - 3));
        let g = SchedGroup {
            ram_mb: u64::MAX,
            time_min: u64::MAX,
            cores_milli: u32::MAX,
            disk_gb: u32::MAX,
            other: (0..MAX_OTHER_REQUIREMENTS)
                .map(|i| (name('k', i), name('v', i)))
                .collect(),
            limit_grps: (0..MAX_LIMIT_GRPS_PER_JOB).map(|i| name('l', i)).collect(),
        };
        let e = g.encode();
        assert!(e.len() <= MAX_SCHED_GROUP_BYTES, "{} bytes", e.len());
        assert_eq!(SchedGroup::parse(&e).unwrap(), g);
    }

    #[test]
    fn an_absurd_report_neither_overflows_nor_passes_the_bounds() {
        let mut st = ReqStats::default();
        let report = RunReport {
            peak_ram_mb: u64::MAX,
            peak_disk_mb: u64::MAX,
            wall_ms: u64::MAX,
            ..RunReport::default()
        };
        st.record(&report, 20);
        assert_eq!(st.recommendation.ram_mb, MAX_RAM_MB);
        assert_eq!(st.recommendation.disk_gb, MAX_DISK_GB);
        assert_eq!(st.recommendation.time_s, MAX_TIME_S);
    }

    fn report(ram: u64, disk: u64, wall_s: u64) -> RunReport {
        RunReport {
            exited: true,
            peak_ram_mb: ram,
            peak_disk_mb: disk,
            wall_ms: wall_s * 1000,
            ..RunReport::default()
        }
    }

    #[test]
    fn recommendation_is_rounded_p95() {
        let mut s = ReqStats::default();
        for i in 1..=100 {
            s.record(&report(i * 10, i * 20, i * 60), 100);
        }
        // p95 of 10..=1000 step 10 is 950 → 1000
        assert_eq!(s.recommendation.ram_mb, 1000);
        // p95 disk 1900 MB → 1900 → 2 GB
        assert_eq!(s.recommendation.disk_gb, 2);
        // p95 time 5700 s → 7200 s
        assert_eq!(s.recommendation.time_s, 7200);
    }

    #[test]
    fn window_is_bounded() {
        let mut s = ReqStats::default();
        for i in 0..250 {
            s.record(&report(if i < 200 { 5000 } else { 100 }, 0, 1), 50);
        }
        assert_eq!(s.samples.len(), 50);
        assert_eq!(s.total_runs, 250);
        assert_eq!(s.recommendation.ram_mb, 100);
    }

    #[test]
    fn override_modes() {
        let mut stats = ReqStats::default();
        stats.record(&report(3000, 0, 10), 10);
        let mut spec = JobSpec::new("x");
        spec.requirements.ram_mb = 2000;
        spec.override_mode = Override::Learned;
        assert_eq!(effective(&spec, Some(&stats)).ram_mb, 3000);
        spec.requirements.ram_mb = 5000;
        assert_eq!(effective(&spec, Some(&stats)).ram_mb, 3000);
        spec.override_mode = Override::LearnedIfHigher;
        assert_eq!(effective(&spec, Some(&stats)).ram_mb, 5000);
        spec.requirements.ram_mb = 1000;
        assert_eq!(effective(&spec, Some(&stats)).ram_mb, 3000);
        spec.override_mode = Override::User;
        assert_eq!(effective(&spec, Some(&stats)).ram_mb, 1000);
        spec.override_mode = Override::Learned;
        assert_eq!(effective(&spec, None).ram_mb, 1000);
    }

    #[test]
    fn ram_and_time_increase() {
        assert_eq!(more_ram(100), 1100);
        assert_eq!(more_ram(4000), 8000);
        assert_eq!(more_ram(10000), 13000);
        assert_eq!(more_time(600), 2400);
        assert_eq!(more_time(7200), 14400);
    }

    #[test]
    fn sched_group_rounds_and_lists_limits() {
        let mut spec = JobSpec::new("x");
        spec.limit_grps = vec!["b:3".into(), "a".into()];
        let req = Requirements {
            ram_mb: 150,
            time_s: 60,
            cores_milli: 1000,
            disk_gb: 0,
            ..Requirements::default()
        };
        assert_eq!(sched_group(&req, &spec), "200:30:1000:0~a,b");
    }

    #[test]
    fn sched_group_parses_back() {
        let g = SchedGroup::parse("2000:60:1500:0~db").unwrap();
        assert_eq!(
            g,
            SchedGroup {
                ram_mb: 2000,
                time_min: 60,
                cores_milli: 1500,
                disk_gb: 0,
                other: BTreeMap::new(),
                limit_grps: vec!["db".into()],
            }
        );
        let mut spec = JobSpec::new("x");
        spec.limit_grps = vec!["b:3".into(), "a".into(), "b".into()];
        let mut req = Requirements {
            ram_mb: 150,
            time_s: 60,
            cores_milli: 1000,
            disk_gb: 3,
            ..Requirements::default()
        };
        req.other.insert("gpu".into(), "1".into());
        req.other.insert("arch".into(), "x86".into());
        let g = SchedGroup::of(&req, &spec);
        assert_eq!(g.encode(), "200:30:1000:3:arch=x86:gpu=1~a,b");
        assert_eq!(SchedGroup::parse(&g.encode()), Ok(g));
        assert!(SchedGroup::parse("").is_err());
        assert!(SchedGroup::parse("100:30").is_err());
        assert!(SchedGroup::parse("100:30:x:0").is_err());
        assert!(SchedGroup::parse("100:30:1:0:novalue").is_err());
    }

    proptest::proptest! {
        #[test]
        fn sched_group_round_trips(
            ram in 0u32..=crate::limits::MAX_RAM_MB,
            time in 0u32..=crate::limits::MAX_TIME_S,
            cores in 0u32..=crate::limits::MAX_CORES_MILLI,
            disk in 0u32..=crate::limits::MAX_DISK_GB,
            other in proptest::collection::btree_map("[a-z_]{1,8}", "[a-zA-Z0-9._-]{0,8}", 0..4),
            limits in proptest::collection::vec("[a-z0-9_.-]{1,8}(:[0-9]{1,3})?", 0..4),
        ) {
            let mut spec = JobSpec::new("x");
            spec.limit_grps = limits;
            let req = Requirements { ram_mb: ram, time_s: time, cores_milli: cores, disk_gb: disk, other };
            let g = SchedGroup::of(&req, &spec);
            proptest::prop_assert_eq!(g.encode(), sched_group(&req, &spec));
            proptest::prop_assert_eq!(SchedGroup::parse(&g.encode()), Ok(g));
        }
    }
}
