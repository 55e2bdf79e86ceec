//! A client command whose output goes into a pipe that closes early (`raftq status --details
//! | head -1`) ends quietly, as other Unix tools do: killed by SIGPIPE, no panic, no
//! backtrace on stderr.

use raftq_tests::*;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_into_a_closed_pipe_ends_quietly() {
    let cluster = Cluster::start(1);
    cluster.leader(Duration::from_secs(30)).await;
    // far more output than a pipe holds (64 KiB), so the command is still writing when the
    // reader goes away
    let r = cluster
        .client()
        .add(add_request(
            (0..3000).map(|i| format!("echo closed pipe {i}")),
        ))
        .await
        .expect("add");
    assert_eq!(r.added, 3000);

    let mut child = cluster
        .raftq()
        .args(["status", "--details"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn raftq status");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("first line");
    // the reader (and with it the pipe's only read end) is dropped here
    assert!(!first.is_empty(), "no output at all");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let status = child.wait().expect("wait");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "stderr: {stderr}"
    );
    assert!(
        status.success() || status.signal() == Some(libc::SIGPIPE),
        "{status:?}, stderr: {stderr}"
    );
}
