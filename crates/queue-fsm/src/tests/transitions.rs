use super::*;

fn prio(cmd: &str, p: u8) -> JobSpec {
    JobSpec {
        priority: p,
        ..JobSpec::new(cmd)
    }
}

fn with_retries(cmd: &str, r: u8) -> JobSpec {
    JobSpec {
        retries: r,
        ..JobSpec::new(cmd)
    }
}

#[test]
fn add_counts_existed_and_duplicates_in_one_add() {
    let mut t = T::new();
    let r = t.add_specs(vec![
        JobSpec::new("a"),
        JobSpec::new("b"),
        JobSpec::new("a"),
    ]);
    let Response::Added {
        added,
        existed,
        keys,
    } = r
    else {
        panic!()
    };
    assert_eq!((added, existed), (2, 1));
    assert_eq!(keys[0], keys[2]);
    let r = t.add_specs(vec![JobSpec::new("b"), JobSpec::new("c")]);
    assert!(matches!(
        r,
        Response::Added {
            added: 1,
            existed: 1,
            ..
        }
    ));
    assert_eq!(t.fsm.stats().unwrap()[&StateName::Ready], 3);
}

#[test]
fn completed_job_added_again_runs_again_unless_ignore_complete() {
    let mut t = T::new();
    let k = t.add_cmd("a");
    t.run_next();
    assert_eq!(t.state(k), StateName::Complete);
    let r = t.ok(Command::Add(AddJobs {
        jobs: vec![JobSpec::new("a")],
        ignore_complete: true,
        ..AddJobs::default()
    }));
    assert!(matches!(
        r,
        Response::Added {
            added: 0,
            existed: 1,
            ..
        }
    ));
    assert_eq!(t.state(k), StateName::Complete);
    let r = t.add_specs(vec![JobSpec::new("a")]);
    assert!(matches!(
        r,
        Response::Added {
            added: 1,
            existed: 0,
            ..
        }
    ));
    assert_eq!(t.state(k), StateName::Ready);
}

#[test]
fn invalid_job_refuses_whole_add_naming_index_and_field() {
    let mut t = T::new();
    let mut bad = JobSpec::new("ok");
    bad.rep_grp = "x".repeat(limits::MAX_NAME_BYTES + 1);
    let e = t.refused(Command::Add(AddJobs {
        jobs: vec![JobSpec::new("fine"), bad],
        ..AddJobs::default()
    }));
    match &e {
        CommandError::InvalidJob { index, field, .. } => {
            assert_eq!(*index, 1);
            assert_eq!(field, "rep_grp");
        }
        e => panic!("wrong error {e}"),
    }
    assert!(e.to_string().contains("job 1: `rep_grp`"), "{e}");
    assert!(t.fsm.stats().unwrap().is_empty(), "nothing applied");

    for (spec, field) in [
        (JobSpec::new("  "), "cmd"),
        (JobSpec::new("a\0b"), "cmd"),
        (JobSpec::new("x".repeat(limits::MAX_CMD_BYTES + 1)), "cmd"),
        (
            JobSpec {
                cwd_matters: true,
                ..JobSpec::new("a")
            },
            "cwd",
        ),
        (
            JobSpec {
                limit_grps: vec!["g:x".into()],
                ..JobSpec::new("a")
            },
            "limit_grps[0]",
        ),
        (
            JobSpec {
                env_override: vec!["NOEQUALS".into()],
                ..JobSpec::new("a")
            },
            "env_override[0]",
        ),
        (
            JobSpec {
                deps: vec![Dependency::Group(String::new())],
                ..JobSpec::new("a")
            },
            "deps[0]",
        ),
    ] {
        match t.refused(Command::Add(AddJobs {
            jobs: vec![spec],
            ..AddJobs::default()
        })) {
            CommandError::InvalidJob {
                index: 0, field: f, ..
            } => assert_eq!(f, field),
            e => panic!("wrong error {e}"),
        }
    }
    let e = t.refused(Command::Add(AddJobs {
        jobs: vec![JobSpec::new("a")],
        env: vec!["BIG=".to_string() + &"x".repeat(limits::MAX_ENV_BYTES)],
        ..AddJobs::default()
    }));
    assert!(
        matches!(e, CommandError::Invalid { ref field, .. } if field == "env"),
        "{e}"
    );
}

