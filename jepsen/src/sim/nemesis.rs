//! The fault schedule: quiet gaps and one fault at a time (kill, partition, clock jump),
//! drawn from the nemesis generator.

use super::{raft, Ev, Phase, SimError, World};

/// A fault in force.
pub(super) enum Fault {
    Kill(Vec<usize>),
    Partition,
    Clock(usize),
}

impl World {
    /// Alternates quiet gaps (0.3–1.2 s) and one fault at a time (0.3–2 s).
    pub(super) fn on_nemesis(&mut self) -> Result<(), SimError> {
        if self.phase != Phase::Workload {
            return Ok(());
        }
        if self.fault.is_some() {
            self.stop_fault()?;
            let t = self.now + self.rng_nem.range(300, 1_200);
            self.q.at(t, Ev::Nemesis);
        } else {
            self.start_fault();
            let t = self.now + self.rng_nem.range(300, 2_000);
            self.q.at(t, Ev::Nemesis);
        }
        Ok(())
    }

    /// The replicas a fault hits: the leader, a minority, every replica (kill only) or one.
    pub(super) fn pick_targets(&mut self, all: bool) -> Vec<usize> {
        let n = self.reps.len();
        let x = self.rng_nem.below(if all { 10 } else { 9 });
        match (x, self.leader) {
            (0..=2, Some(l)) => vec![l],
            (3..=5, _) if n > 2 => {
                let k = (n - 1) / 2;
                let mut v: Vec<usize> = self.rng_nem.shuffled(n).into_iter().take(k).collect();
                v.sort_unstable();
                v
            }
            (9, _) => (0..n).collect(),
            _ => vec![self.rng_nem.below(n)],
        }
    }

    pub(super) fn start_fault(&mut self) {
        let x = self.rng_nem.f64();
        self.stats.faults += 1;
        if x < 0.4 {
            let v = self.pick_targets(true);
            for &r in &v {
                self.crash(r);
            }
            self.record_fault("kill", "start", format!("killed {}", ids(&v)));
            self.fault = Some(("kill", Fault::Kill(v)));
        } else if x < 0.8 {
            let v = self.pick_targets(false);
            for &r in &v {
                self.side[r] = 1;
            }
            self.stats.partitions += 1;
            if !self.leader_healthy() {
                self.schedule_election(raft::ELECTION_MS.0, raft::ELECTION_MS.1);
            }
            let rest: Vec<usize> = (0..self.reps.len()).filter(|i| !v.contains(i)).collect();
            self.record_fault(
                "partition",
                "start",
                format!("isolated {} | {}", ids(&v), ids(&rest)),
            );
            self.fault = Some(("partition", Fault::Partition));
        } else {
            let r = match self.leader {
                Some(l) => l,
                None => self.rng_nem.below(self.reps.len()),
            };
            let size = self.rng_nem.range(500, 5_000) as i64;
            let jump = if self.rng_nem.chance(0.5) {
                size
            } else {
                -size
            };
            self.reps[r].jump_ms = jump;
            self.stats.clock_jumps += 1;
            self.record_fault("clock", "start", format!("n{} clock {jump:+} ms", r + 1));
            self.fault = Some(("clock", Fault::Clock(r)));
        }
    }

    pub(super) fn stop_fault(&mut self) -> Result<(), SimError> {
        let Some((name, fault)) = self.fault.take() else {
            return Ok(());
        };
        let detail = match fault {
            Fault::Kill(v) => {
                for &r in &v {
                    self.restart(r)?;
                }
                format!("restarted {}", ids(&v))
            }
            Fault::Partition => {
                self.side.iter_mut().for_each(|s| *s = 0);
                if !self.leader_healthy() {
                    self.schedule_election(50, 200);
                }
                "healed the network".to_string()
            }
            Fault::Clock(r) => {
                self.reps[r].jump_ms = 0;
                format!("n{} clock reset", r + 1)
            }
        };
        self.record_fault(name, "stop", detail);
        Ok(())
    }
}

fn ids(v: &[usize]) -> String {
    let s: Vec<String> = v.iter().map(|i| format!("n{}", i + 1)).collect();
    s.join(",")
}
