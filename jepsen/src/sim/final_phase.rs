//! The final phase: heal, kick buried jobs and drain, stop the workers, read every job from
//! a leader that may serve a linearizable read, and take every replica's digest once caught
//! up.

use super::client::{CallKind, Role};
use super::{Ev, SimError, World, CATCH_UP_TIMEOUT_MS, DRAIN_TIMEOUT_MS, FINAL_READ_TIMEOUT_MS};
use crate::history::{Kind, Op, NEMESIS};
use crate::workload::REP_GROUP;
use queue_fsm::{Command, Fsm, JobKey, Match, MemStore, StateName};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Workload,
    /// The adders stop; wait for their last calls.
    WaitAdders,
    /// Kick buried jobs and wait until every job is complete.
    Drain {
        deadline: u64,
        kicked: bool,
    },
    /// The workers stop; wait for their last calls.
    StopWorkers,
    FinalRead {
        until: u64,
    },
    CatchUp {
        deadline: u64,
    },
    Done,
}

impl World {
    pub(super) fn begin_final(&mut self) -> Result<(), SimError> {
        self.stats.workload_events = self.stats.events;
        self.stats.workload_ms = self.now;
        self.stop_fault()?;
        self.stop_adds = true;
        self.phase = Phase::WaitAdders;
        self.q.at(self.now, Ev::Coord);
        Ok(())
    }

    /// Heals everything: every replica up, no partition, clocks reset.
    pub(super) fn heal(&mut self) -> Result<(), SimError> {
        let heal = |action: &str, detail: &str| Op::Fault {
            name: "heal".into(),
            action: action.into(),
            detail: detail.into(),
        };
        self.record(NEMESIS, 0, Kind::Invoke, heal("start", ""), None);
        for r in 0..self.reps.len() {
            if !self.reps[r].up {
                self.restart(r)?;
            }
            self.reps[r].jump_ms = 0;
        }
        self.side.iter_mut().for_each(|s| *s = 0);
        if !self.leader_healthy() {
            self.schedule_election(50, 200);
        }
        self.record(
            NEMESIS,
            0,
            Kind::Ok,
            heal("start", "network healed, every node running"),
            None,
        );
        Ok(())
    }

    /// Whether the leader may serve a linearizable read now: it reaches a majority, has
    /// committed an entry of its term and applied everything committed.
    pub(super) fn readable(&self) -> Option<usize> {
        let l = self.leader?;
        let renewed = self.lead.timers.renewed_term() == Some(self.term);
        let ok = self.leader_healthy() && renewed && self.reps[l].applied >= self.commit;
        ok.then_some(l)
    }

    pub(super) fn leader_fsm(&self, l: usize) -> Result<&Fsm<MemStore>, SimError> {
        self.reps[l]
            .fsm
            .as_ref()
            .ok_or_else(|| SimError::Model(format!("leader n{} has no state", l + 1)))
    }

    pub(super) fn all_idle(&self, role: Role) -> bool {
        self.clients
            .iter()
            .filter(|c| c.role == role)
            .all(|c| c.idle)
    }

    pub(super) fn on_coord(&mut self) -> Result<(), SimError> {
        match self.phase {
            Phase::Workload | Phase::Done => Ok(()),
            Phase::WaitAdders => self.wait_adders(),
            Phase::Drain { deadline, kicked } => self.drain(deadline, kicked),
            Phase::StopWorkers => {
                self.wait_workers();
                Ok(())
            }
            Phase::FinalRead { until } => self.final_read(until),
            Phase::CatchUp { deadline } => self.catch_up(deadline),
        }
    }

    /// Once the adders are idle: heal, and start draining.
    fn wait_adders(&mut self) -> Result<(), SimError> {
        if self.all_idle(Role::Adder) {
            self.heal()?;
            self.phase = Phase::Drain {
                deadline: self.now + DRAIN_TIMEOUT_MS,
                kicked: false,
            };
            self.q.at(self.now + 10, Ev::Coord);
        } else {
            self.q.at(self.now + 50, Ev::Coord);
        }
        Ok(())
    }

