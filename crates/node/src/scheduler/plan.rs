//! What one round of the scheduler does, as a pure function of what it read: which runners
//! to start, which groups' idle runners should yield, which groups can never fit; and the
//! backoff of groups whose runners exit early.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What one runner of a scheduler group needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub ram_mb: u64,
    pub cores_milli: u64,
}

/// What a runner of a scheduler group needs, read from the group
/// ([`queue_fsm::SchedGroup`]); a name that is not a group counts as no RAM and one core.
pub fn needs_of(group: &str) -> Needs {
    match queue_fsm::SchedGroup::parse(group) {
        Ok(g) => Needs {
            ram_mb: g.ram_mb,
            cores_milli: u64::from(g.cores_milli).max(1),
        },
        Err(_) => Needs {
            ram_mb: 0,
            cores_milli: 1000,
        },
    }
}

/// First and largest wait before a group whose runners exit early gets another runner.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// What a round reads of the queue, in one read of the replica.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueView {
    /// Reserving is open (not paused, not draining).
    pub open: bool,
    /// Ready jobs per scheduler group.
    pub ready: BTreeMap<String, u64>,
    /// Jobs held by runners per scheduler group (reserved, running, lost).
    pub held: BTreeMap<String, u64>,
    /// Limit groups: their limit and the slots their jobs hold.
    pub limits: BTreeMap<String, queue_fsm::LimitState>,
}

impl QueueView {
    pub(super) fn read(
        f: &mut queue_fsm::Fsm<queue_fsm::RocksStore>,
    ) -> Result<QueueView, queue_fsm::StoreError> {
        Ok(QueueView {
            open: f.meta().reserving == queue_fsm::ReserveMode::Open,
            ready: f.ready_by_sched_group()?,
            held: f.held_by_sched_group()?,
            limits: f.limit_groups()?,
        })
    }
}

/// What the runners of this scheduler may use together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub cores_milli: u64,
    pub ram_mb: u64,
}

impl Budget {
    fn holds(&self, used: Needs, more: Needs) -> bool {
        used.cores_milli + more.cores_milli <= self.cores_milli
            && used.ram_mb + more.ram_mb <= self.ram_mb
    }
}

/// What one round does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Runners to start, one entry each.
    pub start: Vec<(String, Needs)>,
    /// Groups whose idle runners should exit now (their long polls end with no job), because
    /// another group waits for the cores or RAM they hold.
    pub yielding: BTreeSet<String>,
    /// Groups with ready jobs that need more than the whole budget: no runner here can ever
    /// take them, so they are buried with [`queue_fsm::FailReason::Resource`].
    pub never_fit: Vec<String>,
}

/// Free slots per limit group for new runners: a group's limit less what its jobs hold or
/// its live runners could take, whichever is more (an idle runner will take a slot as soon
/// as a job is ready). Unlimited groups are absent.
fn free_slots(q: &QueueView, running: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut live: BTreeMap<&str, u64> = BTreeMap::new();
    for (g, n) in running {
        for l in limits_of(g) {
            if let Some((name, _)) = q.limits.get_key_value(&l) {
                *live.entry(name.as_str()).or_default() += n;
            }
        }
    }
    q.limits
        .iter()
        .filter(|(_, s)| s.limit >= 0)
        .map(|(name, s)| {
            let taken = s.held.max(live.get(name.as_str()).copied().unwrap_or(0));
            (name.clone(), (s.limit as u64).saturating_sub(taken))
        })
        .collect()
}

fn limits_of(group: &str) -> Vec<String> {
    queue_fsm::SchedGroup::parse(group)
        .map(|g| g.limit_grps)
        .unwrap_or_default()
}

/// A group that wants runners this round.
struct Want {
    group: String,
    need: Needs,
    limits: Vec<String>,
    /// Runners still to start.
    more: u64,
    /// Runners it has (live ones and those planned so far): fewer goes first.
    share: u64,
}

