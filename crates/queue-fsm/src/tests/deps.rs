use super::*;

fn in_group(cmd: &str, g: &str) -> JobSpec {
    JobSpec {
        dep_grps: vec![g.into()],
        ..JobSpec::new(cmd)
    }
}

fn needs_group(cmd: &str, my: &[&str], g: &str) -> JobSpec {
    JobSpec {
        dep_grps: my.iter().map(|s| s.to_string()).collect(),
        deps: vec![Dependency::Group(g.into())],
        ..JobSpec::new(cmd)
    }
}

#[test]
fn dependants_wait_for_every_member_of_a_group() {
    let mut t = T::new();
    let s1 = t.add(in_group("s1a", "step1"));
    let s2 = t.add(in_group("s1b", "step1"));
    let d = t.add(needs_group("step2", &["step2"], "step1"));
    assert_eq!(t.state(d), StateName::Dependent);
    assert_eq!(t.job(d).waiting, 1);
    let first = t.run_next();
    assert!(first == s1 || first == s2);
    assert_eq!(t.state(d), StateName::Dependent);
    t.run_next();
    assert_eq!(t.state(d), StateName::Ready);
    assert_eq!(t.run_next(), d);
}

#[test]
fn dependency_on_empty_or_missing_target_is_satisfied() {
    let mut t = T::new();
    let a = t.add(needs_group("a", &[], "nobody"));
    assert_eq!(t.state(a), StateName::Ready);
    let b = t.add(JobSpec {
        deps: vec![Dependency::Job(JobKey::of("not added", "", false, ""))],
        ..JobSpec::new("b")
    });
    assert_eq!(t.state(b), StateName::Ready);
}

#[test]
fn new_member_of_a_group_makes_ready_dependant_wait_again() {
    let mut t = T::new();
    let d = t.add(needs_group("d", &[], "g"));
    assert_eq!(t.state(d), StateName::Ready);
    let m = t.add(in_group("m", "g"));
    assert_eq!(t.state(d), StateName::Dependent);
    assert_eq!(t.run_next(), m);
    assert_eq!(t.state(d), StateName::Ready);
}

#[test]
fn live_dep_groups_rerun_completed_dependants_transitively() {
    let mut t = T::new();
    let a = t.add(in_group("a", "g1"));
    let b = t.add(needs_group("b", &["g2"], "g1"));
    let c = t.add(needs_group("c", &[], "g2"));
    assert_eq!(t.run_next(), a);
    assert_eq!(t.run_next(), b);
    assert_eq!(t.run_next(), c);
    for k in [a, b, c] {
        assert_eq!(t.state(k), StateName::Complete);
    }
    // a new member of g1: b must run again after it, and so c after b
    let a2 = t.add(in_group("a2", "g1"));
    assert_eq!(t.state(b), StateName::Dependent);
    assert_eq!(t.state(c), StateName::Dependent);
    assert_eq!(t.state(a), StateName::Complete);
    assert_eq!(t.run_next(), a2);
    assert_eq!(t.state(b), StateName::Ready);
    assert_eq!(t.state(c), StateName::Dependent);
    assert_eq!(t.run_next(), b);
    assert_eq!(t.run_next(), c);
    assert_eq!(t.try_reserve(None), None);
}

#[test]
fn essence_dependencies_wait_for_one_job() {
    let mut t = T::new();
    let up = t.add(JobSpec {
        cwd: "/data".into(),
        cwd_matters: true,
        ..JobSpec::new("make input")
    });
    let down = t.add(JobSpec {
        deps: vec![Dependency::Job(JobKey::of("make input", "/data", true, ""))],
        ..JobSpec::new("use input")
    });
    assert_eq!(t.state(down), StateName::Dependent);
    assert_eq!(t.run_next(), up);
    assert_eq!(t.state(down), StateName::Ready);
}

#[test]
fn essence_dependency_added_later_makes_dependant_wait() {
    let mut t = T::new();
    let down = t.add(JobSpec {
        deps: vec![Dependency::Job(JobKey::of("later", "", false, ""))],
        ..JobSpec::new("down")
    });
    assert_eq!(t.state(down), StateName::Ready);
    let up = t.add_cmd("later");
    assert_eq!(t.state(down), StateName::Dependent);
    assert_eq!(t.run_next(), up);
    assert_eq!(t.state(down), StateName::Ready);
}