#[test]
fn too_many_jobs_in_one_add_is_refused() {
    let mut t = T::new();
    let jobs = (0..=limits::MAX_JOBS_PER_ADD)
        .map(|i| JobSpec::new(format!("j{i}")))
        .collect();
    let e = t.refused(Command::Add(AddJobs {
        jobs,
        ..AddJobs::default()
    }));
    assert!(matches!(e, CommandError::Invalid { ref field, .. } if field == "jobs"));
}

#[test]
fn reserve_by_priority_then_fifo() {
    let mut t = T::new();
    let a = t.add(prio("a", 0));
    let b = t.add(prio("b", 5));
    let c = t.add(prio("c", 0));
    let d = t.add(prio("d", 5));
    let e = t.add(prio("e", 255));
    let order: Vec<JobKey> = (0..5).map(|_| t.reserve().0).collect();
    assert_eq!(order, vec![e, b, d, a, c]);
    assert_eq!(t.try_reserve(None), None);
}

#[test]
fn reserve_within_a_scheduler_group() {
    let mut t = T::new();
    let small = t.add(JobSpec {
        requirements: Requirements {
            ram_mb: 100,
            ..Requirements::default()
        },
        ..JobSpec::new("small")
    });
    let big = t.add(JobSpec {
        requirements: Requirements {
            ram_mb: 5000,
            ..Requirements::default()
        },
        ..JobSpec::new("big")
    });
    let g_big = t.job(big).sched_group;
    assert_ne!(g_big, t.job(small).sched_group);
    let groups = t.fsm.ready_by_sched_group().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(t.try_reserve(Some(&g_big)).unwrap().0, big);
    assert_eq!(t.try_reserve(Some(&g_big)), None);
    assert_eq!(t.try_reserve(Some("nope")), None);
    assert_eq!(t.try_reserve(None).unwrap().0, small);
}

#[test]
fn held_jobs_are_counted_per_scheduler_group() {
    let mut t = T::new();
    let a = t.add_cmd("a");
    t.add_cmd("b");
    let g = t.job(a).sched_group;
    assert!(t.fsm.held_by_sched_group().unwrap().is_empty());
    let (k, f) = t.reserve();
    assert_eq!(t.fsm.held_by_sched_group().unwrap()[&g], 1);
    t.start(k, f);
    t.reserve();
    assert_eq!(t.fsm.held_by_sched_group().unwrap()[&g], 2);
    t.archive(k, f);
    assert_eq!(t.fsm.held_by_sched_group().unwrap()[&g], 1);
}

#[test]
fn pause_and_drain_stop_reserving() {
    let mut t = T::new();
    t.add_cmd("a");
    t.ok(Command::SetReserving {
        mode: ReserveMode::Paused,
    });
    let r = t.ok(Command::Reserve {
        runner: t.runner,
        group: None,
        ttr_ms: TTR,
    });
    assert_eq!(r, Response::NoJob(NoJob::Paused));
    t.ok(Command::SetReserving {
        mode: ReserveMode::Draining,
    });
    let r = t.ok(Command::Reserve {
        runner: t.runner,
        group: None,
        ttr_ms: TTR,
    });
    assert_eq!(r, Response::NoJob(NoJob::Draining));
    t.ok(Command::SetReserving {
        mode: ReserveMode::Open,
    });
    assert!(t.try_reserve(None).is_some());
}

#[test]
fn bad_ttr_is_refused() {
    let mut t = T::new();
    let e = t.refused(Command::Reserve {
        runner: t.runner,
        group: None,
        ttr_ms: 5,
    });
    assert!(matches!(e, CommandError::Invalid { ref field, .. } if field == "ttr_ms"));
}

