//! The test double for a plugin (an in-test Scan server) and helpers to run the `sidescan`
//! binary against it.
//!
//! The double answers by image name: `missing...` is NOT_FOUND, `clean...` has no notices,
//! `hostile...` has two notices of different codes, `flood...` one notice standing for 9980;
//! anything else has one notice.

use std::{
    process::Output,
    sync::{Arc, Mutex},
};

use sidescan_proto::v1::{
    GetMetadataRequest, GetMetadataResponse, Image, Limits, Notice, Platform, Progress,
    ReportError, ReportStatus, ScanImageStreamResponse, ScanPhase, ScanReport, ScanRequest,
    ScanResponse, ScanVulnerability, Scanner, Severity, Summary, TypedReport,
    scan_image_stream_response::Event,
    scan_server::{Scan, ScanServer},
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, transport::Server};

/// A request as the plugin saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    /// `ScanImage` or `ScanImageStream`.
    pub rpc: &'static str,
    /// The request.
    pub request: ScanRequest,
    /// The `grpc-timeout` header, if any.
    pub grpc_timeout: Option<String>,
    /// The `x-request-id` header, if any.
    pub request_id: Option<String>,
}

/// The plugin double; it records every scan request.
#[derive(Clone, Default)]
pub(crate) struct Plugin {
    /// Scan requests in arrival order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Plugin {
    /// The last scan request.
    pub(crate) fn last(&self) -> Seen {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a scan request")
    }

    fn record(&self, rpc: &'static str, request: &Request<ScanRequest>) {
        let get = |k: &str| {
            request
                .metadata()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        self.seen.lock().expect("lock").push(Seen {
            rpc,
            request: request.get_ref().clone(),
            grpc_timeout: get("grpc-timeout"),
            request_id: get("x-request-id"),
        });
    }
}

/// The notices the double reports for `image` (see the module doc). Its summary leaves
/// `incomplete` unset, as a plugin of an older SDK would.
fn notices(image: &str) -> Vec<Notice> {
    let big = Notice {
        code: "file-too-large".into(),
        message: "file exceeds 100 MiB".into(),
        path: "/big.bin".into(),
        ..Default::default()
    };
    if image.starts_with("clean") {
        Vec::new()
    } else if image.starts_with("flood") {
        vec![Notice {
            code: "unsafe-path-skipped".into(),
            message: "unsafe-path-skipped: 9980 more".into(),
            count: 9980,
            ..Default::default()
        }]
    } else if image.starts_with("hostile") {
        let unsafe_path = Notice {
            code: "unsafe-path-skipped".into(),
            message: "entry escapes the root".into(),
            path: "/../etc/shadow".into(),
            count: 1,
            ..Default::default()
        };
        vec![unsafe_path, big]
    } else {
        vec![big]
    }
}

fn response(request: &ScanRequest) -> ScanResponse {
    let reports = request
        .report_types
        .keys()
        .map(|mime| {
            if mime.contains("sbom") {
                TypedReport {
                    mime_type: mime.clone(),
                    status: ReportStatus::Failed as i32,
                    error: Some(ReportError {
                        code: 9,
                        message: "no packages to list".into(),
                    }),
                    ..Default::default()
                }
            } else {
                TypedReport {
                    mime_type: mime.clone(),
                    status: ReportStatus::Succeeded as i32,
                    document: br#"{"findings":1}"#.to_vec(),
                    document_media_type: "application/json".into(),
                    ..Default::default()
                }
            }
        })
        .collect();
    ScanResponse {
        report: Some(ScanReport {
            image: Some(Image {
                registry: "127.0.0.1:5000".into(),
                repository: "app".into(),
                tag: "1.0".into(),
                digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111"
                    .into(),
                media_type: sidescan_proto::mime::OCI_MANIFEST.into(),
                ..Default::default()
            }),
            scanner: Some(Scanner {
                name: "test-plugin".into(),
                vendor: "tests".into(),
                version: "1.0.0".into(),
            }),
            vulnerabilities: vec![
                ScanVulnerability {
                    id: "CVE-2024-0001".into(),
                    package: "openssl".into(),
                    installed_version: "3.3.0-r0".into(),
                    fixed_version: "3.3.1-r1".into(),
                    severity: Severity::High as i32,
                    title: "A very long title that goes on and on and on well past sixty characters in length".into(),
                    kind: 1,
                    ..Default::default()
                },
                ScanVulnerability {
                    id: "Eicar-Test-Signature".into(),
                    path: "/eicar.com".into(),
                    severity: Severity::Low as i32,
                    kind: 2,
                    ..Default::default()
                },
            ],
            generated_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            summary: Some(Summary {
                total: 2,
                fixable: 1,
                max_severity: Severity::High as i32,
                high: 1,
                low: 1,
                ..Default::default()
            }),
            notices: notices(&request.image),
            platforms: vec![Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: String::new(),
            }],
        }),
        reports,
    }
}

