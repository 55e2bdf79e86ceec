//! How node and client reach a node: `http://HOST:PORT`, one builder so that the two cannot
//! drift apart (and TLS, when it comes, changes one place).

use std::time::Duration;
use tonic::transport::Endpoint;

/// How long to wait for a TCP connection before trying another node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The endpoint of the node at `addr` (host:port): connect timeout and no Nagle delay set;
/// callers add what only they need (keep-alives on Raft's channels).
pub fn endpoint(addr: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_becomes_an_http_uri_and_junk_is_refused() {
        assert_eq!(
            endpoint("127.0.0.1:7000").unwrap().uri().to_string(),
            "http://127.0.0.1:7000/"
        );
        assert!(endpoint("not a host").is_err());
    }
}