    /// Kicks buried jobs (once per round) and waits until every job is complete, or the
    /// deadline.
    fn drain(&mut self, deadline: u64, kicked: bool) -> Result<(), SimError> {
        if self.clients[self.coordinator].call.is_some() {
            return Ok(());
        }
        if self.now >= deadline {
            self.stop_workers(false);
            return Ok(());
        }
        let Some(l) = self.readable() else {
            self.q.at(self.now + 100, Ev::Coord);
            return Ok(());
        };
        let fsm = self.leader_fsm(l)?;
        if !kicked {
            let keys: Vec<JobKey> = fsm
                .by_rep_group(REP_GROUP, Match::Exact, Some(StateName::Buried), 0)?
                .into_iter()
                .map(|j| j.job.key)
                .collect();
            if !keys.is_empty() {
                self.phase = Phase::Drain {
                    deadline,
                    kicked: true,
                };
                let c = self.coordinator;
                self.start_call(
                    c,
                    CallKind::Kick,
                    Op::Kick { count: None },
                    Command::Kick { keys },
                );
                return Ok(());
            }
        }
        let incomplete: u64 = fsm
            .counts()?
            .get(REP_GROUP)
            .map(|c| {
                c.iter()
                    .filter(|(s, _)| **s != StateName::Complete)
                    .map(|(_, n)| *n)
                    .sum()
            })
            .unwrap_or(0);
        if incomplete == 0 {
            self.stop_workers(true);
        } else {
            self.phase = Phase::Drain {
                deadline,
                kicked: false,
            };
            self.q.at(self.now + 1_000, Ev::Coord);
        }
        Ok(())
    }

    /// Once the workers are idle: end the heal, and invoke the final read.
    fn wait_workers(&mut self) {
        if !self.all_idle(Role::Worker) {
            self.q.at(self.now + 50, Ev::Coord);
            return;
        }
        let detail = if self.stats.drained {
            "drained"
        } else {
            "drain timed out"
        };
        let op = Op::Fault {
            name: "heal".into(),
            action: "stop".into(),
            detail: detail.into(),
        };
        self.record(NEMESIS, 0, Kind::Ok, op, None);
        let process = self.clients[self.coordinator].process;
        self.record(
            process,
            0,
            Kind::Invoke,
            Op::FinalRead { jobs: Vec::new() },
            None,
        );
        self.phase = Phase::FinalRead {
            until: self.now + FINAL_READ_TIMEOUT_MS,
        };
        self.q.at(self.now + 2, Ev::Coord);
    }

    /// Reads every job from a leader that may serve it, or gives up at `until`.
    fn final_read(&mut self, until: u64) -> Result<(), SimError> {
        let process = self.clients[self.coordinator].process;
        if let Some(l) = self.readable() {
            let jobs = self
                .leader_fsm(l)?
                .by_rep_group(REP_GROUP, Match::Exact, None, 0)?
                .into_iter()
                .map(|j| {
                    (
                        crate::workload::job_name(&j.job.spec.cmd),
                        j.job.state.name().as_str().to_string(),
                    )
                })
                .collect();
            self.record(process, 0, Kind::Ok, Op::FinalRead { jobs }, None);
        } else if self.now >= until {
            self.record(
                process,
                0,
                Kind::Info,
                Op::FinalRead { jobs: Vec::new() },
                Some("no leader could serve the read".into()),
            );
        } else {
            self.q.at(self.now + 50, Ev::Coord);
            return Ok(());
        }
        self.phase = Phase::CatchUp {
            deadline: self.now + CATCH_UP_TIMEOUT_MS,
        };
        self.q.at(self.now + 1, Ev::Coord);
        Ok(())
    }

    /// Once every replica holds and applied the whole log (or at the deadline): every live
    /// replica's digest.
    fn catch_up(&mut self, deadline: u64) -> Result<(), SimError> {
        let len = self.log.len();
        let caught_up = self.commit == len
            && self
                .reps
                .iter()
                .all(|r| r.up && r.applied == len && r.log_len == len);
        if !caught_up && self.now < deadline {
            self.q.at(self.now + 20, Ev::Coord);
            return Ok(());
        }
        let mut nodes = Vec::new();
        for (i, r) in self.reps.iter().enumerate() {
            let d = match (&r.fsm, r.up) {
                (Some(f), true) => Some(f.digest()?),
                _ => None,
            };
            nodes.push((i as u64 + 1, d));
        }
        self.record(NEMESIS, 0, Kind::Ok, Op::Digests { nodes }, None);
        self.phase = Phase::Done;
        Ok(())
    }

    pub(super) fn stop_workers(&mut self, drained: bool) {
        self.stats.drained = drained;
        self.stop_work = true;
        self.phase = Phase::StopWorkers;
        self.q.at(self.now, Ev::Coord);
    }
}
