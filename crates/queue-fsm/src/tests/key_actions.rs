//! `KeyAction::states` (what the CLI selects by) against what Kick, Kill and Delete take.

use super::*;

/// A fresh machine with a job in `state`; returns it and the job's key.
fn job_in(state: StateName) -> (T, JobKey) {
    let mut t = T::new();
    let key = match state {
        StateName::Dependent => {
            let first = t.add_cmd("first");
            let mut spec = JobSpec::new("second");
            spec.deps = vec![Dependency::Job(first)];
            t.add(spec)
        }
        StateName::Ready => t.add_cmd("x"),
        StateName::Complete => {
            t.add_cmd("x");
            t.run_next()
        }
        _ => {
            t.add_cmd("x");
            let (k, f) = t.reserve();
            match state {
                StateName::Reserved => {}
                StateName::Delayed => {
                    t.release(k, f, "try later");
                }
                StateName::Running => t.start(k, f),
                StateName::Lost => {
                    t.advance(TTR + 1);
                    t.tick();
                }
                StateName::Buried => {
                    t.ok(Command::Bury(crate::HandBack {
                        key: k,
                        fence: f,
                        report: None,
                        reason: "no".into(),
                    }));
                }
                _ => unreachable!("handled above"),
            }
            k
        }
    };
    assert_eq!(t.state(key), state, "setting up a {state:?} job");
    (t, key)
}

fn takes(action: KeyAction, state: StateName) -> bool {
    let (mut t, key) = job_in(state);
    let keys = vec![key];
    match action {
        KeyAction::Kick => t.ok(Command::Kick { keys }) == Response::Count(1),
        KeyAction::Kill => t.ok(Command::Kill { keys }) == Response::Count(1),
        KeyAction::Delete => match t.ok(Command::Delete { keys }) {
            Response::Deleted { deleted, .. } => deleted == 1,
            r => panic!("unexpected delete response {r:?}"),
        },
    }
}

#[test]
fn key_actions_take_exactly_their_states() {
    for action in [KeyAction::Kick, KeyAction::Kill, KeyAction::Delete] {
        for state in StateName::ALL {
            assert_eq!(
                takes(action, state),
                action.accepts(state),
                "{action:?} on a {state:?} job"
            );
        }
    }
}

#[test]
fn key_action_states_mirror_the_cli() {
    use StateName::*;
    assert_eq!(KeyAction::Kick.states(), &[Buried]);
    assert_eq!(KeyAction::Kill.states(), &[Reserved, Running, Lost]);
    assert_eq!(
        KeyAction::Delete.states(),
        &[Dependent, Delayed, Ready, Buried]
    );
}