/// How many runners to start per group, given what is ready, what runs, and the budget.
///
/// - Nothing while reserving is paused or draining (a runner would exit at once).
/// - A group gets at most one runner per ready job that no idle runner of its own will take
///   (idle runners = live runners − held jobs), and none while a limit group of it has no
///   free slot (`free_slots`).
/// - Freed capacity goes one runner at a time to the group with the fewest runners (ties by
///   name), so groups share it instead of the first name taking all. A group that does not
///   fit in what is left is passed over for smaller ones (backfill).
/// - `held_off` groups (backing off, see [`Backoffs`]) get none this round.
/// - When a group still waits for cores or RAM, the groups whose runners are idle with no
///   job they could take are asked to yield.
pub fn plan(
    q: &QueueView,
    running: &BTreeMap<String, u64>,
    budget: Budget,
    held_off: &BTreeSet<String>,
) -> Plan {
    let mut out = Plan::default();
    if !q.open {
        return out;
    }
    let mut used = Needs::default();
    for (g, n) in running {
        let need = needs_of(g);
        used.cores_milli += need.cores_milli * n;
        used.ram_mb += need.ram_mb * n;
    }
    let mut free = free_slots(q, running);
    let mut wants = Vec::new();
    for (g, n_ready) in &q.ready {
        let need = needs_of(g);
        if need.cores_milli > budget.cores_milli || need.ram_mb > budget.ram_mb {
            // Buried when one can be reserved: a limit-blocked group waits (no write per round).
            if takeable(q, g) {
                out.never_fit.push(g.clone());
            }
            continue;
        }
        let have = running.get(g).copied().unwrap_or(0);
        let idle = have.saturating_sub(q.held.get(g).copied().unwrap_or(0));
        let more = n_ready.saturating_sub(idle);
        if more > 0 && !held_off.contains(g) {
            wants.push(Want {
                group: g.clone(),
                need,
                limits: limits_of(g),
                more,
                share: have,
            });
        }
    }
    let slots_free =
        |free: &BTreeMap<String, u64>, w: &Want| w.limits.iter().all(|l| free.get(l) != Some(&0));
    loop {
        let next = wants
            .iter_mut()
            .filter(|w| w.more > 0 && slots_free(&free, w) && budget.holds(used, w.need))
            .min_by(|a, b| (a.share, &a.group).cmp(&(b.share, &b.group)));
        let Some(w) = next else { break };
        w.more -= 1;
        w.share += 1;
        used.cores_milli += w.need.cores_milli;
        used.ram_mb += w.need.ram_mb;
        for l in &w.limits {
            if let Some(n) = free.get_mut(l) {
                *n -= 1;
            }
        }
        out.start.push((w.group.clone(), w.need));
    }
    let waiting = wants.iter().any(|w| w.more > 0 && slots_free(&free, w));
    if waiting {
        out.yielding = running
            .iter()
            .filter(|(g, n)| **n > q.held.get(*g).copied().unwrap_or(0) && !takeable(q, g))
            .map(|(g, _)| g.clone())
            .collect();
    }
    out
}

/// Whether a runner of `group` could reserve a job now: one is ready and no limit group of
/// it is full (the queue's own rule at reserve).
fn takeable(q: &QueueView, group: &str) -> bool {
    q.ready.get(group).is_some_and(|n| *n > 0)
        && limits_of(group).iter().all(|l| {
            q.limits
                .get(l)
                .is_none_or(|s| s.limit < 0 || s.held < s.limit as u64)
        })
}

/// Per-group backoff for runners that exit early. A runner that ends before its idle time
/// is up without being asked to (it found the queue paused or draining, could not reach a
/// manager, or crashed) makes its group wait before the next start, twice as long each time
/// up to `BACKOFF_MAX` (60 s); one that lived its idle time out resets it. So a condition that
/// makes runners exit at once costs one start per backoff period, never a fork storm.
#[derive(Debug, Default)]
pub struct Backoffs {
    groups: BTreeMap<String, (Duration, Instant)>,
}

impl Backoffs {
    /// A runner of `group` ended after `lived`; `idle_exit` is how long an idle runner waits.
    pub fn ended(&mut self, group: &str, lived: Duration, idle_exit: Duration, now: Instant) {
        if lived >= idle_exit {
            self.groups.remove(group);
            return;
        }
        let delay = match self.groups.get(group) {
            Some((d, _)) => (*d * 2).min(BACKOFF_MAX),
            None => BACKOFF_MIN,
        };
        self.groups.insert(group.to_string(), (delay, now + delay));
    }