#[tonic::async_trait]
impl Scan for Plugin {
    async fn get_metadata(
        &self,
        _request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        Ok(Response::new(GetMetadataResponse {
            scanner: Some(Scanner {
                name: "test-plugin".into(),
                vendor: "tests".into(),
                version: "1.0.0".into(),
            }),
            api_version: "sidescan.v1".into(),
            limits: Some(Limits {
                max_image_bytes: 1 << 30,
                ..Default::default()
            }),
            properties: [("engine.version".to_string(), "42".to_string())].into(),
            ..Default::default()
        }))
    }

    async fn scan_image(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<ScanResponse>, Status> {
        self.record("ScanImage", &request);
        if request.get_ref().image.contains("missing") {
            return Err(Status::not_found("manifest unknown: missing:1.0"));
        }
        Ok(Response::new(response(request.get_ref())))
    }

    type ScanImageStreamStream = ReceiverStream<Result<ScanImageStreamResponse, Status>>;

    async fn scan_image_stream(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<Self::ScanImageStreamStream>, Status> {
        self.record("ScanImageStream", &request);
        if request.get_ref().image.contains("missing") {
            return Err(Status::not_found("manifest unknown: missing:1.0"));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let result = response(request.get_ref());
        tokio::spawn(async move {
            let progress = ScanImageStreamResponse {
                event: Some(Event::Progress(Progress {
                    phase: ScanPhase::Downloading as i32,
                    bytes_done: 10,
                    bytes_total: 20,
                    ..Default::default()
                })),
            };
            let _ = tx.send(Ok(progress)).await;
            let _ = tx
                .send(Ok(ScanImageStreamResponse {
                    event: Some(Event::Result(result)),
                }))
                .await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A server with health (SERVING or NOT_SERVING) and the double.
pub(crate) async fn router(plugin: Plugin, serving: bool) -> tonic::transport::server::Router {
    let (reporter, health) = tonic_health::server::health_reporter();
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter
        .set_service_status(sidescan_proto::SCAN_SERVICE_NAME, status)
        .await;
    Server::builder()
        .add_service(health)
        .add_service(ScanServer::new(plugin))
}

/// Starts the double on 127.0.0.1; its URL and handle.
pub(crate) async fn start(serving: bool) -> (String, Plugin) {
    let plugin = Plugin::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = router(plugin.clone(), serving).await;
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    (format!("http://{addr}"), plugin)
}

/// Runs the `sidescan` binary with `args` and `env` (registry credentials cleared).
pub(crate) async fn sidescan(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidescan"));
    command
        .args(args)
        .env_remove("SIDESCAN_REGISTRY_USERNAME")
        .env_remove("SIDESCAN_REGISTRY_PASSWORD")
        .env_remove("SIDESCAN_REGISTRY_TOKEN");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("run sidescan")
}

/// Bytes as (lossy) text.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
