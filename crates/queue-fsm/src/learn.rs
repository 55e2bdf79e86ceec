//! Resource learning: per req group, a bounded window of recent successful runs, and the
//! recommendation drawn from it (about the 95th percentile, rounded up). Also the scheduler
//! group, which rounds requirements so that similar jobs share runners.

use crate::job::{JobSpec, Override, Requirements, RunReport};
use serde::{Deserialize, Serialize};

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

fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
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
        self.recommendation = Recommendation {
            ram_mb: clamp_u32(round_up(ram.max(1), RECOMMEND_ROUND_MB)),
            disk_gb: clamp_u32(round_up(disk, RECOMMEND_ROUND_MB).div_ceil(1024)),
            time_s: clamp_u32(round_up(time.max(1), RECOMMEND_ROUND_S)),
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

/// The scheduler group: requirements rounded (RAM to 100 MB, time to 30 min) plus the other
/// requirements and the limit groups, so that jobs a runner could run interchangeably share it.
pub fn sched_group(req: &Requirements, spec: &JobSpec) -> String {
    let ram = round_up(req.ram_mb as u64, RECOMMEND_ROUND_MB);
    let time_min = round_up(req.time_s as u64, RECOMMEND_ROUND_S) / 60;
    let mut g = format!("{ram}:{time_min}:{}:{}", req.cores_milli, req.disk_gb);
    for (k, v) in &req.other {
        g.push_str(&format!(":{k}={v}"));
    }
    let mut limits: Vec<&str> = spec.limit_names().collect();
    limits.sort_unstable();
    limits.dedup();
    if !limits.is_empty() {
        g.push('~');
        g.push_str(&limits.join(","));
    }
    g
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
}
