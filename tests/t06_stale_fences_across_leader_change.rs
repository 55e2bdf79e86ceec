//! Reserve/touch/archive with stale fences are refused across a leader change; the live
//! reservation carries on.

use queue_fsm::CommandError;
use raftq_proto::pb;
use raftq_tests::*;
use std::time::Duration;

fn reserve() -> pb::ReserveRequest {
    pb::ReserveRequest {
        request_id: raftq_client::request_id(),
        runner_id: runner_id(),
        sched_group: String::new(),
        ttr_ms: 60_000,
        wait_ms: 0,
    }
}

fn job_ref(j: &pb::Job) -> Option<pb::JobRef> {
    Some(pb::JobRef {
        key: j.key.clone(),
        fence: j.fence,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_fences_are_refused_after_failover() {
    let mut cluster = Cluster::start_with(3, "[fsm]\nrelease_delay_ms = 500\n");
    let leader = cluster.leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    client
        .add(add_request(["echo fenced".to_string()]))
        .await
        .unwrap();

    // step 1: reserve (fence f1), release without running, reserve again (fence f2)
    let first = client.reserve(reserve()).await.unwrap().job.expect("a job");
    client
        .release(pb::HandBackRequest {
            request_id: raftq_client::request_id(),
            job: job_ref(&first),
            report: None,
            reason: "not now".into(),
        })
        .await
        .unwrap();
    // the release delays the job; wait for it to be ready again (blocking reserve)
    let mut r = reserve();
    r.wait_ms = 60_000;
    let second = client.reserve(r).await.unwrap().job.expect("the job again");
    assert_eq!(first.key, second.key);
    assert_ne!(first.fence, second.fence);

    // step 2: the leader dies
    cluster.kill(leader);
    cluster.leader(Duration::from_secs(30)).await;

    // step 3: the old fence is refused for touch and archive; the new one works
    let stale = client
        .touch(pb::TouchRequest {
            request_id: raftq_client::request_id(),
            job: job_ref(&first),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(stale.refusal(), Some(CommandError::StaleFence { .. })),
        "{stale}"
    );
    let report = pb::RunReport {
        exited: true,
        exit_code: 0,
        ..Default::default()
    };
    let stale = client
        .archive(pb::ArchiveRequest {
            request_id: raftq_client::request_id(),
            job: job_ref(&first),
            report: Some(report.clone()),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(stale.refusal(), Some(CommandError::StaleFence { .. })),
        "{stale}"
    );
    let touched = client
        .touch(pb::TouchRequest {
            request_id: raftq_client::request_id(),
            job: job_ref(&second),
        })
        .await
        .unwrap();
    assert!(!touched.kill);
    client
        .archive(pb::ArchiveRequest {
            request_id: raftq_client::request_id(),
            job: job_ref(&second),
            report: Some(report),
        })
        .await
        .unwrap();
    assert_eq!(total(&client, "complete").await, 1);
}
