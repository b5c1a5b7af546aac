//! The `sidescan` binary against an in-test Scan server (a test double for the plugin): flags
//! reach the request, output formats, exit codes.

use std::{
    path::Path,
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
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream, UnixListenerStream};
use tonic::{Request, Response, Status, transport::Server};

/// A request as the plugin saw it.
#[derive(Clone, Debug)]
struct Seen {
    rpc: &'static str,
    request: ScanRequest,
    grpc_timeout: Option<String>,
    request_id: Option<String>,
}

#[derive(Clone, Default)]
struct Plugin {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Plugin {
    fn last(&self) -> Seen {
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
            notices: vec![Notice {
                code: "file-too-large".into(),
                message: "file exceeds 100 MiB".into(),
                path: "/big.bin".into(),
                ..Default::default()
            }],
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

async fn router(plugin: Plugin, serving: bool) -> tonic::transport::server::Router {
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

async fn start(serving: bool) -> (String, Plugin) {
    let plugin = Plugin::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = router(plugin.clone(), serving).await;
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    (format!("http://{addr}"), plugin)
}

async fn sidescan(args: &[&str], env: &[(&str, &str)]) -> Output {
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn metadata_as_table_and_canonical_json() {
    let (url, _plugin) = start(true).await;
    let out = sidescan(&["metadata", "--plugin", &url], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "test-plugin",
        "sidescan.v1",
        "max_image_bytes",
        "engine.version",
    ] {
        assert!(stdout.contains(expected), "{expected} missing:\n{stdout}");
    }

    let out = sidescan(&["--plugin", &url, "metadata", "--format", "json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["apiVersion"], "sidescan.v1");
    assert_eq!(json["scanner"]["name"], "test-plugin");
    // uint64 as a string, lowerCamelCase names.
    assert_eq!(json["limits"]["maxImageBytes"], "1073741824");
}

#[tokio::test]
async fn scan_json_is_canonical_and_identical_for_both_rpcs() {
    let (url, _plugin) = start(true).await;
    let base = [
        "scan",
        "app:1.0",
        "--plugin",
        &url,
        "--format",
        "json",
        "--report-type",
        "vulnerability",
    ];
    let unary = sidescan(&[&base[..], &["--rpc", "unary"]].concat(), &[]).await;
    let stream = sidescan(&[&base[..], &["--rpc", "stream"]].concat(), &[]).await;
    let auto = sidescan(&base, &[]).await;
    for out in [&unary, &stream, &auto] {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // Not a terminal: nothing on stderr.
        assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
    }
    assert_eq!(unary.stdout, stream.stdout);
    assert_eq!(unary.stdout, auto.stdout);

    let json: serde_json::Value = serde_json::from_slice(&unary.stdout).expect("json");
    let report = &json["report"];
    assert_eq!(report["generatedAt"], "2023-11-14T22:13:20Z");
    assert_eq!(report["vulnerabilities"][0]["severity"], "SEVERITY_HIGH");
    assert_eq!(report["vulnerabilities"][0]["installedVersion"], "3.3.0-r0");
    assert_eq!(report["vulnerabilities"][1]["kind"], "FINDING_KIND_MALWARE");
    assert_eq!(report["notices"][0]["code"], "file-too-large");
    let typed = &json["reports"][0];
    assert_eq!(typed["status"], "REPORT_STATUS_SUCCEEDED");
    // bytes in base64.
    assert_eq!(typed["document"], "eyJmaW5kaW5ncyI6MX0=");
}

#[tokio::test]
async fn scan_table_shows_findings_summary_and_notices() {
    let (url, _plugin) = start(true).await;
    let out = sidescan(&["scan", "app:1.0", "--plugin", &url], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "127.0.0.1:5000/app:1.0@sha256:1111",
        "linux/amd64",
        "test-plugin 1.0.0 (tests)",
        "CVE-2024-0001",
        "3.3.0-r0 → 3.3.1-r1",
        "/eicar.com",
        "malware",
        "Summary: 2 findings",
        "max severity HIGH",
        "NOTICES: 1",
        "WARNING: not everything was scanned",
        "file-too-large",
        "…",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    // The server's order is kept: HIGH before LOW.
    assert!(stdout.find("CVE-2024-0001") < stdout.find("Eicar-Test-Signature"));
}

#[tokio::test]
async fn fail_on_sets_exit_code_one() {
    let (url, _plugin) = start(true).await;
    for (threshold, code) in [("unknown", 1), ("low", 1), ("high", 1), ("critical", 0)] {
        let out = sidescan(
            &["scan", "app:1.0", "--plugin", &url, "--fail-on", threshold],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(code), "--fail-on {threshold}");
        assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    }
}

#[tokio::test]
async fn rpc_errors_exit_two_with_the_code_name() {
    let (url, _plugin) = start(true).await;
    for rpc in ["unary", "stream"] {
        let out = sidescan(
            &["scan", "missing:1.0", "--plugin", &url, "--rpc", rpc],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            text(&out.stderr),
            "error: NOT_FOUND: manifest unknown: missing:1.0\n"
        );
        assert!(out.stdout.is_empty());
    }
    let out = sidescan(&["scan", "app", "--plugin", "http://127.0.0.1:1"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: UNAVAILABLE: "),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn flags_reach_the_request() {
    let (url, plugin) = start(true).await;
    let out = sidescan(
        &[
            "scan",
            "app:1.0",
            "--plugin",
            &url,
            "--registry",
            "http://127.0.0.1:5000",
            "--insecure",
            "--platform",
            "linux/arm64/v8",
            "--report-type",
            "malware",
            "--report-param",
            "depth=2",
            "--timeout",
            "5m",
            "--request-id",
            "req-7",
        ],
        &[
            ("SIDESCAN_REGISTRY_USERNAME", "alice"),
            ("SIDESCAN_REGISTRY_PASSWORD", "s3cret"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("s3cret"));
    let seen = plugin.last();
    let registry = seen.request.registry.expect("registry");
    assert_eq!(registry.url, "http://127.0.0.1:5000");
    assert_eq!(registry.authorization, "Basic YWxpY2U6czNjcmV0");
    assert!(registry.insecure);
    let platform = seen.request.platform.expect("platform");
    assert_eq!(
        (
            platform.os.as_str(),
            platform.architecture.as_str(),
            platform.variant.as_str()
        ),
        ("linux", "arm64", "v8")
    );
    let params = &seen.request.report_types[sidescan_proto::mime::MALWARE_REPORT];
    assert_eq!(params.parameters["depth"], "2");
    assert_eq!(seen.request_id.as_deref(), Some("req-7"));
    let timeout = seen.grpc_timeout.expect("grpc-timeout");
    assert!(
        timeout.ends_with('m')
            || timeout.ends_with('u')
            || timeout.ends_with('S')
            || timeout.ends_with('M'),
        "{timeout}"
    );

    let out = sidescan(
        &["scan", "app:1.0", "--plugin", &url, "--token", "tkn"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        plugin
            .last()
            .request
            .registry
            .expect("registry")
            .authorization,
        "Bearer tkn"
    );

    // Bad flags: exit 2 before any call.
    let before = plugin.seen.lock().expect("lock").len();
    for args in [
        vec![
            "scan",
            "app",
            "--plugin",
            url.as_str(),
            "--platform",
            "linux",
        ],
        vec!["scan", "app", "--plugin", url.as_str(), "--username", "bob"],
        vec![
            "scan",
            "app",
            "--plugin",
            url.as_str(),
            "--report-type",
            "virus",
        ],
    ] {
        let out = sidescan(&args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).starts_with("error: "),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(plugin.seen.lock().expect("lock").len(), before);
}

#[tokio::test]
async fn plugin_config_supplies_plugin_and_registry() {
    let (url, plugin) = start(true).await;
    let port = url.rsplit(':').next().expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("plugin_config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"name": "Test", "integrationPoints": [{{"interface": "VulnScanner",
                "grpcConnection": {{"addr": "127.0.0.1", "port": {port}}},
                "options": {{"zot-addr": "localhost:8080"}}}}]}}"#
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path");
    let out = sidescan(&["scan", "app:1.0", "--plugin-config", config], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        plugin.last().request.registry.expect("registry").url,
        "localhost:8080"
    );

    let out = sidescan(
        &[
            "scan",
            "app:1.0",
            "--plugin-config",
            config,
            "--registry",
            "http://other:5000",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        plugin.last().request.registry.expect("registry").url,
        "http://other:5000"
    );

    let out = sidescan(&["health", "--plugin-config", config], &[]).await;
    assert_eq!(text(&out.stdout), "SERVING\n");
}

#[tokio::test]
async fn output_dir_saves_documents_and_failed_reports_exit_two() {
    let (url, _plugin) = start(true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("reports");
    let out = sidescan(
        &[
            "scan",
            "app:1.0",
            "--plugin",
            &url,
            "--report-type",
            "vulnerability",
            "--report-type",
            "malware",
            "--output-dir",
            out_dir.to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for name in ["vulnerability.report.json", "malware.report.json"] {
        let saved = std::fs::read(out_dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(saved, br#"{"findings":1}"#);
    }
    assert!(text(&out.stdout).contains("saved to"));

    let out = sidescan(
        &[
            "scan",
            "app:1.0",
            "--plugin",
            &url,
            "--report-type",
            "sbom",
            "--format",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok());
    assert_eq!(
        text(&out.stderr),
        "error: FAILED_PRECONDITION: report \"application/vnd.security.sbom.report+json; version=1.0\" failed: no packages to list\n"
    );
}

#[tokio::test]
async fn health_exit_codes() {
    let (up, _p) = start(true).await;
    let out = sidescan(&["health", "--plugin", &up], &[]).await;
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "SERVING\n".to_string())
    );

    let (down, _p) = start(false).await;
    let out = sidescan(&["health", "--plugin", &down], &[]).await;
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(2), "NOT_SERVING\n".to_string())
    );
}

#[tokio::test]
async fn unix_socket_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("plugin.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let router = router(Plugin::default(), true).await;
    tokio::spawn(router.serve_with_incoming(UnixListenerStream::new(listener)));
    let url = format!("unix:{}", Path::new(&socket).display());
    let out = sidescan(
        &["scan", "app:1.0", "--plugin", &url, "--fail-on", "high"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

/// With stderr on a terminal (a pty from util-linux `script`), `scan` streams with a progress bar
/// and prints the same result.
#[tokio::test]
async fn terminal_stderr_streams_with_progress_and_same_result() {
    let script = Path::new("/usr/bin/script");
    assert!(
        script.exists(),
        "this test needs util-linux `script`: apt-get install -y bsdutils"
    );
    let (url, plugin) = start(true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file = dir.path().join("out.json");
    let command = format!(
        "{} scan app:1.0 --plugin {url} --format json > {}",
        env!("CARGO_BIN_EXE_sidescan"),
        out_file.display()
    );
    let status = tokio::process::Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run script");
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stdout));
    assert_eq!(plugin.last().rpc, "ScanImageStream");
    let streamed = std::fs::read(&out_file).expect("output");

    let unary = sidescan(
        &["scan", "app:1.0", "--plugin", &url, "--format", "json"],
        &[],
    )
    .await;
    assert_eq!(plugin.last().rpc, "ScanImage");
    assert_eq!(streamed, unary.stdout);
}
