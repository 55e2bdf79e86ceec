//! Simulated clients: adders and workers like the real `queue` workload (with the `lease`
//! workload's stalls past the TTR now and then), and the calls they make: each call is one
//! request id, sent to the leader, retried with the same id after a lost reply, a timeout or
//! a leader change, until the call's deadline; then recorded as `info`.

use super::raft::Caller;
use super::{Ev, World};
use crate::history::{Kind, Op};
use crate::rng::Rng;
use crate::workload::{job_name, REP_GROUP};
use queue_fsm::{
    AddJobs, Command, FenceToken, JobKey, JobSpec, Outcome, Request, RequestId, Response,
    RunReport, RunnerId,
};

/// A call's deadline (as the real harness's 2 s).
const CALL_DEADLINE_MS: u64 = 1_200;
/// One attempt's timeout.
const ATTEMPT_TIMEOUT_MS: u64 = 300;
/// Chance that a request from a client to a node is lost.
const REQUEST_LOSS: f64 = 0.01;
/// The workers' TTR.
pub(super) const TTR_MS: u64 = 1_000;
/// Chance that a worker stalls 1.2–3.5 TTR before it touches and finishes.
const STALL_CHANCE: f64 = 0.1;
/// Chances of release and bury after a reserve (archive otherwise), as the real workload.
const RELEASE_CHANCE: f64 = 0.12;
const BURY_CHANCE: f64 = 0.13;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Adder,
    Worker,
    Coordinator,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finish {
    Archive,
    Release,
    Bury,
}

/// The job a worker holds and what it will do with it.
struct Held {
    key: JobKey,
    fence: FenceToken,
    name: String,
    touch: bool,
    touched: bool,
    finish: Finish,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CallKind {
    Add,
    Reserve,
    Touch,
    Finish,
    Kick,
}

/// A call in flight: one request id (unless the planted bug renews it), several attempts.
pub(super) struct Call {
    pub seq: u64,
    pub kind: CallKind,
    pub op: Op,
    pub req: Request,
    pub deadline: u64,
    pub attempt: u32,
    pub last_error: String,
}

pub(super) struct Client {
    /// The process number in the history.
    pub process: u64,
    /// The node recorded in the history (the real harness's client talks to one node, which
    /// forwards to the leader; this one goes to the leader directly when there is one).
    pub home: usize,
    pub role: Role,
    pub rng: Rng,
    pub seq: u64,
    pub call: Option<Call>,
    added: u64,
    runner: RunnerId,
    held: Option<Held>,
    /// Stopped: no call in flight and none will be made.
    pub idle: bool,
}

impl Client {
    pub(super) fn new(process: u64, home: usize, role: Role, mut rng: Rng) -> Client {
        let runner = RunnerId(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()));
        Client {
            process,
            home,
            role,
            rng,
            seq: 0,
            call: None,
            added: 0,
            runner,
            held: None,
            idle: false,
        }
    }
}

fn report() -> RunReport {
    RunReport {
        exited: true,
        exit_code: 0,
        wall_ms: 1,
        ..RunReport::default()
    }
}

/// The history's op for a call that succeeded with `resp`.
fn ok_op(op: &Op, resp: &Response) -> Op {
    match (op, resp) {
        (Op::Reserve { ttr_ms, .. }, Response::Reserved { job, fence }) => Op::Reserve {
            job: Some(job_name(&job.spec.cmd)),
            fence: Some(fence.0),
            ttr_ms: *ttr_ms,
        },
        (Op::Reserve { ttr_ms, .. }, _) => Op::Reserve {
            job: None,
            fence: None,
            ttr_ms: *ttr_ms,
        },
        (Op::Kick { .. }, Response::Count(n)) => Op::Kick { count: Some(*n) },
        _ => op.clone(),
    }
}

impl World {
    /// Starts a call: records its invocation and sends the first attempt.
    pub(super) fn start_call(&mut self, c: usize, kind: CallKind, op: Op, cmd: Command) {
        let cl = &mut self.clients[c];
        let id = RequestId(u128::from(cl.rng.next_u64()) << 64 | u128::from(cl.rng.next_u64()));
        cl.seq += 1;
        cl.call = Some(Call {
            seq: cl.seq,
            kind,
            op: op.clone(),
            req: Request::new(Some(id), cmd),
            deadline: self.now + CALL_DEADLINE_MS,
            attempt: 0,
            last_error: String::new(),
        });
        let (process, node) = (cl.process, self.history_node(c));
        self.record(process, node, Kind::Invoke, op, None);
        self.send_attempt(c);
    }

