use super::*;
use crate::fsm::encode;
use crate::snapshot::{self, Chunk};

/// A fixed, varied command log: adds with dependencies and env, reserves, runs, failures,
/// timers, kills, deletes, modifies. Built from a tiny deterministic generator so that the
/// test needs no randomness.
fn command_log() -> Vec<(u64, Request)> {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut log = Vec::new();
    let mut now = 1_000_000u64;
    let runner = RunnerId(1);
    for round in 0..40u64 {
        now += next() % 20_000;
        let jobs = (0..5)
            .map(|i| JobSpec {
                priority: (next() % 3) as u8,
                retries: (next() % 2) as u8,
                rep_grp: format!("rg{}", next() % 3),
                dep_grps: vec![format!("g{round}")],
                deps: if round > 0 && i % 2 == 0 {
                    vec![Dependency::Group(format!("g{}", round - 1))]
                } else {
                    vec![]
                },
                limit_grps: if i == 4 { vec!["lim:2".into()] } else { vec![] },
                ..JobSpec::new(format!("cmd {round} {i}"))
            })
            .collect();
        log.push((
            now,
            Request::new(
                Some(RequestId(round as u128)),
                Command::Add(AddJobs {
                    jobs,
                    env: vec![format!("ROUND={}", round % 4)],
                    ..AddJobs::default()
                }),
            ),
        ));
        for _ in 0..4 {
            log.push((
                now,
                Request::new(
                    None,
                    Command::Reserve {
                        runner,
                        group: None,
                        ttr_ms: 30_000,
                    },
                ),
            ));
        }
        log.push((now, Request::new(None, Command::Tick)));
    }
    log
}

/// Applies the log, turning reservations into runs (archive, release or bury by a fixed
/// pattern), and returns the outcomes.
fn run_log<S: Store>(fsm: &mut Fsm<S>) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (i, (now, req)) in command_log().into_iter().enumerate() {
        let (out, _) = fsm.apply(now, req).unwrap();
        if let Ok(Response::Reserved { job, fence }) = &out {
            let key = job.key;
            let fence = *fence;
            let started = Command::Started {
                key,
                fence,
                host: "h".into(),
                pid: 1,
            };
            outcomes.push(fsm.apply(now, Request::new(None, started)).unwrap().0);
            let follow = match i % 5 {
                0..=2 => Command::Archive {
                    key,
                    fence,
                    report: ok_report(),
                },
                3 => Command::Release(crate::HandBack {
                    key,
                    fence,
                    report: None,
                    reason: "x".into(),
                }),
                _ => Command::Touch { key, fence },
            };
            outcomes.push(fsm.apply(now, Request::new(None, follow)).unwrap().0);
        }
        outcomes.push(out);
    }
    outcomes
}

