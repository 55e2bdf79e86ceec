//! TLS material of a cluster: the CA and node certificates that `raftq cert` makes, a node's
//! TLS settings loaded from its files, and the node id read back from a peer's certificate.
//!
//! A node certificate names its node in a URI subject alternative name,
//! `raftq://node/<id>` ([`NODE_URI_PREFIX`]), beside its host names and IPs; it is valid
//! both as a server and as a client (managers call each other with it). Every file written
//! here is mode 0600 and written durably (temp file, fsync, rename, directory fsync).

use raft_store::durable;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The URI SAN that carries a node's id: `raftq://node/<id>`.
pub const NODE_URI_PREFIX: &str = "raftq://node/";
/// Default validity of a node certificate (the longest that browsers and most tools accept).
pub const DEFAULT_NODE_DAYS: u32 = 825;
/// Default validity of a cluster CA.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Longest validity `raftq cert` issues (a CA or a node certificate).
pub const MAX_DAYS: u32 = 36_500;
/// Host names and IPs of one node certificate at most.
pub const MAX_HOSTS: usize = 64;
/// The CA's files in the certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// Why a certificate could not be made or read; the message names the flag or the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A flag's value is out of bounds (fix the command line).
    #[error("{flag}: {problem}")]
    Invalid { flag: &'static str, problem: String },
    /// The CA exists already; replacing it needs `--force`.
    #[error(
        "{} exists already: pass --force to replace the cluster CA (certificates it signed \
         are then no longer trusted)",
        .0.display()
    )]
    Exists(PathBuf),
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file holds no usable certificate or key.
    #[error("{}: {problem}", .path.display())]
    Unreadable { path: PathBuf, problem: String },
    /// rcgen could not build or sign the certificate.
    #[error("{what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
}

fn invalid(flag: &'static str, problem: impl Into<String>) -> CertError {
    CertError::Invalid {
        flag,
        problem: problem.into(),
    }
}

/// The paths of a certificate and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The CA's files in `dir`.
pub fn ca_files(dir: &Path) -> CertFiles {
    CertFiles {
        cert: dir.join(CA_CERT_FILE),
        key: dir.join(CA_KEY_FILE),
    }
}

/// Node `id`'s files in `dir`: `node-ID.pem`, `node-ID-key.pem`.
pub fn node_files(dir: &Path, id: u64) -> CertFiles {
    CertFiles {
        cert: dir.join(format!("node-{id}.pem")),
        key: dir.join(format!("node-{id}-key.pem")),
    }
}

fn check_days(days: u32) -> Result<Duration, CertError> {
    if days == 0 || days > MAX_DAYS {
        return Err(invalid(
            "--days",
            format!("{days} is not between 1 and {MAX_DAYS}"),
        ));
    }
    Ok(Duration::days(i64::from(days)))
}

/// Validity from a minute ago (clocks of the hosts differ a little) for `days`.
fn validity(params: &mut CertificateParams, days: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(1);
    params.not_after = now + days;
}

