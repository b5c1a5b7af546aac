//! The cluster's result cache (`--nats`): two plugin replicas on one real nats-server. A layer
//! (or a whole image) replica A scanned is a hit on replica B, which then pulls only what it has
//! not seen, answers with the same findings, and counts the hit in its metrics.

use sidescan_proto::v1 as pb;
use sidescan_testkit::metrics::Scrape;
use sidescan_testkit::nats::NatsServer;
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, test_plugin_binary};
use sidescan_testkit::process::free_port;
use sidescan_testkit::registry::Registry;

use crate::support::{image_with, scan_request};

const SHARED_HITS: &str = "sidescan_shared_cache_hits_total";
const SHARED_MISSES: &str = "sidescan_shared_cache_misses_total";
const PULLED: &str = "sidescan_registry_pulled_bytes_total";

async fn replica(nats: &NatsServer, extra: &[&str]) -> PluginProcess {
    let url = nats.url();
    let mut args = vec!["--nats", url.as_str()];
    args.extend_from_slice(extra);
    let plugin = PluginProcess::start_with_metrics(&test_plugin_binary(), &args);
    plugin.wait_for_health(ServingStatus::Serving).await;
    plugin
}

/// Waits until the cluster's result bucket holds `n` results (replicas store in the background).
async fn wait_for_shared_results(nats: &NatsServer, n: usize) {
    use futures::StreamExt as _;
    let client = async_nats::connect(nats.url())
        .await
        .expect("connect to NATS");
    let kv = async_nats::jetstream::new(client)
        .get_key_value("sidescan-results")
        .await
        .expect("the result bucket exists");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let keys: Vec<_> = kv.keys().await.expect("list keys").collect().await;
        if keys.len() >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} results in the bucket after 10 s",
            keys.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn scan(
    plugin: &PluginProcess,
    registry: &Registry,
    repo: &str,
    tag: &str,
) -> pb::ScanReport {
    plugin
        .scan_client()
        .await
        .scan_image(scan_request(registry, repo, tag))
        .await
        .unwrap_or_else(|e| panic!("scan {repo}:{tag}: {e}\n{}", plugin.logs()))
        .into_inner()
        .report
        .expect("report")
}

fn layer_counts(scrape: &Scrape) -> (f64, f64) {
    (
        scrape.value(SHARED_HITS, &[("cache", "layer")]),
        scrape.value(SHARED_MISSES, &[("cache", "layer")]),
    )
}

#[tokio::test]
async fn a_base_layer_scanned_by_replica_a_is_a_shared_cache_hit_on_replica_b() {
    let nats = NatsServer::start();
    let registry = Registry::anonymous();
    let one = image_with("one");
    let two = image_with("two");
    registry.push(&one, "shared/app", "1").await;
    registry.push(&two, "shared/app", "2").await;
    let a = replica(&nats, &[]).await;
    let b = replica(&nats, &[]).await;

    let first = scan(&a, &registry, "shared/app", "1").await;
    assert_eq!(first.vulnerabilities.len(), 1, "{first:?}");
    assert_eq!(
        layer_counts(&a.metrics().await),
        (0.0, 2.0),
        "A saw nothing shared"
    );
    wait_for_shared_results(&nats, 2).await;

    // B scans another image on the same base: the base layer comes from A's scan.
    let second = scan(&b, &registry, "shared/app", "2").await;
    assert_eq!(second.vulnerabilities.len(), 1, "{second:?}");
    let scrape = b.metrics().await;
    assert_eq!(layer_counts(&scrape), (1.0, 1.0), "{}", scrape.text);
    let top = &two.layers[1].blob.data;
    let config = two.config.as_ref().map_or(0, |c| c.data.len());
    assert_eq!(
        scrape.value(PULLED, &[("kind", "blob")]),
        (config + top.len()) as f64,
        "B pulled the config and its top layer, not the base"
    );

    // B scans A's image: the base is on B's disk now (a shared hit is copied there), A's top
    // layer comes from the shared tier, and the findings are A's.
    let again = scan(&b, &registry, "shared/app", "1").await;
    assert_eq!(again.vulnerabilities, first.vulnerabilities);
    let scrape = b.metrics().await;
    assert_eq!(layer_counts(&scrape), (2.0, 1.0), "{}", scrape.text);
    assert_eq!(
        scrape.value("sidescan_cache_hits_total", &[("cache", "layer")]),
        3.0,
        "every layer but B's own top one was a hit"
    );
}

#[tokio::test]
async fn a_whole_image_result_is_shared_too() {
    let nats = NatsServer::start();
    let registry = Registry::anonymous();
    let image = image_with("whole");
    registry.push(&image, "shared/whole", "1").await;
    let a = replica(&nats, &["--whole-image"]).await;
    let b = replica(&nats, &["--whole-image"]).await;
    let first = scan(&a, &registry, "shared/whole", "1").await;
    wait_for_shared_results(&nats, 1).await;
    let second = scan(&b, &registry, "shared/whole", "1").await;
    assert_eq!(first.vulnerabilities.len(), 1, "{first:?}");
    assert_eq!(second.vulnerabilities, first.vulnerabilities);
    let scrape = b.metrics().await;
    assert_eq!(scrape.value(SHARED_HITS, &[("cache", "image")]), 1.0);
    let config = image.config.as_ref().map_or(0, |c| c.data.len());
    assert_eq!(
        scrape.value(PULLED, &[("kind", "blob")]),
        config as f64,
        "B read the config and no layer: it scanned nothing itself"
    );
}

#[tokio::test]
async fn a_plugin_whose_nats_is_unreachable_does_not_start() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let cache = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new(test_plugin_binary())
            .args(["--listen", "127.0.0.1:0", "--nats", &url, "--cache-dir"])
            .arg(cache.path())
            .output(),
    )
    .await
    .expect("the plugin gave up within 30 s")
    .expect("run the plugin");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stderr}{stdout}");
    assert!(
        format!("{stderr}{stdout}").contains("--nats"),
        "the error names the flag: {stderr}{stdout}"
    );
}

#[tokio::test]
async fn scans_go_on_when_nats_goes_away() {
    let nats = NatsServer::start();
    let registry = Registry::anonymous();
    registry.push(&image_with("away"), "shared/away", "1").await;
    let plugin = replica(&nats, &[]).await;
    drop(nats);
    let started = std::time::Instant::now();
    let report = scan(&plugin, &registry, "shared/away", "1").await;
    assert_eq!(report.vulnerabilities.len(), 1, "{report:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the scan waited on NATS: {:?}",
        started.elapsed()
    );
    let again = scan(&plugin, &registry, "shared/away", "1").await;
    assert_eq!(
        again.vulnerabilities, report.vulnerabilities,
        "the disk tier still serves"
    );
}
