//! How node and client reach a node: one builder so that the two cannot drift apart.
//! Without [`Tls`] the endpoint is `http://HOST:PORT` (plaintext); with it,
//! `https://HOST:PORT`, the node's certificate checked against the cluster CA, or against the
//! system's trusted roots when no CA is given (its SANs must name HOST), and an identity
//! presented when the caller has one (a manager calling a peer).

use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// How long to wait for a TCP connection before trying another node.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The client side of TLS: the CA that signed the nodes' certificates, and the caller's own
/// certificate and key if it has them.
#[derive(Clone, Debug)]
pub struct Tls {
    /// PEM of the cluster CA (or any CA that signed the nodes' certificates); None: the
    /// system's trusted roots (for managers whose certificates a public CA signed).
    pub ca_pem: Option<Vec<u8>>,
    /// Presented to the node: managers present their node certificate to their peers.
    pub identity: Option<Identity>,
}

impl Tls {
    /// Trust `ca_pem`, present nothing (clients and runners: their token proves them).
    pub fn trusting(ca_pem: Vec<u8>) -> Tls {
        Tls {
            ca_pem: Some(ca_pem),
            identity: None,
        }
    }

    /// Trust the system's roots (`/etc/ssl/certs`), present nothing.
    pub fn system_roots() -> Tls {
        Tls {
            ca_pem: None,
            identity: None,
        }
    }
}

/// The endpoint of the node at `addr` (host:port): connect timeout and no Nagle delay set,
/// TLS when `tls` is given; callers add what only they need (keep-alives on Raft's channels).
pub fn endpoint(addr: &str, tls: Option<&Tls>) -> Result<Endpoint, tonic::transport::Error> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let e = Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let Some(tls) = tls else { return Ok(e) };
    let mut config = match &tls.ca_pem {
        Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    if let Some(id) = &tls.identity {
        config = config.identity(id.clone());
    }
    e.tls_config(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_becomes_an_http_uri_and_junk_is_refused() {
        assert_eq!(
            endpoint("127.0.0.1:7000", None).unwrap().uri().to_string(),
            "http://127.0.0.1:7000/"
        );
        assert!(endpoint("not a host", None).is_err());
    }

    #[test]
    fn a_ca_that_is_no_certificate_is_refused_at_once() {
        let tls = Tls::trusting(b"-----BEGIN CERTIFICATE-----\n".to_vec());
        assert!(endpoint("127.0.0.1:7000", Some(&tls)).is_err());
    }
}
