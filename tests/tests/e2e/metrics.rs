//! The `--metrics-listen` endpoint of a real plugin process, scraped over HTTP after real scans
//! against a real registry: scans by RPC and code, the duration histogram, bytes pulled, cache
//! hits and misses, the slot gauges, readiness, build info, startup and shutdown.

use std::time::{Duration, Instant};

use sidescan_proto::v1 as pb;
use sidescan_testkit::metrics::Scrape;
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, Signal, test_plugin_binary};
use sidescan_testkit::registry::Registry;

use crate::support::{image_with, scan_request as request};
use tokio_stream::StreamExt;
use tonic::Code;

/// Bytes of the image's config and layer blobs: what one uncached scan pulls.
fn blob_bytes(image: &Artifact) -> f64 {
    let config = image.config.as_ref().map_or(0, |c| c.data.len());
    let layers: usize = image.layers.iter().map(|l| l.blob.data.len()).sum();
    (config + layers) as f64
}

/// Scrapes until `ready` holds (10 s at most) and returns that scrape.
async fn scrape_until(
    plugin: &PluginProcess,
    what: &str,
    ready: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let started = Instant::now();
    loop {
        let scrape = plugin.metrics().await;
        if ready(&scrape) {
            return scrape;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never saw {what}; last scrape:\n{}\nlog:\n{}",
            scrape.text,
            plugin.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SCANS: &str = "sidescan_scans_total";
const DURATION_COUNT: &str = "sidescan_scan_duration_seconds_count";
const PULLED: &str = "sidescan_registry_pulled_bytes_total";
const HITS: &str = "sidescan_cache_hits_total";
const MISSES: &str = "sidescan_cache_misses_total";
const IN_FLIGHT: &str = "sidescan_scans_in_flight";
const QUEUED: &str = "sidescan_scans_queued";

#[tokio::test]
async fn metrics_count_scans_by_code_bytes_pulled_and_cache_lookups() {
    let registry = Registry::anonymous();
    let image = image_with("metrics");
    registry.push(&image, "metrics/app", "1.0").await;
    let plugin = PluginProcess::start_with_metrics(&test_plugin_binary(), &[]);
    plugin.wait_for_health(ServingStatus::Serving).await;

    let start = plugin.metrics().await;
    for (family, kind) in [
        ("sidescan_scans", "counter"),
        ("sidescan_scan_duration_seconds", "histogram"),
        ("sidescan_registry_pulled_bytes", "counter"),
        ("sidescan_cache_hits", "counter"),
        ("sidescan_cache_misses", "counter"),
        ("sidescan_scans_in_flight", "gauge"),
        ("sidescan_scans_queued", "gauge"),
        ("sidescan_engine_ready", "gauge"),
        ("sidescan_build_info", "gauge"),
    ] {
        assert_eq!(
            start.types.get(family).map(String::as_str),
            Some(kind),
            "{family}:\n{}",
            start.text
        );
        assert!(start.help.contains_key(family), "{family} has no HELP");
    }
    assert_eq!(start.value("sidescan_engine_ready", &[]), 1.0);
    assert_eq!(start.sum(SCANS, &[]), 0.0);
    assert_eq!(start.value(PULLED, &[("kind", "blob")]), 0.0);

    // First scan (unary): everything is pulled: the config and both layers.
    let mut client = plugin.scan_client().await;
    client
        .scan_image(request(&registry, "metrics/app", "1.0"))
        .await
        .expect("first scan");
    let first = plugin.metrics().await;
    let pulled = blob_bytes(&image);
    assert!(pulled > 0.0);
    assert_eq!(first.value(PULLED, &[("kind", "blob")]), pulled);
    assert_eq!(
        first.value(PULLED, &[("kind", "manifest")]),
        image.manifest.data.len() as f64
    );
    assert_eq!(first.value(MISSES, &[("cache", "blob")]), 3.0);
    assert_eq!(first.value(HITS, &[("cache", "blob")]), 0.0);
    assert_eq!(first.value(MISSES, &[("cache", "layer")]), 2.0);
    assert_eq!(first.value(HITS, &[("cache", "layer")]), 0.0);

    // Second scan of the same image (stream): both layer results come from the cache; only the
    // manifest is pulled again and the config is read from the blob cache.
    let mut events = client
        .scan_image_stream(request(&registry, "metrics/app", "1.0"))
        .await
        .expect("second scan")
        .into_inner();
    let mut result = None;
    while let Some(event) = events.next().await {
        if let Some(pb::scan_image_stream_response::Event::Result(r)) =
            event.expect("stream event").event
        {
            result = Some(r);
        }
    }
    assert!(result.is_some(), "the stream ended without a result");
    let second = plugin.metrics().await;
    assert_eq!(
        second.value(PULLED, &[("kind", "blob")]),
        pulled,
        "a cached scan pulls no blob"
    );
    assert_eq!(
        second.value(PULLED, &[("kind", "manifest")]),
        2.0 * image.manifest.data.len() as f64
    );
    assert_eq!(second.value(HITS, &[("cache", "layer")]), 2.0);
    assert_eq!(second.value(MISSES, &[("cache", "layer")]), 2.0);
    assert_eq!(second.value(HITS, &[("cache", "blob")]), 1.0, "the config");
    assert_eq!(second.value(MISSES, &[("cache", "blob")]), 3.0);
    assert_eq!(
        second.sum(HITS, &[("cache", "image")]) + second.sum(MISSES, &[("cache", "image")]),
        0.0,
        "a per-layer plugin has no image result cache"
    );

    // A malformed reference is refused before it takes a slot.
    let mut bad = request(&registry, "metrics/app", "1.0");
    bad.image = "Not A Reference!".into();
    let err = client.scan_image(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let last = plugin.metrics().await;
    assert_eq!(last.value(SCANS, &[("rpc", "unary"), ("code", "OK")]), 1.0);
    assert_eq!(last.value(SCANS, &[("rpc", "stream"), ("code", "OK")]), 1.0);
    assert_eq!(
        last.value(SCANS, &[("rpc", "unary"), ("code", "INVALID_ARGUMENT")]),
        1.0
    );
    assert_eq!(last.sum(SCANS, &[]), 3.0, "{}", last.text);
    // Refused requests are counted but not timed.
    assert_eq!(last.value(DURATION_COUNT, &[("outcome", "ok")]), 2.0);
    assert_eq!(last.value(DURATION_COUNT, &[("outcome", "error")]), 0.0);
    assert_eq!(
        last.value(
            "sidescan_scan_duration_seconds_bucket",
            &[("outcome", "ok"), ("le", "+Inf")]
        ),
        2.0
    );
    assert!(last.value("sidescan_scan_duration_seconds_sum", &[("outcome", "ok")]) > 0.0);
    assert_eq!(last.value(IN_FLIGHT, &[]), 0.0);
    assert_eq!(last.value(QUEUED, &[]), 0.0);
    assert_eq!(last.value("sidescan_engine_ready", &[]), 1.0);
    assert_eq!(
        last.value(
            "sidescan_build_info",
            &[
                ("plugin", "sidescan-test-plugin"),
                ("version", env!("CARGO_PKG_VERSION")),
                ("engine_version", "test-engine-1"),
            ]
        ),
        1.0
    );
    assert_eq!(
        last.matching("sidescan_build_info", &[]).count(),
        1,
        "one build info series"
    );
}

#[tokio::test]
async fn whole_image_scans_count_image_result_cache_hits() {
    let registry = Registry::anonymous();
    let image = image_with("whole");
    registry.push(&image, "metrics/whole", "1").await;
    let plugin = PluginProcess::start_with_metrics(&test_plugin_binary(), &["--whole-image"]);
    plugin.wait_for_health(ServingStatus::Serving).await;
    let mut client = plugin.scan_client().await;
    for _ in 0..2 {
        let report = client
            .scan_image(request(&registry, "metrics/whole", "1"))
            .await
            .expect("whole-image scan")
            .into_inner()
            .report
            .expect("report");
        assert_eq!(report.vulnerabilities.len(), 1, "{report:?}");
    }
    let scrape = plugin.metrics().await;
    assert_eq!(scrape.value(MISSES, &[("cache", "image")]), 1.0);
    assert_eq!(scrape.value(HITS, &[("cache", "image")]), 1.0);
    assert_eq!(
        scrape.value(PULLED, &[("kind", "blob")]),
        blob_bytes(&image),
        "the second scan pulled nothing"
    );
    assert_eq!(
        scrape.value(SCANS, &[("rpc", "unary"), ("code", "OK")]),
        2.0
    );
    assert_eq!(
        scrape.sum(HITS, &[("cache", "layer")]) + scrape.sum(MISSES, &[("cache", "layer")]),
        0.0
    );
}

#[tokio::test]
async fn slot_gauges_follow_running_queued_and_cancelled_scans() {
    let registry = Registry::anonymous();
    for tag in ["a", "b", "c"] {
        registry.push(&image_with(tag), "metrics/slow", tag).await;
    }
    let plugin = PluginProcess::start_with_metrics(
        &test_plugin_binary(),
        &["--max-concurrent-scans", "1", "--layer-delay", "2s"],
    );
    plugin.wait_for_health(ServingStatus::Serving).await;
    let client = plugin.scan_client().await;
    let scans: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|tag| {
            let mut client = client.clone();
            let req = request(&registry, "metrics/slow", tag);
            tokio::spawn(async move { client.scan_image(req).await })
        })
        .collect();
    scrape_until(&plugin, "one scan running and one queued", |s| {
        s.value(IN_FLIGHT, &[]) == 1.0 && s.value(QUEUED, &[]) == 1.0
    })
    .await;
    for scan in scans {
        scan.await.unwrap().expect("slow scan");
    }
    let done = plugin.metrics().await;
    assert_eq!(done.value(IN_FLIGHT, &[]), 0.0);
    assert_eq!(done.value(QUEUED, &[]), 0.0);
    assert_eq!(done.value(SCANS, &[("rpc", "unary"), ("code", "OK")]), 2.0);
    assert!(
        done.value("sidescan_scan_duration_seconds_sum", &[("outcome", "ok")]) >= 2.0,
        "two scans of at least 2 s each:\n{}",
        done.text
    );

    // A stream whose caller goes away mid-scan is CANCELLED and gives its slot back.
    let mut stream = client
        .clone()
        .scan_image_stream(request(&registry, "metrics/slow", "c"))
        .await
        .expect("stream scan")
        .into_inner();
    stream
        .next()
        .await
        .expect("a first progress event")
        .unwrap();
    scrape_until(&plugin, "the stream scan running", |s| {
        s.value(IN_FLIGHT, &[]) == 1.0
    })
    .await;
    drop(stream);
    let cancelled = scrape_until(&plugin, "the stream scan cancelled", |s| {
        s.sum(SCANS, &[("rpc", "stream"), ("code", "CANCELLED")]) == 1.0
    })
    .await;
    assert_eq!(
        cancelled.value(DURATION_COUNT, &[("outcome", "cancelled")]),
        1.0
    );
    assert_eq!(cancelled.value(IN_FLIGHT, &[]), 0.0);
}

#[tokio::test]
async fn a_taken_metrics_port_fails_startup_like_a_taken_grpc_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let run = |listen: &str, metrics: &str| {
        std::process::Command::new(test_plugin_binary())
            .args(["--listen", listen, "--metrics-listen", metrics])
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("--scratch-dir")
            .arg(dir.path())
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let grpc = run(&taken, "127.0.0.1:0");
    let metrics = run("127.0.0.1:0", &taken);
    assert_eq!(grpc.status.code(), Some(1));
    assert_eq!(metrics.status.code(), Some(1), "same exit code as --listen");
    let stderr = String::from_utf8_lossy(&metrics.stderr);
    assert!(
        stderr.contains("cannot listen on") && stderr.contains("--metrics-listen"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_metrics_endpoint_answers_only_get_metrics_and_stops_with_the_server() {
    let mut plugin = PluginProcess::start_with_metrics(&test_plugin_binary(), &[]);
    let addr = plugin.metrics_addr().unwrap().to_owned();
    assert!(plugin.metrics_text().await.ends_with("# EOF\n"));
    let http = reqwest::Client::new();
    let other = http.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(other.status(), 404);
    let post = http
        .post(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);

    plugin.signal(Signal::TERM);
    assert_eq!(plugin.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "metrics endpoint still listening after exit"
    );
}
