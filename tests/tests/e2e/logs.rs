//! JSON logs of a real plugin process: every line is JSON, each scan's lines (SDK server,
//! pipeline, spawned download tasks, the plugin's own code) carry its one `scan` span, each scan
//! ends with one line carrying its code, and no credential ever appears.

use serde_json::Value;
use sidescan_proto::v1 as pb;
use sidescan_testkit::fixtures::{self, Entry, Image, Layer};
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, test_plugin_binary};
use sidescan_testkit::registry::{Auth, Registry, basic_authorization};
use tokio_stream::StreamExt;
use tonic::Code;

const USER: &str = "alice";
const PASSWORD: &str = "planted-Json-Log-pw-7c1e";

/// Final lines of a scan.
const FINAL: [&str; 3] = ["scan finished", "scan failed", "scan request refused"];

/// Targets that only ever log on behalf of a scan.
const SCAN_TARGETS: [&str; 6] = [
    "sidescan_sdk::server::service",
    "sidescan_sdk::pipeline",
    "sidescan_sdk::image",
    "sidescan_test_plugin",
    "oci_client",
    "sidescan_sdk::context",
];

fn with_request_id<T>(message: T, id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    request
}

fn span_field<'a>(line: &'a Value, field: &str) -> Option<&'a str> {
    line.get("span")?.get(field)?.as_str()
}

#[tokio::test]
async fn json_logs_put_each_scan_in_one_span_with_a_final_code_and_never_a_credential() {
    let registry = Registry::start(Auth::Token {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    // Two images sharing a base layer: the second scan scans only its top layer.
    for tag in ["1", "2"] {
        let image = Image::new()
            .layer(fixtures::base_layer())
            .layer(Layer::new([Entry::file(
                "app/marker.txt",
                format!("{tag} SIDESCAN-TEST-FINDING\n"),
            )]))
            .build();
        registry.push(&image, "logs/app", tag).await;
    }
    let plugin = PluginProcess::start(
        &test_plugin_binary(),
        &["--log-level", "trace", "--log-format", "json"],
    );
    plugin.wait_for_health(ServingStatus::Serving).await;
    let mut client = plugin.scan_client().await;
    let authorization = basic_authorization(USER, PASSWORD);
    let scan_request = pb::ScanRequest {
        image: "logs/app:1".into(),
        registry: Some(pb::Registry {
            url: registry.url(),
            authorization: authorization.clone(),
            insecure: false,
        }),
        ..Default::default()
    };

    client
        .scan_image(with_request_id(scan_request.clone(), "json-unary-1"))
        .await
        .expect("unary scan");
    let mut second = scan_request.clone();
    second.image = "logs/app:2".into();
    let mut events = client
        .scan_image_stream(with_request_id(second, "json-stream-1"))
        .await
        .expect("stream scan")
        .into_inner();
    while let Some(event) = events.next().await {
        event.expect("stream event");
    }
    // The password in the registry URL: refused, and not echoed into the refusal line.
    let mut in_url = scan_request.clone();
    in_url.registry.as_mut().unwrap().url = format!("http://{USER}:{PASSWORD}@{}", registry.host());
    let err = client
        .scan_image(with_request_id(in_url, "json-refused-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let logs = plugin.logs();
    assert!(
        !logs.contains(PASSWORD),
        "password leaked into logs:\n{logs}"
    );
    let basic = authorization.trim_start_matches("Basic ");
    assert!(!logs.contains(basic), "Basic credentials leaked:\n{logs}");
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();

    // No line written on behalf of a scan is outside its span.
    for line in &lines {
        let target = line["target"].as_str().unwrap_or_default();
        if SCAN_TARGETS.iter().any(|t| target.starts_with(t)) {
            assert!(
                span_field(line, "request_id").is_some(),
                "a scan's line without the scan span: {line}"
            );
        }
    }

    for (id, rpc, image) in [
        ("json-unary-1", "unary", "logs/app:1"),
        ("json-stream-1", "stream", "logs/app:2"),
    ] {
        let mine: Vec<&Value> = lines
            .iter()
            .filter(|l| span_field(l, "request_id") == Some(id))
            .collect();
        for line in &mine {
            let spans = line["spans"].as_array().expect("span list");
            assert_eq!(spans.len(), 1, "exactly one span: {line}");
            assert_eq!(line["span"]["name"], "scan", "{line}");
            assert_eq!(span_field(line, "rpc"), Some(rpc), "{line}");
            assert_eq!(span_field(line, "image"), Some(image), "{line}");
        }
        let targets: Vec<&str> = mine.iter().filter_map(|l| l["target"].as_str()).collect();
        assert!(
            targets.contains(&"sidescan_test_plugin"),
            "{id}: no line of the plugin's own code in the span: {targets:?}"
        );
        let finals: Vec<&&Value> = mine
            .iter()
            .filter(|l| FINAL.contains(&l["message"].as_str().unwrap_or_default()))
            .collect();
        assert_eq!(finals.len(), 1, "{id}: one final line: {finals:?}");
        let last = finals[0];
        assert_eq!(last["message"], "scan finished", "{last}");
        assert_eq!(last["code"], "OK", "{last}");
        assert!(last["elapsed_ms"].is_u64(), "{last}");
        assert_eq!(
            mine.last().copied(),
            Some(*last),
            "{id}: the final line is the scan's last"
        );
    }
    // The first scan downloaded its blobs in spawned tasks: their lines are in its span too.
    assert!(
        lines.iter().any(|l| {
            l["message"] == "blob not cached: downloading"
                && span_field(l, "request_id") == Some("json-unary-1")
        }),
        "no download line in the first scan's span"
    );

    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| span_field(l, "request_id") == Some("json-refused-1"))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["message"], "scan request refused");
    assert_eq!(refused[0]["code"], "INVALID_ARGUMENT");
    assert_eq!(
        span_field(refused[0], "image"),
        None,
        "an unvalidated request's image is not logged"
    );
}
