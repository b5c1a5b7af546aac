//! `harbor/`: Harbor's pluggable-scanner API v1.2 (`/api/v1`) as Harbor's own client calls it
//! (goharbor/harbor `src/pkg/scan/rest/v1/`): version=1.0 media types, a 5 s timeout on every
//! call, redirects never followed, polling with `Refresh-After`. The group runs against the URL
//! given with `--harbor-url` (a plugin's `--harbor-listen`, or `sidescan-harbor` in front of
//! it) and is skipped without one: passing it certifies "works with Harbor".

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Ctx, clean_placed, fail, skip, suite_error};
use crate::{Case, CaseResult, Outcome};

const METADATA_V1_0: &str = "application/vnd.scanner.adapter.metadata+json; version=1.0";
const SCAN_REQUEST_V1_0: &str = "application/vnd.scanner.adapter.scan.request+json; version=1.0";
const GENERIC_REPORT: &str = "application/vnd.security.vulnerability.report; version=1.1";
const NATIVE_REPORT: &str = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0";
const ERROR: &str = "application/vnd.scanner.adapter.error+json; version=1.0";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The `harbor/` cases, in run order.
pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "harbor/metadata-passes-harbors-registration",
            "GET /metadata: scanner named, every capability consumes both manifest types and produces a report Harbor knows",
            harbor_metadata
        ),
        case!(
            "harbor/scan-is-accepted-at-once-and-reported",
            "POST /scan answers 202 with an id within Harbor's 5 s; the report polls with 302 + Refresh-After (1..127) then 200",
            harbor_scan_flow
        ),
        case!(
            "harbor/unknown-scan-id-is-404",
            "GET /scan/{unknown}/report is 404 in Harbor's error format",
            harbor_unknown_id
        ),
        case!(
            "harbor/unparsable-request-is-400",
            "POST /scan with a body that is not JSON is 400 in Harbor's error format",
            harbor_bad_json
        ),
        case!(
            "harbor/invalid-request-is-422",
            "POST /scan without artifact.digest is 422 in Harbor's error format",
            harbor_invalid
        ),
    ]
}

/// The Harbor API base URL, or a skip.
fn base(cx: &Ctx) -> Result<String, Outcome> {
    cx.harbor
        .clone()
        .map(|u| u.trim_end_matches('/').to_owned())
        .ok_or_else(|| skip("no --harbor-url given"))
}

/// A client that behaves like Harbor's.
fn client() -> Result<reqwest::Client, Outcome> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| suite_error(format!("HTTP client: {e}")))
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Requires `status` and Harbor's error document.
async fn expect_error(what: &str, r: reqwest::Response, status: u16) -> CaseResult {
    let got = r.status().as_u16();
    let ct = content_type(&r);
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if got != status {
        return Err(fail(format!(
            "{what}: expected {status}, got {got}: {body}"
        )));
    }
    if ct != ERROR || !body["error"]["message"].is_string() {
        return Err(fail(format!(
            "{what}: expected {ERROR} with {{\"error\":{{\"message\"}}}}, got {ct:?}: {body}"
        )));
    }
    Ok(())
}

async fn harbor_metadata(cx: &Ctx) -> CaseResult {
    let base = base(cx)?;
    let r = client()?
        .get(format!("{base}/api/v1/metadata"))
        .header("accept", METADATA_V1_0)
        .send()
        .await
        .map_err(|e| fail(format!("GET /metadata: {e}")))?;
    if r.status() != 200 {
        return Err(fail(format!(
            "GET /metadata: expected 200, got {}",
            r.status()
        )));
    }
    let md: Value = r
        .json()
        .await
        .map_err(|e| fail(format!("GET /metadata: not JSON: {e}")))?;
    for field in ["name", "vendor", "version"] {
        if md["scanner"][field].as_str().unwrap_or("").is_empty() {
            return Err(fail(format!("scanner.{field} is empty: {md}")));
        }
    }
    let caps = md["capabilities"].as_array().cloned().unwrap_or_default();
    if caps.is_empty() {
        return Err(fail(format!("no capabilities: {md}")));
    }
    for cap in &caps {
        let consumes = cap["consumes_mime_types"].to_string();
        if !consumes.contains(DOCKER_MANIFEST) || !consumes.contains(OCI_MANIFEST) {
            return Err(fail(format!(
                "a capability does not consume both {DOCKER_MANIFEST} and {OCI_MANIFEST}: {cap}"
            )));
        }
        let produces = cap["produces_mime_types"].to_string();
        if ![
            GENERIC_REPORT,
            NATIVE_REPORT,
            "application/vnd.security.sbom.report+json",
        ]
        .iter()
        .any(|t| produces.contains(t))
        {
            return Err(fail(format!(
                "a capability produces no report Harbor knows: {cap}"
            )));
        }
    }
    Ok(())
}

