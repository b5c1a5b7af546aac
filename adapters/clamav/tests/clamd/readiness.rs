//! Readiness, engine version and properties: following clamd up and down, signature changes and
//! the settling RELOAD; what `info` advertises.

use std::time::{Duration, Instant};

use sidescan_clamav::{ClamavConfig, ClamavScanner};
use sidescan_sdk::{Readiness, Scanner};
use sidescan_testkit::clamd::ClamdProcess;

use crate::addr;

#[tokio::test]
async fn readiness_follows_clamd_and_engine_version_comes_back() {
    let mut clamd = ClamdProcess::start();
    let mut config = ClamavConfig::new(addr(&clamd.unix_addr()));
    config.clamd_database_dir = Some(clamd.database_dir());
    let scanner = ClamavScanner::new(config);
    assert_eq!(scanner.readiness().await, Readiness::Ready);
    let v1 = scanner.engine_version().await.expect("engine version");
    assert!(v1.starts_with("1.4.6+policy."), "{v1}");
    assert!(v1.contains("+db."), "{v1}");
    let props = scanner.properties().await;
    assert_eq!(
        props.get("clamav.version").map(String::as_str),
        Some("1.4.6")
    );
    assert!(props.contains_key("clamav.signature_version"), "{props:?}");
    assert!(props.contains_key("clamav.signature_date"), "{props:?}");

    clamd.kill();
    let started = Instant::now();
    match scanner.readiness().await {
        Readiness::NotReady(reason) => assert!(reason.contains("PING"), "{reason}"),
        Readiness::Ready => panic!("ready with clamd killed"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let err = scanner.engine_version().await.expect_err("no clamd");
    assert_eq!(format!("{:?}", err.code()), "Unavailable");

    // A signature change while clamd is down: the engine version changes with it.
    std::fs::write(
        clamd.database_dir().join("extra.hdb"),
        "0123456789abcdef0123456789abcdef:10:Extra-Test\n",
    )
    .expect("extra.hdb");
    clamd.restart();
    assert_eq!(scanner.readiness().await, Readiness::Ready);
    let v2 = scanner.engine_version().await.expect("engine version");
    assert!(
        v2.starts_with("1.4.6+policy.") && v2.contains("+db."),
        "{v2}"
    );
    assert_ne!(v1, v2, "new signatures, same engine version");
}

#[test]
fn info_advertises_malware_reports_images_and_artifacts() {
    let scanner = ClamavScanner::new(ClamavConfig::new(addr("unix:/nonexistent.sock")));
    let info = scanner.info();
    assert_eq!(info.name, "sidescan-clamav");
    let cap = &info.capabilities[0];
    assert_eq!(cap.kind, "malware");
    assert_eq!(cap.produces, [sidescan_proto::mime::MALWARE_REPORT]);
    for t in [
        sidescan_proto::mime::OCI_MANIFEST,
        sidescan_proto::mime::DOCKER_MANIFEST_LIST,
        "application/octet-stream",
    ] {
        assert!(cap.consumes.iter().any(|c| c == t), "{t} missing");
    }
}

#[tokio::test]
async fn after_a_database_change_the_key_switches_only_once_the_reload_settled() {
    let clamd = ClamdProcess::start();
    let mut config = ClamavConfig::new(addr(&clamd.unix_addr()));
    config.clamd_database_dir = Some(clamd.database_dir());
    config.clamd_reload_settle = Duration::from_millis(1500);
    let scanner = ClamavScanner::new(config.clone());
    assert_eq!(scanner.readiness().await, Readiness::Ready);
    let before = scanner.engine_version().await.expect("engine version");
    assert!(!before.contains("reloading"), "{before}");

    std::fs::write(
        clamd.database_dir().join("extra.hdb"),
        "0123456789abcdef0123456789abcdef:10:Extra-Test\n",
    )
    .expect("extra.hdb");
    // The next readiness check sees the change and sends RELOAD.
    assert_eq!(scanner.readiness().await, Readiness::Ready);
    let during = scanner.engine_version().await.expect("engine version");
    assert!(during.contains(".reloading."), "{during}");
    assert_ne!(during, before);
    // Stable while settling.
    assert_eq!(
        scanner.engine_version().await.expect("engine version"),
        during
    );

    tokio::time::sleep(Duration::from_millis(1700)).await;
    let after = scanner.engine_version().await.expect("engine version");
    assert!(!after.contains("reloading"), "{after}");
    assert_ne!(after, before);
    assert!(during.starts_with(&after), "{during} / {after}");
    // The settled key is the one a fresh scanner computes for the new database.
    let fresh = ClamavScanner::new(config);
    assert_eq!(fresh.engine_version().await.expect("engine version"), after);
}
