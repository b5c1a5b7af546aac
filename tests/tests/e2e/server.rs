//! The SDK server over real sockets: health, reflection, TLS and mTLS, Unix sockets, request
//! validation, deadlines, signals.

use std::time::{Duration, Instant};

use sidescan_proto::v1 as pb;
use sidescan_testkit::plugin::{PluginProcess, test_plugin_binary};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

async fn health_status(channel: Channel, service: &str) -> ServingStatus {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check");
    ServingStatus::try_from(response.into_inner().status).expect("known status")
}

async fn wait_for_status(channel: &Channel, want: ServingStatus) {
    let started = Instant::now();
    loop {
        let status = health_status(channel.clone(), sidescan_proto::SCAN_SERVICE_NAME).await;
        if status == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "health stayed {status:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn scan_request(image: &str) -> pb::ScanRequest {
    pb::ScanRequest {
        image: image.into(),
        registry: Some(pb::Registry {
            url: "http://127.0.0.1:9".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn health_is_not_serving_until_ready_and_again_when_the_engine_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let plugin = PluginProcess::start(
        &test_plugin_binary(),
        &["--ready-file", ready.to_str().unwrap()],
    );
    let channel = plugin.channel().await;

    assert_eq!(
        health_status(channel.clone(), sidescan_proto::SCAN_SERVICE_NAME).await,
        ServingStatus::NotServing
    );
    assert_eq!(
        health_status(channel.clone(), "").await,
        ServingStatus::NotServing
    );
    // While not ready, scans are refused with UNAVAILABLE, not attempted.
    let err = plugin
        .scan_client()
        .await
        .scan_image(scan_request("app:1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    std::fs::write(&ready, "").unwrap();
    wait_for_status(&channel, ServingStatus::Serving).await;
    assert_eq!(
        health_status(channel.clone(), "").await,
        ServingStatus::Serving
    );

    std::fs::remove_file(&ready).unwrap();
    wait_for_status(&channel, ServingStatus::NotServing).await;
}

#[tokio::test]
async fn reflection_lists_the_scan_services_in_v1_and_v1alpha() {
    use tokio_stream::StreamExt;
    let plugin = PluginProcess::start(&test_plugin_binary(), &[]);
    let channel = plugin.channel().await;

    let mut v1 = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
        channel.clone(),
    );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut responses = v1
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(
        tonic_reflection::pb::v1::server_reflection_response::MessageResponse::ListServicesResponse(
            list,
        ),
    ) = response.message_response
    else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"sidescan.v1.Scan"), "{names:?}");
    // zot's plugin protocol is served beside it
    assert!(names.contains(&"scan.Scan"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");

    let mut v1alpha =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(
            channel,
        );
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "sidescan.v1.Scan".into(),
            ),
        ),
    };
    let mut responses = v1alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        response.message_response
    else {
        panic!("unexpected reflection answer {response:?}");
    };
    let scan_proto = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| {
            <prost_types::FileDescriptorProto as prost::Message>::decode(bytes.as_slice()).unwrap()
        })
        .find(|f| f.name() == "sidescan/v1/scan.proto")
        .expect("scan.proto served");
    let methods: Vec<_> = scan_proto.service[0]
        .method
        .iter()
        .map(|m| m.name())
        .collect();
    assert_eq!(methods, ["GetMetadata", "ScanImage", "ScanImageStream"]);
}

#[tokio::test]
async fn metadata_reports_api_version_capabilities_and_limits() {
    let plugin = PluginProcess::start(
        &test_plugin_binary(),
        &["--max-concurrent-scans", "3", "--max-file-size", "1MiB"],
    );
    let meta = plugin
        .scan_client()
        .await
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.api_version, "sidescan.v1");
    assert_eq!(meta.scanner.unwrap().name, "sidescan-test-plugin");
    let cap = &meta.capabilities[0];
    assert!(
        cap.produces_mime_types
            .contains(&sidescan_proto::mime::VULNERABILITY_REPORT.to_owned())
    );
    assert!(
        cap.consumes_mime_types
            .contains(&sidescan_proto::mime::OCI_MANIFEST.to_owned())
    );
    let limits = meta.limits.unwrap();
    assert_eq!(
        (limits.max_concurrent_scans, limits.max_file_bytes),
        (3, 1 << 20)
    );
    assert!(meta.features.unwrap().streaming);
}