#[test]
fn run_lifecycle_and_stale_fences() {
    let mut t = T::new();
    let k = t.add_cmd("a");
    let (k2, f) = t.reserve();
    assert_eq!(k, k2);
    assert_eq!(t.state(k), StateName::Reserved);
    let stale = FenceToken(f.0 + 100);
    let e = t.refused(Command::Touch {
        key: k,
        fence: stale,
    });
    assert!(matches!(e, CommandError::StaleFence { current: Some(c), .. } if c == f));
    t.start(k, f);
    assert_eq!(t.state(k), StateName::Running);
    assert_eq!(t.job(k).attempts, 1);
    assert_eq!(
        t.ok(Command::Touch { key: k, fence: f }),
        Response::Touched { kill: false }
    );
    t.archive(k, f);
    let job = t.job(k);
    assert_eq!(job.state, JobState::Complete);
    let rep = job.run.report.unwrap();
    assert_eq!(rep.peak_ram_mb, 120);
    assert!(rep.stdout.is_empty(), "output kept for failed runs only");
    for cmd in [
        Command::Touch { key: k, fence: f },
        Command::Archive {
            key: k,
            fence: f,
            report: ok_report(),
        },
        Command::Release(crate::HandBack {
            key: k,
            fence: f,
            report: None,
            reason: "x".into(),
        }),
        Command::Bury(crate::HandBack {
            key: k,
            fence: f,
            report: None,
            reason: "x".into(),
        }),
    ] {
        let e = t.refused(cmd);
        assert!(
            matches!(e, CommandError::StaleFence { current: None, .. }),
            "{e}"
        );
    }
    let e = t.refused(Command::Touch {
        key: JobKey::of("nope", "", false, ""),
        fence: f,
    });
    assert!(matches!(e, CommandError::NotFound { .. }));
}

#[test]
fn archive_of_failed_run_is_refused() {
    let mut t = T::new();
    t.add_cmd("a");
    let (k, f) = t.reserve();
    t.start(k, f);
    let e = t.refused(Command::Archive {
        key: k,
        fence: f,
        report: RunReport {
            exit_code: 3,
            ..ok_report()
        },
    });
    assert!(matches!(e, CommandError::Invalid { ref field, .. } if field == "report.exit_code"));
    assert_eq!(t.state(k), StateName::Running);
}

#[test]
fn release_without_run_is_unlimited_with_run_uses_retries() {
    let cfg = FsmConfig {
        release_delay_ms: 1000,
        max_release_delay_ms: 4000,
        ..FsmConfig::default()
    };
    let mut t = T::with(cfg);
    let k = t.add(with_retries("a", 1));
    for _ in 0..5 {
        let (_, f) = t.reserve();
        assert_eq!(t.release(k, f, "busy"), StateName::Delayed);
        assert_eq!(t.job(k).until_buried, 2);
        t.advance(1000);
        t.tick();
    }
    // first failed run: one retry left → delayed
    let (_, f) = t.reserve();
    t.start(k, f);
    assert_eq!(
        t.release(k, f, "command exited non-zero"),
        StateName::Delayed
    );
    assert_eq!(t.try_reserve(None), None);
    assert_eq!(t.fsm.next_deadline().unwrap(), Some(t.now + 1000));
    t.advance(999);
    t.tick();
    assert_eq!(t.state(k), StateName::Delayed);
    t.advance(1);
    assert!(matches!(
        t.tick(),
        Response::Ticked {
            delays_ended: 1,
            ..
        }
    ));
    assert_eq!(t.state(k), StateName::Ready);
    // second failed run: buried
    let (_, f) = t.reserve();
    t.start(k, f);
    assert_eq!(
        t.release(k, f, "command exited non-zero"),
        StateName::Buried
    );
    let job = t.job(k);
    assert_eq!(job.run.fail_reason, "command exited non-zero");
    assert_eq!(job.attempts, 2);
    // kick resets retries
    assert_eq!(t.ok(Command::Kick { keys: vec![k] }), Response::Count(1));
    assert_eq!(t.state(k), StateName::Ready);
    assert_eq!(t.job(k).until_buried, 2);
    assert_eq!(t.ok(Command::Kick { keys: vec![k] }), Response::Count(0));
}

