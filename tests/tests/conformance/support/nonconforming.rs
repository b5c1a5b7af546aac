//! A deliberately NON-conforming plugin: a small tonic server that reports clean when the pull
//! fails, answers INTERNAL for a missing manifest, validates nothing, never verifies digests, and
//! keeps pulling after the caller's deadline (the work runs in a detached task). It finds EICAR
//! the naive way: layers read with the `tar` crate (which gives header-only types a body and keeps
//! the first of duplicate PAX records), `..` paths and whiteouts skipped silently, compression
//! taken from the media type, results cached by blob digest alone. It finds plain EICAR; the
//! suite must fail it on the fail-closed fixtures that hide EICAR from such a reader.

use std::collections::HashMap;
use std::io::Read as _;
use std::pin::Pin;
use std::sync::Mutex;

use sidescan_proto::mime;
use sidescan_proto::v1::scan_server::{Scan, ScanServer};
use sidescan_proto::v1::{
    Capability, FindingKind, GetMetadataRequest, GetMetadataResponse, Image, ReportStatus,
    ScanImageStreamResponse, ScanReport, ScanRequest, ScanResponse, ScanVulnerability, Scanner,
    Severity, Summary, TypedReport, scan_image_stream_response::Event,
};
use sidescan_testkit::fixtures::EICAR;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The running bad plugin; stops on drop.
pub(crate) struct BadPlugin {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl BadPlugin {
    /// Starts it on 127.0.0.1 (a free port) in the current runtime.
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status(
                sidescan_proto::SCAN_SERVICE_NAME,
                tonic_health::ServingStatus::Serving,
            )
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(sidescan_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("reflection");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(health)
                .add_service(reflection)
                .add_service(ScanServer::new(Bad))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
        });
        BadPlugin {
            addr,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for BadPlugin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Bad;

/// EICAR paths per layer, keyed by blob digest alone (not media type, not diff_id).
static CACHE: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);

/// Paths of EICAR files in one layer blob, read naively; errors end the read silently.
fn naive_eicar_paths(blob: &[u8], media_type: &str) -> Vec<String> {
    if blob.len() > 4 << 20 {
        return vec![];
    }
    let raw: Box<dyn std::io::Read + '_> = if media_type.contains("gzip") {
        Box::new(flate2::read::GzDecoder::new(blob))
    } else {
        Box::new(blob)
    };
    let mut archive = tar::Archive::new(raw.take(16 << 20));
    let mut found = vec![];
    let Ok(entries) = archive.entries() else {
        return found;
    };
    for entry in entries {
        let Ok(mut entry) = entry else { break };
        let Ok(path) = entry.path().map(|p| p.into_owned()) else {
            continue;
        };
        let unsafe_path = path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
        let whiteout = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".wh."));
        if unsafe_path || whiteout || !entry.header().entry_type().is_file() {
            continue;
        }
        let mut content = vec![];
        if entry.read_to_end(&mut content).is_ok() && content == EICAR {
            found.push(format!("/{}", path.display()));
        }
    }
    found
}

fn eicar_finding(path: String, layer_digest: &str) -> ScanVulnerability {
    ScanVulnerability {
        id: "Eicar-Test-Signature".into(),
        severity: Severity::High as i32,
        kind: FindingKind::Malware as i32,
        path,
        layer_digest: layer_digest.into(),
        ..Default::default()
    }
}

fn scanner() -> Scanner {
    Scanner {
        name: "nonconforming-plugin".into(),
        vendor: "sidescan conformance tests".into(),
        version: "0.1.0".into(),
    }
}

fn clean(image: Image) -> ScanReport {
    report(image, vec![])
}

fn report(image: Image, findings: Vec<ScanVulnerability>) -> ScanReport {
    let high = findings.len() as u32;
    let summary = Summary {
        total: high,
        high,
        max_severity: if high > 0 { Severity::High as i32 } else { 0 },
        ..Default::default()
    };
    ScanReport {
        image: Some(image),
        scanner: Some(scanner()),
        summary: Some(summary),
        vulnerabilities: findings,
        ..Default::default()
    }
}