    /// Groups that must not get a runner at `now`.
    pub fn held_off(&self, now: Instant) -> BTreeSet<String> {
        self.groups
            .iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|(g, _)| g.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_come_from_the_group_name() {
        assert_eq!(
            needs_of("2000:60:1500:0~db"),
            Needs {
                ram_mb: 2000,
                cores_milli: 1500
            }
        );
        assert_eq!(needs_of("100:30:0:0").cores_milli, 1);
    }

    fn map(entries: &[(&str, u64)]) -> BTreeMap<String, u64> {
        entries.iter().map(|(g, n)| (g.to_string(), *n)).collect()
    }

    fn open(ready: &[(&str, u64)]) -> QueueView {
        QueueView {
            open: true,
            ready: map(ready),
            ..QueueView::default()
        }
    }

    fn limit(limit: i64, held: u64) -> queue_fsm::LimitState {
        queue_fsm::LimitState { limit, held }
    }

    const CORES_4: Budget = Budget {
        cores_milli: 4000,
        ram_mb: 8000,
    };

    fn started(p: &Plan, prefix: &str) -> usize {
        p.start
            .iter()
            .filter(|(g, _)| g.starts_with(prefix))
            .count()
    }

    #[test]
    fn plan_respects_ready_running_and_budget() {
        let mut q = open(&[("1000:60:1000:0", 5), ("4000:60:2000:0", 3)]);
        let running = map(&[("1000:60:1000:0", 1)]);
        let none = BTreeSet::new();
        // 4 cores, 8 GB, one small runner idle (it holds no job): it takes one of the 5, so
        // 4 more small ones are wanted; the big group (fewer runners) goes first
        let p = plan(&q, &running, CORES_4, &none);
        assert_eq!(started(&p, "4000:"), 1);
        assert_eq!(started(&p, "1000:"), 1, "3 cores left: one big, one small");
        // the idle runner is busy after all: one more small one is wanted
        q.held = map(&[("1000:60:1000:0", 1)]);
        let p = plan(&q, &running, CORES_4, &none);
        assert_eq!((started(&p, "4000:"), started(&p, "1000:")), (1, 1));
        // nothing ready → nothing started
        assert!(plan(&open(&[]), &running, CORES_4, &none).start.is_empty());
        // never more runners than ready jobs
        let big = Budget {
            cores_milli: 100_000,
            ram_mb: 100_000,
        };
        assert_eq!(plan(&q, &BTreeMap::new(), big, &none).start.len(), 8);
    }

    #[test]
    fn one_ready_job_gets_one_runner_across_rounds() {
        let q = open(&[("100:30:1000:0", 1)]);
        let none = BTreeSet::new();
        let p = plan(&q, &BTreeMap::new(), CORES_4, &none);
        assert_eq!(p.start.len(), 1);
        // next round: the runner is registered but has not reserved yet
        let running = map(&[("100:30:1000:0", 1)]);
        assert!(plan(&q, &running, CORES_4, &none).start.is_empty());
    }

    #[test]
    fn plan_starts_nothing_while_paused_or_draining() {
        let mut q = open(&[("100:30:1000:0", 3)]);
        q.open = false;
        assert_eq!(
            plan(&q, &BTreeMap::new(), CORES_4, &BTreeSet::new()),
            Plan::default()
        );
    }

    #[test]
    fn limit_blocked_groups_get_no_runners_and_others_share_fairly() {
        // the case: two groups blocked by their limits, sorted before the others
        let mut q = open(&[
            ("100:30:1000:0~hold0", 4),
            ("100:30:1000:0~hold2", 4),
            ("100:30:1000:0~free", 4),
            ("200:30:1000:0", 4),
        ]);
        q.limits = [
            ("hold0".to_string(), limit(0, 0)),
            ("hold2".to_string(), limit(2, 2)),
            ("free".to_string(), limit(-1, 0)),
        ]
        .into();
        q.held = map(&[("100:30:1000:0~hold2", 2)]);
        let running = map(&[("100:30:1000:0~hold2", 2)]);
        let p = plan(&q, &running, CORES_4, &BTreeSet::new());
        assert_eq!(started(&p, "100:30:1000:0~hold"), 0, "{p:?}");
        assert_eq!(started(&p, "100:30:1000:0~free"), 1);
        assert_eq!(
            started(&p, "200:"),
            1,
            "the two free groups share the two cores"
        );
        // a limit of 3 with 1 held and 1 idle runner leaves room for one more runner
        q.limits.insert("hold2".into(), limit(3, 1));
        q.held = map(&[("100:30:1000:0~hold2", 1)]);
        let p = plan(&q, &running, CORES_4, &BTreeSet::new());
        assert_eq!(
            started(&p, "100:30:1000:0~hold2"),
            0,
            "the idle runner takes the slot"
        );
        let many = Budget {
            cores_milli: 100_000,
            ram_mb: 100_000,
        };
        let p = plan(&q, &BTreeMap::new(), many, &BTreeSet::new());
        assert_eq!(started(&p, "100:30:1000:0~hold2"), 2, "3 - 1 held");
    }

    #[test]
    fn freed_capacity_goes_to_the_group_with_fewest_runners() {
        let q = open(&[("100:30:1000:0~a", 10), ("100:30:1000:0~b", 10)]);
        let running = map(&[("100:30:1000:0~a", 3)]);
        let mut q2 = q.clone();
        q2.held = running.clone();
        let p = plan(&q2, &running, CORES_4, &BTreeSet::new());
        assert_eq!(
            p.start,
            vec![("100:30:1000:0~b".to_string(), needs_of("100:30:1000:0~b"))]
        );
    }

    #[test]
    fn idle_runners_yield_when_another_group_waits() {
        // two idle runners of a group with nothing ready hold both cores
        let mut q = open(&[("100:30:1000:0~b", 1)]);
        let running = map(&[("100:30:1000:0~a", 2)]);
        let two = Budget {
            cores_milli: 2000,
            ram_mb: 8000,
        };
        let p = plan(&q, &running, two, &BTreeSet::new());
        assert!(p.start.is_empty());
        assert_eq!(p.yielding, ["100:30:1000:0~a".to_string()].into());
        // busy runners do not yield
        q.held = map(&[("100:30:1000:0~a", 2)]);
        assert!(plan(&q, &running, two, &BTreeSet::new())
            .yielding
            .is_empty());
        // nobody waits: idle runners stay for their idle time
        let q = open(&[]);
        assert!(plan(&q, &running, two, &BTreeSet::new())
            .yielding
            .is_empty());
    }

    #[test]
    fn jobs_bigger_than_the_budget_never_fit() {
        let q = open(&[
            ("100000:30:1000:0", 1),
            ("100:30:3000:0", 1),
            ("100:30:1000:0", 1),
        ]);
        let two = Budget {
            cores_milli: 2000,
            ram_mb: 8000,
        };
        let p = plan(&q, &BTreeMap::new(), two, &BTreeSet::new());
        assert_eq!(
            p.never_fit,
            vec!["100000:30:1000:0".to_string(), "100:30:3000:0".to_string()]
        );
        assert_eq!(p.start.len(), 1);
        // one whose limit group is full is left until a job of it can be reserved
        let mut q = open(&[("100:30:3000:0~l", 1)]);
        q.limits
            .insert("l".into(), queue_fsm::LimitState { limit: 1, held: 1 });
        assert!(plan(&q, &BTreeMap::new(), two, &BTreeSet::new())
            .never_fit
            .is_empty());
    }

    #[test]
    fn early_exits_back_off_and_a_full_idle_time_resets() {
        let mut b = Backoffs::default();
        let t0 = Instant::now();
        let idle = Duration::from_secs(30);
        b.ended("g", Duration::from_millis(5), idle, t0);
        assert!(b.held_off(t0).contains("g"));
        assert!(!b.held_off(t0 + BACKOFF_MIN).contains("g"));
        b.ended("g", Duration::from_millis(5), idle, t0);
        assert!(b.held_off(t0 + BACKOFF_MIN).contains("g"), "doubled");
        for _ in 0..20 {
            b.ended("g", Duration::from_millis(5), idle, t0);
        }
        assert!(!b.held_off(t0 + BACKOFF_MAX).contains("g"), "capped");
        b.ended("g", idle, idle, t0);
        assert!(b.held_off(t0).is_empty());
        // the held-off group gets no runner
        let q = open(&[("g", 1)]);
        let p = plan(&q, &BTreeMap::new(), CORES_4, &["g".to_string()].into());
        assert!(p.start.is_empty());
    }
}
