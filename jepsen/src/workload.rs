//! Workloads: the clients and workers that make operations, and the recorder that writes every
//! operation into the history as invoke and then ok / fail / info.
//!
//! - queue: adders add unique jobs with random priorities, one per request (each with its own
//!   request id, kept across the client's retries); workers reserve, sometimes touch, then
//!   archive (75%), release (12%) or bury (13%).
//! - lease: as queue, but workers have a 1 s TTR and 40% of the time stall 1.2–3.5 s before
//!   they touch and archive with their old fence, so leases expire under them.
//! - ordering: one adder and one worker that is slower than the adder (60 ms a job), so ready
//!   jobs pile up; random priorities, jobs released now and then (a released job is delayed);
//!   the priority and delay checks are soft.

use crate::history::{Event, Kind, Op};
use crate::rng::Rng;
use queue_fsm::JobKey;
use raftq_client::{Client, ClientError};
use raftq_proto::pb;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workloads `--workload` accepts.
pub const WORKLOADS: &[(&str, &str)] = &[
    (
        "queue",
        "adders add unique jobs; workers reserve, then archive, release or bury",
    ),
    (
        "lease",
        "workers stall past their TTR, then touch and archive with the old fence",
    ),
    (
        "ordering",
        "one adder and one worker: priorities and release delays (soft checks)",
    ),
];

/// The rep group of every job a test adds.
pub const REP_GROUP: &str = "jepsen";