/// Pulls like a naive client: no validation, no verification, errors swallowed.
async fn pull(request: ScanRequest) -> Result<ScanResponse, Status> {
    let registry = request.registry.clone().unwrap_or_default();
    let base = registry.url.trim_end_matches('/').to_string();
    let (repo, reference) = match request.image.split_once('@') {
        Some((repo, digest)) => (repo.to_string(), digest.to_string()),
        None => match request.image.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
            _ => (request.image.clone(), "latest".to_string()),
        },
    };
    let mut image = Image {
        repository: repo.clone(),
        tag: reference.clone(),
        ..Default::default()
    };
    let reports = request
        .report_types
        .keys()
        .map(|m| TypedReport {
            mime_type: m.clone(),
            status: ReportStatus::Succeeded as i32,
            document: b"{}".to_vec(),
            document_media_type: "application/json".into(),
            ..Default::default()
        })
        .collect();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| Status::internal(e.to_string()))?;
    let auth = |r: reqwest::RequestBuilder| {
        if registry.authorization.is_empty() {
            r
        } else {
            r.header("authorization", registry.authorization.clone())
        }
    };
    let answer = |image: Image, reports| {
        Ok(ScanResponse {
            report: Some(clean(image)),
            reports,
        })
    };
    let manifest = auth(http.get(format!("{base}/v2/{repo}/manifests/{reference}")))
        .header(
            "accept",
            [
                mime::OCI_MANIFEST,
                mime::OCI_INDEX,
                mime::DOCKER_MANIFEST,
                mime::DOCKER_MANIFEST_LIST,
            ]
            .join(", "),
        )
        .send()
        .await;
    let Ok(manifest) = manifest else {
        // Unreachable registry: "clean".
        return answer(image, reports);
    };
    if manifest.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(Status::internal("manifest not found"));
    }
    if !manifest.status().is_success() {
        return answer(image, reports);
    }
    let media_type = manifest
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Ok(body) = manifest.bytes().await else {
        return answer(image, reports);
    };
    image.digest = sidescan_testkit::digest::sha256_digest(&body);
    image.media_type = media_type;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let layers = json["layers"].as_array().cloned().unwrap_or_default();
    let mut findings = vec![];
    for layer in &layers {
        let (Some(digest), media_type) = (
            layer["digest"].as_str(),
            layer["mediaType"].as_str().unwrap_or_default(),
        ) else {
            continue;
        };
        let cached = CACHE
            .lock()
            .expect("cache lock")
            .get_or_insert_with(HashMap::new)
            .get(digest)
            .cloned();
        let paths = match cached {
            Some(paths) => paths,
            None => {
                let Ok(blob) = auth(http.get(format!("{base}/v2/{repo}/blobs/{digest}")))
                    .send()
                    .await
                else {
                    continue;
                };
                let Ok(bytes) = blob.bytes().await else {
                    continue;
                };
                let paths = naive_eicar_paths(&bytes, media_type);
                CACHE
                    .lock()
                    .expect("cache lock")
                    .get_or_insert_with(HashMap::new)
                    .insert(digest.to_owned(), paths.clone());
                paths
            }
        };
        findings.extend(paths.into_iter().map(|p| eicar_finding(p, digest)));
    }
    Ok(ScanResponse {
        report: Some(report(image, findings)),
        reports,
    })
}

#[tonic::async_trait]
impl Scan for Bad {
    async fn get_metadata(
        &self,
        _: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        Ok(Response::new(GetMetadataResponse {
            scanner: Some(scanner()),
            api_version: sidescan_proto::API_VERSION.into(),
            capabilities: vec![
                Capability {
                    r#type: "vulnerability".into(),
                    consumes_mime_types: vec![mime::OCI_MANIFEST.into()],
                    produces_mime_types: vec![mime::VULNERABILITY_REPORT.into()],
                },
                Capability {
                    r#type: "malware".into(),
                    consumes_mime_types: vec![mime::OCI_MANIFEST.into()],
                    produces_mime_types: vec![mime::MALWARE_REPORT.into()],
                },
            ],
            ..Default::default()
        }))
    }

    async fn scan_image(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<ScanResponse>, Status> {
        // Detached: when the deadline passes tonic drops this future, the pull goes on.
        let work = tokio::spawn(pull(request.into_inner()));
        match work.await {
            Ok(result) => result.map(Response::new),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }

    type ScanImageStreamStream =
        Pin<Box<dyn Stream<Item = Result<ScanImageStreamResponse, Status>> + Send>>;

    async fn scan_image_stream(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<Self::ScanImageStreamStream>, Status> {
        let result = tokio::spawn(pull(request.into_inner()))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        let event = ScanImageStreamResponse {
            event: Some(Event::Result(result)),
        };
        Ok(Response::new(Box::pin(tokio_stream::once(Ok(event)))))
    }
}
