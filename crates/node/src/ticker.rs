//! Leader-only timers. After winning an election the leader first proposes `RenewLeases`
//! (runners could not touch while there was no leader), then proposes `Tick` whenever the
//! state machine's next deadline has passed. It sleeps until that deadline, and re-reads it
//! after every applied entry (a new lease may fall due sooner).
//!
//! The decisions are [`Timers`], which does no I/O: [`run`] drives it on a node, and the
//! simulation in `raftq-jepsen` drives the same code in virtual time.

use crate::node::Node;
use queue_fsm::{Command, Request};
use std::sync::Arc;
use std::time::Duration;

/// Longest sleep between deadline checks, so that a missed wake-up costs at most this.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Pause after a failed proposal or read before trying again.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// What the leader's timers want before they can say more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Not the leader: nothing to do until that changes.
    Follow,
    /// A RenewLeases or Tick of ours is in flight: wait for it.
    Busy,
    /// Propose RenewLeases for this term (first thing a new leader does).
    Renew { term: u64 },
    /// Leases are renewed: look at the state machine's next deadline ([`Timers::at`]).
    Deadline,
}

/// What to do about the next deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The deadline has passed: propose Tick.
    Tick,
    /// Nothing is due for this long (None: no deadline at all).
    Sleep(Option<u64>),
}

/// The leader's timer decisions: which term's leases were renewed, and whether a timer
/// proposal is in flight.
#[derive(Clone, Debug, Default)]
pub struct Timers {
    renewed_term: Option<u64>,
    busy: bool,
}

impl Timers {
    /// What is due, given the term this node leads (None: it does not lead). Returning
    /// [`Due::Renew`] marks a proposal in flight until [`Timers::renewed`] or
    /// [`Timers::failed`].
    pub fn due(&mut self, leader_term: Option<u64>) -> Due {
        let Some(term) = leader_term else {
            *self = Timers::default();
            return Due::Follow;
        };
        if self.renewed_term.is_some_and(|t| t != term) {
            self.renewed_term = None;
        }
        if self.busy {
            return Due::Busy;
        }
        if self.renewed_term.is_none() {
            self.busy = true;
            return Due::Renew { term };
        }
        Due::Deadline
    }

    /// After [`Due::Deadline`]: the state machine's next deadline and the leader's clock.
    /// Returning [`Step::Tick`] marks a proposal in flight until [`Timers::ticked`] or
    /// [`Timers::failed`].
    pub fn at(&mut self, next_deadline: Option<u64>, now_ms: u64) -> Step {
        match next_deadline {
            Some(d) if d <= now_ms => {
                self.busy = true;
                Step::Tick
            }
            Some(d) => Step::Sleep(Some(d - now_ms)),
            None => Step::Sleep(None),
        }
    }

    /// This term's RenewLeases was applied.
    pub fn renewed(&mut self, term: u64) {
        self.renewed_term = Some(term);
        self.busy = false;
    }

    /// A Tick was applied.
    pub fn ticked(&mut self) {
        self.busy = false;
    }

    /// The proposal in flight failed; the next [`Timers::due`] tries again.
    pub fn failed(&mut self) {
        self.busy = false;
    }

    /// The term whose RenewLeases was applied, if any.
    pub fn renewed_term(&self) -> Option<u64> {
        self.renewed_term
    }
}

/// Proposes a timer command; false (logged) when it failed.
async fn propose(node: &Node, cmd: Command, what: &str) -> bool {
    match node.propose(Request::new(None, cmd)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "{what} failed; will retry");
            tokio::time::sleep(RETRY_AFTER).await;
            false
        }
    }
}

