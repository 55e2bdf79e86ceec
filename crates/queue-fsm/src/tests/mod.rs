//! Unit and scenario tests of the transitions. Every apply is followed by
//! `check_invariants()`.

mod deps;
mod determinism;
mod key_actions;
mod learning;
mod paging;
mod transitions;

use crate::*;

/// A state machine on the in-memory store with a test clock.
pub(crate) struct T {
    pub fsm: Fsm<MemStore>,
    pub now: u64,
    pub runner: RunnerId,
}

pub(crate) const TTR: u64 = 10_000;

impl T {
    pub fn new() -> T {
        T::with(FsmConfig::default())
    }

    pub fn with(config: FsmConfig) -> T {
        T {
            fsm: Fsm::open(MemStore::default(), config).unwrap(),
            now: 1_000_000,
            runner: RunnerId(7),
        }
    }

    pub fn apply_req(&mut self, req: Request) -> Outcome {
        let (out, _) = self.fsm.apply(self.now, req).unwrap();
        if let Err(e) = self.fsm.check_invariants() {
            panic!("after {out:?}: {e}");
        }
        out
    }

    pub fn apply(&mut self, cmd: Command) -> Outcome {
        self.apply_req(Request::new(None, cmd))
    }

    pub fn ok(&mut self, cmd: Command) -> Response {
        match self.apply(cmd.clone()) {
            Ok(r) => r,
            Err(e) => panic!("{cmd:?} refused: {e}"),
        }
    }

    pub fn refused(&mut self, cmd: Command) -> CommandError {
        match self.apply(cmd.clone()) {
            Ok(r) => panic!("{cmd:?} should be refused, got {r:?}"),
            Err(e) => e,
        }
    }

    pub fn add_specs(&mut self, jobs: Vec<JobSpec>) -> Response {
        self.ok(Command::Add(AddJobs {
            jobs,
            return_keys: true,
            ..AddJobs::default()
        }))
    }

    pub fn add(&mut self, spec: JobSpec) -> JobKey {
        match self.add_specs(vec![spec]) {
            Response::Added { keys, added: 1, .. } => keys[0],
            r => panic!("expected one added job, got {r:?}"),
        }
    }

    pub fn add_cmd(&mut self, cmd: &str) -> JobKey {
        self.add(JobSpec::new(cmd))
    }

    pub fn try_reserve(&mut self, group: Option<&str>) -> Option<(JobKey, FenceToken)> {
        match self.ok(Command::Reserve {
            runner: self.runner,
            group: group.map(str::to_owned),
            ttr_ms: TTR,
        }) {
            Response::Reserved { job, fence } => Some((job.key, fence)),
            Response::NoJob(_) => None,
            r => panic!("unexpected reserve response {r:?}"),
        }
    }

    pub fn reserve(&mut self) -> (JobKey, FenceToken) {
        self.try_reserve(None).expect("a ready job")
    }

    pub fn start(&mut self, key: JobKey, fence: FenceToken) {
        self.ok(Command::Started {
            key,
            fence,
            host: "h1".into(),
            pid: 42,
        });
    }

    pub fn archive(&mut self, key: JobKey, fence: FenceToken) {
        self.ok(Command::Archive {
            key,
            fence,
            report: ok_report(),
        });
    }

    /// Reserve, start and archive the next job; returns its key.
    pub fn run_next(&mut self) -> JobKey {
        let (k, f) = self.reserve();
        self.start(k, f);
        self.archive(k, f);
        k
    }

    pub fn release(&mut self, key: JobKey, fence: FenceToken, reason: &str) -> StateName {
        match self.ok(Command::Release(crate::HandBack {
            key,
            fence,
            report: None,
            reason: reason.into(),
        })) {
            Response::Released { state } => state,
            r => panic!("unexpected release response {r:?}"),
        }
    }

    pub fn job(&self, key: JobKey) -> Job {
        self.fsm.get_job(&key).unwrap().expect("job exists")
    }

    pub fn state(&self, key: JobKey) -> StateName {
        self.job(key).state.name()
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    pub fn tick(&mut self) -> Response {
        self.ok(Command::Tick)
    }
}

pub(crate) fn ok_report() -> RunReport {
    RunReport {
        exited: true,
        exit_code: 0,
        peak_ram_mb: 120,
        peak_disk_mb: 10,
        cpu_ms: 900,
        wall_ms: 1000,
        started_ms: 1,
        ended_ms: 2,
        actual_cwd: "/tmp/x".into(),
        stdout: "out".into(),
        stderr: "err".into(),
    }
}