#[test]
fn release_delay_backs_off() {
    let cfg = FsmConfig {
        release_delay_ms: 1000,
        max_release_delay_ms: 3000,
        ..FsmConfig::default()
    };
    let mut t = T::with(cfg);
    let k = t.add(with_retries("a", 10));
    let mut delays = Vec::new();
    for _ in 0..4 {
        let (_, f) = t.reserve();
        t.start(k, f);
        t.release(k, f, "x");
        let JobState::Delayed { until_ms } = t.job(k).state else {
            panic!()
        };
        delays.push(until_ms - t.now);
        t.advance(until_ms - t.now);
        t.tick();
    }
    assert_eq!(delays, vec![1000, 2000, 3000, 3000]);
}

#[test]
fn lease_expiry_makes_job_lost_then_runner_may_return() {
    let mut t = T::new();
    let k = t.add_cmd("a");
    let (_, f) = t.reserve();
    t.start(k, f);
    assert_eq!(t.fsm.next_deadline().unwrap(), Some(t.now + TTR));
    t.advance(TTR - 1);
    t.ok(Command::Touch { key: k, fence: f });
    t.advance(TTR - 1);
    t.tick();
    assert_eq!(t.state(k), StateName::Running, "touch extended the lease");
    t.advance(1);
    assert!(matches!(
        t.tick(),
        Response::Ticked {
            leases_expired: 1,
            ..
        }
    ));
    assert_eq!(t.state(k), StateName::Lost);
    assert_eq!(t.job(k).run.fail_reason, fail_reason::LOST);
    // the runner was only cut off: its touch revives the reservation
    t.ok(Command::Touch { key: k, fence: f });
    assert_eq!(t.state(k), StateName::Running);
    t.archive(k, f);
    assert_eq!(t.state(k), StateName::Complete);
}

#[test]
fn lost_job_returns_to_queue_and_old_fence_is_void() {
    let mut t = T::new();
    let k = t.add(with_retries("a", 1));
    let (_, f) = t.reserve();
    t.start(k, f);
    t.advance(TTR);
    t.tick();
    assert_eq!(t.state(k), StateName::Lost);
    let delay = t.fsm.meta().config.lost_return_delay_ms;
    t.advance(delay);
    assert!(matches!(
        t.tick(),
        Response::Ticked {
            lost_returned: 1,
            ..
        }
    ));
    assert_eq!(t.state(k), StateName::Ready);
    assert_eq!(t.job(k).until_buried, 1, "the lost run used up a retry");
    let (_, f2) = t.reserve();
    assert_ne!(f, f2);
    let e = t.refused(Command::Archive {
        key: k,
        fence: f,
        report: ok_report(),
    });
    assert!(matches!(e, CommandError::StaleFence { current: Some(c), .. } if c == f2));
    // lost again, last retry: buried
    t.start(k, f2);
    t.advance(TTR);
    t.tick();
    t.advance(delay);
    t.tick();
    assert_eq!(t.state(k), StateName::Buried);
}

#[test]
fn reserved_but_not_started_lost_job_keeps_its_retries() {
    let mut t = T::new();
    let k = t.add(with_retries("a", 0));
    t.reserve();
    t.advance(TTR);
    t.tick();
    t.advance(t.fsm.meta().config.lost_return_delay_ms);
    t.tick();
    assert_eq!(t.state(k), StateName::Ready);
}

#[test]
fn renew_leases_restarts_every_live_lease() {
    let mut t = T::new();
    let a = t.add_cmd("a");
    let b = t.add_cmd("b");
    let (_, fa) = t.reserve();
    let _ = t.reserve();
    t.start(a, fa);
    t.advance(TTR - 1);
    assert_eq!(t.ok(Command::RenewLeases), Response::Renewed(2));
    t.advance(TTR - 1);
    t.tick();
    assert_eq!(t.state(a), StateName::Running);
    assert_eq!(t.state(b), StateName::Reserved);
    t.advance(1);
    t.tick();
    assert_eq!(t.state(a), StateName::Lost);
    assert_eq!(t.state(b), StateName::Lost);
}

