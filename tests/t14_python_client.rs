//! The wire contract from another language: a client in Python (tests/python/contract.py),
//! written from proto/raftq.proto and docs/protocol.md alone, talks to a real three-node
//! cluster over TLS (trusting the cluster CA): adds through any node, one effect per request id, refusals with gRPC's standard
//! error details, bad request ids, missing and wrong tokens. Needs Debian's python3-grpcio
//! and python3-protobuf (scripts/setup-deps.sh installs them) and protoc.

use raftq_tests::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Debian's Python, which has the Debian packages (a pyenv `python3` on PATH may not).
const PYTHON: &str = "/usr/bin/python3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_from_the_proto_alone() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here.parent().expect("repository root");
    let has_grpc = Command::new(PYTHON)
        .args(["-c", "import grpc, google.protobuf"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_grpc,
        "{PYTHON} cannot import grpc and google.protobuf: run scripts/setup-deps.sh \
         (apt: python3-grpcio python3-protobuf)"
    );
    let out = tempfile::tempdir().expect("temp dir");
    let protoc = Command::new("protoc")
        .arg(format!("--python_out={}", out.path().display()))
        .arg(format!("-I{}", root.join("proto").display()))
        .arg(format!("-I{}", here.join("python").display()))
        .arg("-I/usr/include")
        .args(["raftq.proto", "google_rpc.proto"])
        .output()
        .expect("run protoc (scripts/setup-deps.sh installs it)");
    assert!(
        protoc.status.success(),
        "protoc: {}",
        String::from_utf8_lossy(&protoc.stderr)
    );

    let cluster = Cluster::start(3);
    cluster.leader(Duration::from_secs(30)).await;
    let run = Command::new(PYTHON)
        .arg(here.join("python/contract.py"))
        .arg(out.path())
        .arg(&cluster.local.token)
        .arg(cluster.local.tls_dir().expect("TLS on").join("ca.pem"))
        .args(cluster.addrs())
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.trim() == "ok",
        "the Python client failed ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
}
