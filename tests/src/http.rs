//! A minimal HTTP/1.1 client for the tests of the node's HTTP port and for WebDriver: one
//! request per connection (`Connection: close`), plaintext or HTTPS trusting a given CA (a
//! TLS cluster's), bodies read to the end (fixed length or chunked). Enough for JSON APIs on
//! loopback; not a general client.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a test waits for one response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response read (screenshots are the largest).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `METHOD base_url+path` with `headers` and `body`; `base_url` is `http://host:port`.
pub async fn request(
    method: &str,
    base_url: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> anyhow::Result<HttpResponse> {
    request_with(None, method, base_url, path, headers, body).await
}

/// As [`request`], and for an `https://` base URL, TLS trusting the CA `ca_pem` (PEM).
pub async fn request_with(
    ca_pem: Option<&[u8]>,
    method: &str,
    base_url: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> anyhow::Result<HttpResponse> {
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        request_once(ca_pem, method, base_url, path, headers, body),
    )
    .await
    .map_err(|_| anyhow::anyhow!("{method} {base_url}{path}: no response in {REQUEST_TIMEOUT:?}"))?
}

/// A byte stream to the server: plaintext or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn connect(ca_pem: Option<&[u8]>, base_url: &str) -> anyhow::Result<(Box<dyn Io>, String)> {
    if let Some(host) = base_url.strip_prefix("http://") {
        let host = host.trim_end_matches('/').to_string();
        return Ok((Box::new(TcpStream::connect(&host).await?), host));
    }
    let host = base_url
        .strip_prefix("https://")
        .ok_or_else(|| anyhow::anyhow!("{base_url}: an http:// or https:// URL"))?
        .trim_end_matches('/')
        .to_string();
    let ca = ca_pem.ok_or_else(|| anyhow::anyhow!("{base_url}: HTTPS needs the cluster CA"))?;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(c?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let name = rustls::pki_types::ServerName::try_from(name.to_string())?;
    let tcp = TcpStream::connect(&host).await?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await?;
    Ok((Box::new(tls), host))
}

async fn request_once(
    ca_pem: Option<&[u8]>,
    method: &str,
    base_url: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> anyhow::Result<HttpResponse> {
    let (mut stream, host) = connect(ca_pem, base_url).await?;
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // A TLS server may close without close_notify once it has answered.
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            Err(e) if complete(&raw) || e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        anyhow::ensure!(raw.len() <= MAX_RESPONSE_BYTES, "response too large");
        // Some servers (chromedriver) keep the connection open despite `Connection: close`:
        // stop once the body is complete.
        if complete(&raw) {
            break;
        }
    }
    parse(&raw)
}

/// Whether `raw` holds a whole response: headers, and the body its length or chunks say.
fn complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n") && dechunk(body).is_ok();
    }
    match head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(n) => body.len() >= n,
        None => false,
    }
}

fn parse(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no end of headers in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad status line {status_line:?}"))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow::anyhow!("truncated chunk"))?;
        let size_text = std::str::from_utf8(&b[..eol])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        anyhow::ensure!(b.len() >= size + 2, "truncated chunk");
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi").unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "hi"));
        assert_eq!(r.headers["x-a"], "b");
        let r = parse(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "abcde"));
    }
}