    /// The node a client's events name.
    fn history_node(&self, c: usize) -> u64 {
        match self.clients[c].role {
            Role::Coordinator => 0,
            _ => self.clients[c].home as u64 + 1,
        }
    }

    /// Sends the current attempt to the leader (or, with none, to the client's own node).
    fn send_attempt(&mut self, c: usize) {
        let target = self.leader.unwrap_or(self.clients[c].home);
        let Some(call) = &self.clients[c].call else {
            return;
        };
        let caller = Caller {
            c,
            call: call.seq,
            attempt: call.attempt,
        };
        let timeout = (self.now + ATTEMPT_TIMEOUT_MS).min(call.deadline);
        let req = call.req.clone();
        if !self.rng_net.chance(REQUEST_LOSS) {
            let t = self.now + self.rng_net.range(1, 5);
            self.q.at(
                t,
                Ev::Arrive {
                    caller,
                    node: target,
                    req: Box::new(req),
                },
            );
        }
        self.q.at(timeout, Ev::AttemptTimeout { caller });
    }

    fn current(&self, caller: Caller) -> bool {
        self.clients[caller.c]
            .call
            .as_ref()
            .is_some_and(|k| k.seq == caller.call && k.attempt == caller.attempt)
    }

    pub(super) fn on_reply(&mut self, caller: Caller, reply: Result<Outcome, String>) {
        if !self.current(caller) {
            return;
        }
        match reply {
            Ok(Ok(resp)) => self.finish_call(caller.c, Kind::Ok, Some(resp), None),
            Ok(Err(refused)) => {
                self.finish_call(caller.c, Kind::Fail, None, Some(refused.to_string()))
            }
            Err(e) => self.retry_or_give_up(caller.c, e),
        }
    }

    pub(super) fn on_attempt_timeout(&mut self, caller: Caller) {
        if self.current(caller) {
            self.retry_or_give_up(caller.c, "attempt timed out".into());
        }
    }

    /// After a failed attempt: back off and retry with the same request id, or, past the
    /// deadline, give up with an unknown outcome.
    fn retry_or_give_up(&mut self, c: usize, error: String) {
        let backoff = self.clients[c].rng.range(30, 150);
        let now = self.now;
        let Some(call) = self.clients[c].call.as_mut() else {
            return;
        };
        call.last_error = error;
        if now + backoff >= call.deadline {
            let e = format!(
                "deadline exceeded after {} attempts: {}",
                call.attempt + 1,
                call.last_error
            );
            self.finish_call(c, Kind::Info, None, Some(e));
            return;
        }
        call.attempt += 1;
        let caller = Caller {
            c,
            call: call.seq,
            attempt: call.attempt,
        };
        self.stats.client_retries += 1;
        self.q.at(now + backoff, Ev::Retry { caller });
    }

    pub(super) fn on_retry(&mut self, caller: Caller) {
        if !self.current(caller) {
            return;
        }
        if self.bugs.fresh_request_id_on_retry {
            let cl = &mut self.clients[caller.c];
            let id = RequestId(u128::from(cl.rng.next_u64()) << 64 | u128::from(cl.rng.next_u64()));
            if let Some(call) = cl.call.as_mut() {
                call.req.id = Some(id);
            }
        }
        self.send_attempt(caller.c);
    }

    /// Records the call's outcome and lets the client go on.
    fn finish_call(&mut self, c: usize, kind: Kind, resp: Option<Response>, error: Option<String>) {
        let Some(call) = self.clients[c].call.take() else {
            return;
        };
        let op = match &resp {
            Some(r) => ok_op(&call.op, r),
            None => call.op.clone(),
        };
        let (process, node) = (self.clients[c].process, self.history_node(c));
        self.record(process, node, kind, op, error);
        match self.clients[c].role {
            Role::Adder => {
                let wait = self.clients[c].rng.range(150, 450);
                self.q.at(self.now + wait, Ev::Wake { c });
            }
            Role::Worker => self.worker_done(c, call.kind, resp),
            Role::Coordinator => self.q.at(self.now, Ev::Coord),
        }
    }

