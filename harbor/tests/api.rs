//! The router in process over a scripted backend: every endpoint's statuses for good and bad
//! input, each answer checked against `openapi.yaml` (status, content type, schema), and the
//! document checked against the router's route table.

mod openapi;

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sidescan_harbor::api::{REFRESH_AFTER, ROUTES};
use sidescan_harbor::{HarborOptions, HarborService, MemoryJobStore, ScanBackend, mime, router};
use sidescan_proto::mime as pmime;
use sidescan_proto::v1 as pb;
use tokio::sync::Semaphore;
use tower::ServiceExt;

const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const REPORT: &str = "/api/v1/scan/{scan_request_id}/report";

/// A backend whose scans wait for a permit and then answer `result`.
struct Scripted {
    sbom: bool,
    gate: Arc<Semaphore>,
    result: Mutex<Result<pb::ScanResponse, tonic::Status>>,
    requests: Mutex<Vec<pb::ScanRequest>>,
}

#[async_trait::async_trait]
impl ScanBackend for Scripted {
    async fn metadata(&self) -> Result<pb::GetMetadataResponse, tonic::Status> {
        let mut produces = vec![pmime::MALWARE_REPORT.to_owned()];
        if self.sbom {
            produces.push(pmime::SBOM_REPORT.to_owned());
        }
        Ok(pb::GetMetadataResponse {
            scanner: Some(pb::Scanner {
                name: "scripted".into(),
                vendor: "tests".into(),
                version: "1".into(),
            }),
            capabilities: vec![pb::Capability {
                r#type: "malware".into(),
                consumes_mime_types: vec![pmime::OCI_MANIFEST.into()],
                produces_mime_types: produces,
            }],
            ..Default::default()
        })
    }

    async fn scan(&self, request: pb::ScanRequest) -> Result<pb::ScanResponse, tonic::Status> {
        self.requests.lock().unwrap().push(request);
        let _permit = self.gate.acquire().await.expect("gate open");
        self.result.lock().unwrap().clone()
    }
}

struct Harness {
    app: axum::Router,
    backend: Arc<Scripted>,
    doc: Value,
}

struct Answer {
    status: u16,
    content_type: Option<String>,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

fn clean_response() -> pb::ScanResponse {
    pb::ScanResponse {
        report: Some(pb::ScanReport {
            scanner: Some(pb::Scanner {
                name: "scripted".into(),
                vendor: "tests".into(),
                version: "1".into(),
            }),
            ..Default::default()
        }),
        reports: vec![],
    }
}

impl Harness {
    fn new(sbom: bool, result: Result<pb::ScanResponse, tonic::Status>) -> Self {
        let backend = Arc::new(Scripted {
            sbom,
            gate: Arc::new(Semaphore::new(0)),
            result: Mutex::new(result),
            requests: Mutex::new(Vec::new()),
        });
        let options = HarborOptions {
            refresh_after: Duration::from_secs(500),
            ..HarborOptions::default()
        };
        let service = HarborService::new(
            backend.clone(),
            Arc::new(MemoryJobStore::default()),
            options,
        );
        Harness {
            app: router(Arc::new(service)),
            backend,
            doc: openapi::document(),
        }
    }

    /// Sends a request and checks the answer against the document (`template` is the path as
    /// documented).
    async fn send(&self, request: Request<Body>, template: &str) -> Answer {
        let method = request.method().as_str().to_ascii_lowercase();
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        openapi::check_answer(
            &self.doc,
            &method,
            template,
            status,
            content_type.as_deref(),
            &body,
        );
        Answer {
            status,
            content_type,
            headers,
            body,
        }
    }

    async fn post(&self, body: impl Into<Body>) -> Answer {
        let request = Request::post("/api/v1/scan")
            .header(
                header::CONTENT_TYPE,
                "application/vnd.scanner.adapter.scan.request+json; version=1.0",
            )
            .body(body.into())
            .unwrap();
        self.send(request, "/api/v1/scan").await
    }

    async fn report(&self, id: &str, accept: Option<&str>, query: &str) -> Answer {
        let mut request = Request::get(format!("/api/v1/scan/{id}/report{query}"));
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        self.send(request.body(Body::empty()).unwrap(), REPORT)
            .await
    }

