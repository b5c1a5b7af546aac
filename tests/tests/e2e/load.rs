//! Many callers against one real plugin process: the client's retries after the server's
//! pushback (every caller answered, none turned away), limits that stay final, and the single
//! flight that runs identical scans in flight once.

use std::time::Duration;

use sidescan_proto::client::{ClientError, ClientOptions, PluginClient, RetryPolicy};
use sidescan_proto::v1 as pb;
use sidescan_testkit::fixtures::{self, Entry, Image, Layer};
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::plugin::{PluginProcess, test_plugin_binary};
use sidescan_testkit::registry::Registry;
use tonic::Code;

use crate::support::scan_request;

/// The marker the test plugin reports (see `sidescan-test-plugin`).
const MARKER: &str = "SIDESCAN-TEST-FINDING";

/// A clean base and a top layer of its own (so that no two images share a layer result), with
/// the marker when `marked`.
fn image(n: usize, marked: bool) -> Artifact {
    let text = if marked {
        format!("image {n} {MARKER}\n")
    } else {
        format!("image {n} clean\n")
    };
    Image::new()
        .layer(fixtures::base_layer())
        .layer(Layer::new([Entry::file("app/file.txt", text.into_bytes())]))
        .build()
}

async fn client(plugin: &PluginProcess, retry: RetryPolicy) -> PluginClient {
    let options = ClientOptions::default()
        .timeout(Duration::from_secs(120))
        .retry(retry);
    PluginClient::connect(&plugin.url(), options).await.unwrap()
}

/// Scans every request at once, one caller each; returns each caller's result in order.
async fn all_at_once(
    client: &PluginClient,
    requests: Vec<pb::ScanRequest>,
) -> Vec<Result<pb::ScanResponse, ClientError>> {
    let calls = requests.into_iter().map(|req| {
        let client = client.clone();
        tokio::spawn(async move { client.scan(req).await })
    });
    let mut results = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        results.push(call.await.unwrap());
    }
    results
}

/// The findings' count of a response.
fn findings(response: &pb::ScanResponse) -> usize {
    response
        .report
        .as_ref()
        .map_or(0, |report| report.vulnerabilities.len())
}

#[tokio::test]
async fn many_callers_on_one_slot_and_one_queue_seat_all_get_their_verdict() {
    const CALLERS: usize = 12;
    let registry = Registry::anonymous();
    let mut digests = Vec::new();
    for n in 0..CALLERS {
        let digest = registry
            .push(&image(n, n % 3 == 0), &format!("load/app{n}"), "1")
            .await;
        digests.push(digest);
    }
    let plugin = PluginProcess::start_with_metrics(
        &test_plugin_binary(),
        &[
            "--max-concurrent-scans",
            "1",
            "--max-queued-scans",
            "1",
            "--layer-delay",
            "40ms",
        ],
    );
    let requests = |prefix: &str| {
        (0..CALLERS)
            .map(|n| scan_request(&registry, &format!("{prefix}{n}"), "1"))
            .collect::<Vec<_>>()
    };

    // Without retries the load is over the plugin's capacity: some callers are turned away.
    let once = all_at_once(
        &client(&plugin, RetryPolicy::disabled()).await,
        requests("load/app"),
    )
    .await;
    let refused = once
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == Some(Code::ResourceExhausted)))
        .count();
    assert!(refused > 0, "the load never filled the queue");

    // With the default policy (honouring the pushback) every caller gets its own verdict.
    let retrying = client(&plugin, RetryPolicy::default().max_attempts(30)).await;
    let results = all_at_once(&retrying, requests("load/app")).await;
    for (n, result) in results.iter().enumerate() {
        let response = result
            .as_ref()
            .unwrap_or_else(|e| panic!("caller {n}: {e}"));
        let want = usize::from(n % 3 == 0);
        assert_eq!(findings(response), want, "caller {n}: wrong verdict");
        let image = response.report.as_ref().unwrap().image.as_ref().unwrap();
        assert_eq!(
            image.digest, digests[n],
            "caller {n}: another image's report"
        );
    }
    let scrape = plugin.metrics().await;
    assert!(
        scrape.sum("sidescan_scans_total", &[("code", "RESOURCE_EXHAUSTED")]) > refused as f64,
        "the second round was refused too, then retried:\n{}",
        scrape.text
    );
}