    pub(super) fn on_wake(&mut self, c: usize) {
        if self.clients[c].call.is_some() || self.clients[c].idle {
            return;
        }
        match self.clients[c].role {
            Role::Adder => self.adder_next(c),
            Role::Worker => self.worker_next(c),
            Role::Coordinator => {}
        }
    }

    /// An adder adds one unique job per call.
    fn adder_next(&mut self, c: usize) {
        if self.stop_adds {
            self.clients[c].idle = true;
            return;
        }
        let cl = &mut self.clients[c];
        cl.added += 1;
        let name = format!("p{}-{}", cl.process, cl.added);
        let priority = cl.rng.range(0, 255) as u8;
        let spec = JobSpec {
            cmd: format!("true {name}"),
            rep_grp: REP_GROUP.into(),
            priority,
            retries: 2,
            ..JobSpec::default()
        };
        let cmd = Command::Add(AddJobs {
            jobs: vec![spec],
            env: Vec::new(),
            ignore_complete: false,
            return_keys: false,
        });
        let op = Op::Add {
            job: name,
            priority: None,
            delay_ms: None,
        };
        self.start_call(c, CallKind::Add, op, cmd);
    }

    /// A worker reserves, or goes on with the job it holds: touch, then archive, release or
    /// bury.
    fn worker_next(&mut self, c: usize) {
        let Some(h) = &self.clients[c].held else {
            if self.stop_work {
                self.clients[c].idle = true;
                return;
            }
            let cmd = Command::Reserve {
                runner: self.clients[c].runner,
                group: None,
                ttr_ms: TTR_MS,
            };
            let op = Op::Reserve {
                job: None,
                fence: None,
                ttr_ms: Some(TTR_MS),
            };
            self.start_call(c, CallKind::Reserve, op, cmd);
            return;
        };
        let (key, fence, job) = (h.key, h.fence, h.name.clone());
        if h.touch && !h.touched {
            let op = Op::Touch {
                job,
                fence: fence.0,
            };
            self.start_call(c, CallKind::Touch, op, Command::Touch { key, fence });
            return;
        }
        let (op, cmd) = match h.finish {
            Finish::Archive => (
                Op::Archive {
                    job,
                    fence: fence.0,
                },
                Command::Archive {
                    key,
                    fence,
                    report: report(),
                },
            ),
            Finish::Release => (
                Op::Release {
                    job,
                    fence: fence.0,
                },
                Command::Release(queue_fsm::HandBack {
                    key,
                    fence,
                    report: None,
                    reason: "jepsen release".into(),
                }),
            ),
            Finish::Bury => (
                Op::Bury {
                    job,
                    fence: fence.0,
                },
                Command::Bury(queue_fsm::HandBack {
                    key,
                    fence,
                    report: None,
                    reason: "jepsen bury".into(),
                }),
            ),
        };
        self.start_call(c, CallKind::Finish, op, cmd);
    }

    fn worker_done(&mut self, c: usize, kind: CallKind, resp: Option<Response>) {
        let draining = self.stop_adds;
        let cl = &mut self.clients[c];
        let wait = match (kind, resp) {
            (CallKind::Reserve, Some(Response::Reserved { job, fence })) => {
                let work = if draining { 0 } else { cl.rng.range(2, 30) };
                let stall = if !draining && cl.rng.chance(STALL_CHANCE) {
                    cl.rng.range(TTR_MS * 6 / 5, TTR_MS * 7 / 2)
                } else {
                    0
                };
                let touch = stall > 0 || cl.rng.chance(0.3);
                let x = cl.rng.f64();
                let finish = if x < RELEASE_CHANCE {
                    Finish::Release
                } else if x < RELEASE_CHANCE + BURY_CHANCE {
                    Finish::Bury
                } else {
                    Finish::Archive
                };
                cl.held = Some(Held {
                    key: job.key,
                    fence,
                    name: job_name(&job.spec.cmd),
                    touch,
                    touched: false,
                    finish,
                });
                work + stall
            }
            // none ready: the long poll would have waited
            (CallKind::Reserve, Some(_)) => cl.rng.range(100, 300),
            (CallKind::Reserve, None) => 50,
            (CallKind::Touch, _) => {
                if let Some(h) = cl.held.as_mut() {
                    h.touched = true;
                }
                1
            }
            (CallKind::Finish, _) => {
                cl.held = None;
                cl.rng.range(1, 5)
            }
            (CallKind::Add | CallKind::Kick, _) => 1,
        };
        self.q.at(self.now + wait, Ev::Wake { c });
    }
}