#[test]
fn running_job_whose_dependency_reappears_runs_again_after_it() {
    let mut t = T::new();
    let d = t.add(needs_group("d", &[], "g"));
    let (k, f) = t.reserve();
    assert_eq!(k, d);
    t.start(d, f);
    let m = t.add(in_group("m", "g"));
    assert_eq!(
        t.state(d),
        StateName::Running,
        "a running job is not interrupted"
    );
    t.archive(d, f);
    assert_eq!(t.state(d), StateName::Dependent);
    assert_eq!(t.run_next(), m);
    assert_eq!(t.run_next(), d);
}

#[test]
fn self_dependency_is_a_cycle() {
    let mut t = T::new();
    let e = t.refused(Command::Add(AddJobs {
        jobs: vec![needs_group("a", &["g"], "g")],
        ..AddJobs::default()
    }));
    let CommandError::Cycle { index, cycle } = &e else {
        panic!("{e}")
    };
    assert_eq!(*index, 0);
    assert!(cycle.iter().any(|s| s.contains("\"g\"")), "{cycle:?}");
    assert!(e.to_string().starts_with("dependency cycle: job "), "{e}");
}

#[test]
fn cycle_through_several_jobs_is_refused_and_named() {
    let mut t = T::new();
    // a (in ga) needs gc; b (in gb) needs ga; c (in gc) needs gb → closes a cycle
    t.add(needs_group("a", &["ga"], "gc"));
    t.add(needs_group("b", &["gb"], "ga"));
    let e = t.refused(Command::Add(AddJobs {
        jobs: vec![JobSpec::new("unrelated"), needs_group("c", &["gc"], "gb")],
        ..AddJobs::default()
    }));
    let CommandError::Cycle { index, cycle } = &e else {
        panic!("{e}")
    };
    assert_eq!(*index, 1);
    let text = cycle.join(" -> ");
    for part in ["\"c\"", "\"gb\"", "\"b\"", "\"ga\"", "\"a\"", "\"gc\""] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
    assert!(cycle.first().unwrap().contains("\"c\"") && cycle.last().unwrap().contains("\"c\""));
    // nothing of the refused Add was applied
    assert!(t
        .fsm
        .get_job(&JobKey::of("unrelated", "", false, ""))
        .unwrap()
        .is_none());
}

#[test]
fn cycle_within_one_add_is_refused() {
    let mut t = T::new();
    let e = t.refused(Command::Add(AddJobs {
        jobs: vec![
            needs_group("a", &["ga"], "gb"),
            needs_group("b", &["gb"], "ga"),
        ],
        ..AddJobs::default()
    }));
    assert!(matches!(e, CommandError::Cycle { index: 1, .. }), "{e}");
}

#[test]
fn cycle_by_modify_is_refused() {
    let mut t = T::new();
    let a = t.add(in_group("a", "ga"));
    t.add(needs_group("b", &["gb"], "ga"));
    let e = t.refused(Command::Modify {
        keys: vec![a],
        change: JobChange {
            deps: Some(vec![Dependency::Group("gb".into())]),
            ..JobChange::default()
        },
    });
    assert!(matches!(e, CommandError::Cycle { .. }), "{e}");
}

#[test]
fn deleting_a_member_can_release_dependants_in_the_same_delete() {
    let mut t = T::new();
    let m = t.add(in_group("m", "g"));
    let d = t.add(needs_group("d", &[], "g"));
    let r = t.ok(Command::Delete { keys: vec![d, m] });
    assert!(matches!(r, Response::Deleted { deleted: 2, .. }));
    assert!(t.fsm.stats().unwrap().is_empty());
}

#[test]
fn modify_dependencies_updates_waiting() {
    let mut t = T::new();
    t.add(in_group("m", "g"));
    let d = t.add_cmd("d");
    assert_eq!(t.state(d), StateName::Ready);
    t.ok(Command::Modify {
        keys: vec![d],
        change: JobChange {
            deps: Some(vec![Dependency::Group("g".into())]),
            ..JobChange::default()
        },
    });
    assert_eq!(t.state(d), StateName::Dependent);
    t.ok(Command::Modify {
        keys: vec![d],
        change: JobChange {
            deps: Some(vec![]),
            ..JobChange::default()
        },
    });
    assert_eq!(t.state(d), StateName::Ready);
}

#[test]
fn buried_member_keeps_dependants_waiting_until_kicked_and_done() {
    let mut t = T::new();
    let m = t.add(JobSpec {
        retries: 0,
        ..in_group("m", "g")
    });
    let d = t.add(needs_group("d", &[], "g"));
    let (_, f) = t.reserve();
    t.start(m, f);
    assert_eq!(t.release(m, f, "boom"), StateName::Buried);
    assert_eq!(t.state(d), StateName::Dependent);
    t.ok(Command::Kick { keys: vec![m] });
    assert_eq!(t.run_next(), m);
    assert_eq!(t.state(d), StateName::Ready);
}