    /// Submits Harbor's request; returns the job id.
    async fn submit(&self, capabilities: Value) -> String {
        let answer = self.post(harbor_request(capabilities).to_string()).await;
        assert_eq!(
            answer.status,
            202,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()["id"].as_str().unwrap().to_owned()
    }

    /// Polls until the report is ready (the gate must be open).
    async fn ready(&self, id: &str, accept: &str, query: &str) -> Answer {
        for _ in 0..200 {
            let a = self.report(id, Some(accept), query).await;
            if a.status != 302 {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("report never ready");
    }
}

fn harbor_request(capabilities: Value) -> Value {
    json!({
        "registry": {"url": "http://core:8080", "authorization": "Basic cm9ib3Q6c2VjcmV0", "insecure": false},
        "artifact": {"repository": "library/alpine", "digest": DIGEST, "tag": "3.20",
                     "mime_type": pmime::DOCKER_MANIFEST, "size": 100},
        "enabled_capabilities": capabilities,
    })
}

fn vulnerability() -> Value {
    json!([{"type": "vulnerability", "produces_mime_types": [mime::GENERIC_REPORT], "parameters": null}])
}

#[test]
fn the_document_and_the_router_list_the_same_routes_and_statuses() {
    let doc = openapi::document();
    let paths = doc["paths"].as_object().unwrap();
    for (method, path, statuses) in ROUTES {
        let op = openapi::operation(&doc, method, path);
        let documented: Vec<u16> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse().unwrap())
            .collect();
        let mut served = statuses.to_vec();
        served.sort_unstable();
        let mut documented_sorted = documented.clone();
        documented_sorted.sort_unstable();
        assert_eq!(served, documented_sorted, "{method} {path}");
    }
    let documented_ops: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented_ops,
        ROUTES.len(),
        "the document has operations the router lacks"
    );
}

#[tokio::test]
async fn metadata_is_labelled_with_the_version_asked_for() {
    let h = Harness::new(true, Ok(clean_response()));
    for (accept, want) in [
        (Some(mime::METADATA_V1_0), mime::METADATA_V1_0),
        (Some(mime::METADATA_V1_1), mime::METADATA_V1_1),
        (None, mime::METADATA_V1_1),
    ] {
        let mut request = Request::get("/api/v1/metadata");
        if let Some(a) = accept {
            request = request.header(header::ACCEPT, a);
        }
        let a = h
            .send(request.body(Body::empty()).unwrap(), "/api/v1/metadata")
            .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.content_type.as_deref(), Some(want));
        let md = a.json();
        assert_eq!(md["capabilities"][1]["type"], "sbom", "{md}");
    }
}

#[tokio::test]
async fn a_scan_is_accepted_at_once_then_302_then_the_report() {
    let h = Harness::new(false, Ok(clean_response()));
    let id = h.submit(vulnerability()).await;
    let running = h.report(&id, Some(mime::GENERIC_REPORT), "").await;
    assert_eq!(running.status, 302);
    assert_eq!(
        running.headers[REFRESH_AFTER], "127",
        "clamped to Harbor's 8-bit parse"
    );
    h.backend.gate.add_permits(1);
    let a = h.ready(&id, mime::GENERIC_REPORT, "").await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.content_type.as_deref(), Some(mime::GENERIC_REPORT));
    let doc = a.json();
    assert_eq!(doc["severity"], "None");
    assert_eq!(doc["artifact"]["digest"], DIGEST);
    assert_eq!(doc["scanner"]["name"], "scripted");
    let native = h.report(&id, Some(mime::NATIVE_REPORT), "").await;
    assert_eq!(native.status, 200);
    assert_eq!(native.content_type.as_deref(), Some(mime::NATIVE_REPORT));
    let sent = h.backend.requests.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].image, format!("library/alpine@{DIGEST}"));
    let registry = sent[0].registry.clone().unwrap();
    assert_eq!(registry.url, "http://core:8080");
    assert_eq!(registry.authorization, "Basic cm9ib3Q6c2VjcmV0");
    assert!(sent[0].report_types.is_empty());
}