#[test]
fn clock_only_moves_forward() {
    let mut t = T::new();
    t.add_cmd("a");
    let (k, f) = t.reserve();
    t.start(k, f);
    let before = t.fsm.clock_ms();
    t.now -= 500_000;
    t.tick();
    assert_eq!(t.fsm.clock_ms(), before);
    assert_eq!(t.state(k), StateName::Running);
}

#[test]
fn kill_running_is_seen_at_touch_and_kill_lost_buries() {
    let mut t = T::new();
    let a = t.add_cmd("a");
    let b = t.add_cmd("b");
    let c = t.add_cmd("c");
    let (_, fa) = t.reserve();
    t.start(a, fa);
    let (_, fb) = t.reserve();
    t.start(b, fb);
    t.advance(TTR / 2);
    t.ok(Command::Touch { key: a, fence: fa });
    t.advance(TTR / 2);
    t.tick();
    assert_eq!(t.state(b), StateName::Lost);
    assert_eq!(
        t.ok(Command::Kill {
            keys: vec![a, b, c]
        }),
        Response::Count(2)
    );
    assert_eq!(
        t.ok(Command::Touch { key: a, fence: fa }),
        Response::Touched { kill: true }
    );
    t.ok(Command::Bury(crate::HandBack {
        key: a,
        fence: fa,
        report: Some(RunReport {
            exit_code: -9,
            stderr: "Killed".into(),
            ..ok_report()
        }),
        reason: fail_reason::KILLED.into(),
    }));
    let ja = t.job(a);
    assert_eq!(ja.state, JobState::Buried);
    assert_eq!(
        ja.run.report.unwrap().stderr,
        "Killed",
        "output kept for failed runs"
    );
    let jb = t.job(b);
    assert_eq!(jb.state, JobState::Buried);
    assert_eq!(jb.run.fail_reason, fail_reason::KILLED);
    assert_eq!(t.state(c), StateName::Ready);
}

#[test]
fn delete_skips_held_complete_and_depended_on() {
    let mut t = T::new();
    let a = t.add_cmd("a");
    let done = t.add_cmd("done");
    let held = t.add_cmd("held");
    let parent = t.add(JobSpec {
        dep_grps: vec!["p".into()],
        ..JobSpec::new("parent")
    });
    let child = t.add(JobSpec {
        deps: vec![Dependency::Group("p".into())],
        ..JobSpec::new("child")
    });
    assert_eq!(t.state(child), StateName::Dependent);
    // run "done" to completion and hold "held"
    let (k, f) = t.try_reserve(None).unwrap();
    assert_eq!(k, a);
    t.release(k, f, "not yet");
    let (k, f) = t.reserve();
    assert_eq!(k, done);
    t.start(k, f);
    t.archive(k, f);
    let (k, _) = t.reserve();
    assert_eq!(k, held);
    let missing = JobKey::of("missing", "", false, "");
    let r = t.ok(Command::Delete {
        keys: vec![a, done, held, parent, missing],
    });
    let Response::Deleted { deleted, skipped } = r else {
        panic!()
    };
    assert_eq!(deleted, 1);
    assert!(skipped.contains(&(done, Skip::Complete)));
    assert!(skipped.contains(&(held, Skip::Held(StateName::Reserved))));
    assert!(skipped.contains(&(parent, Skip::HasDependant(child))));
    assert!(skipped.contains(&(missing, Skip::NotFound)));
    assert!(t.fsm.get_job(&a).unwrap().is_none());
    // deleting the dependant too lets both go
    let r = t.ok(Command::Delete {
        keys: vec![parent, child],
    });
    assert!(matches!(r, Response::Deleted { deleted: 2, .. }));
}

