//! A real browser for the web UI's tests: Debian's headless Chromium driven by its
//! chromedriver through the W3C WebDriver protocol (JSON over HTTP, [`crate::http`]). Only the
//! commands the tests use: navigate, find, click, type, run a script, screenshot.
//!
//! [`Browser::start`] starts chromedriver on a free loopback port and opens a session; drop
//! ends the session and kills (and reaps) that chromedriver, which takes its Chromium with it.

use crate::http::request;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    /// chromedriver's and Chromium's TMPDIR (their profile and scratch directories), removed
    /// with the browser so that runs leave nothing in /tmp.
    _tmp: tempfile::TempDir,
}

impl Browser {
    /// chromedriver and a headless Chromium session with a `width`×`height` window. Fails
    /// with the way out when Debian's packages are missing.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        for exe in [CHROMEDRIVER, CHROMIUM] {
            anyhow::ensure!(
                Path::new(exe).exists(),
                "{exe} not found: install Debian's chromium and chromium-driver \
                 (scripts/setup-deps.sh does)"
            );
        }
        let port = raftq_local::free_port()?;
        let tmp = tempfile::Builder::new()
            .prefix("raftq-chromium-")
            .tempdir()?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            _tmp: tmp,
        };
        let base = b.base.clone();
        raftq_local::wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
            let base = base.clone();
            async move {
                match request("GET", &base, "/status", &[], None).await {
                    Ok(r) if r.status == 200 && r.json()["value"]["ready"] == true => Ok(()),
                    Ok(r) => Err(r.text()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("chromedriver did not become ready: {e}"))?;
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            // A TLS cluster's certificates come from its own CA, which this fresh browser
            // profile does not trust.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", format!("--window-size={width},{height}")],
            },
        }}});
        let v = b.call("POST", "/session", Some(caps)).await?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no session id in {v}"))?
            .to_string();
        Ok(b)
    }

    /// One WebDriver command; its `value`, or the driver's error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string());
        let r = request(
            method,
            &self.base,
            path,
            &[("Content-Type", "application/json")],
            body.as_deref().map(str::as_bytes),
        )
        .await?;
        let v = r.json();
        if r.status != 200 {
            anyhow::bail!("WebDriver {method} {path}: {} {}", r.status, v["value"]);
        }
        Ok(v["value"].clone())
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// The element `css` selects (the first), failing if none does now.
    pub async fn find(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .call(
                "POST",
                &self.at("/element"),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        v[ELEMENT]
            .as_str()
            .map(String::from)
            .ok_or_else(|| anyhow::anyhow!("no element reference for {css}: {v}"))
    }

    /// Waits (up to `timeout`) for `css` to select an element, then clicks it.
    pub async fn click(&self, css: &str, timeout: Duration) -> anyhow::Result<()> {
        let q = serde_json::to_string(css)?;
        self.wait_js(
            &format!("return document.querySelector({q}) !== null"),
            timeout,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{css} never appeared: {e}"))?;
        // A live page re-renders lists as updates arrive: an element found a moment ago may
        // be gone by the click ("stale element reference"); find it again until the deadline.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let id = self.find(css).await?;
            let r = self
                .call(
                    "POST",
                    &self.at(&format!("/element/{id}/click")),
                    Some(json!({})),
                )
                .await;
            match r {
                Err(e)
                    if e.to_string().contains("stale element reference")
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                r => return r.map(drop),
            }
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let id = self.find(css).await?;
        self.call(
            "POST",
            &self.at(&format!("/element/{id}/value")),
            Some(json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn js(&self, script: &str) -> anyhow::Result<Value> {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Waits until `script` returns a value other than false/null/"" (then returns it), up to
    /// `timeout`; the error carries the last value seen.
    pub async fn wait_js(&self, script: &str, timeout: Duration) -> anyhow::Result<Value> {
        raftq_local::wait_for(timeout, Duration::from_millis(100), || async move {
            match self.js(script).await {
                Ok(v) if !(v.is_null() || v == false || v == "") => Ok(v),
                Ok(v) => Err(v.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .map_err(|last| anyhow::anyhow!("{script}: still {last} after {timeout:?}"))
    }

    /// The text of the first element `css` selects, once there is one with `want` in it.
    pub async fn wait_text(
        &self,
        css: &str,
        want: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let (q, w) = (serde_json::to_string(css)?, serde_json::to_string(want)?);
        let v = self
            .wait_js(
                &format!(
                    "const e = document.querySelector({q}); \
                     return e && e.textContent.includes({w}) ? e.textContent : null"
                ),
                timeout,
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// A PNG of the window.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        use base64::Engine;
        let v = self.call("GET", &self.at("/screenshot"), None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("screenshot is not base64: {e}"))?;
        std::fs::write(path, png)?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; killing the driver ends whatever is left (its
        // browser is its child and goes with its process group's session end).
        if !self.session.is_empty() {
            let (base, path) = (self.base.clone(), self.at(""));
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    let _ = rt.block_on(async {
                        tokio::time::timeout(
                            Duration::from_secs(10),
                            request("DELETE", &base, &path, &[], None),
                        )
                        .await
                    });
                }
            })
            .join();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
