//! Benchmarks of the queue state machine on the RocksDB store (in a tempdir; the store does
//! not fsync). Results, and the targets they are checked against: `docs/benchmarks.md`.
//!
//! - `add`: 100,000 jobs added into a fresh store, 1,000 per entry (one `Command::Add` each),
//!   distinct commands in 4 rep groups.
//! - `cycle`: Reserve (TTR 60 s) → Started → Archive of one job, each command its own entry;
//!   and the batched form the node's proposer produces: one entry of 32 Reserves, one of the
//!   32 Started, one of the 32 Archives (and a variant without the Started entry). Each form
//!   runs on its own store, pre-filled with 100,000 ready jobs and topped up (outside the
//!   measurement) whenever the next sample would run it dry.
//! - `status`: `counts()` and `stats()` on a store of 1,000,000 jobs in 20 rep groups and a
//!   mix of states. That store is built once per process, only when this group runs (about a
//!   minute on 2 cores).
//!
//! Every command carries a random-looking request id (the node gives one to every client
//! request, so every response is stored for idempotent replay), and every entry carries one
//! extra write, as the Raft layer's applied log id will be.
//!
//! Under `cargo test` (criterion's test mode: no `--bench` argument) every size is scaled
//! down so that the run takes well under a second, debug build included.

use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput,
};
use queue_fsm::store::Write;
use queue_fsm::{
    AddJobs, Command, Dependency, FenceToken, Fsm, FsmConfig, JobKey, JobSpec, Outcome, Request,
    RequestId, Requirements, Response, RocksStore, RunReport, RunnerId, Space, StateName,
};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Whether criterion measures (`cargo bench`) rather than runs each bench once (`cargo test`).
fn full() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// Sizes: (measured size, size under `cargo test`).
fn size(full_size: u64, test_size: u64) -> u64 {
    if full() {
        full_size
    } else {
        test_size
    }
}

const TTR_MS: u64 = 60_000;
const RUNNER: RunnerId = RunnerId(0x5eed);

/// A state machine over a RocksDB store in a temporary directory, with the node-side
/// bookkeeping a proposer would do: entry time, request ids, applied log index.
struct Queue {
    fsm: Fsm<RocksStore>,
    now_ms: u64,
    log_index: u64,
    next_request: u64,
    /// Jobs made so far (the next job's number; commands are distinct per number).
    next_job: u64,
    /// Ready jobs not yet reserved, as far as this driver knows.
    ready: u64,
    // Dropped last: the store must close before its directory is removed.
    _dir: TempDir,
}

impl Queue {
    fn new() -> Queue {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RocksStore::open(dir.path()).expect("open RocksDB store");
        let fsm = Fsm::open(store, FsmConfig::default()).expect("open fsm");
        Queue {
            fsm,
            now_ms: 1_700_000_000_000,
            log_index: 0,
            next_request: 1,
            next_job: 0,
            ready: 0,
            _dir: dir,
        }
    }

    /// Applies one entry carrying `cmds`.
    fn apply(&mut self, cmds: Vec<Command>) -> Vec<Outcome> {
        self.now_ms += 1;
        self.log_index += 1;
        let reqs = cmds
            .into_iter()
            .map(|cmd| {
                self.next_request += 1;
                Request::new(Some(request_id(self.next_request)), cmd)
            })
            .collect();
        let extra: Vec<Write> = vec![(
            Space::Meta,
            b"raft/applied".to_vec(),
            Some(self.log_index.to_be_bytes().to_vec()),
        )];
        self.fsm
            .apply_entry(self.now_ms, reqs, extra)
            .expect("apply_entry")
            .outcomes
    }

    /// One Add of `specs` in one entry; all of them must be new.
    fn add(&mut self, specs: Vec<JobSpec>) {
        let n = specs.len() as u64;
        let out = self.apply(vec![add_cmd(specs)]);
        match &out[0] {
            Ok(Response::Added { added, .. }) if *added == n => {}
            o => panic!("add of {n} jobs: {o:?}"),
        }
    }

    /// Adds `n` plain ready jobs in `rep_groups` rep groups, `batch` per entry.
    fn add_ready(&mut self, n: u64, batch: u64, rep_groups: u64) {
        let mut left = n;
        while left > 0 {
            let k = left.min(batch);
            let specs = (self.next_job..self.next_job + k)
                .map(|i| spec(i, rep_groups))
                .collect();
            self.next_job += k;
            self.add(specs);
            left -= k;
        }
        self.ready += n;
    }

    /// Tops the ready jobs up to at least `n` (outside any measurement).
    fn ensure_ready(&mut self, n: u64) {
        if self.ready < n {
            let want = (n - self.ready).max(10_000.min(n));
            self.add_ready(want, 1_000, 4);
        }
    }

    /// One entry of `n` Reserves; every one must get a job.
    fn reserve(&mut self, n: usize) -> Vec<(JobKey, FenceToken)> {
        let cmds = (0..n)
            .map(|_| Command::Reserve {
                runner: RUNNER,
                group: None,
                ttr_ms: TTR_MS,
            })
            .collect();
        self.ready = self.ready.saturating_sub(n as u64);
        self.apply(cmds)
            .into_iter()
            .map(|o| match o {
                Ok(Response::Reserved { job, fence }) => (job.key, fence),
                o => panic!("reserve: {o:?}"),
            })
            .collect()
    }

