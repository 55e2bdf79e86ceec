//! Routing and the reserve long poll, over the fake consensus.

use super::fake::{add, key_of, req, reserve, until, FakeConsensus};
use super::*;
use crate::queue_service::QueueService;
use queue_fsm::{Command, Response};
use raftq_proto::pb;
use raftq_proto::pb::queue_server::Queue;

#[tokio::test(start_paused = true)]
async fn the_leader_proposes_itself() {
    let (fake, node) = FakeConsensus::leader();
    let r = node.submit(req(add("a"))).await.unwrap().unwrap();
    assert!(matches!(r, Response::Added { added: 1, .. }), "{r:?}");
    assert_eq!(fake.written().len(), 1);
    assert!(fake.0.forwarded.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_follower_forwards_to_the_leader() {
    let fake = FakeConsensus::new();
    fake.follow(1, Some(2));
    let node = fake.node(100, 2);
    node.submit(req(add("a"))).await.unwrap().unwrap();
    node.reserve(req(reserve(1_000)), u64::MAX)
        .await
        .unwrap()
        .unwrap();
    assert!(fake.written().is_empty(), "nothing proposed here");
    let f = fake.0.forwarded.lock().unwrap();
    assert_eq!(f.len(), 2);
    assert!(matches!(&f[0], (2, Forwarded::Propose(r)) if matches!(r.cmd, Command::Add(_))));
    assert!(
        matches!(&f[1], (2, Forwarded::Reserve { wait_ms, .. }) if *wait_ms == MAX_RESERVE_WAIT_MS),
        "the long poll is capped: {:?}",
        f[1]
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_leader_a_call_is_unavailable() {
    let fake = FakeConsensus::new();
    fake.follow(1, None);
    let node = fake.node(100, 2);
    let e = node.submit(req(add("a"))).await.unwrap_err();
    assert!(
        matches!(e, RouteError::NoLeader { leader: None, .. }),
        "{e:?}"
    );
    // a node outside the membership does not serve, even if it believes in a leader
    fake.set_view(View {
        term: 1,
        leading: true,
        leader: Some(1),
        member: false,
    });
    let e = node.submit(req(add("a"))).await.unwrap_err();
    assert!(e.to_string().contains("not a member"), "{e}");
    assert!(fake.written().is_empty());
}

fn add_request(cmd: &str) -> tonic::Request<pb::AddRequest> {
    tonic::Request::new(pb::AddRequest {
        jobs: vec![pb::JobSpec {
            cmd: cmd.into(),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn leader_hint(s: &tonic::Status) -> Option<String> {
    s.metadata()
        .get(raftq_client::LEADER_HEADER)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test(start_paused = true)]
async fn unavailable_carries_the_leaders_address_when_known() {
    let fake = FakeConsensus::new();
    let svc = QueueService {
        node: fake.node(100, 2),
        metrics: Default::default(),
    };
    // no leader: UNAVAILABLE, no address to give
    fake.follow(1, None);
    let s = svc.add(add_request("a")).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unavailable);
    assert_eq!(leader_hint(&s), None);
    // the leader cannot be reached: UNAVAILABLE with its address
    fake.follow(1, Some(2));
    *fake.0.forward_error.lock().unwrap() = Some(RouteError::NoLeader {
        leader: Some(2),
        reason: "connection refused".into(),
    });
    let s = svc.add(add_request("a")).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unavailable);
    assert_eq!(leader_hint(&s).as_deref(), Some("127.0.0.1:7702"));
    // leadership moved while proposing: UNAVAILABLE with the new leader's address
    fake.lead(1);
    *fake.0.write_error.lock().unwrap() = Some(ProposeError::NotLeader { leader: Some(3) });
    let s = svc.add(add_request("a")).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unavailable);
    assert_eq!(leader_hint(&s).as_deref(), Some("127.0.0.1:7703"));
}

/// A long-polled reserve on its own task.
fn spawn_reserve(
    node: &Arc<Node>,
    r: Request,
    wait_ms: u64,
) -> tokio::task::JoinHandle<Result<Outcome, RouteError>> {
    let node = node.clone();
    tokio::spawn(async move { node.reserve(r, wait_ms).await })
}

/// Asserts that `lo_ms` ≤ the time since `start` < `hi_ms` (tokio time).
fn took(start: tokio::time::Instant, lo_ms: u64, hi_ms: u64) {
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(lo_ms) && waited < Duration::from_millis(hi_ms),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_blocked_reserve_is_woken_by_a_ready_job() {
    let (_fake, node) = FakeConsensus::leader();
    let start = tokio::time::Instant::now();
    let poll = spawn_reserve(&node, req(reserve(60_000)), 30_000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!poll.is_finished(), "no job yet: the reserve waits");
    node.submit(req(add("late"))).await.unwrap().unwrap();
    match poll.await.unwrap().unwrap() {
        Ok(Response::Reserved { job, .. }) => assert_eq!(job.key, key_of("late")),
        other => panic!("{other:?}"),
    }
    took(start, 2_000, 3_000);
}

#[tokio::test(start_paused = true)]
async fn a_blocked_reserve_ends_at_its_deadline() {
    let (_fake, node) = FakeConsensus::leader();
    let start = tokio::time::Instant::now();
    let r = node.reserve(req(reserve(60_000)), 3_000).await.unwrap();
    assert_eq!(r, Ok(Response::NoJob(NoJob::NoneReady)));
    took(start, 3_000, 3_100);
}

fn reserve_in(group: &str) -> Command {
    Command::Reserve {
        runner: queue_fsm::RunnerId(1),
        group: Some(group.into()),
        ttr_ms: 60_000,
    }
}

#[tokio::test(start_paused = true)]
async fn a_yielding_group_ends_its_waiting_reserves_now() {
    let (_fake, node) = FakeConsensus::leader();
    let start = tokio::time::Instant::now();
    let mine = spawn_reserve(&node, req(reserve_in("g")), 30_000);
    let other = spawn_reserve(&node, req(reserve_in("h")), 30_000);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!mine.is_finished(), "no job yet: the reserve waits");
    node.set_yielding(["g".to_string()].into());
    let r = mine.await.unwrap().unwrap();
    assert_eq!(r, Ok(Response::NoJob(NoJob::NoneReady)));
    took(start, 2_000, 2_100);
    assert!(!other.is_finished(), "another group's reserve still waits");
    // a reserve of a yielding group that arrives later ends at once too
    let start = tokio::time::Instant::now();
    let r = node.reserve(req(reserve_in("g")), 30_000).await.unwrap();
    assert_eq!(r, Ok(Response::NoJob(NoJob::NoneReady)));
    took(start, 0, 100);
    node.set_yielding(Default::default());
    other.abort();
}

#[tokio::test(start_paused = true)]
async fn a_retried_long_poll_replays_its_attempts() {
    let (fake, node) = FakeConsensus::leader();
    let r = req(reserve(60_000));
    let poll = spawn_reserve(&node, r.clone(), 30_000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    node.submit(req(add("a"))).await.unwrap().unwrap();
    let first = poll.await.unwrap().unwrap();
    assert!(matches!(first, Ok(Response::Reserved { .. })), "{first:?}");
    until("the reservation applied", || fake.written().len() >= 3).await;
    // the client did not hear and retries the same call: same reservation, none added
    let writes = fake.written().len();
    let again = node.reserve(r, 30_000).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        fake.written().len(),
        writes,
        "answered from stored outcomes"
    );
}