/// The body Harbor sends for `repository@digest` on the fixture registry.
fn scan_request(cx: &Ctx, repository: &str, digest: &str) -> Value {
    let registry = cx.fx.registry();
    json!({
        "registry": {"url": registry.url, "authorization": registry.authorization, "insecure": false},
        "artifact": {
            "repository": repository,
            "digest": digest,
            "tag": "",
            "mime_type": OCI_MANIFEST,
            "size": 0,
        },
        "enabled_capabilities": [{"type": "vulnerability", "produces_mime_types": [GENERIC_REPORT]}],
    })
}

async fn harbor_scan_flow(cx: &Ctx) -> CaseResult {
    let base = base(cx)?;
    let placed = clean_placed(cx).await?;
    let http = client()?;
    let started = Instant::now();
    let accepted = http
        .post(format!("{base}/api/v1/scan"))
        .header("content-type", SCAN_REQUEST_V1_0)
        .body(scan_request(cx, &placed.repo, &placed.digest).to_string())
        .send()
        .await
        .map_err(|e| fail(format!("POST /scan (Harbor waits 5 s): {e}")))?;
    if accepted.status() != 202 {
        let status = accepted.status();
        let body = accepted.text().await.unwrap_or_default();
        return Err(fail(format!(
            "POST /scan: expected 202, got {status}: {body}"
        )));
    }
    let id = accepted
        .json::<Value>()
        .await
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .ok_or_else(|| fail("POST /scan: 202 without {\"id\"}"))?;
    tokio::time::sleep(Duration::from_secs(2)).await; // Harbor's first poll
    loop {
        let r = http
            .get(format!("{base}/api/v1/scan/{id}/report"))
            .header("accept", GENERIC_REPORT)
            .send()
            .await
            .map_err(|e| fail(format!("GET report: {e}")))?;
        match r.status().as_u16() {
            200 => {
                let doc: Value = r
                    .json()
                    .await
                    .map_err(|e| fail(format!("report is not JSON: {e}")))?;
                if !doc["vulnerabilities"].is_array() {
                    return Err(fail(format!("report without vulnerabilities[]: {doc}")));
                }
                return Ok(());
            }
            302 => {
                let wait = r
                    .headers()
                    .get("refresh-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i8>().ok())
                    .filter(|s| *s >= 1)
                    .ok_or_else(|| {
                        fail("302 without an integer Refresh-After of 1..127 (Harbor parses an 8-bit integer)")
                    })?;
                if started.elapsed() > cx.case_timeout {
                    return Err(fail("the scan did not finish within the case timeout"));
                }
                tokio::time::sleep(Duration::from_secs(u64::from(wait.unsigned_abs()))).await;
            }
            other => {
                let body = r.text().await.unwrap_or_default();
                return Err(fail(format!(
                    "GET report: expected 302 or 200, got {other}: {body}"
                )));
            }
        }
    }
}

async fn harbor_unknown_id(cx: &Ctx) -> CaseResult {
    let base = base(cx)?;
    let r = client()?
        .get(format!(
            "{base}/api/v1/scan/sidescan-conformance-{}/report",
            cx.run_id
        ))
        .header("accept", GENERIC_REPORT)
        .send()
        .await
        .map_err(|e| fail(format!("GET report: {e}")))?;
    expect_error("unknown scan id", r, 404).await
}

async fn harbor_bad_json(cx: &Ctx) -> CaseResult {
    let base = base(cx)?;
    let r = client()?
        .post(format!("{base}/api/v1/scan"))
        .header("content-type", SCAN_REQUEST_V1_0)
        .body("{not json")
        .send()
        .await
        .map_err(|e| fail(format!("POST /scan: {e}")))?;
    expect_error("unparsable body", r, 400).await
}

async fn harbor_invalid(cx: &Ctx) -> CaseResult {
    let base = base(cx)?;
    let placed = clean_placed(cx).await?;
    let mut body = scan_request(cx, &placed.repo, &placed.digest);
    body["artifact"].as_object_mut().map(|a| a.remove("digest"));
    let r = client()?
        .post(format!("{base}/api/v1/scan"))
        .header("content-type", SCAN_REQUEST_V1_0)
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| fail(format!("POST /scan: {e}")))?;
    expect_error("request without artifact.digest", r, 422).await
}
