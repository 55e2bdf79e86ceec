//! Paged listings (`page_by_rep_group`, `page_by_state`, `page_incomplete`) return the same
//! jobs, in the same order, as the unpaged ones they cut into pages.

use super::*;
use crate::query::Page;

fn keys(jobs: &[Job]) -> Vec<JobKey> {
    jobs.iter().map(|j| j.key).collect()
}

fn listed_keys(l: Vec<Listed>) -> Vec<JobKey> {
    l.into_iter().map(|x| x.job.key).collect()
}

/// 7 ready jobs in rep group a, 5 in b; two of a's buried, one of b's complete.
fn queue() -> T {
    let mut t = T::new();
    for (g, n) in [("a", 7), ("b", 5)] {
        for i in 0..n {
            let mut spec = JobSpec::new(format!("{g} {i}"));
            spec.rep_grp = g.into();
            t.add(spec);
        }
    }
    for _ in 0..2 {
        let (k, f) = t.reserve();
        t.start(k, f);
        t.ok(Command::Bury(HandBack {
            key: k,
            fence: f,
            report: Some(ok_report()),
            reason: "failed".into(),
        }));
    }
    t
}

#[test]
fn pages_cut_the_unpaged_listing() {
    let t = queue();
    let f = &t.fsm;
    for state in [None, Some(StateName::Ready), Some(StateName::Buried)] {
        let all = listed_keys(f.by_rep_group("", Match::Prefix, state, 0).unwrap());
        let mut paged = Vec::new();
        for offset in (0..all.len() + 3).step_by(3) {
            let page = Page { offset, count: 3 };
            paged.extend(keys(
                &f.page_by_rep_group("", Match::Prefix, state, false, page)
                    .unwrap(),
            ));
        }
        assert_eq!(paged, all, "state {state:?}");
        let all = listed_keys(f.incomplete(state, 0).unwrap());
        let mut paged = Vec::new();
        for offset in (0..all.len() + 4).step_by(4) {
            let page = Page { offset, count: 4 };
            paged.extend(keys(&f.page_incomplete(state, page).unwrap()));
        }
        assert_eq!(paged, all, "incomplete, state {state:?}");
    }
    let ready = listed_keys(f.by_state(StateName::Ready, 0).unwrap());
    let page = f
        .page_by_state(
            StateName::Ready,
            Page {
                offset: 8,
                count: 5,
            },
        )
        .unwrap();
    assert_eq!(keys(&page), ready[8..].to_vec());
}