/// The leader-only loop of one node; returns when its Raft stops.
pub async fn run(node: Arc<Node>) {
    let mut views = node.view_changes();
    let mut applied = node.applied_changes();
    let mut timers = Timers::default();
    loop {
        let _ = *views.borrow_and_update();
        let sleep = match timers.due(node.view().leader_term()) {
            Due::Follow => {
                if views.changed().await.is_err() {
                    return;
                }
                continue;
            }
            // `propose` below is awaited, so no proposal of this loop is in flight here.
            Due::Busy => {
                timers.failed();
                continue;
            }
            Due::Renew { term } => {
                if propose(&node, Command::RenewLeases, "renewing leases").await {
                    tracing::info!(term, "leader renewed every live lease");
                    timers.renewed(term);
                } else {
                    timers.failed();
                }
                continue;
            }
            Due::Deadline => {
                let _ = *applied.borrow_and_update();
                // A store error is recorded (logged, counted) by the read; the ticker keeps
                // trying, so expiry resumes once the store reads again.
                let next = match node.read("next deadline", |f| f.next_deadline()).await {
                    Ok(n) => n,
                    Err(_) => {
                        tokio::time::sleep(RETRY_AFTER).await;
                        continue;
                    }
                };
                match timers.at(next, node.now_ms()) {
                    Step::Tick => {
                        if propose(&node, Command::Tick, "tick").await {
                            timers.ticked();
                        } else {
                            timers.failed();
                        }
                        continue;
                    }
                    Step::Sleep(ms) => {
                        ms.map_or(MAX_SLEEP, |ms| Duration::from_millis(ms).min(MAX_SLEEP))
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            r = applied.changed() => if r.is_err() { return; },
            r = views.changed() => if r.is_err() { return; },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::fake::{add, req, reserve, until, FakeConsensus, BASE_MS};
    use queue_fsm::Response;

    #[test]
    fn timers_renew_first_then_tick_when_due() {
        let mut t = Timers::default();
        assert_eq!(t.due(None), Due::Follow);
        assert_eq!(t.due(Some(1)), Due::Renew { term: 1 });
        assert_eq!(t.due(Some(1)), Due::Busy, "one proposal at a time");
        t.renewed(1);
        assert_eq!(t.renewed_term(), Some(1));
        assert_eq!(t.due(Some(1)), Due::Deadline);
        assert_eq!(t.at(None, 10), Step::Sleep(None));
        assert_eq!(t.at(Some(25), 10), Step::Sleep(Some(15)));
        assert_eq!(t.at(Some(10), 10), Step::Tick, "due at the deadline");
        assert_eq!(t.due(Some(1)), Due::Busy);
        t.ticked();
        assert_eq!(t.due(Some(1)), Due::Deadline);
        // a new term renews again; a failure tries again
        assert_eq!(t.due(Some(2)), Due::Renew { term: 2 });
        t.failed();
        assert_eq!(t.due(Some(2)), Due::Renew { term: 2 });
        t.renewed(2);
        // losing leadership forgets the renewal
        assert_eq!(t.due(None), Due::Follow);
        assert_eq!(t.due(Some(2)), Due::Renew { term: 2 });
    }

    fn is_renew(cmds: &[Command]) -> bool {
        cmds == [Command::RenewLeases]
    }

    fn is_tick(cmds: &[Command]) -> bool {
        cmds == [Command::Tick]
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_leader_renews_leases_before_any_tick() {
        let fake = FakeConsensus::new();
        // a lease that fell due long before this node was elected
        {
            let fsm = fake.fsm();
            let mut f = fsm.lock().unwrap();
            let old = BASE_MS - 60_000;
            f.apply(old, req(add("a"))).unwrap().0.unwrap();
            let (r, _) = f.apply(old, req(reserve(1_000))).unwrap();
            assert!(matches!(r, Ok(Response::Reserved { .. })), "{r:?}");
            assert!(f.next_deadline().unwrap().unwrap() < BASE_MS);
        }
        let node = fake.node(100, 2);
        tokio::spawn(run(node.clone()));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(fake.written().is_empty(), "a follower proposes nothing");
        fake.lead(1);
        until("the first proposal", || !fake.written().is_empty()).await;
        assert!(is_renew(&fake.written()[0]), "{:?}", fake.written());
        // the renewed lease falls due later: Tick follows
        until("a tick", || fake.written().iter().any(|c| is_tick(c))).await;
        // a later term renews again
        let before = fake.written().len();
        fake.follow(2, None);
        tokio::time::sleep(Duration::from_millis(10)).await;
        fake.lead(3);
        until("a renewal in term 3", || {
            fake.written()[before..].iter().any(|c| is_renew(c))
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn tick_is_proposed_at_the_deadline() {
        let (fake, node) = FakeConsensus::leader();
        tokio::spawn(run(node.clone()));
        until("the renewal", || !fake.written().is_empty()).await;
        node.propose(req(add("a"))).await.unwrap().unwrap();
        let r = node.propose(req(reserve(2_500))).await.unwrap().unwrap();
        assert!(matches!(r, Response::Reserved { .. }), "{r:?}");
        let stamp = fake.0.writes.lock().unwrap().last().unwrap().stamp_ms;
        let deadline = stamp + 2_500;
        tokio::time::sleep(Duration::from_millis(2_400)).await;
        assert!(
            !fake.written().iter().any(|c| is_tick(c)),
            "nothing is due before the deadline"
        );
        until("a tick", || fake.written().iter().any(|c| is_tick(c))).await;
        let w = fake.0.writes.lock().unwrap();
        let tick = w
            .iter()
            .find(|p| is_tick(&[p.requests[0].cmd.clone()]))
            .unwrap();
        assert!(
            tick.stamp_ms >= deadline && tick.stamp_ms < deadline + 50,
            "tick at {} for a deadline at {deadline} (base {BASE_MS})",
            tick.stamp_ms
        );
    }
}
