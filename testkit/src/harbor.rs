//! A client that calls the Harbor scanner-adapter API v1.2 as Harbor does
//! (`src/pkg/scan/rest/v1/client.go`, `src/pkg/scan/job.go`): version=1.0 metadata and scan
//! request types, a 5 s timeout per call (body included), redirects never followed, and the job
//! loop's polling (first after 2 s, then after `Refresh-After`). Used against the standalone
//! `sidescan-harbor` binary and against a plugin's `--harbor-listen`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The metadata type Harbor's client asks for.
pub const METADATA_V1_0: &str = "application/vnd.scanner.adapter.metadata+json; version=1.0";
/// The scan request type Harbor sends.
pub const SCAN_REQUEST_V1_0: &str =
    "application/vnd.scanner.adapter.scan.request+json; version=1.0";
/// The scan response type Harbor accepts.
pub const SCAN_RESPONSE: &str = "application/vnd.scanner.adapter.scan.response+json; version=1.0";
/// The report Harbor asks a vulnerability scanner for (generic, 1.1).
pub const GENERIC_REPORT: &str = "application/vnd.security.vulnerability.report; version=1.1";
/// Harbor's native vulnerability report (1.0).
pub const NATIVE_REPORT: &str =
    "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0";
/// The SBOM report (asked for with the query parameter `sbom_media_type`).
pub const SBOM_REPORT: &str = "application/vnd.security.sbom.report+json; version=1.0";
/// Every error body of the API.
pub const ERROR: &str = "application/vnd.scanner.adapter.error+json; version=1.0";

/// One answer of the report endpoint.
#[derive(Clone, Debug)]
pub struct ReportAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body (empty for a 302).
    pub body: String,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// `Refresh-After`, if any (a 302 carries it).
    pub refresh_after: Option<String>,
}

impl ReportAnswer {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("report body is not JSON ({e}): {}", self.body))
    }
}

/// A client that behaves like Harbor's: 5 s timeout per call (body included), redirects never
/// followed.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The body Harbor sends to scan `repository@digest` on `registry_url` with `capabilities`
/// (Harbor's `enabled_capabilities`).
pub fn scan_request_with(
    registry_url: &str,
    authorization: &str,
    repository: &str,
    digest: &str,
    mime_type: &str,
    capabilities: Value,
) -> Value {
    json!({
        "registry": {"url": registry_url, "authorization": authorization, "insecure": false},
        "artifact": {"repository": repository, "digest": digest, "tag": "1",
                     "mime_type": mime_type, "size": 1024},
        "enabled_capabilities": capabilities,
    })
}

/// The body Harbor sends for a vulnerability scan (generic report) of `repository@digest`.
pub fn scan_request(
    registry_url: &str,
    authorization: &str,
    repository: &str,
    digest: &str,
    mime_type: &str,
) -> Value {
    scan_request_with(
        registry_url,
        authorization,
        repository,
        digest,
        mime_type,
        json!([{"type": "vulnerability", "produces_mime_types": [GENERIC_REPORT],
                "parameters": null}]),
    )
}

/// `GET /api/v1/metadata` as Harbor sends it.
pub async fn metadata(client: &reqwest::Client, base: &str) -> reqwest::Response {
    client
        .get(format!("{base}/api/v1/metadata"))
        .header("Accept", METADATA_V1_0)
        .send()
        .await
        .expect("metadata")
}

/// `POST /api/v1/scan` as Harbor sends it.
pub async fn submit(client: &reqwest::Client, base: &str, body: &Value) -> reqwest::Response {
    client
        .post(format!("{base}/api/v1/scan"))
        .header("Content-Type", SCAN_REQUEST_V1_0)
        .header("Accept", SCAN_RESPONSE)
        .body(body.to_string())
        .send()
        .await
        .expect("submit")
}

/// `POST /api/v1/scan`, asserting 202 with the scan response type; returns the job id.
pub async fn submit_accepted(client: &reqwest::Client, base: &str, body: &Value) -> String {
    let accepted = submit(client, base, body).await;
    let status = accepted.status();
    let content_type = accepted.headers().get("content-type").cloned();
    let text = accepted.text().await.unwrap_or_default();
    assert_eq!(status, 202, "POST /scan: {text}");
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some(SCAN_RESPONSE)
    );
    let id: Value = serde_json::from_str(&text).expect("scan response JSON");
    id["id"].as_str().expect("id string").to_owned()
}

/// One `GET /api/v1/scan/{id}/report{query}` with `Accept: accept`.
pub async fn get_report(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    accept: &str,
    query: &str,
) -> ReportAnswer {
    let response = client
        .get(format!("{base}/api/v1/scan/{id}/report{query}"))
        .header("Accept", accept)
        .send()
        .await
        .expect("report");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    let content_type = header("content-type");
    let refresh_after = header("Refresh-After");
    ReportAnswer {
        status: response.status().as_u16(),
        content_type,
        refresh_after,
        body: response.text().await.unwrap_or_default(),
    }
}

/// What Harbor's job loop ends with: the first answer that is not 302. Polls like Harbor: first after 2 s, then after `Refresh-After` (parsed as an
/// 8-bit integer), for at most `limit`.
pub async fn poll_report(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    accept: &str,
    query: &str,
    limit: Duration,
) -> ReportAnswer {
    let started = Instant::now();
    let mut wait = Duration::from_secs(2);
    loop {
        tokio::time::sleep(wait).await;
        let answer = get_report(client, base, id, accept, query).await;
        if answer.status != 302 {
            return answer;
        }
        let refresh = answer
            .refresh_after
            .as_deref()
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

/// Asserts that `answer` is `status` in Harbor's error format (`{"error":{"message"}}` as
/// [`ERROR`]) and returns the message.
pub fn assert_error(answer: &ReportAnswer, status: u16) -> String {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(
        answer.content_type.as_deref(),
        Some(ERROR),
        "{}",
        answer.body
    );
    let doc = answer.json();
    doc["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.message: {doc}"))
        .to_owned()
}
