//! Nemeses: the faults, a schedule of them drawn from the seed, and applying / undoing them.
//!
//! A schedule alternates quiet gaps (2–4 s) and faults (3–8 s), one fault at a time, until a
//! second before the time limit; the final phase then heals everything. Which nodes a fault
//! hits is drawn at run time from the same seed, except "the leader", which is whoever leads
//! then.

use crate::db::{Cluster, NodeOptions};
use crate::rng::Rng;
use serde::Serialize;

/// The nemeses `--nemesis` accepts, with what each does.
pub const NEMESES: &[(&str, &str)] = &[
    (
        "kill",
        "SIGKILL and restart: one node, the leader, a minority, or all nodes",
    ),
    (
        "pause",
        "SIGSTOP, later SIGCONT: one node, the leader, or a minority",
    ),
    (
        "partition",
        "iptables: isolate one node, isolate the leader, majority/minority halves, majorities \
         ring (5 nodes), one-way",
    ),
    (
        "packet-loss",
        "iptables statistic match: drop 10-40% of packets between all nodes",
    ),
    (
        "clock",
        "restart a node with its clock shifted by up to ±60 s (leases must stay safe)",
    ),
    (
        "power",
        "SIGKILL of one node, a minority or all, then a power cut: with --power-mode fs (the \
         default) their data directories are on lossyfs and lose every write and directory \
         change not fsynced; with --power-mode wal the nodes lose only their un-synced RocksDB WAL",
    ),
    (
        "membership",
        "remove a node (one, or the leader) from the cluster, stop it and wipe its data; later \
         start it empty and add it back (it catches up as a learner, then votes)",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    One,
    Leader,
    Minority,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    IsolateOne,
    IsolateLeader,
    Halves,
    Ring,
    OneWay,
}

/// One fault as scheduled.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "nemesis", rename_all = "kebab-case")]
pub enum Fault {
    Kill { target: Target },
    Pause { target: Target },
    Partition { shape: Shape },
    PacketLoss { percent: u32 },
    Clock { offset_ms: i64 },
    Power { target: Target },
    Membership { target: Target },
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill",
            Fault::Pause { .. } => "pause",
            Fault::Partition { .. } => "partition",
            Fault::PacketLoss { .. } => "packet-loss",
            Fault::Clock { .. } => "clock",
            Fault::Power { .. } => "power",
            Fault::Membership { .. } => "membership",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub at_ms: u64,
    pub duration_ms: u64,
    pub fault: Fault,
}

/// Parses `--nemesis kill,partition` (or `all`, or `none`); unknown names are an error that
/// lists the known ones.
pub fn parse(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for n in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if n == "all" {
            out.extend(NEMESES.iter().map(|(k, _)| k.to_string()));
        } else if n == "none" {
        } else if NEMESES.iter().any(|(k, _)| *k == n) {
            out.push(n.to_string());
        } else {
            let known: Vec<&str> = NEMESES.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "unknown nemesis {n:?}: use a comma-separated list of {}, or all, or none",
                known.join(", ")
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn draw(name: &str, nodes: usize, rng: &mut Rng) -> Option<Fault> {
    let pick = |rng: &mut Rng, v: &[Target]| v[rng.below(v.len())];
    Some(match name {
        "kill" => Fault::Kill {
            target: pick(
                rng,
                &[Target::One, Target::Leader, Target::Minority, Target::All],
            ),
        },
        "pause" => Fault::Pause {
            target: pick(rng, &[Target::One, Target::Leader, Target::Minority]),
        },
        "partition" => {
            let mut shapes = vec![
                Shape::IsolateOne,
                Shape::IsolateLeader,
                Shape::Halves,
                Shape::OneWay,
            ];
            if nodes >= 5 {
                shapes.push(Shape::Ring);
            }
            Fault::Partition {
                shape: shapes[rng.below(shapes.len())],
            }
        }
        "packet-loss" => Fault::PacketLoss {
            percent: rng.range(10, 40) as u32,
        },
        "clock" => {
            let ms = rng.range(1_000, 60_000) as i64;
            Fault::Clock {
                offset_ms: if rng.chance(0.5) { ms } else { -ms },
            }
        }
        "power" => Fault::Power {
            target: pick(rng, &[Target::One, Target::Minority, Target::All]),
        },
        "membership" => Fault::Membership {
            target: pick(rng, &[Target::One, Target::Leader]),
        },
        _ => return None,
    })
}

/// The fault schedule for `nemeses` over `time_limit_ms`.
pub fn schedule(nemeses: &[String], nodes: usize, time_limit_ms: u64, rng: &mut Rng) -> Vec<Step> {
    let active: Vec<&String> = nemeses
        .iter()
        .filter(|n| draw(n, nodes, &mut rng.clone()).is_some())
        .collect();
    let mut out = Vec::new();
    if active.is_empty() {
        return out;
    }
    let mut t = 3_000;
    loop {
        let duration_ms = rng.range(3_000, 8_000);
        if t + duration_ms + 1_000 > time_limit_ms {
            break;
        }
        let name = active[rng.below(active.len())];
        if let Some(fault) = draw(name, nodes, rng) {
            out.push(Step {
                at_ms: t,
                duration_ms,
                fault,
            });
        }
        t += duration_ms + rng.range(2_000, 4_000);
    }
    out
}

/// What a fault in force changed, to undo it.
pub enum Active {
    Killed(Vec<usize>),
    /// Removed from the membership, stopped and wiped.
    Removed(usize),
    Paused(Vec<usize>),
    Net,
    Clock(usize),
}

fn minority(n: usize, rng: &mut Rng) -> Vec<usize> {
    let k = (n - 1) / 2;
    rng.shuffled(n).into_iter().take(k.max(1)).collect()
}

async fn targets(c: &Cluster, t: Target, rng: &mut Rng) -> Vec<usize> {
    let n = c.len();
    match t {
        Target::One => vec![rng.below(n)],
        Target::Leader => vec![c.leader().await.unwrap_or_else(|| rng.below(n))],
        Target::Minority => minority(n, rng),
        Target::All => (0..n).collect(),
    }
}

fn ids(v: &[usize]) -> String {
    let s: Vec<String> = v.iter().map(|i| format!("n{}", i + 1)).collect();
    s.join(",")
}

/// Applies `fault`; returns what to undo and a description of what was done.
pub async fn start(
    c: &mut Cluster,
    fault: &Fault,
    rng: &mut Rng,
) -> Result<(Active, String), String> {
    let n = c.len();
    match fault {
        Fault::Kill { target } => {
            let v = targets(c, *target, rng).await;
            for &i in &v {
                c.kill_node(i);
            }
            Ok((Active::Killed(v.clone()), format!("killed {}", ids(&v))))
        }
        Fault::Power { target } => {
            let v = targets(c, *target, rng).await;
            let mut lost = Vec::new();
            for &i in &v {
                c.kill_node(i);
                if let Some(report) = c.power_cut(i)? {
                    lost.push(format!("n{}: {report}", i + 1));
                }
            }
            let detail = if lost.is_empty() {
                format!("killed {} (un-synced WAL lost)", ids(&v))
            } else {
                format!("power cut {}; lost {}", ids(&v), lost.join("; "))
            };
            Ok((Active::Killed(v.clone()), detail))
        }
        Fault::Pause { target } => {
            let v = targets(c, *target, rng).await;
            for &i in &v {
                c.pause_node(i);
            }
            Ok((Active::Paused(v.clone()), format!("paused {}", ids(&v))))
        }
        Fault::Partition { shape } => Ok((Active::Net, partition(c, *shape, rng).await?)),
        Fault::PacketLoss { percent } => Ok((Active::Net, packet_loss(c, *percent)?)),
        Fault::Membership { target } => {
            let i = targets(c, *target, rng).await[0];
            let voters = c.remove_member(i).await?;
            Ok((
                Active::Removed(i),
                format!("removed n{}, stopped, data wiped; voters {voters:?}", i + 1),
            ))
        }
        Fault::Clock { offset_ms } => {
            let i = rng.below(n);
            let o = NodeOptions {
                clock_offset_ms: *offset_ms,
                ..c.options(i)
            };
            c.restart_with(i, o)?;
            Ok((
                Active::Clock(i),
                format!("n{} clock {offset_ms:+} ms", i + 1),
            ))
        }
    }
}

/// Cuts the network into `shape`; returns what was cut.
async fn partition(c: &mut Cluster, shape: Shape, rng: &mut Rng) -> Result<String, String> {
    let n = c.len();
    Ok(match shape {
        Shape::IsolateOne | Shape::IsolateLeader => {
            let x = if shape == Shape::IsolateLeader {
                c.leader().await.unwrap_or_else(|| rng.below(n))
            } else {
                rng.below(n)
            };
            for o in (0..n).filter(|o| *o != x) {
                c.net.partition(x, o)?;
            }
            format!("isolated n{}", x + 1)
        }
        Shape::Halves => {
            let order = rng.shuffled(n);
            let (small, big) = order.split_at(n / 2);
            for &a in small {
                for &b in big {
                    c.net.partition(a, b)?;
                }
            }
            format!("halves {} | {}", ids(small), ids(big))
        }
        Shape::Ring => {
            // each node reaches its two ring neighbours only: every node sees a
            // majority, no two see the same one
            let order = rng.shuffled(n);
            for (p, &a) in order.iter().enumerate() {
                for (q, &b) in order.iter().enumerate().skip(p + 1) {
                    let d = q - p;
                    if d != 1 && d != n - 1 {
                        c.net.partition(a, b)?;
                    }
                }
            }
            format!("ring {}", ids(&order))
        }
        Shape::OneWay => {
            let order = rng.shuffled(n);
            let (from, to) = (order[0], order[1]);
            c.net.drop_from(from, to, None)?;
            format!("one-way n{} -> n{} dropped", from + 1, to + 1)
        }
    })
}

/// Drops `percent` % of the packets between every pair of nodes.
fn packet_loss(c: &mut Cluster, percent: u32) -> Result<String, String> {
    let n = c.len();
    for a in 0..n {
        for b in (0..n).filter(|b| *b != a) {
            c.net.drop_from(a, b, Some(percent as f64 / 100.0))?;
        }
    }
    Ok(format!("{percent}% loss between all nodes"))
}

/// Undoes a fault.
pub async fn stop(c: &mut Cluster, active: Active, normal: &NodeOptions) -> Result<String, String> {
    match active {
        Active::Removed(i) => {
            let voters = c.readd_member(i).await?;
            Ok(format!(
                "n{} started empty and added back; voters {voters:?}",
                i + 1
            ))
        }
        Active::Killed(v) => {
            for &i in &v {
                c.start_node(i)?;
            }
            Ok(format!("restarted {}", ids(&v)))
        }
        Active::Paused(v) => {
            for &i in &v {
                c.resume_node(i);
            }
            Ok(format!("resumed {}", ids(&v)))
        }
        Active::Net => {
            c.net.heal()?;
            Ok("healed the network".into())
        }
        Active::Clock(i) => {
            c.restart_with(i, normal.clone())?;
            Ok(format!("n{} clock reset", i + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_reproducible_and_bounded() {
        let nem = parse("kill,partition,clock").unwrap();
        let a = schedule(&nem, 5, 120_000, &mut Rng::new(7));
        let b = schedule(&nem, 5, 120_000, &mut Rng::new(7));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert!(a.len() >= 8, "{a:?}");
        for s in &a {
            assert!(s.at_ms + s.duration_ms + 1_000 <= 120_000);
        }
        for w in a.windows(2) {
            assert!(w[0].at_ms + w[0].duration_ms < w[1].at_ms);
        }
        let c = schedule(&nem, 5, 120_000, &mut Rng::new(8));
        assert_ne!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&c).unwrap()
        );
    }

    #[test]
    fn nemesis_names_are_checked() {
        assert_eq!(parse("kill, pause").unwrap(), vec!["kill", "pause"]);
        assert_eq!(parse("all").unwrap().len(), NEMESES.len());
        let e = parse("kill,flood").unwrap_err();
        assert!(e.contains("\"flood\"") && e.contains("packet-loss"), "{e}");
        // membership removes one node or the leader
        let m = schedule(&parse("membership").unwrap(), 3, 60_000, &mut Rng::new(1));
        assert!(!m.is_empty());
        assert!(m.iter().all(|s| matches!(
            s.fault,
            Fault::Membership {
                target: Target::One | Target::Leader
            }
        )));
        // a ring needs 5 nodes
        let s = schedule(&parse("partition").unwrap(), 3, 600_000, &mut Rng::new(3));
        assert!(s
            .iter()
            .all(|s| s.fault != Fault::Partition { shape: Shape::Ring }));
    }
}
