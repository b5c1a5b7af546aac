//! Scans through the SDK server against a real registry: unary/stream equivalence, the queue,
//! deadlines during work, graceful drain, and the CLI's exit codes.

use std::time::{Duration, Instant};

use sidescan_proto::v1 as pb;
use sidescan_testkit::fixtures::{self, Entry, Image, Layer};
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::plugin::{
    PluginProcess, Signal, scan_stream_result, test_plugin_binary, workspace_binary,
};
use sidescan_testkit::registry::Registry;

use crate::support::scan_request as request;
use tonic::Code;

/// The marker the test plugin reports (see `sidescan-test-plugin`).
const MARKER: &str = "SIDESCAN-TEST-FINDING";

/// A clean base layer plus a top layer with one file carrying the test plugin's marker.
fn marker_image() -> Artifact {
    Image::new()
        .layer(fixtures::base_layer())
        .layer(Layer::new([Entry::file(
            "app/marker.txt",
            format!("some text {MARKER} more text\n").into_bytes(),
        )]))
        .build()
}

/// Drops what legitimately differs between two runs of the same scan.
fn without_timestamp(mut response: pb::ScanResponse) -> pb::ScanResponse {
    if let Some(report) = response.report.as_mut() {
        report.generated_at = None;
    }
    for typed in &mut response.reports {
        if let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&typed.document) {
            doc.as_object_mut().map(|o| o.remove("generated_at"));
            typed.document = serde_json::to_vec(&doc).unwrap();
        }
    }
    response
}

#[tokio::test]
async fn unary_and_stream_give_the_same_report_and_the_stream_ends_with_one_result() {
    let registry = Registry::anonymous();
    let image = marker_image();
    let digest = registry.push(&image, "demo/marker", "1.0").await;
    let plugin = PluginProcess::start(&test_plugin_binary(), &[]);
    let mut client = plugin.scan_client().await;
    let mut req = request(&registry, "demo/marker", "1.0");
    req.report_types.insert(
        sidescan_proto::mime::VULNERABILITY_REPORT.into(),
        pb::ReportParameters::default(),
    );

    let unary = client
        .scan_image(req.clone())
        .await
        .expect("unary scan")
        .into_inner();
    let report = unary.report.clone().unwrap();
    assert_eq!(report.image.as_ref().unwrap().digest, digest);
    assert_eq!(report.vulnerabilities.len(), 1, "{report:?}");
    let finding = &report.vulnerabilities[0];
    assert_eq!(finding.path, "/app/marker.txt");
    assert_eq!(
        finding.layer_digest, image.layers[1].blob.digest,
        "finding names its layer"
    );
    assert_eq!(report.summary.as_ref().unwrap().high, 1);

    let streamed = scan_stream_result(&mut client, req).await;
    assert_eq!(without_timestamp(streamed), without_timestamp(unary));
}