#[test]
fn modify_priority_reorders_and_cmd_change_rekeys() {
    let mut t = T::new();
    let a = t.add_cmd("a");
    let b = t.add_cmd("b");
    let r = t.ok(Command::Modify {
        keys: vec![b],
        change: JobChange {
            priority: Some(9),
            ..JobChange::default()
        },
    });
    assert!(matches!(r, Response::Modified { ref modified, .. } if modified == &vec![(b, b)]));
    assert_eq!(t.reserve().0, b);
    // b is held: not modifiable
    let r = t.ok(Command::Modify {
        keys: vec![b],
        change: JobChange {
            priority: Some(1),
            ..JobChange::default()
        },
    });
    assert!(
        matches!(r, Response::Modified { ref skipped, .. } if skipped == &vec![(b, Skip::Held(StateName::Reserved))])
    );
    // rename a to "a2"
    let r = t.ok(Command::Modify {
        keys: vec![a],
        change: JobChange {
            cmd: Some("a2".into()),
            ..JobChange::default()
        },
    });
    let a2 = JobKey::of("a2", "", false, "");
    assert!(matches!(r, Response::Modified { ref modified, .. } if modified == &vec![(a, a2)]));
    assert!(t.fsm.get_job(&a).unwrap().is_none());
    assert_eq!(t.job(a2).spec.cmd, "a2");
    // renaming onto an existing key is skipped
    let c = t.add_cmd("c");
    let r = t.ok(Command::Modify {
        keys: vec![c],
        change: JobChange {
            cmd: Some("a2".into()),
            ..JobChange::default()
        },
    });
    assert!(
        matches!(r, Response::Modified { ref skipped, .. } if skipped == &vec![(c, Skip::KeyExists(a2))])
    );
    // an invalid change refuses the whole command
    let e = t.refused(Command::Modify {
        keys: vec![c],
        change: JobChange {
            cmd: Some(String::new()),
            ..JobChange::default()
        },
    });
    assert!(matches!(e, CommandError::Invalid { ref field, .. } if field == "change.cmd"));
}

#[test]
fn repeated_request_id_has_one_effect() {
    let mut t = T::new();
    let id = Some(RequestId(77));
    let add = Command::Add(AddJobs {
        jobs: vec![JobSpec::new("a"), JobSpec::new("b")],
        ..AddJobs::default()
    });
    let first = t.apply_req(Request::new(id, add.clone()));
    let again = t.apply_req(Request::new(id, add));
    assert_eq!(first, again);
    assert!(matches!(again, Ok(Response::Added { added: 2, .. })));
    let reserve = Command::Reserve {
        runner: t.runner,
        group: None,
        ttr_ms: TTR,
    };
    let r1 = t.apply_req(Request::new(Some(RequestId(78)), reserve.clone()));
    let r2 = t.apply_req(Request::new(Some(RequestId(78)), reserve));
    assert_eq!(r1, r2, "a retried reserve gets the same job and fence");
    assert_eq!(t.fsm.stats().unwrap()[&StateName::Reserved], 1);
    // refusals are remembered too
    let bad = Command::Touch {
        key: JobKey::of("zz", "", false, ""),
        fence: FenceToken(1),
    };
    let e1 = t.apply_req(Request::new(Some(RequestId(79)), bad.clone()));
    let e2 = t.apply_req(Request::new(Some(RequestId(79)), bad));
    assert!(e1.is_err());
    assert_eq!(e1, e2);
}

#[test]
fn request_table_is_bounded_by_age_and_count() {
    let cfg = FsmConfig {
        request_ttl_ms: 60_000,
        max_requests: 1000,
        ..FsmConfig::default()
    };
    let mut t = T::with(cfg);
    for i in 0..1500u128 {
        t.apply_req(Request::new(Some(RequestId(i)), Command::Tick))
            .unwrap();
    }
    assert_eq!(t.fsm.meta().requests_stored, 1000);
    // the oldest were dropped: id 0 applies again
    t.add_cmd("x");
    let r = t.apply_req(Request::new(
        Some(RequestId(0)),
        Command::Add(AddJobs {
            jobs: vec![JobSpec::new("y")],
            ..AddJobs::default()
        }),
    ));
    assert!(matches!(r, Ok(Response::Added { added: 1, .. })));
    t.advance(60_001);
    t.tick();
    assert_eq!(t.fsm.meta().requests_stored, 0);
}

