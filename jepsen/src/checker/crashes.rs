//! crashes: no node exits by itself and every node can be started again. A node that ended
//! without being killed (a panic, a failed start-up: e.g. one that finds its store unable
//! to go on after a power cut) is recorded by the harness as a `crash` event of the nemesis;
//! a fault whose undo (a restart) failed is a failed `stop` of that fault. Either makes the
//! run invalid: a node that cannot restart after a fault would leave a real cluster a member
//! short for good, and a majority of them would end it.

use super::{fault_events, Verdict};
use crate::history::{Event, Kind};

pub fn crashes(history: &[Event]) -> Verdict {
    let mut v = Verdict::new();
    for (e, name, action, detail) in fault_events(history) {
        match (name, action, e.kind) {
            ("crash", _, _) => v.violation("crash", detail.to_string()),
            (_, "stop", Kind::Fail) => v.violation(
                "restart_failed",
                format!(
                    "undoing {name} failed: {}",
                    e.error.as_deref().unwrap_or("(no error text)")
                ),
            ),
            (_, "start", Kind::Ok) => v.count("faults", 1),
            _ => {}
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Validity;
    use crate::history::{Op, NEMESIS};

    fn fault(kind: Kind, name: &str, action: &str, detail: &str, error: Option<&str>) -> Event {
        Event {
            process: NEMESIS,
            kind,
            op: Op::Fault {
                name: name.into(),
                action: action.into(),
                detail: detail.into(),
            },
            node: 0,
            time_ns: 0,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn faults_undone_cleanly_are_valid() {
        let h = vec![
            fault(Kind::Invoke, "kill", "start", "", None),
            fault(Kind::Ok, "kill", "start", "killed n1", None),
            fault(Kind::Invoke, "kill", "stop", "", None),
            fault(Kind::Ok, "kill", "stop", "restarted n1", None),
        ];
        let v = crashes(&h);
        assert_eq!(v.valid, Validity::True);
        assert_eq!(v.counts["faults"], 1);
    }

    #[test]
    fn a_crash_or_a_failed_restart_is_invalid() {
        let crash = fault(
            Kind::Info,
            "crash",
            "detected",
            "n5 exited by itself (exit status: 1); see node-5.log",
            None,
        );
        let v = crashes(&[crash]);
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.counts["crash"], 1);
        assert!(v.examples[0].contains("n5 exited by itself"));

        let failed = fault(Kind::Fail, "power", "stop", "", Some("starting n2: gone"));
        let v = crashes(&[failed]);
        assert_eq!(v.valid, Validity::False);
        assert!(v.examples[0].contains("starting n2: gone"));
    }
}