#[tokio::test]
async fn bad_scan_requests_get_400_422_501_never_500() {
    let h = Harness::new(false, Ok(clean_response()));
    for body in ["", "{", "[]", "null", "{\"registry\": 5}"] {
        assert_eq!(h.post(body).await.status, 400, "{body:?}");
    }
    let mut missing_digest = harbor_request(vulnerability());
    missing_digest["artifact"]["digest"] = Value::Null;
    assert_eq!(h.post(missing_digest.to_string()).await.status, 422);
    let mut bad_url = harbor_request(vulnerability());
    bad_url["registry"]["url"] = json!("gopher://x");
    assert_eq!(h.post(bad_url.to_string()).await.status, 422);
    assert_eq!(
        h.post(harbor_request(json!([{"type": "license"}])).to_string())
            .await
            .status,
        422
    );
    let sbom = harbor_request(json!([{"type": "sbom"}]));
    assert_eq!(
        h.post(sbom.to_string()).await.status,
        501,
        "no sbom capability"
    );
    let raw = harbor_request(
        json!([{"type": "vulnerability", "produces_mime_types": [mime::RAW_REPORT]}]),
    );
    assert_eq!(h.post(raw.to_string()).await.status, 501);
    let mut index = harbor_request(vulnerability());
    index["artifact"]["mime_type"] = json!(pmime::OCI_INDEX);
    assert_eq!(h.post(index.to_string()).await.status, 501);
    let huge = vec![b' '; 3 << 20];
    assert_eq!(h.post(huge).await.status, 413);
    assert!(h.backend.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bad_report_requests_get_400_404_501() {
    let h = Harness::new(true, Ok(clean_response()));
    assert_eq!(
        h.report("nope", Some(mime::GENERIC_REPORT), "")
            .await
            .status,
        404
    );
    assert_eq!(
        h.report("nope", Some(mime::RAW_REPORT), "").await.status,
        501
    );
    assert_eq!(h.report("nope", Some("text/html"), "").await.status, 501);
    assert_eq!(
        h.report("nope", Some(mime::SBOM_REPORT), "").await.status,
        400
    );
    assert_eq!(
        h.report(
            "nope",
            Some(mime::SBOM_REPORT),
            "?sbom_media_type=text%2Fplain"
        )
        .await
        .status,
        400
    );
    assert_eq!(
        h.report("%ff%fe", Some(mime::GENERIC_REPORT), "")
            .await
            .status,
        404
    );
    // A scan that asked for no SBOM has none to give.
    let id = h.submit(vulnerability()).await;
    h.backend.gate.add_permits(1);
    h.ready(&id, mime::GENERIC_REPORT, "").await;
    let a = h
        .report(
            &id,
            Some(mime::SBOM_REPORT),
            "?sbom_media_type=application%2Fspdx%2Bjson",
        )
        .await;
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
}

#[tokio::test]
async fn a_plugin_error_is_a_failed_job_whose_report_is_500_with_the_code() {
    let h = Harness::new(
        false,
        Err(tonic::Status::not_found("manifest unknown: library/alpine")),
    );
    let id = h.submit(vulnerability()).await;
    h.backend.gate.add_permits(1);
    let a = h.ready(&id, mime::GENERIC_REPORT, "").await;
    assert_eq!(a.status, 500);
    let message = a.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("NOT_FOUND") && message.contains("manifest unknown"),
        "{message}"
    );
}

#[tokio::test]
async fn the_sbom_is_wrapped_with_its_media_type() {
    let mut response = clean_response();
    response.reports.push(pb::TypedReport {
        mime_type: pmime::SBOM_REPORT.into(),
        status: pb::ReportStatus::Succeeded as i32,
        error: None,
        document: br#"{"spdxVersion":"SPDX-2.3"}"#.to_vec(),
        document_media_type: pmime::SPDX_JSON.into(),
    });
    let h = Harness::new(true, Ok(response));
    let id = h
        .submit(json!([{"type": "vulnerability"}, {"type": "sbom",
            "produces_mime_types": [mime::SBOM_REPORT],
            "parameters": {"sbom_media_types": [pmime::SPDX_JSON]}}]))
        .await;
    h.backend.gate.add_permits(1);
    let a = h
        .ready(
            &id,
            mime::SBOM_REPORT,
            "?sbom_media_type=application%2Fspdx%2Bjson",
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let doc = a.json();
    assert_eq!(doc["media_type"], pmime::SPDX_JSON);
    assert_eq!(doc["sbom"]["spdxVersion"], "SPDX-2.3");
    let sent = h.backend.requests.lock().unwrap().clone();
    assert_eq!(
        sent[0].report_types[pmime::SBOM_REPORT].parameters["sbom_media_type"],
        pmime::SPDX_JSON
    );
    let cdx = h
        .report(
            &id,
            Some(mime::SBOM_REPORT),
            "?sbom_media_type=application%2Fvnd.cyclonedx%2Bjson",
        )
        .await;
    assert_eq!(cdx.status, 400, "CycloneDX was not asked for");
}

#[tokio::test]
async fn unknown_routes_answer_json_404() {
    let h = Harness::new(false, Ok(clean_response()));
    let response = h
        .app
        .clone()
        .oneshot(
            Request::get("/api/v2/whatever")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()[header::CONTENT_TYPE], mime::ERROR);
}