/// The records of one run.
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn record(&self, process: u64, node: u64, kind: Kind, op: Op, error: Option<String>) {
        let e = Event {
            process,
            kind,
            op,
            node,
            time_ns: self.start.elapsed().as_nanos() as u64,
            error,
        };
        if let Ok(mut v) = self.events.lock() {
            v.push(e);
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// How a failed call goes into the history: a refusal certainly did not take effect (fail);
/// anything else (timeout, unreachable cluster) may have (info).
pub fn failure_kind(e: &ClientError) -> Kind {
    if e.had_no_effect() {
        Kind::Fail
    } else {
        Kind::Info
    }
}

/// The job name a test job carries in its command.
pub fn job_name(cmd: &str) -> String {
    cmd.strip_prefix("true ").unwrap_or(cmd).to_string()
}

/// One process of a workload: its number in the history, the node its client talks to, and
/// that client.
pub struct Proc {
    pub id: u64,
    pub node: u64,
    pub client: Client,
    pub rec: Arc<Recorder>,
    pub rng: Rng,
}

impl Proc {
    /// Records `op` as invoked, runs `call`, records its outcome (`done` makes the ok op from
    /// the result).
    async fn run<T, F>(
        &self,
        op: Op,
        call: F,
        done: impl FnOnce(&T) -> Op,
    ) -> Result<T, ClientError>
    where
        F: std::future::Future<Output = Result<T, ClientError>>,
    {
        self.rec
            .record(self.id, self.node, Kind::Invoke, op.clone(), None);
        let r = call.await;
        match &r {
            Ok(v) => self.rec.record(self.id, self.node, Kind::Ok, done(v), None),
            Err(e) => self
                .rec
                .record(self.id, self.node, failure_kind(e), op, Some(e.to_string())),
        }
        r
    }

    /// [`Proc::run`] for an operation whose ok is recorded as it was invoked.
    async fn run_plain<T, F>(&self, op: Op, call: F) -> Result<T, ClientError>
    where
        F: std::future::Future<Output = Result<T, ClientError>>,
    {
        let done = op.clone();
        self.run(op, call, |_| done).await
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Pause between two adds of one adder.
    pub add_interval: Duration,
    pub ttr_ms: u64,
    /// Chance that a worker stalls past its TTR (lease workload).
    pub stall_chance: f64,
    /// Whether adds record their priority (ordering workload).
    pub record_priority: bool,
    /// Chances of release and bury after a reserve; archive otherwise.
    pub release_chance: f64,
    pub bury_chance: f64,
    /// Time a worker spends on each job before finishing it (not while draining).
    pub work_time: Duration,
}

impl Settings {
    pub fn for_workload(name: &str) -> Settings {
        let base = Settings {
            add_interval: Duration::from_millis(25),
            ttr_ms: 5_000,
            stall_chance: 0.0,
            record_priority: false,
            release_chance: 0.12,
            bury_chance: 0.13,
            work_time: Duration::ZERO,
        };
        match name {
            "lease" => Settings {
                ttr_ms: 1_000,
                stall_chance: 0.4,
                // workers that stall finish about one job a second each
                add_interval: Duration::from_millis(500),
                ..base
            },
            "ordering" => Settings {
                add_interval: Duration::from_millis(40),
                record_priority: true,
                // slower than the adder, so that ready jobs pile up and their order matters
                work_time: Duration::from_millis(60),
                release_chance: 0.2,
                bury_chance: 0.0,
                ..base
            },
            _ => base,
        }
    }
}

/// Adds jobs until `stop`.
pub async fn adder(mut p: Proc, s: Settings, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let name = format!("p{}-{n}", p.id);
        let priority = p.rng.range(0, 255) as u32;
        let req = pb::AddRequest {
            request_id: raftq_client::request_id(),
            jobs: vec![pb::JobSpec {
                cmd: format!("true {name}"),
                rep_grp: REP_GROUP.into(),
                priority,
                retries: 2,
                ..Default::default()
            }],
            env: vec![],
            ignore_complete: false,
            return_keys: false,
        };
        let op = Op::Add {
            job: name,
            priority: s.record_priority.then_some(priority),
            delay_ms: None,
        };
        let _ = p.run_plain(op, p.client.add(req)).await;
        tokio::time::sleep(s.add_interval).await;
    }
}

fn report() -> pb::RunReport {
    pb::RunReport {
        exited: true,
        exit_code: 0,
        wall_ms: 1,
        ..Default::default()
    }
}

/// Reserves and finishes jobs until `stop`; once `draining`, it no longer stalls.
pub async fn worker(mut p: Proc, s: Settings, stop: Arc<AtomicBool>, draining: Arc<AtomicBool>) {
    let runner_id = uuid_bytes(&mut p.rng);
    while !stop.load(Ordering::Relaxed) {
        let Some(job) = reserve(&p, &runner_id, s).await else {
            continue;
        };
        let name = job_name(&job.spec.clone().unwrap_or_default().cmd);
        let jref = pb::JobRef {
            key: job.key.clone(),
            fence: job.fence,
        };
        hold(&mut p, s, &draining, &name, &jref).await;
        finish(&mut p, s, name, jref).await;
    }
}

/// One reserve (a short long poll); the job, or None when there was none or the call failed
/// (after a short pause, so that a worker does not spin against a node that is down).
async fn reserve(p: &Proc, runner_id: &[u8], s: Settings) -> Option<pb::Job> {
    let req = pb::ReserveRequest {
        request_id: raftq_client::request_id(),
        runner_id: runner_id.to_vec(),
        sched_group: String::new(),
        ttr_ms: s.ttr_ms,
        wait_ms: 300,
    };
    let invoke = Op::Reserve {
        job: None,
        fence: None,
        ttr_ms: Some(s.ttr_ms),
    };
    let r = p
        .run(invoke, p.client.reserve(req), |r| Op::Reserve {
            job: r
                .job
                .as_ref()
                .map(|j| job_name(&j.spec.clone().unwrap_or_default().cmd)),
            fence: r.job.as_ref().map(|j| j.fence),
            ttr_ms: Some(s.ttr_ms),
        })
        .await;
    match r {
        Ok(pb::ReserveResponse { job, .. }) => job,
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// What a worker does while it holds a job: works on it, maybe stalls past its TTR (not while
/// `draining`), and maybe touches it.
async fn hold(p: &mut Proc, s: Settings, draining: &AtomicBool, name: &str, jref: &pb::JobRef) {
    if !s.work_time.is_zero() && !draining.load(Ordering::Relaxed) {
        tokio::time::sleep(s.work_time).await;
    }
    if p.rng.chance(s.stall_chance) && !draining.load(Ordering::Relaxed) {
        let ms = p.rng.range(s.ttr_ms * 6 / 5, s.ttr_ms * 7 / 2);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if s.stall_chance > 0.0 || p.rng.chance(0.3) {
        let op = Op::Touch {
            job: name.to_string(),
            fence: jref.fence,
        };
        let req = pb::TouchRequest {
            request_id: raftq_client::request_id(),
            job: Some(jref.clone()),
        };
        let _ = p.run_plain(op, p.client.touch(req)).await;
    }
}

/// Releases, buries or archives the held job, by the workload's chances.
async fn finish(p: &mut Proc, s: Settings, job: String, jref: pb::JobRef) {
    let fence = jref.fence;
    let x = p.rng.f64();
    if x < s.release_chance {
        let req = pb::HandBackRequest {
            request_id: raftq_client::request_id(),
            job: Some(jref),
            report: None,
            reason: "jepsen release".into(),
        };
        let _ = p
            .run_plain(Op::Release { job, fence }, p.client.release(req))
            .await;
    } else if x < s.release_chance + s.bury_chance {
        let req = pb::HandBackRequest {
            request_id: raftq_client::request_id(),
            job: Some(jref),
            report: None,
            reason: "jepsen bury".into(),
        };
        let _ = p
            .run_plain(Op::Bury { job, fence }, p.client.bury(req))
            .await;
    } else {
        let req = pb::ArchiveRequest {
            request_id: raftq_client::request_id(),
            job: Some(jref),
            report: Some(report()),
        };
        let _ = p
            .run_plain(Op::Archive { job, fence }, p.client.archive(req))
            .await;
    }
}

fn uuid_bytes(rng: &mut Rng) -> Vec<u8> {
    let mut v = rng.next_u64().to_le_bytes().to_vec();
    v.extend(rng.next_u64().to_le_bytes());
    v
}

/// Kicks every buried test job once (the final phase); returns how many were kicked.
pub async fn kick_buried(p: &Proc) -> Result<u64, ClientError> {
    let buried = p
        .client
        .search(pb::SearchRequest {
            rep_grp: REP_GROUP.into(),
            state: Some(pb::StateName::Buried as i32),
            ..Default::default()
        })
        .await?;
    if buried.is_empty() {
        return Ok(0);
    }
    // The node's keys are well formed; one that were not could not be kicked anyway.
    let keys: Vec<JobKey> = buried
        .iter()
        .filter_map(|j| JobKey::parse(&j.key))
        .collect();
    p.run(Op::Kick { count: None }, p.client.kick(&keys), |n| {
        Op::Kick { count: Some(*n) }
    })
    .await
}

/// Incomplete test jobs (linearizable read).
pub async fn incomplete(p: &Proc) -> Result<u64, ClientError> {
    let s = p.client.stats(false).await?;
    Ok(s.rep_groups
        .get(REP_GROUP)
        .map(|c| {
            c.counts
                .iter()
                .filter(|(state, _)| state.as_str() != "complete")
                .map(|(_, n)| *n)
                .sum()
        })
        .unwrap_or(0))
}

/// The final read: every test job with its state; returns how many jobs it saw.
pub async fn final_read(p: &Proc) -> Result<usize, ClientError> {
    p.run(
        Op::FinalRead { jobs: vec![] },
        p.client.search(pb::SearchRequest {
            rep_grp: REP_GROUP.into(),
            ..Default::default()
        }),
        |jobs| Op::FinalRead {
            jobs: jobs
                .iter()
                .map(|j| {
                    let state = pb::StateName::try_from(j.state)
                        .map(|s| s.as_str_name().to_ascii_lowercase())
                        .unwrap_or_else(|_| format!("state-{}", j.state));
                    (job_name(&j.spec.clone().unwrap_or_default().cmd), state)
                })
                .collect(),
        },
    )
    .await
    .map(|jobs| jobs.len())
}