#[tokio::test]
async fn bad_requests_get_invalid_argument_before_any_work() {
    let plugin = PluginProcess::start(&test_plugin_binary(), &[]);
    let mut client = plugin.scan_client().await;
    let mut unknown_type = scan_request("app:1");
    unknown_type.report_types.insert(
        "application/vnd.example.unknown; version=9".into(),
        pb::ReportParameters::default(),
    );
    let mut half_platform = scan_request("app:1");
    half_platform.platform = Some(pb::Platform {
        os: "linux".into(),
        ..Default::default()
    });
    for (what, request) in [
        ("empty image", scan_request("   ")),
        ("unknown report type", unknown_type),
        ("platform without architecture", half_platform),
    ] {
        let err = client.scan_image(request.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        let err = match client.scan_image_stream(request).await {
            Ok(stream) => {
                use tokio_stream::StreamExt;
                stream
                    .into_inner()
                    .next()
                    .await
                    .expect("an event")
                    .unwrap_err()
            }
            Err(err) => err,
        };
        assert_eq!(err.code(), Code::InvalidArgument, "stream, {what}: {err:?}");
    }
}

#[tokio::test]
async fn a_deadline_too_short_to_scan_is_deadline_exceeded_and_the_plugin_stays_healthy() {
    let plugin = PluginProcess::start(&test_plugin_binary(), &[]);
    // tonic's `Channel` enforces the deadline too and reports its own expiry as CANCELLED, which
    // on a loaded machine can win the race; this client only sends the header, so the test sees
    // what the server answers to a deadline shorter than its 50 ms safety margin.
    let mut client = plugin.scan_client_without_local_deadline();
    let mut request = tonic::Request::new(scan_request("app:1"));
    request.set_timeout(Duration::from_millis(40));
    let err = client.scan_image(request).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert_eq!(
        health_status(plugin.channel().await, sidescan_proto::SCAN_SERVICE_NAME).await,
        ServingStatus::Serving
    );
}

#[tokio::test]
async fn serves_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plugin.sock");
    let plugin = PluginProcess::start_listening(
        &test_plugin_binary(),
        &format!("unix:{}", socket.display()),
        &[],
    );
    assert_eq!(plugin.addr(), format!("unix:{}", socket.display()));
    let path = socket.clone();
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap();
    let meta = pb::scan_client::ScanClient::new(channel)
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .unwrap();
    assert_eq!(meta.into_inner().api_version, "sidescan.v1");
}

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all PEM.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn make_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sidescan test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["registry-host".into()]).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "registry-host");
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
    Pki {
        ca: ca_cert.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// Writes the server certificate, its key and the CA into `dir`: their paths, in that order.
fn write_pki(dir: &std::path::Path, pki: &Pki) -> (String, String, String) {
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_owned()
    };
    (
        write("server.pem", &pki.server_cert),
        write("server.key", &pki.server_key),
        write("ca.pem", &pki.ca),
    )
}

async fn tls_channel(
    addr: &str,
    pki: &Pki,
    with_client_cert: bool,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = write_pki(dir.path(), &pki);

    let tls_plugin = PluginProcess::start(
        &test_plugin_binary(),
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    let channel = tls_channel(tls_plugin.addr(), &pki, false)
        .await
        .expect("TLS connect");
    let meta = pb::scan_client::ScanClient::new(channel)
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .unwrap();
    assert_eq!(meta.into_inner().api_version, "sidescan.v1");
    // A plaintext client cannot talk to a TLS server.
    let plaintext = pb::scan_client::ScanClient::new(tls_plugin.channel().await)
        .get_metadata(pb::GetMetadataRequest {})
        .await;
    assert!(
        plaintext.is_err(),
        "plaintext call to a TLS server succeeded"
    );

    let mtls_plugin = PluginProcess::start(
        &test_plugin_binary(),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &ca,
        ],
    );
    let with_cert = tls_channel(mtls_plugin.addr(), &pki, true)
        .await
        .expect("mTLS connect");
    pb::scan_client::ScanClient::new(with_cert)
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("mTLS call with a client certificate");
    let without_cert = match tls_channel(mtls_plugin.addr(), &pki, false).await {
        Ok(channel) => pb::scan_client::ScanClient::new(channel)
            .get_metadata(pb::GetMetadataRequest {})
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Err(err) => Err(err.to_string()),
    };
    assert!(
        without_cert.is_err(),
        "mTLS server accepted a client without a certificate"
    );
}

#[tokio::test]
async fn harbor_listen_uses_the_grpc_ports_tls_and_mtls() {
    let pki = make_pki();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = write_pki(dir.path(), &pki);
    let addr_file = dir.path().join("harbor-addr");
    let plugin = PluginProcess::start(
        &test_plugin_binary(),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &ca,
            "--harbor-listen",
            "127.0.0.1:0",
            "--harbor-addr-file",
            addr_file.to_str().unwrap(),
            "--harbor-registry-authorization",
            "bearer",
        ],
    );
    let addr = std::fs::read_to_string(&addr_file).expect("--harbor-addr-file");
    let port = addr.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}/api/v1/metadata");
    let client = |with_cert: bool| {
        let mut b = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap()])
            .resolve("localhost", addr.parse().unwrap());
        if with_cert {
            let pem = format!("{}{}", pki.client_cert, pki.client_key);
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    };
    let ok = client(true)
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("mTLS GET {url}: {e:?}\n{}", plugin.logs()));
    assert_eq!(ok.status(), 200);
    let md: serde_json::Value = ok.json().await.unwrap();
    assert!(md["scanner"]["name"].is_string(), "{md}");
    assert_eq!(
        md["properties"]["harbor.scanner-adapter/registry-authorization-type"], "Bearer",
        "{md}"
    );
    assert!(
        client(false).get(&url).send().await.is_err(),
        "the Harbor API accepted a client without a certificate"
    );
    let plain = reqwest::get(format!("http://{addr}/api/v1/metadata")).await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain http answered on a TLS listener"
    );
}