#[test]
fn limit_groups_cap_concurrent_jobs() {
    let mut t = T::new();
    let spec = |c: &str| JobSpec {
        limit_grps: vec!["db:1".into()],
        ..JobSpec::new(c)
    };
    let a = t.add(spec("a"));
    let b = t.add(spec("b"));
    let free = t.add_cmd("free");
    let (k, f) = t.reserve();
    assert_eq!(k, a);
    assert_eq!(t.fsm.limit_groups().unwrap()["db"].held, 1);
    assert_eq!(t.reserve().0, free, "b waits for a's slot");
    assert_eq!(t.try_reserve(None), None);
    t.start(a, f);
    t.archive(a, f);
    assert_eq!(t.reserve().0, b);
    // limit 0 blocks; -1 unlimited
    let c = t.add(JobSpec {
        limit_grps: vec!["db".into()],
        ..JobSpec::new("c")
    });
    t.ok(Command::SetLimit {
        group: "db".into(),
        limit: 0,
    });
    assert_eq!(t.try_reserve(None), None);
    t.ok(Command::SetLimit {
        group: "db".into(),
        limit: -1,
    });
    assert_eq!(t.reserve().0, c);
    let e = t.refused(Command::SetLimit {
        group: "db".into(),
        limit: -2,
    });
    assert!(matches!(e, CommandError::Invalid { ref field, .. } if field == "limit"));
}

#[test]
fn environment_is_stored_once_and_overrides_apply() {
    let mut t = T::new();
    let env = vec!["A=1".to_string(), "B=2".to_string()];
    t.ok(Command::Add(AddJobs {
        jobs: vec![
            JobSpec::new("a"),
            JobSpec::new("b"),
            JobSpec {
                env_override: vec!["B=3".into(), "C=4".into()],
                ..JobSpec::new("c")
            },
        ],
        env: env.clone(),
        ..AddJobs::default()
    }));
    let ja = t.job(JobKey::of("a", "", false, ""));
    let jb = t.job(JobKey::of("b", "", false, ""));
    let jc = t.job(JobKey::of("c", "", false, ""));
    assert_eq!(ja.env_hash, jb.env_hash);
    assert_ne!(ja.env_hash, jc.env_hash);
    assert_eq!(t.fsm.env(&ja.env_hash.unwrap()).unwrap().unwrap(), env);
    assert_eq!(
        t.fsm.env(&jc.env_hash.unwrap()).unwrap().unwrap(),
        vec!["A=1", "B=3", "C=4"]
    );
    // deleting the last user of a blob removes it
    t.ok(Command::Delete { keys: vec![jc.key] });
    assert!(t.fsm.env(&jc.env_hash.unwrap()).unwrap().is_none());
    assert!(t.fsm.env(&ja.env_hash.unwrap()).unwrap().is_some());
}

#[test]
fn ram_failure_retries_with_more_ram() {
    let mut t = T::new();
    let k = t.add(JobSpec {
        retries: 3,
        requirements: Requirements {
            ram_mb: 1000,
            ..Requirements::default()
        },
        ..JobSpec::new("hungry")
    });
    let g1 = t.job(k).sched_group;
    let (_, f) = t.reserve();
    t.start(k, f);
    t.release(k, f, fail_reason::RAM);
    let j = t.job(k);
    assert_eq!(j.spec.requirements.ram_mb, 2000);
    t.advance(t.fsm.meta().config.max_release_delay_ms);
    t.tick();
    let j = t.job(k);
    assert_eq!(j.effective.ram_mb, 2000);
    assert_ne!(j.sched_group, g1);
    let (_, f) = t.reserve();
    t.start(k, f);
    t.release(k, f, fail_reason::TIME);
    assert!(t.job(k).spec.requirements.time_s >= 1800);
}