#[tokio::test]
async fn a_full_queue_answers_resource_exhausted_at_once_with_a_pushback() {
    let registry = Registry::anonymous();
    // Three tags, so that no two requests are identical (identical ones share one scan).
    for tag in ["1", "2", "3"] {
        registry.push(&marker_image(), "demo/slow", tag).await;
    }
    let plugin = PluginProcess::start(
        &test_plugin_binary(),
        &[
            "--max-concurrent-scans",
            "1",
            "--max-queued-scans",
            "1",
            "--layer-delay",
            "3s",
        ],
    );
    let client = plugin.scan_client().await;
    let mut in_flight = Vec::new();
    for tag in ["1", "2"] {
        let mut client = client.clone();
        let req = request(&registry, "demo/slow", tag);
        in_flight.push(tokio::spawn(async move { client.scan_image(req).await }));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let started = Instant::now();
    let err = client
        .clone()
        .scan_image(request(&registry, "demo/slow", "3"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refusal was not immediate"
    );
    let pushback: u64 = err
        .metadata()
        .get("grpc-retry-pushback-ms")
        .expect("a full queue says when to come back")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((20..=30_000).contains(&pushback), "{pushback}");
    // The stream RPC is refused the same way, as the call's status before any event.
    let err = client
        .clone()
        .scan_image_stream(request(&registry, "demo/slow", "3"))
        .await
        .expect_err("refused before the stream opens");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.metadata().get("grpc-retry-pushback-ms").is_some());
    for scan in in_flight {
        scan.await
            .unwrap()
            .expect("running and queued scans still finish");
    }
}

#[tokio::test]
async fn a_deadline_during_a_slow_scan_is_deadline_exceeded_and_the_plugin_recovers() {
    let registry = Registry::anonymous();
    registry.push(&marker_image(), "demo/slow", "1").await;
    let plugin = PluginProcess::start(&test_plugin_binary(), &["--layer-delay", "5s"]);
    // A 2 s deadline: the SDK's own timer fires 100 ms before it. The client only sends the
    // deadline (tonic's `Channel` would also race it with a local timer answering CANCELLED).
    let mut client = plugin.scan_client_without_local_deadline();
    let mut req = tonic::Request::new(request(&registry, "demo/slow", "1"));
    req.set_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let err = client.scan_image(req).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // The slot was released: the next scan is admitted and finishes.
    let mut req = tonic::Request::new(request(&registry, "demo/slow", "1"));
    req.set_timeout(Duration::from_secs(30));
    client.scan_image(req).await.expect("scan after a deadline");
}

#[tokio::test]
async fn sigterm_lets_a_scan_in_flight_finish_then_exits_zero() {
    let registry = Registry::anonymous();
    registry.push(&marker_image(), "demo/slow", "1").await;
    let mut plugin = PluginProcess::start(&test_plugin_binary(), &["--layer-delay", "1500ms"]);
    let mut client = plugin.scan_client().await;
    let req = request(&registry, "demo/slow", "1");
    let scan = tokio::spawn(async move { client.scan_image(req).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    plugin.signal(Signal::TERM);
    let response = scan
        .await
        .unwrap()
        .expect("the scan in flight completes during the drain");
    assert_eq!(
        response.into_inner().report.unwrap().vulnerabilities.len(),
        1
    );
    assert_eq!(
        plugin.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        plugin.logs()
    );
}

#[tokio::test]
async fn a_drain_that_outlives_the_grace_period_exits_three() {
    let registry = Registry::anonymous();
    registry.push(&marker_image(), "demo/slow", "1").await;
    let mut plugin = PluginProcess::start(
        &test_plugin_binary(),
        &["--layer-delay", "30s", "--shutdown-grace", "500ms"],
    );
    let mut client = plugin.scan_client().await;
    let req = request(&registry, "demo/slow", "1");
    let _scan = tokio::spawn(async move { client.scan_image(req).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    plugin.signal(Signal::TERM);
    assert_eq!(
        plugin.wait_exit(Duration::from_secs(10)),
        Some(3),
        "{}",
        plugin.logs()
    );
}

fn sidescan(args: &[&str]) -> std::process::Output {
    std::process::Command::new(workspace_binary("sidescan"))
        .args(args)
        .env_remove("SIDESCAN_REGISTRY_USERNAME")
        .env_remove("SIDESCAN_REGISTRY_PASSWORD")
        .env_remove("SIDESCAN_REGISTRY_TOKEN")
        .output()
        .expect("run sidescan")
}

#[tokio::test]
async fn cli_exit_codes_against_a_real_plugin_and_registry() {
    let registry = Registry::anonymous();
    registry.push(&marker_image(), "demo/marker", "1.0").await;
    let plugin = PluginProcess::start(&test_plugin_binary(), &[]);
    let url = plugin.url();
    let reg = registry.url();
    let base = [
        "scan",
        "demo/marker:1.0",
        "--plugin",
        &url,
        "--registry",
        &reg,
    ];

    let high = sidescan(&[&base[..], &["--fail-on", "high"]].concat());
    assert_eq!(
        high.status.code(),
        Some(1),
        "finding at HIGH with --fail-on high: {high:?}"
    );
    let table = String::from_utf8_lossy(&high.stdout);
    assert!(
        table.contains("/app/marker.txt"),
        "table lacks the finding:\n{table}"
    );

    let critical = sidescan(&[&base[..], &["--fail-on", "critical"]].concat());
    assert_eq!(critical.status.code(), Some(0), "{critical:?}");

    let json = sidescan(&[&base[..], &["--format", "json"]].concat());
    assert_eq!(json.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("canonical JSON");
    assert_eq!(
        value["report"]["vulnerabilities"][0]["severity"],
        "SEVERITY_HIGH"
    );
    assert_eq!(value["report"]["summary"]["high"], 1);

    let missing = sidescan(&[
        "scan",
        "demo/marker:nope",
        "--plugin",
        &url,
        "--registry",
        &reg,
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("NOT_FOUND"),
        "{missing:?}"
    );
}
