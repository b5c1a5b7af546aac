//! `skopeo copy` to a docker-registry that notifies the watcher → reports appear as referrers.

use std::time::Duration;

use sidescan_oci::{referrers, report};
use sidescan_testkit::clamd::ClamdProcess;
use sidescan_testkit::fixtures;
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, workspace_binary};

use crate::support::{
    client, metric, report_document, setup, skopeo_push, test_plugin, wait_for_report, wait_metric,
};

#[tokio::test]
async fn an_infected_push_gets_a_clamav_report_naming_the_file_in_the_referrers_tag() {
    let clamd = ClamdProcess::start();
    let clamav = PluginProcess::start(
        &workspace_binary("sidescan-clamav"),
        &["--clamd", &clamd.unix_addr()],
    );
    clamav.wait_for_health(ServingStatus::Serving).await;
    let s = setup(&[&clamav], &["--attach-format", "sarif"]).await;
    let digest = skopeo_push(&s.registry, &fixtures::eicar_top_layer(), "app", "1.0");

    let oci = client(&s.registry);
    let started = std::time::Instant::now();
    let found = wait_for_report(
        &oci,
        "app",
        &digest,
        "sidescan-clamav",
        None,
        Duration::from_secs(30),
        || s.watch.logs(),
    )
    .await;
    eprintln!("push to report: {:?}", started.elapsed());
    assert!(found.complete);
    assert!(
        found.summary["critical"] >= 1 || found.summary["high"] >= 1,
        "{found:?}"
    );

    // The registry has no referrers API: the report is in the sha256-<hex> index.
    let index = oci
        .manifest("app", &referrers::fallback_tag(&digest))
        .await
        .unwrap()
        .expect("referrers tag");
    assert!(
        index.json["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["digest"] == found.digest.as_str())
    );

    let response = report_document(&oci, "app", &found.digest).await;
    let findings = &response.report.as_ref().unwrap().vulnerabilities;
    assert!(
        findings
            .iter()
            .any(|f| f.path.ends_with(fixtures::EICAR_PATH)),
        "the report names the EICAR file: {findings:?}"
    );

    // `sidescan report` prints it without scanning; --fail-on high fails on it.
    let image = format!("{}/app:1.0", s.registry.host());
    let out = std::process::Command::new(workspace_binary("sidescan"))
        .args([
            "report",
            &image,
            "--registry",
            &s.registry.url(),
            "--fail-on",
            "high",
        ])
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(fixtures::EICAR_PATH) && stdout.contains("sidescan-clamav"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");

    // SARIF beside it, with the created annotation Ratify requires.
    let listed = referrers::list(&oci, "app", &digest).await.unwrap();
    let sarif = listed
        .entries
        .iter()
        .find(|e| e.artifact_type.as_deref() == Some(report::SARIF_ARTIFACT_TYPE))
        .unwrap_or_else(|| panic!("SARIF referrer: {:?}\n{}", listed.entries, s.watch.logs()));
    assert!(
        sarif
            .annotations
            .as_ref()
            .unwrap()
            .contains_key(report::CREATED)
    );
    let doc = referrers::document(&oci, "app", &sarif.digest, 1 << 20)
        .await
        .unwrap();
    let log: serde_json::Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(log["version"], "2.1.0");
    assert!(
        log["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| {
                r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(fixtures::EICAR_PATH))
            })
    );

    // The reports' own pushes (manifests by digest, the referrers tag) raised events too, and
    // none of them was scanned.
    let text = s.watch.metrics_text().await;
    assert!(
        metric(
            &text,
            "sidescan_watch_skipped_total{reason=\"not-an-image\"}"
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "sidescan_watch_scans_total{scanner=\"sidescan-clamav\",outcome=\"reported\"}"
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_clean_image_gets_a_complete_clean_report_and_a_repush_is_not_rescanned() {
    let plugin = test_plugin("test-engine-1").await;
    let (sink, events) = crate::support::event_sink();
    let s = setup(&[&plugin], &["--emit", &sink]).await;
    let oci = client(&s.registry);
    let digest = skopeo_push(&s.registry, &fixtures::clean_image(), "clean", "1");
    let found = wait_for_report(
        &oci,
        "clean",
        &digest,
        "sidescan-test-plugin",
        Some("test-engine-1"),
        Duration::from_secs(30),
        || s.watch.logs(),
    )
    .await;
    assert!(found.complete);
    assert_eq!(found.summary["total"], 0);
    let response = report_document(&oci, "clean", &found.digest).await;
    assert!(response.report.unwrap().vulnerabilities.is_empty());

    // A CloudEvent announced it, shaped like zot's image.scanned.
    let event = events
        .recv_timeout(Duration::from_secs(20))
        .expect("a CloudEvent on --emit");
    let event: serde_json::Value = serde_json::from_str(&event).unwrap();
    assert_eq!(event["type"], "dev.sidescan.image.scanned");
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["data"]["name"], "clean");
    assert_eq!(event["data"]["digest"], digest.as_str());
    assert_eq!(event["data"]["summary"]["count"], 0);
    assert_eq!(event["data"]["summary"]["maxSeverity"], "NONE");
    assert_eq!(event["data"]["complete"], true);
    assert_eq!(event["data"]["report"]["digest"], found.digest.as_str());

    // The same digest again, under another tag: an event, no second scan.
    skopeo_push(&s.registry, &fixtures::clean_image(), "clean", "again");
    wait_metric(
        &s.watch,
        "sidescan_watch_scans_total{scanner=\"sidescan-test-plugin\",outcome=\"current\"}",
        1.0,
    )
    .await;
    let text = s.watch.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "sidescan_watch_scans_total{scanner=\"sidescan-test-plugin\",outcome=\"reported\"}"
        ),
        1.0,
        "{text}"
    );
    let listed = referrers::list(&oci, "clean", &digest).await.unwrap();
    assert_eq!(
        listed.entries.len(),
        1,
        "one current report: {:?}",
        listed.entries
    );
}