fn write_private(path: &Path, data: &str) -> Result<(), CertError> {
    durable::replace_file(path, data.as_bytes(), 0o600).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn make_dir(dir: &Path) -> Result<(), CertError> {
    durable::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn generate(what: &'static str) -> impl FnOnce(rcgen::Error) -> CertError {
    move |source| CertError::Generate { what, source }
}

/// Makes a cluster CA in `dir` (`ca.pem`, `ca-key.pem`): a new key and a self-signed
/// certificate that may sign node certificates only (path length 0). An existing CA is kept
/// unless `force`.
pub fn make_ca(dir: &Path, days: u32, force: bool) -> Result<CertFiles, CertError> {
    let days = check_days(days)?;
    let files = ca_files(dir);
    if !force {
        for p in [&files.cert, &files.key] {
            if p.exists() {
                return Err(CertError::Exists(p.clone()));
            }
        }
    }
    let key = KeyPair::generate().map_err(generate("making the CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "raftq cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    let cert = params
        .self_signed(&key)
        .map_err(generate("signing the CA certificate"))?;
    make_dir(dir)?;
    // The key first: a directory with a CA certificate but no key cannot sign.
    write_private(&files.key, &key.serialize_pem())?;
    write_private(&files.cert, &cert.pem())?;
    Ok(files)
}

/// A host of a certificate: an IP address, or a DNS name (letters, digits, `-`, `.`; a
/// leading `*.` for a wildcard).
fn san_of(host: &str) -> Result<SanType, CertError> {
    let host = host.trim();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.is_empty() || host.len() > 253 || !name.split('.').all(label_ok) {
        return Err(invalid(
            "--host",
            format!("{host:?} is neither an IP address nor a DNS name"),
        ));
    }
    let ia5 = host
        .to_string()
        .try_into()
        .map_err(|e: rcgen::Error| invalid("--host", format!("{host:?}: {e}")))?;
    Ok(SanType::DnsName(ia5))
}

/// What a node certificate is for.
#[derive(Clone, Debug)]
pub struct NodeCert {
    /// The node id (1 or more), written as the URI SAN `raftq://node/<id>`.
    pub id: u64,
    /// Host names and IP addresses the node is reached at; each becomes a SAN.
    pub hosts: Vec<String>,
    pub days: u32,
}

/// Issues node `want.id`'s certificate, signed by the CA in `dir`, as `node-ID.pem` and
/// `node-ID-key.pem` in `dir` (replacing earlier ones: renewing is issuing again).
pub fn make_node_cert(dir: &Path, want: &NodeCert) -> Result<CertFiles, CertError> {
    if want.id == 0 {
        return Err(invalid("--id", "node ids are 1 or more"));
    }
    if want.hosts.is_empty() {
        return Err(invalid(
            "--host",
            "give at least one host name or IP the node is reached at",
        ));
    }
    if want.hosts.len() > MAX_HOSTS {
        return Err(invalid("--host", format!("at most {MAX_HOSTS} hosts")));
    }
    let days = check_days(want.days)?;
    let mut sans = want
        .hosts
        .iter()
        .map(|h| san_of(h))
        .collect::<Result<Vec<_>, _>>()?;
    let uri = format!("{NODE_URI_PREFIX}{}", want.id)
        .try_into()
        .map_err(generate("the node URI"))?;
    sans.push(SanType::URI(uri));

    let ca = ca_files(dir);
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| CertError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let ca_key = KeyPair::from_pem(&read(&ca.key)?).map_err(|e| CertError::Unreadable {
        path: ca.key.clone(),
        problem: format!("not a private key: {e}"),
    })?;
    let issuer =
        Issuer::from_ca_cert_pem(&read(&ca.cert)?, ca_key).map_err(|e| CertError::Unreadable {
            path: ca.cert.clone(),
            problem: format!("not a CA certificate: {e}"),
        })?;

    let key = KeyPair::generate().map_err(generate("making the node key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("raftq node {}", want.id));
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(generate("signing the node certificate"))?;
    let files = node_files(dir, want.id);
    write_private(&files.key, &key.serialize_pem())?;
    write_private(&files.cert, &cert.pem())?;
    Ok(files)
}

/// The node id a certificate (DER) names in its `raftq://node/<id>` URI SAN.
pub fn node_id_of(cert_der: &[u8]) -> Result<u64, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subject alternative names: {e}"))?
        .map(|ext| ext.value.general_names.clone())
        .unwrap_or_default();
    let mut ids = sans.iter().filter_map(|n| match n {
        GeneralName::URI(u) => u.strip_prefix(NODE_URI_PREFIX),
        _ => None,
    });
    match (ids.next(), ids.next()) {
        (Some(id), None) => id
            .parse::<u64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| format!("{NODE_URI_PREFIX}{id} is not a node id")),
        (None, _) => Err(format!("names no node ({NODE_URI_PREFIX}<id> URI)")),
        (Some(_), Some(_)) => Err("names more than one node".into()),
    }
}

/// A node's TLS material, read from its files: its identity (certificate chain and key) and
/// the cluster CA it trusts, as PEM.
#[derive(Clone)]
pub struct NodeTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub ca_pem: Vec<u8>,
}

impl NodeTls {
    /// Reads the three files; the error names the file.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<NodeTls, CertError> {
        let read = |p: &Path, what: &str| -> Result<Vec<u8>, CertError> {
            let b = std::fs::read(p).map_err(|source| CertError::Io {
                path: p.to_path_buf(),
                source,
            })?;
            if !b.windows(11).any(|w| w == b"-----BEGIN ") {
                return Err(CertError::Unreadable {
                    path: p.to_path_buf(),
                    problem: format!("holds no PEM {what}"),
                });
            }
            Ok(b)
        };
        Ok(NodeTls {
            cert_pem: read(cert, "certificate")?,
            key_pem: read(key, "private key")?,
            ca_pem: read(ca, "CA certificate")?,
        })
    }

    /// The node's own id as its certificate names it.
    pub fn own_id(&self) -> Result<u64, String> {
        node_id_of(&first_der(&self.cert_pem)?)
    }

    /// The identity this node serves with and calls its peers with.
    pub fn identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// The client side: trust the cluster CA, present this node's certificate.
    pub fn peer_tls(&self) -> raftq_proto::endpoint::Tls {
        raftq_proto::endpoint::Tls {
            ca_pem: Some(self.ca_pem.clone()),
            identity: Some(self.identity()),
        }
    }

    /// The server side: this node's identity; client certificates checked against the CA
    /// when presented, and optional (clients and runners come with a token only).
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .client_auth_optional(true)
    }
}

/// The DER of the first certificate of a PEM text.
pub fn first_der(pem_text: &[u8]) -> Result<Vec<u8>, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text)
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    Ok(pem.contents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn der_of(p: &Path) -> Vec<u8> {
        first_der(&std::fs::read(p).unwrap()).unwrap()
    }

    fn node(id: u64, hosts: &[&str]) -> NodeCert {
        NodeCert {
            id,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            days: DEFAULT_NODE_DAYS,
        }
    }

    #[test]
    fn a_node_certificate_verifies_against_its_ca_and_names_hosts_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), DEFAULT_CA_DAYS, false).unwrap();
        let files = make_node_cert(
            dir.path(),
            &node(3, &["127.0.0.1", "mgr3.example.org", "::1"]),
        )
        .unwrap();
        for p in [&ca.cert, &ca.key, &files.cert, &files.key] {
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
        let ca_der = der_of(&ca.cert);
        let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert!(ca_x509.is_ca());
        let node_der = der_of(&files.cert);
        let (_, x509) = x509_parser::parse_x509_certificate(&node_der).unwrap();
        x509.verify_signature(Some(ca_x509.public_key())).unwrap();
        assert_eq!(x509.issuer(), ca_x509.subject());
        let names: Vec<String> = x509
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        for want in [
            "IPAddress(7f:00:00:01)",
            "DNSName(mgr3.example.org)",
            "IPAddress(00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01)",
            "URI(raftq://node/3)",
        ] {
            assert!(names.iter().any(|n| n.contains(want)), "{want}: {names:?}");
        }
        assert_eq!(node_id_of(&node_der), Ok(3));
        // the files load as a node's TLS settings naming their node
        let tls = NodeTls::load(&files.cert, &files.key, &ca.cert).unwrap();
        assert_eq!(tls.own_id(), Ok(3));
        let e = NodeTls::load(&files.cert, &files.key, &dir.path().join("none.pem"));
        assert!(e.is_err_and(|e| e.to_string().contains("none.pem")));
        let days = (x509.validity().not_after.timestamp() - x509.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, i64::from(DEFAULT_NODE_DAYS));
        // a node signed by another CA does not verify against this one
        let other = tempfile::tempdir().unwrap();
        make_ca(other.path(), 10, false).unwrap();
        let stranger = make_node_cert(other.path(), &node(3, &["127.0.0.1"])).unwrap();
        let stranger_der = der_of(&stranger.cert);
        let (_, s) = x509_parser::parse_x509_certificate(&stranger_der).unwrap();
        assert!(s.verify_signature(Some(ca_x509.public_key())).is_err());
    }

    #[test]
    fn the_ca_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let ca = make_ca(dir.path(), 30, false).unwrap();
        let before = std::fs::read(&ca.cert).unwrap();
        let e = make_ca(dir.path(), 30, false).unwrap_err().to_string();
        assert!(e.contains("--force") && e.contains("ca.pem"), "{e}");
        assert_eq!(std::fs::read(&ca.cert).unwrap(), before);
        make_ca(dir.path(), 30, true).unwrap();
        assert_ne!(std::fs::read(&ca.cert).unwrap(), before);
    }

    #[test]
    fn bad_input_names_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let err = |r: Result<CertFiles, CertError>| r.unwrap_err().to_string();
        assert!(err(make_ca(dir.path(), 0, false)).starts_with("--days:"));
        assert!(err(make_ca(dir.path(), MAX_DAYS + 1, false)).starts_with("--days:"));
        // no CA yet: the error names the CA key file
        let e = err(make_node_cert(dir.path(), &node(1, &["a.example"])));
        assert!(e.contains("ca-key.pem"), "{e}");
        make_ca(dir.path(), 30, false).unwrap();
        assert!(err(make_node_cert(dir.path(), &node(0, &["h"]))).starts_with("--id:"));
        assert!(err(make_node_cert(dir.path(), &node(1, &[]))).starts_with("--host:"));
        for bad in ["", "has space", "-lead.example", "a..b", "é.example"] {
            let e = err(make_node_cert(dir.path(), &node(1, &[bad])));
            assert!(e.starts_with("--host:"), "{bad:?}: {e}");
        }
        let mut long = node(1, &["h"]);
        long.days = 0;
        assert!(err(make_node_cert(dir.path(), &long)).starts_with("--days:"));
        assert!(node_id_of(b"junk").is_err());
        let ca_der = der_of(&ca_files(dir.path()).cert);
        assert!(node_id_of(&ca_der).unwrap_err().contains("names no node"));
    }
}