    /// One entry of the given commands on held jobs; each must answer `Ok`.
    fn on_held(
        &mut self,
        held: &[(JobKey, FenceToken)],
        cmd: impl Fn(JobKey, FenceToken) -> Command,
    ) {
        let cmds = held.iter().map(|&(k, f)| cmd(k, f)).collect();
        for o in self.apply(cmds) {
            assert!(matches!(o, Ok(Response::Ok)), "{o:?}");
        }
    }

    fn started(&mut self, held: &[(JobKey, FenceToken)]) {
        self.on_held(held, started_cmd);
    }

    fn archive(&mut self, held: &[(JobKey, FenceToken)]) {
        self.on_held(held, archive_cmd);
    }
}

/// The `n`th request id: random-looking, as clients choose them (UUID-like), so that the
/// request table is not written in key order.
fn request_id(n: u64) -> RequestId {
    fn mix(mut z: u64) -> u64 {
        // splitmix64's finaliser
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    RequestId(((mix(n) as u128) << 64) | mix(!n) as u128)
}

fn add_cmd(jobs: Vec<JobSpec>) -> Command {
    Command::Add(AddJobs {
        jobs,
        ..AddJobs::default()
    })
}

fn started_cmd(key: JobKey, fence: FenceToken) -> Command {
    Command::Started {
        key,
        fence,
        host: "worker-017.cluster.example.org".into(),
        pid: 48_213,
    }
}

fn archive_cmd(key: JobKey, fence: FenceToken) -> Command {
    Command::Archive {
        key,
        fence,
        report: RunReport {
            exited: true,
            exit_code: 0,
            peak_ram_mb: 812,
            peak_disk_mb: 40,
            cpu_ms: 110_000,
            wall_ms: 121_000,
            started_ms: 1_700_000_000_000,
            ended_ms: 1_700_000_121_000,
            actual_cwd: "/scratch/bench/a1/b2/c3d4e5f6/cwd".into(),
            stdout: String::new(),
            stderr: String::new(),
        },
    }
}

/// Job number `i`: a distinct command, in one of `rep_groups` rep groups.
fn spec(i: u64, rep_groups: u64) -> JobSpec {
    let mut s = JobSpec::new(format!(
        "bwa mem -t 4 /ref/GRCh38.fa /data/s{i:09}_R1.fq.gz /data/s{i:09}_R2.fq.gz > /out/s{i:09}.sam"
    ));
    s.cwd = "/scratch/bench".into();
    s.rep_grp = format!("bench-rep-{:02}", i % rep_groups);
    s.req_grp = "bwa".into();
    s.requirements = Requirements {
        ram_mb: 1000,
        time_s: 3600,
        cores_milli: 4000,
        disk_gb: 1,
        ..Requirements::default()
    };
    s.retries = 3;
    s
}

// ---- 1. add -------------------------------------------------------------------------------

fn bench_add(c: &mut Criterion) {
    let total = size(100_000, 2_000);
    let batch = 1_000u64;
    let mut g = c.benchmark_group("add");
    g.throughput(Throughput::Elements(total))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    g.bench_function(format!("{total}_jobs_in_entries_of_{batch}"), |b| {
        b.iter_batched(
            || {
                // A fresh store and the entries' commands, built outside the measurement.
                let entries: Vec<Vec<JobSpec>> = (0..total / batch)
                    .map(|e| (e * batch..(e + 1) * batch).map(|i| spec(i, 4)).collect())
                    .collect();
                (Queue::new(), entries)
            },
            |(mut q, entries)| {
                for specs in entries {
                    q.add(specs);
                }
                q
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

// ---- 2. reserve + started + archive ---------------------------------------------------------

fn bench_cycle(c: &mut Criterion) {
    /// A cycle form: commands per entry (1 or `BATCH`), and whether Started has its entry.
    struct Form {
        name: String,
        per_entry: usize,
        started: bool,
    }
    const BATCH: usize = 32;
    let forms = [
        Form {
            name: "single".into(),
            per_entry: 1,
            started: true,
        },
        Form {
            name: format!("batched_{BATCH}_reserve_started_archive"),
            per_entry: BATCH,
            started: true,
        },
        Form {
            name: format!("batched_{BATCH}_reserve_archive"),
            per_entry: BATCH,
            started: false,
        },
    ];
    let prefill = size(100_000, 500);
    let mut g = c.benchmark_group("cycle");
    // 50 samples: with 100, a batched iteration (~3 ms) cannot fit criterion's minimum of
    // 5,050 iterations into the measurement time.
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    for form in forms {
        // Each form on its own store of `prefill` ready jobs (4 rep groups), built when it runs.
        let mut q: Option<Queue> = None;
        g.throughput(Throughput::Elements(form.per_entry as u64));
        g.bench_function(form.name.as_str(), |b| {
            let q = q.get_or_insert_with(|| {
                let mut q = Queue::new();
                q.add_ready(prefill, 1_000, 4);
                q
            });
            b.iter_custom(|iters| {
                q.ensure_ready(iters * form.per_entry as u64);
                let start = Instant::now();
                for _ in 0..iters {
                    let held = q.reserve(form.per_entry);
                    if form.started {
                        q.started(&held);
                    }
                    q.archive(&held);
                }
                start.elapsed()
            })
        });
    }
    g.finish();
}

// ---- 3. status counts on a big store --------------------------------------------------------

const REP_GROUPS: u64 = 20;

/// A store of `n` jobs in `REP_GROUPS` rep groups: 10% members of dep groups (ready, low
/// priority), 10% depending on those groups (dependent); of the rest, 30% of `n` complete, 1%
/// lost, 2% each buried, delayed (released), running, reserved; the others ready.
fn big_store(n: u64) -> Queue {
    let t0 = Instant::now();
    let mut q = Queue::new();
    let batch = 1_000u64;
    let mut i = 0u64;
    while i < n {
        let k = batch.min(n - i);
        let specs = (i..i + k)
            .map(|i| {
                let mut s = spec(i, REP_GROUPS);
                let dep_group = format!("stage1-{:02}", (i / 10) % 20);
                match i % 10 {
                    0 => {
                        s.dep_grps = vec![dep_group];
                        s.requirements.ram_mb = 2000;
                    }
                    1 => {
                        s.deps = vec![Dependency::Group(dep_group)];
                        s.priority = 100;
                    }
                    _ => s.priority = 100,
                }
                s
            })
            .collect();
        q.add(specs);
        i += k;
    }
    q.next_job = n;
    let added = t0.elapsed();

    let frac = |pct: u64| n * pct / 100;
    let in_entries = |q: &mut Queue, total: u64, f: &mut dyn FnMut(&mut Queue, usize)| {
        let mut left = total;
        while left > 0 {
            let k = left.min(1_000);
            f(q, k as usize);
            left -= k;
        }
    };
    // Lost: reserved (half of them started), then their leases expire.
    in_entries(&mut q, frac(1), &mut |q, k| {
        let held = q.reserve(k);
        q.started(&held[..k / 2]);
    });
    q.now_ms += TTR_MS + 1_000;
    loop {
        match &q.apply(vec![Command::Tick])[0] {
            Ok(Response::Ticked { leases_expired, .. }) if *leases_expired > 0 => {}
            Ok(Response::Ticked { .. }) => break,
            o => panic!("tick: {o:?}"),
        }
    }
    in_entries(&mut q, frac(30), &mut |q, k| {
        let held = q.reserve(k);
        q.started(&held);
        q.archive(&held);
    });
    in_entries(&mut q, frac(2), &mut |q, k| {
        let held = q.reserve(k);
        q.started(&held);
        q.on_held(&held, |key, fence| {
            Command::Bury(queue_fsm::HandBack {
                key,
                fence,
                report: None,
                reason: "bench: buried".into(),
            })
        });
    });
    in_entries(&mut q, frac(2), &mut |q, k| {
        let held = q.reserve(k);
        q.started(&held);
        let cmds = held
            .iter()
            .map(|&(key, fence)| {
                Command::Release(queue_fsm::HandBack {
                    key,
                    fence,
                    report: None,
                    reason: "bench: released".into(),
                })
            })
            .collect();
        for o in q.apply(cmds) {
            assert!(
                matches!(
                    o,
                    Ok(Response::Released {
                        state: StateName::Delayed
                    })
                ),
                "{o:?}"
            );
        }
    });
    in_entries(&mut q, frac(2), &mut |q, k| {
        let held = q.reserve(k);
        q.started(&held);
    });
    in_entries(&mut q, frac(2), &mut |q, k| {
        q.reserve(k);
    });
    if full() {
        eprintln!(
            "status: built a store of {n} jobs in {:.1} s (adds: {:.1} s, {:.0} jobs/s); \
             per state: {:?}",
            t0.elapsed().as_secs_f64(),
            added.as_secs_f64(),
            n as f64 / added.as_secs_f64(),
            q.fsm.stats().expect("stats")
        );
    }
    q
}

fn bench_status(c: &mut Criterion) {
    let n = size(1_000_000, 5_000);
    let mut q: Option<Queue> = None;
    let mut g = c.benchmark_group("status");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function(format!("counts_{n}_jobs"), |b| {
        let q = q.get_or_insert_with(|| big_store(n));
        let groups = q.fsm.counts().expect("counts").len() as u64;
        assert_eq!(groups, REP_GROUPS.min(n));
        b.iter(|| black_box(q.fsm.counts().expect("counts")))
    });
    g.bench_function(format!("stats_{n}_jobs"), |b| {
        let q = q.get_or_insert_with(|| big_store(n));
        let total: u64 = q.fsm.stats().expect("stats").values().sum();
        assert_eq!(total, n);
        b.iter(|| black_box(q.fsm.stats().expect("stats")))
    });
    g.finish();
}

criterion_group!(benches, bench_add, bench_cycle, bench_status);
criterion_main!(benches);
