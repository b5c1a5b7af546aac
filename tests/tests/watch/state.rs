//! The registry is the state: a watcher restarted from nothing rescans nothing already
//! reported, finds what it missed, and rescans everything when the engine version changes.

use std::time::Duration;

use sidescan_oci::referrers;

use crate::support::{
    client, marked_image, metric, setup, skopeo_push, start_watch, test_plugin, wait_for_report,
    wait_metric,
};

#[tokio::test]
async fn restart_loses_nothing_and_a_new_engine_version_is_rescanned_by_the_reconcile_loop() {
    let e1 = test_plugin("engine-1").await;
    let s = setup(&[&e1], &[]).await;
    let oci = client(&s.registry);
    let listen = s.watch.url().trim_start_matches("http://").to_string();
    let a = skopeo_push(&s.registry, &marked_image("a"), "app", "a");
    wait_for_report(
        &oci,
        "app",
        &a,
        "sidescan-test-plugin",
        Some("engine-1"),
        Duration::from_secs(30),
        || s.watch.logs(),
    )
    .await;

    // The watcher goes away (with whatever it had in memory); an image is pushed meanwhile.
    let crate::support::Setup {
        registry,
        mut watch,
    } = s;
    watch.stop();
    let b = skopeo_push(&registry, &marked_image("b"), "app", "b");

    // A new watcher on the same address, reconciling: B is found, A is not scanned again.
    let watch = start_watch(
        &listen,
        &registry.url(),
        &[&e1],
        &["--reconcile-interval", "1s"],
    );
    wait_for_report(
        &oci,
        "app",
        &b,
        "sidescan-test-plugin",
        Some("engine-1"),
        Duration::from_secs(30),
        || watch.logs(),
    )
    .await;
    wait_metric(
        &watch,
        "sidescan_watch_scans_total{scanner=\"sidescan-test-plugin\",outcome=\"current\"}",
        1.0,
    )
    .await;
    let text = watch.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "sidescan_watch_scans_total{scanner=\"sidescan-test-plugin\",outcome=\"reported\"}"
        ),
        1.0,
        "only B: {text}"
    );
    drop(watch);

    // New signatures: the plugin now reports engine-2; the reconcile loop rescans both images
    // and each keeps exactly one current report.
    let e2 = test_plugin("engine-2").await;
    let watch = start_watch(
        &listen,
        &registry.url(),
        &[&e2],
        &["--reconcile-interval", "1s"],
    );
    for digest in [&a, &b] {
        let found = wait_for_report(
            &oci,
            "app",
            digest,
            "sidescan-test-plugin",
            Some("engine-2"),
            Duration::from_secs(30),
            || watch.logs(),
        )
        .await;
        assert_eq!(found.summary["high"], 1, "{found:?}");
        let listed = referrers::list(&oci, "app", digest).await.unwrap();
        assert_eq!(
            listed.entries.len(),
            1,
            "the engine-1 report was replaced: {:?}",
            listed.entries
        );
    }
}
