//! `PluginClient` against a small in-test Scan server (a test double for the transport), on
//! 127.0.0.1:0 and on a unix socket, in plain http, TLS and mutual TLS.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sidescan_proto::{
    client::{ClientError, ClientOptions, PluginClient, ScanEvent, ServingStatus, TlsOptions},
    v1::{
        Capability, Features, GetMetadataRequest, GetMetadataResponse, Image, Progress,
        ScanImageStreamResponse, ScanPhase, ScanReport, ScanRequest, ScanResponse,
        ScanVulnerability, Scanner, Severity,
        scan_image_stream_response::Event,
        scan_server::{Scan, ScanServer},
    },
};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::{
    StreamExt,
    wrappers::{ReceiverStream, TcpListenerStream, UnixListenerStream},
};
use tonic::{
    Code, Request, Response, Status,
    transport::{Certificate, Identity, Server, ServerTlsConfig},
};

/// What the server saw of one call.
#[derive(Clone, Debug, Default)]
struct Seen {
    rpc: &'static str,
    grpc_timeout: Option<String>,
    request_id: Option<String>,
    image: String,
}

#[derive(Clone, Default)]
struct TestPlugin {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestPlugin {
    fn record<T>(&self, rpc: &'static str, request: &Request<T>, image: &str) {
        let get = |key: &str| {
            request
                .metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        self.seen.lock().expect("lock").push(Seen {
            rpc,
            grpc_timeout: get("grpc-timeout"),
            request_id: get("x-request-id"),
            image: image.to_string(),
        });
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

fn metadata_response() -> GetMetadataResponse {
    GetMetadataResponse {
        scanner: Some(Scanner {
            name: "test-plugin".into(),
            vendor: "sidescan tests".into(),
            version: "1.2.3".into(),
        }),
        api_version: sidescan_proto::API_VERSION.into(),
        capabilities: vec![Capability {
            r#type: "malware".into(),
            consumes_mime_types: vec![sidescan_proto::mime::OCI_MANIFEST.into()],
            produces_mime_types: vec![sidescan_proto::mime::MALWARE_REPORT.into()],
        }],
        features: Some(Features {
            streaming: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn scan_response(image: &str) -> ScanResponse {
    ScanResponse {
        report: Some(ScanReport {
            image: Some(Image {
                repository: image.into(),
                tag: "1.0".into(),
                digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
                    .into(),
                ..Default::default()
            }),
            vulnerabilities: vec![ScanVulnerability {
                id: "Eicar-Test-Signature".into(),
                severity: Severity::High as i32,
                path: "/eicar.com".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        reports: vec![],
    }
}

fn progress(phase: ScanPhase, done: u64) -> ScanImageStreamResponse {
    ScanImageStreamResponse {
        event: Some(Event::Progress(Progress {
            phase: phase as i32,
            bytes_done: done,
            bytes_total: 300,
            layers_done: 0,
            layers_total: 1,
            message: String::new(),
        })),
    }
}

#[tonic::async_trait]
impl Scan for TestPlugin {
    async fn get_metadata(
        &self,
        request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        self.record("GetMetadata", &request, "");
        Ok(Response::new(metadata_response()))
    }

    async fn scan_image(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<ScanResponse>, Status> {
        let image = request.get_ref().image.clone();
        self.record("ScanImage", &request, &image);
        match image.as_str() {
            "missing" => Err(Status::not_found("repository missing not found")),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(Response::new(scan_response(&image)))
            }
            _ => Ok(Response::new(scan_response(&image))),
        }
    }

    type ScanImageStreamStream = ReceiverStream<Result<ScanImageStreamResponse, Status>>;

    async fn scan_image_stream(
        &self,
        request: Request<ScanRequest>,
    ) -> Result<Response<Self::ScanImageStreamStream>, Status> {
        let image = request.get_ref().image.clone();
        self.record("ScanImageStream", &request, &image);
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let result = ScanImageStreamResponse {
                event: Some(Event::Result(scan_response(&image))),
            };
            let events = match image.as_str() {
                "no-result" => vec![Ok(progress(ScanPhase::Resolving, 0))],
                "two-results" => vec![Ok(result.clone()), Ok(result)],
                "empty-event" => vec![Ok(ScanImageStreamResponse { event: None })],
                "fails-midway" => vec![
                    Ok(progress(ScanPhase::Downloading, 100)),
                    Err(Status::data_loss("blob digest mismatch")),
                ],
                "slow" => {
                    let _ = tx.send(Ok(progress(ScanPhase::Queued, 0))).await;
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    vec![Ok(result)]
                }
                _ => vec![
                    Ok(progress(ScanPhase::Resolving, 0)),
                    Ok(progress(ScanPhase::Downloading, 100)),
                    Ok(progress(ScanPhase::Downloading, 300)),
                    Ok(progress(ScanPhase::Scanning, 300)),
                    Ok(result),
                ],
            };
            for event in events {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn router(
    plugin: TestPlugin,
    tls: Option<ServerTlsConfig>,
) -> tonic::transport::server::Router {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(
            sidescan_proto::SCAN_SERVICE_NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).expect("server tls config");
    }
    builder
        .add_service(health)
        .add_service(ScanServer::new(plugin))
}

async fn start_tcp(tls: Option<ServerTlsConfig>) -> (SocketAddr, TestPlugin) {
    let plugin = TestPlugin::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = router(plugin.clone(), tls).await;
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    (addr, plugin)
}

async fn start_unix(path: &Path) -> TestPlugin {
    let plugin = TestPlugin::default();
    let listener = UnixListener::bind(path).expect("bind unix socket");
    let router = router(plugin.clone(), None).await;
    tokio::spawn(router.serve_with_incoming(UnixListenerStream::new(listener)));
    plugin
}

fn request(image: &str) -> ScanRequest {
    ScanRequest {
        image: image.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn metadata_over_tcp() {
    let (addr, _plugin) = start_tcp(None).await;
    let client = PluginClient::connect(&format!("http://{addr}"), ClientOptions::default())
        .await
        .expect("connect");
    assert_eq!(
        client.metadata().await.expect("metadata"),
        metadata_response()
    );
}

#[tokio::test]
async fn scan_over_tcp_and_unix_socket() {
    let (addr, tcp_plugin) = start_tcp(None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("plugin.sock");
    let unix_plugin = start_unix(&socket).await;

    let tcp = PluginClient::connect(&format!("http://{addr}"), ClientOptions::default())
        .await
        .expect("connect tcp");
    let unix = PluginClient::connect(
        &format!("unix:{}", socket.display()),
        ClientOptions::default(),
    )
    .await
    .expect("connect unix");
    let from_tcp = tcp.scan(request("app")).await.expect("scan over tcp");
    let from_unix = unix.scan(request("app")).await.expect("scan over unix");
    assert_eq!(from_tcp, scan_response("app"));
    assert_eq!(from_unix, from_tcp);
    assert_eq!(tcp_plugin.seen()[0].image, "app");
    assert_eq!(unix_plugin.seen()[0].image, "app");

    // Lazy clients over both transports too.
    let lazy_unix = PluginClient::connect_lazy(
        &format!("unix://{}", socket.display()),
        ClientOptions::default(),
    )
    .expect("lazy unix");
    assert_eq!(
        lazy_unix.metadata().await.expect("metadata"),
        metadata_response()
    );
}

#[tokio::test]
async fn scan_stream_sends_progress_then_exactly_one_result() {
    let (addr, _plugin) = start_tcp(None).await;
    let client = PluginClient::connect(&format!("http://{addr}"), ClientOptions::default())
        .await
        .expect("connect");
    let events: Vec<ScanEvent> = client
        .scan_stream(request("app"))
        .await
        .expect("stream")
        .collect::<Result<_, _>>()
        .await
        .expect("events");
    assert_eq!(events.len(), 5);
    assert!(
        events[..4]
            .iter()
            .all(|e| matches!(e, ScanEvent::Progress(_)))
    );
    let ScanEvent::Result(result) = &events[4] else {
        panic!("last event is not the result: {events:?}");
    };
    // Identical to the unary answer.
    assert_eq!(**result, client.scan(request("app")).await.expect("scan"));

    let mut phases = Vec::new();
    let result = client
        .scan_stream(request("app"))
        .await
        .expect("stream")
        .result(|p| phases.push(p.phase))
        .await
        .expect("result");
    assert_eq!(result, scan_response("app"));
    assert_eq!(
        phases,
        [
            ScanPhase::Resolving as i32,
            ScanPhase::Downloading as i32,
            ScanPhase::Downloading as i32,
            ScanPhase::Scanning as i32
        ]
    );
}

#[tokio::test]
async fn scan_stream_contract_violations_are_errors() {
    let (addr, _plugin) = start_tcp(None).await;
    let client = PluginClient::connect(&format!("http://{addr}"), ClientOptions::default())
        .await
        .expect("connect");
    for image in ["no-result", "two-results", "empty-event"] {
        let err = client
            .scan_stream(request(image))
            .await
            .expect("stream")
            .result(|_| {})
            .await
            .expect_err(image);
        assert!(matches!(err, ClientError::Protocol(_)), "{image}: {err}");
    }
    let err = client
        .scan_stream(request("fails-midway"))
        .await
        .expect("stream")
        .result(|_| {})
        .await
        .expect_err("fails-midway");
    assert_eq!(err.code(), Some(Code::DataLoss));
}

#[tokio::test]
async fn status_codes_come_through() {
    let (addr, _plugin) = start_tcp(None).await;
    let client = PluginClient::connect(&format!("http://{addr}"), ClientOptions::default())
        .await
        .expect("connect");
    let err = client
        .scan(request("missing"))
        .await
        .expect_err("not found");
    assert_eq!(err.code(), Some(Code::NotFound));
    assert_eq!(err.to_string(), "NOT_FOUND: repository missing not found");
}

/// Parses a grpc-timeout value ("<digits><unit>") into a duration.
fn parse_grpc_timeout(value: &str) -> Duration {
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().expect("grpc-timeout digits");
    match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        other => panic!("bad grpc-timeout unit {other}"),
    }
}

#[tokio::test]
async fn deadline_is_propagated_and_enforced() {
    let (addr, plugin) = start_tcp(None).await;
    let url = format!("http://{addr}");
    let client = PluginClient::connect(
        &url,
        ClientOptions::default().timeout(Duration::from_secs(30)),
    )
    .await
    .expect("connect");
    client.metadata().await.expect("metadata");
    client.scan(request("app")).await.expect("scan");
    client
        .scan_stream(request("app"))
        .await
        .expect("stream")
        .result(|_| {})
        .await
        .expect("stream result");
    let seen = plugin.seen();
    assert_eq!(seen.len(), 3);
    for call in &seen {
        let timeout = call
            .grpc_timeout
            .as_deref()
            .unwrap_or_else(|| panic!("{} without grpc-timeout", call.rpc));
        let timeout = parse_grpc_timeout(timeout);
        assert!(
            timeout <= Duration::from_secs(30) && timeout > Duration::from_secs(25),
            "{}: {timeout:?}",
            call.rpc
        );
    }

    // No timeout: no grpc-timeout header.
    let no_deadline = client.with_timeout(None);
    no_deadline.metadata().await.expect("metadata");
    assert_eq!(plugin.seen()[3].grpc_timeout, None);

    // A short deadline ends a slow unary call and a slow stream with DEADLINE_EXCEEDED.
    let short = client.with_timeout(Some(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    let err = short.scan(request("slow")).await.expect_err("slow scan");
    assert_eq!(err.code(), Some(Code::DeadlineExceeded), "{err}");
    let err = short
        .scan_stream(request("slow"))
        .await
        .expect("stream")
        .result(|_| {})
        .await
        .expect_err("slow stream");
    assert_eq!(err.code(), Some(Code::DeadlineExceeded), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn request_id_is_sent_as_metadata() {
    let (addr, plugin) = start_tcp(None).await;
    let url = format!("http://{addr}");
    let client = PluginClient::connect(&url, ClientOptions::default().request_id("req-42"))
        .await
        .expect("connect");
    client.metadata().await.expect("metadata");
    client.scan(request("app")).await.expect("scan");
    client
        .scan_stream(request("app"))
        .await
        .expect("stream")
        .result(|_| {})
        .await
        .expect("result");
    client
        .with_request_id(Some("req-43"))
        .expect("valid id")
        .metadata()
        .await
        .expect("metadata");
    client
        .with_request_id(None)
        .expect("no id")
        .metadata()
        .await
        .expect("metadata");
    let ids: Vec<_> = plugin.seen().into_iter().map(|s| s.request_id).collect();
    assert_eq!(
        ids,
        [
            Some("req-42".to_string()),
            Some("req-42".to_string()),
            Some("req-42".to_string()),
            Some("req-43".to_string()),
            None
        ]
    );
    assert!(matches!(
        client.with_request_id(Some("bad\nid")),
        Err(ClientError::InvalidRequestId(_))
    ));
}

#[tokio::test]
async fn health_reports_serving() {
    let (addr, _plugin) = start_tcp(None).await;
    let client = PluginClient::connect(&format!("http://{addr}"), ClientOptions::default())
        .await
        .expect("connect");
    assert_eq!(
        client.health().await.expect("health"),
        ServingStatus::Serving
    );
    assert_eq!(ServingStatus::NotServing.to_string(), "NOT_SERVING");
}

#[tokio::test]
async fn unreachable_plugin_is_a_connect_error_or_unavailable() {
    // Bind then drop to get a port nobody listens on.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    let url = format!("http://{addr}");
    let err = PluginClient::connect(&url, ClientOptions::default())
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert_eq!(err.code(), Some(Code::Unavailable));

    let lazy = PluginClient::connect_lazy(&url, ClientOptions::default()).expect("lazy");
    let err = lazy.metadata().await.expect_err("nobody listens");
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let err = PluginClient::connect(
        &format!("unix:{}", dir.path().join("none.sock").display()),
        ClientOptions::default(),
    )
    .await
    .expect_err("no socket");
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
}

/// A test CA with a server certificate for localhost/127.0.0.1 and a client certificate.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    other_ca: String,
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca cert")
}

fn pki() -> Pki {
    let ca = make_ca("sidescan test CA");
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names.clone()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        vec!["sidescan-host".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    Pki {
        ca: ca.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
        other_ca: make_ca("another CA").pem(),
    }
}

fn tls_client(ca: &str) -> TlsOptions {
    TlsOptions {
        ca_cert_pem: Some(ca.as_bytes().to_vec()),
        ..Default::default()
    }
}

#[tokio::test]
async fn tls_with_ca_and_domain_override() {
    let pki = pki();
    let server =
        ServerTlsConfig::new().identity(Identity::from_pem(&pki.server_cert, &pki.server_key));
    let (addr, _plugin) = start_tcp(Some(server)).await;
    let port = addr.port();

    for url in [
        format!("https://127.0.0.1:{port}"),
        format!("https://localhost:{port}"),
    ] {
        let client = PluginClient::connect(&url, ClientOptions::default().tls(tls_client(&pki.ca)))
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            client.metadata().await.expect("metadata"),
            metadata_response()
        );
    }

    // Connecting by IP while verifying the name "localhost".
    let client = PluginClient::connect(
        &format!("https://127.0.0.1:{port}"),
        ClientOptions::default().tls(tls_client(&pki.ca).domain("localhost")),
    )
    .await
    .expect("domain override");
    assert_eq!(
        client.scan(request("app")).await.expect("scan"),
        scan_response("app")
    );

    // A name the certificate does not carry, or another CA, is refused.
    let wrong_name = PluginClient::connect(
        &format!("https://127.0.0.1:{port}"),
        ClientOptions::default().tls(tls_client(&pki.ca).domain("plugin.example")),
    )
    .await;
    assert!(wrong_name.is_err(), "wrong domain accepted");
    let wrong_ca = PluginClient::connect(
        &format!("https://127.0.0.1:{port}"),
        ClientOptions::default().tls(tls_client(&pki.other_ca)),
    )
    .await;
    assert!(
        matches!(wrong_ca, Err(ClientError::Connect { .. })),
        "untrusted server accepted"
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let pki = pki();
    let server = ServerTlsConfig::new()
        .identity(Identity::from_pem(&pki.server_cert, &pki.server_key))
        .client_ca_root(Certificate::from_pem(&pki.ca));
    let (addr, _plugin) = start_tcp(Some(server)).await;
    let url = format!("https://localhost:{}", addr.port());

    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write pem");
        path
    };
    let (ca, cert, key) = (
        write("ca.pem", &pki.ca),
        write("client.pem", &pki.client_cert),
        write("client.key", &pki.client_key),
    );
    let tls = TlsOptions::from_files(Some(&ca), Some(&cert), Some(&key)).expect("read pem files");
    let client = PluginClient::connect(&url, ClientOptions::default().tls(tls))
        .await
        .expect("mtls connect");
    assert_eq!(
        client.metadata().await.expect("metadata"),
        metadata_response()
    );
    assert_eq!(
        client.health().await.expect("health"),
        ServingStatus::Serving
    );

    // Without a client certificate the server refuses: at the handshake or at the first call.
    let outcome = match PluginClient::connect(
        &url,
        ClientOptions::default().tls(tls_client(&pki.ca)),
    )
    .await
    {
        Err(err) => Err(err),
        Ok(client) => client.metadata().await.map(|_| ()),
    };
    assert!(outcome.is_err(), "client without certificate accepted");

    let missing = TlsOptions::from_files(Some(&dir.path().join("nope.pem")), None, None);
    assert!(matches!(missing, Err(ClientError::ReadFile { .. })));
}
