//! Everything these tests take from the workspace's test helpers, in one place (the helper
//! crate is being renamed), plus the `sidescan-harbor` process and a client that behaves like
//! Harbor's (`src/pkg/scan/rest/v1/client.go`, `src/pkg/scan/job.go`).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub(crate) use sidescan_testkit::clamd::{ClamdOptions, ClamdProcess, EICAR_SIGNATURE};
pub(crate) use sidescan_testkit::fixtures::{self, EICAR_PATH};
pub(crate) use sidescan_testkit::plugin::{
    PluginProcess, ServingStatus, test_plugin_binary, workspace_binary,
};
pub(crate) use sidescan_testkit::process::ChildGuard;
pub(crate) use sidescan_testkit::registry::Registry;

/// Harbor's media types, as its client spells them.
pub(crate) const METADATA_V1_0: &str = "application/vnd.scanner.adapter.metadata+json; version=1.0";
/// The scan request type Harbor sends.
pub(crate) const SCAN_REQUEST_V1_0: &str =
    "application/vnd.scanner.adapter.scan.request+json; version=1.0";
/// The scan response type Harbor accepts.
pub(crate) const SCAN_RESPONSE: &str =
    "application/vnd.scanner.adapter.scan.response+json; version=1.0";
/// The report Harbor asks a vulnerability scanner for.
pub(crate) const GENERIC_REPORT: &str =
    "application/vnd.security.vulnerability.report; version=1.1";

/// A running `sidescan-harbor` on 127.0.0.1, stopped by PID on drop.
pub(crate) struct HarborProcess {
    child: ChildGuard,
    addr: String,
    dir: tempfile::TempDir,
}

impl HarborProcess {
    /// Starts `sidescan-harbor --plugin plugin_url` with `extra` flags and waits until it
    /// listens.
    pub(crate) fn start(plugin_url: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr_file = dir.path().join("addr");
        let log = std::fs::File::create(dir.path().join("harbor.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sidescan-harbor"))
            .args([
                "--plugin",
                plugin_url,
                "--listen",
                "127.0.0.1:0",
                "--addr-file",
            ])
            .arg(&addr_file)
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sidescan-harbor");
        let mut harbor = HarborProcess {
            child: ChildGuard::new(child, "sidescan-harbor"),
            addr: String::new(),
            dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file)
                && !addr.is_empty()
            {
                harbor.addr = addr;
                return harbor;
            }
            if let Some(status) = harbor.child.try_wait() {
                panic!("sidescan-harbor exited with {status}:\n{}", harbor.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "sidescan-harbor did not listen:\n{}",
                harbor.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its log.
    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("harbor.log")).unwrap_or_default()
    }

    /// Its temp dir.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A client that behaves like Harbor's: 5 s timeout per call (body included), redirects never
/// followed, version=1.0 media types.
pub(crate) fn harbor_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The body Harbor sends for a vulnerability scan of `repository@digest` on `registry_url`.
pub(crate) fn harbor_scan_request(
    registry_url: &str,
    authorization: &str,
    repository: &str,
    digest: &str,
    mime_type: &str,
) -> Value {
    json!({
        "registry": {"url": registry_url, "authorization": authorization, "insecure": false},
        "artifact": {"repository": repository, "digest": digest, "tag": "1",
                     "mime_type": mime_type, "size": 1024},
        "enabled_capabilities": [{"type": "vulnerability",
            "produces_mime_types": [GENERIC_REPORT], "parameters": null}],
    })
}

/// `GET /metadata` as Harbor sends it.
pub(crate) async fn metadata(client: &reqwest::Client, base: &str) -> reqwest::Response {
    client
        .get(format!("{base}/api/v1/metadata"))
        .header("Accept", METADATA_V1_0)
        .send()
        .await
        .expect("metadata")
}

/// `POST /scan` as Harbor sends it.
pub(crate) async fn submit(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
) -> reqwest::Response {
    client
        .post(format!("{base}/api/v1/scan"))
        .header("Content-Type", SCAN_REQUEST_V1_0)
        .header("Accept", SCAN_RESPONSE)
        .body(body.to_string())
        .send()
        .await
        .expect("submit")
}

/// What Harbor's job loop ends with: the status and body of the first answer that is not 302.
/// Polls like Harbor: first after 2 s, then after `Refresh-After` (parsed as an 8-bit integer,
/// 5 s when unparsable), for at most `limit`.
pub(crate) async fn poll_report(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    accept: &str,
    query: &str,
    limit: Duration,
) -> (u16, String, Option<String>) {
    let started = Instant::now();
    let mut wait = Duration::from_secs(2);
    loop {
        tokio::time::sleep(wait).await;
        let response = client
            .get(format!("{base}/api/v1/scan/{id}/report{query}"))
            .header("Accept", accept)
            .send()
            .await
            .expect("report");
        let status = response.status().as_u16();
        if status != 302 {
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            return (
                status,
                response.text().await.unwrap_or_default(),
                content_type,
            );
        }
        let refresh = response
            .headers()
            .get("Refresh-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i8>().ok())
            .expect("302 carries an 8-bit integer Refresh-After");
        assert!(refresh > 0, "Refresh-After {refresh}");
        wait = Duration::from_secs(u64::from(refresh.unsigned_abs()));
        assert!(
            started.elapsed() < limit,
            "report not ready within {limit:?}"
        );
    }
}