#[test]
fn next_deadline_follows_timers() {
    let mut t = T::new();
    assert_eq!(t.fsm.next_deadline().unwrap(), None);
    t.add_cmd("a");
    t.add_cmd("b");
    let (a, fa) = t.reserve();
    t.advance(100);
    let (_b, _) = t.reserve();
    assert_eq!(t.fsm.next_deadline().unwrap(), Some(t.now - 100 + TTR));
    t.ok(Command::Touch { key: a, fence: fa });
    assert_eq!(t.fsm.next_deadline().unwrap(), Some(t.now + TTR));
}

#[test]
fn query_by_rep_group_with_limit_reports_similar() {
    let mut t = T::new();
    let jobs: Vec<JobSpec> = (0..10)
        .map(|i| JobSpec {
            rep_grp: if i < 7 {
                "align/1".into()
            } else {
                "call".into()
            },
            ..JobSpec::new(format!("j{i}"))
        })
        .collect();
    t.add_specs(jobs);
    let l = t.fsm.by_rep_group("align", Match::Prefix, None, 2).unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[1].similar, 5);
    let l = t
        .fsm
        .by_rep_group("lig", Match::Substring, None, 0)
        .unwrap();
    assert_eq!(l.len(), 7);
    let l = t.fsm.by_rep_group("align", Match::Exact, None, 0).unwrap();
    assert!(l.is_empty());
    let l = t
        .fsm
        .by_rep_group("call", Match::Exact, Some(StateName::Ready), 0)
        .unwrap();
    assert_eq!(l.len(), 3);
    let counts = t.fsm.counts().unwrap();
    assert_eq!(counts["align/1"][&StateName::Ready], 7);
    t.reserve();
    assert_eq!(
        t.fsm
            .incomplete(Some(StateName::Reserved), 0)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(t.fsm.incomplete(None, 0).unwrap().len(), 10);
}

#[test]
fn refused_command_in_an_entry_leaves_the_others() {
    let mut t = T::new();
    let reqs = vec![
        Request::new(
            None,
            Command::Add(AddJobs {
                jobs: vec![JobSpec::new("a")],
                ..AddJobs::default()
            }),
        ),
        Request::new(
            None,
            Command::Add(AddJobs {
                jobs: vec![JobSpec::new("b"), JobSpec::new("")],
                ..AddJobs::default()
            }),
        ),
        Request::new(
            None,
            Command::Reserve {
                runner: t.runner,
                group: None,
                ttr_ms: TTR,
            },
        ),
    ];
    let applied = t.fsm.apply_entry(t.now, reqs, Vec::new()).unwrap();
    t.fsm.check_invariants().unwrap();
    assert!(applied.outcomes[0].is_ok());
    assert!(applied.outcomes[1].is_err());
    assert!(matches!(applied.outcomes[2], Ok(Response::Reserved { .. })));
    assert!(t
        .fsm
        .get_job(&JobKey::of("b", "", false, ""))
        .unwrap()
        .is_none());
    assert_eq!(applied.effects.woken_groups.len(), 1);
}

#[test]
fn an_invalid_config_is_its_own_error() {
    let config = FsmConfig {
        learn_window: 0,
        ..FsmConfig::default()
    };
    match Fsm::open(MemStore::default(), config) {
        Err(StoreError::InvalidConfig(ConfigError::LearnWindowOutOfRange)) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an invalid config was accepted"),
    }
    assert_eq!(
        ConfigError::LearnWindowOutOfRange.to_string(),
        "learn_window must be 1 to 10000"
    );
}

#[test]
fn spec_errors_name_the_field() {
    use crate::limits::{validate_spec, FieldError};
    assert_eq!(
        validate_spec(&JobSpec::new(" ")),
        Err(FieldError::new("cmd", "must not be empty"))
    );
    let mut spec = JobSpec::new("x");
    spec.deps = vec![Dependency::Group(String::new())];
    let e = validate_spec(&spec).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("deps[0]", "must not be empty")
    );
    assert_eq!(e.to_string(), "deps[0]: must not be empty");
}