#[test]
fn memory_and_rocksdb_stores_reach_the_same_state() {
    let mut mem = Fsm::open(MemStore::default(), FsmConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rocks = Fsm::open(RocksStore::open(dir.path()).unwrap(), FsmConfig::default()).unwrap();
    let a = run_log(&mut mem);
    let b = run_log(&mut rocks);
    assert_eq!(a, b);
    mem.check_invariants().unwrap();
    rocks.check_invariants().unwrap();
    let d = mem.digest().unwrap();
    assert_eq!(d, rocks.digest().unwrap());
    let stats = mem.stats().unwrap();
    assert!(
        stats.get(&StateName::Complete).copied().unwrap_or(0) > 10,
        "{stats:?}"
    );
    assert!(
        stats.get(&StateName::Dependent).copied().unwrap_or(0) > 0,
        "{stats:?}"
    );

    // reopening the RocksDB store gives the same state and clock
    let clock = rocks.clock_ms();
    drop(rocks);
    let rocks = Fsm::open(RocksStore::open(dir.path()).unwrap(), FsmConfig::default()).unwrap();
    assert_eq!(rocks.digest().unwrap(), d);
    assert_eq!(rocks.clock_ms(), clock);
}

#[test]
fn export_import_round_trip_keeps_the_digest() {
    let mut src = Fsm::open(MemStore::default(), FsmConfig::default()).unwrap();
    run_log(&mut src);
    let chunks: Vec<Chunk> = src.export(4096).collect::<Result<_, _>>().unwrap();
    assert!(chunks.len() > 3, "small chunks force several");
    assert!(chunks.iter().all(|c| c.bytes() < 4096 + 70_000));

    let dir = tempfile::tempdir().unwrap();
    let mut dst = Fsm::open(RocksStore::open(dir.path()).unwrap(), FsmConfig::default()).unwrap();
    // something to be replaced
    let old = Command::Add(AddJobs {
        jobs: vec![JobSpec::new("old")],
        ..AddJobs::default()
    });
    assert!(dst.apply(5, Request::new(None, old)).unwrap().0.is_ok());
    dst.import(chunks).unwrap();
    assert_eq!(dst.digest().unwrap(), src.digest().unwrap());
    assert_eq!(dst.meta(), src.meta());
    dst.check_invariants().unwrap();

    // both go on identically
    let next = Request::new(
        None,
        Command::Add(AddJobs {
            jobs: vec![JobSpec::new("after import")],
            ..AddJobs::default()
        }),
    );
    let now = src.clock_ms() + 1;
    assert_eq!(
        src.apply(now, next.clone()).unwrap().0,
        dst.apply(now, next).unwrap().0
    );
    assert_eq!(dst.digest().unwrap(), src.digest().unwrap());
    assert_eq!(
        snapshot::digest(dst.store()).unwrap(),
        dst.digest().unwrap()
    );
}

/// Release and Bury carry a `HandBack` since they were folded into one shape; the entries
/// already in a log were written as struct variants with the same fields. Both encodings
/// must be the same bytes, so that such a log still reads.
#[test]
fn a_hand_back_encodes_as_the_struct_variants_it_replaced() {
    #[derive(serde::Serialize)]
    #[allow(dead_code)]
    enum Before {
        Add,
        Reserve,
        Started,
        Touch,
        Archive,
        Release {
            key: JobKey,
            fence: FenceToken,
            report: Option<RunReport>,
            reason: String,
        },
        Bury {
            key: JobKey,
            fence: FenceToken,
            report: Option<RunReport>,
            reason: String,
        },
    }
    let key = JobKey::of("true", "/", false, "");
    let report = Some(RunReport {
        exit_code: 3,
        stderr: "oops".into(),
        ..RunReport::default()
    });
    let h = crate::HandBack {
        key,
        fence: FenceToken(7),
        report: report.clone(),
        reason: "exit".into(),
    };
    let old_release = Before::Release {
        key,
        fence: FenceToken(7),
        report: report.clone(),
        reason: "exit".into(),
    };
    let old_bury = Before::Bury {
        key,
        fence: FenceToken(7),
        report,
        reason: "exit".into(),
    };
    let new_release = Command::Release(h.clone());
    assert_eq!(encode(&new_release), encode(&old_release));
    assert_eq!(encode(&Command::Bury(h)), encode(&old_bury));
    let back: Command = postcard::from_bytes(&encode(&old_release)).unwrap();
    assert_eq!(back, new_release);
}

#[test]
fn streamed_import_replaces_the_state_in_bounded_batches() {
    let mut src = Fsm::open(MemStore::default(), FsmConfig::default()).unwrap();
    run_log(&mut src);
    let dir = tempfile::tempdir().unwrap();
    let mut dst = Fsm::open(RocksStore::open(dir.path()).unwrap(), FsmConfig::default()).unwrap();
    let old = Command::Add(AddJobs {
        jobs: (0..50).map(|i| JobSpec::new(format!("old {i}"))).collect(),
        ..AddJobs::default()
    });
    assert!(dst.apply(5, Request::new(None, old)).unwrap().0.is_ok());
    dst.import_streamed(src.export(4096)).unwrap();
    assert!(!dst.import_incomplete().unwrap());
    assert_eq!(dst.digest().unwrap(), src.digest().unwrap());
    assert_eq!(dst.meta(), src.meta());
    dst.check_invariants().unwrap();

    // an error from the source half way leaves the marker, which a second import clears
    let failing = src
        .export(4096)
        .take(2)
        .chain(std::iter::once(Err(crate::StoreError::Io("cut".into()))));
    assert!(dst.import_streamed(failing).is_err());
    assert!(dst.import_incomplete().unwrap());
    dst.import_streamed(src.export(4096)).unwrap();
    assert!(!dst.import_incomplete().unwrap());
    assert_eq!(dst.digest().unwrap(), src.digest().unwrap());
}