#[tokio::test]
async fn a_limit_of_the_image_carries_no_pushback_and_is_not_retried() {
    let registry = Registry::anonymous();
    registry.push(&image(0, true), "load/big", "1").await;
    let plugin =
        PluginProcess::start_with_metrics(&test_plugin_binary(), &["--max-image-size", "10"]);
    let mut raw = plugin.scan_client().await;
    let status = raw
        .scan_image(scan_request(&registry, "load/big", "1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.metadata().get("grpc-retry-pushback-ms").is_none(),
        "a limit is final: {status:?}"
    );
    let err = client(&plugin, RetryPolicy::default())
        .await
        .scan(scan_request(&registry, "load/big", "1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::ResourceExhausted));
    let scrape = plugin.metrics().await;
    assert_eq!(
        scrape.sum("sidescan_scans_total", &[("code", "RESOURCE_EXHAUSTED")]),
        2.0,
        "one call each, no retry"
    );
}

#[tokio::test]
async fn identical_scans_in_flight_run_once_and_take_no_slot_of_their_own() {
    const CALLERS: usize = 8;
    let registry = Registry::anonymous();
    registry.push(&image(0, true), "load/same", "1").await;
    registry.push(&image(1, false), "load/other", "1").await;
    // One slot and no queue: without the single flight, every caller but one is refused.
    let plugin = PluginProcess::start_with_metrics(
        &test_plugin_binary(),
        &[
            "--max-concurrent-scans",
            "1",
            "--max-queued-scans",
            "0",
            "--layer-delay",
            "700ms",
        ],
    );
    let client = client(&plugin, RetryPolicy::disabled()).await;
    let first = {
        let client = client.clone();
        let req = scan_request(&registry, "load/same", "1");
        tokio::spawn(async move { client.scan(req).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A caller that gives up early does not stop the scan for the others.
    let impatient_client = client.with_timeout(Some(Duration::from_millis(400)));
    let impatient = impatient_client.scan(scan_request(&registry, "load/same", "1"));
    let others = all_at_once(
        &client,
        vec![scan_request(&registry, "load/same", "1"); CALLERS - 2],
    );
    let (impatient, others) = tokio::join!(impatient, others);
    assert_eq!(
        impatient.unwrap_err().code(),
        Some(Code::DeadlineExceeded),
        "its own deadline"
    );
    let first = first.await.unwrap().expect("the first caller's answer");
    assert_eq!(findings(&first), 1);
    for other in others {
        let other = other.expect("answered by the scan in flight");
        assert_eq!(other.report, first.report, "the same answer");
    }
    let scrape = plugin.metrics().await;
    assert_eq!(
        scrape.value("sidescan_scans_shared_total", &[]),
        (CALLERS - 1) as f64,
        "every caller but the first followed"
    );
    // Each layer of the shared image was looked up, missed and scanned once.
    assert_eq!(
        scrape.value("sidescan_cache_misses_total", &[("cache", "layer")]),
        2.0,
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.value("sidescan_cache_hits_total", &[("cache", "layer")]),
        0.0
    );
    assert_eq!(
        scrape.sum("sidescan_scans_total", &[("code", "OK")]),
        (CALLERS - 1) as f64
    );

    // Once landed, the flight is gone: a different image, then the same one again, each take
    // the (free) slot as scans of their own.
    let different = client
        .scan(scan_request(&registry, "load/other", "1"))
        .await
        .unwrap();
    assert_eq!(findings(&different), 0);
    let again = client
        .scan(scan_request(&registry, "load/same", "1"))
        .await
        .unwrap();
    assert_eq!(findings(&again), 1);
    let scrape = plugin.metrics().await;
    assert_eq!(
        scrape.value("sidescan_scans_shared_total", &[]),
        (CALLERS - 1) as f64
    );
}