#[tokio::test]
async fn sigterm_on_an_idle_plugin_exits_zero_and_removes_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("p.sock");
    let mut plugin = PluginProcess::start_listening(
        &test_plugin_binary(),
        &format!("unix:{}", socket.display()),
        &[],
    );
    assert!(socket.exists());
    plugin.signal(sidescan_testkit::plugin::Signal::TERM);
    assert_eq!(plugin.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(!socket.exists(), "socket file left behind");
}

#[test]
fn invalid_flags_exit_two() {
    let status = std::process::Command::new(test_plugin_binary())
        .args(["--listen", "not-an-address"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

#[tokio::test]
async fn logs_carry_the_request_id_and_never_the_registry_credentials() {
    use base64::Engine;
    let password = "planted-S3cret-pw";
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{password}"));
    let plugin = PluginProcess::start(
        &test_plugin_binary(),
        &["--log-level", "trace", "--log-format", "json"],
    );
    let mut client = plugin.scan_client().await;
    for authorization in [format!("Basic {basic}"), format!("Bearer {password}")] {
        let mut request = tonic::Request::new(pb::ScanRequest {
            image: "app:1".into(),
            registry: Some(pb::Registry {
                url: "http://127.0.0.1:9".into(),
                authorization,
                insecure: true,
            }),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("x-request-id", "req-planted-1".parse().unwrap());
        let response = client.scan_image(request).await;
        assert!(
            response.is_err(),
            "scan of an unreachable registry succeeded"
        );
    }
    let logs = plugin.logs();
    assert!(
        logs.contains("req-planted-1"),
        "request id missing from logs:\n{logs}"
    );
    assert!(
        !logs.contains(password),
        "password leaked into logs:\n{logs}"
    );
    assert!(
        !logs.contains(&basic),
        "Basic credentials leaked into logs:\n{logs}"
    );
}

#[tokio::test]
async fn a_reflection_only_client_discovers_and_calls_get_metadata() {
    use prost::Message;
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let plugin = PluginProcess::start(&test_plugin_binary(), &[]);
    let channel = plugin.channel().await;

    // Discover: the file that defines sidescan.v1.Scan, then every import it names (fetched by
    // file name until none is missing), as grpcurl does.
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let mut files: std::collections::BTreeMap<String, prost_types::FileDescriptorProto> =
        Default::default();
    let mut wanted = vec![MessageRequest::FileContainingSymbol(
        "sidescan.v1.Scan".into(),
    )];
    while let Some(ask) = wanted.pop() {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(ask),
        };
        let response = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner()
            .next()
            .await
            .unwrap()
            .unwrap();
        let Some(MessageResponse::FileDescriptorResponse(found)) = response.message_response else {
            panic!("unexpected reflection answer {response:?}");
        };
        for bytes in &found.file_descriptor_proto {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
            files.insert(file.name().to_owned(), file);
        }
        for file in files.values() {
            for import in &file.dependency {
                if !files.contains_key(import) {
                    wanted.push(MessageRequest::FileByFilename(import.clone()));
                }
            }
        }
    }
    let mut pool = prost_reflect::DescriptorPool::new();
    let mut pending: Vec<_> = files.into_values().collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|file| pool.add_file_descriptor_proto(file.clone()).is_err());
        assert!(
            pending.len() < before,
            "reflection served files whose imports never resolve"
        );
    }
    let service = pool
        .get_service_by_name("sidescan.v1.Scan")
        .expect("service described");
    let method = service
        .methods()
        .find(|m| m.name() == "GetMetadata")
        .expect("GetMetadata described");

    // Call it with nothing but the discovered descriptors.
    let input = prost_reflect::DynamicMessage::new(method.input());
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path =
        http::uri::PathAndQuery::try_from(format!("/{}/{}", service.full_name(), method.name()))
            .unwrap();
    let reply = grpc
        .unary(
            tonic::Request::new(input.encode_to_vec()),
            path,
            sidescan_testkit::grpc::RawCodec,
        )
        .await
        .expect("dynamic GetMetadata call")
        .into_inner();
    let output = prost_reflect::DynamicMessage::decode(method.output(), reply.as_slice()).unwrap();
    let api_version = output.get_field_by_name("api_version").unwrap();
    assert_eq!(api_version.as_str(), Some("sidescan.v1"));
}
