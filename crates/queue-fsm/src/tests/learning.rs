use super::*;

fn job(cmd: &str, ram_mb: u32, mode: Override) -> JobSpec {
    JobSpec {
        req_grp: "align".into(),
        override_mode: mode,
        requirements: Requirements {
            ram_mb,
            time_s: 3600,
            cores_milli: 1000,
            ..Requirements::default()
        },
        ..JobSpec::new(cmd)
    }
}

/// Runs `n` jobs of req group "align" that each peak at `ram_mb`.
fn teach(t: &mut T, n: usize, ram_mb: u64) {
    for i in 0..n {
        let k = t.add(job(&format!("teach{i}"), 1000, Override::User));
        let (got, f) = t.reserve();
        assert_eq!(got, k);
        t.start(k, f);
        t.ok(Command::Archive {
            key: k,
            fence: f,
            report: RunReport {
                peak_ram_mb: ram_mb,
                wall_ms: 120_000,
                ..ok_report()
            },
        });
    }
}

#[test]
fn override_modes_pick_learned_or_user_values() {
    let mut t = T::new();
    teach(&mut t, 20, 2950);
    let learned = t.fsm.learned("align").unwrap().unwrap();
    assert_eq!(learned.recommendation.ram_mb, 3000);
    assert_eq!(learned.recommendation.time_s, 1800);
    assert_eq!(learned.total_runs, 20);

    let k0 = t.add(job("o0", 500, Override::Learned));
    let k1lo = t.add(job("o1lo", 500, Override::LearnedIfHigher));
    let k1hi = t.add(job("o1hi", 8000, Override::LearnedIfHigher));
    let k2 = t.add(job("o2", 500, Override::User));
    assert_eq!(t.job(k0).effective.ram_mb, 3000);
    assert_eq!(t.job(k1lo).effective.ram_mb, 3000);
    assert_eq!(t.job(k1hi).effective.ram_mb, 8000);
    assert_eq!(t.job(k2).effective.ram_mb, 500);
    assert_eq!(t.job(k0).effective.time_s, 1800);
    assert_eq!(t.job(k2).effective.time_s, 3600);
    // the scheduler group follows the effective requirements
    assert!(t.job(k0).sched_group.starts_with("3000:30:1000:"));
    assert!(t.job(k2).sched_group.starts_with("500:60:1000:"));
}

#[test]
fn without_history_the_user_values_hold() {
    let mut t = T::new();
    let k = t.add(job("fresh", 700, Override::Learned));
    assert_eq!(t.job(k).effective.ram_mb, 700);
}

#[test]
fn learning_uses_the_command_name_when_no_req_group() {
    let mut t = T::new();
    let k = t.add_cmd("bwa mem ref.fa x.fq");
    t.run_next();
    assert_eq!(t.job(k).spec.effective_req_grp(), "bwa");
    assert!(t.fsm.learned("bwa").unwrap().is_some());
}
