//! Any node serves any request (followers forward to the leader), and one request id sent to
//! two different nodes has one effect.

use raftq_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_forward_and_request_ids_dedupe_across_nodes() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != follower).unwrap();

    // step 1: an add through a follower is served
    let via_follower = cluster.client_of(follower);
    let r = via_follower
        .add(add_request((0..10).map(|i| format!("echo follower {i}"))))
        .await
        .expect("add via follower");
    assert_eq!((r.added, r.existed), (10, 0));

    // step 2: the same request (same id) to the other follower and to the leader: one effect,
    // the same answer
    let req = add_request((0..5).map(|i| format!("echo once {i}")));
    let first = cluster
        .client_of(other)
        .add(req.clone())
        .await
        .expect("first");
    let again = cluster
        .client_of(leader)
        .add(req.clone())
        .await
        .expect("again");
    assert_eq!(first, again);
    assert_eq!(first.added, 5);
    assert_eq!(total(&cluster.client(), "ready").await, 15);

    // step 3: linearizable and stale reads through a follower see the writes
    let stats = via_follower.stats(false).await.unwrap();
    assert_eq!(stats.states["ready"], 15);
    let keys = first.keys.clone();
    let jobs = via_follower
        .get(&raftq_tests::job_keys(&keys), false)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 5);

    // step 4: a reserve retried with its request id on another node gets the same job and fence
    let reserve = raftq_proto::pb::ReserveRequest {
        request_id: raftq_client::request_id(),
        runner_id: runner_id(),
        sched_group: String::new(),
        ttr_ms: 60_000,
        wait_ms: 0,
    };
    let a = cluster
        .client_of(follower)
        .reserve(reserve.clone())
        .await
        .unwrap();
    let b = cluster.client_of(leader).reserve(reserve).await.unwrap();
    let (ja, jb) = (a.job.unwrap(), b.job.unwrap());
    assert_eq!((ja.key.clone(), ja.fence), (jb.key, jb.fence));
    assert_eq!(total(&cluster.client(), "reserved").await, 1);

    // step 5: a refusal comes back typed, naming the field
    let mut bad = add_request(["".to_string()]);
    bad.jobs[0].cmd.clear();
    let e = cluster.client().add(bad).await.unwrap_err();
    let refusal = e.refusal().expect("a refusal");
    assert!(refusal.to_string().contains("`cmd`"), "{refusal}");
    cluster.converged(Duration::from_secs(30)).await;
}
