//! The `sidescan-clamav` binary as a process beside a real clamd: flags, `GetMetadata`
//! (capabilities, clamd properties) and gRPC health following clamd's PING.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use sidescan_proto::v1 as pb;
use sidescan_testkit::clamd::ClamdProcess;
use sidescan_testkit::plugin::{PluginProcess, ServingStatus};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sidescan-clamav"))
}

#[tokio::test]
async fn metadata_and_health_follow_clamd() {
    let mut clamd = ClamdProcess::start();
    let plugin = PluginProcess::start(
        binary(),
        &["--clamd", &clamd.unix_addr(), "--malware-severity", "high"],
    );
    plugin.wait_for_health(ServingStatus::Serving).await;

    let meta = plugin
        .scan_client()
        .await
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("GetMetadata")
        .into_inner();
    assert_eq!(
        meta.scanner.as_ref().map(|s| s.name.as_str()),
        Some("sidescan-clamav")
    );
    assert_eq!(
        meta.properties.get("clamav.version").map(String::as_str),
        Some("1.4.6")
    );
    let cap = &meta.capabilities[0];
    assert_eq!(cap.r#type, "malware");
    assert_eq!(
        cap.produces_mime_types,
        [sidescan_proto::mime::MALWARE_REPORT]
    );
    assert!(
        cap.consumes_mime_types
            .iter()
            .any(|t| t == sidescan_proto::mime::OCI_MANIFEST)
    );
    assert!(
        cap.consumes_mime_types
            .iter()
            .any(|t| t == "application/octet-stream")
    );
    let features = meta.features.expect("features");
    assert!(
        features.layer_result_cache && features.artifact_blobs,
        "{features:?}"
    );

    let started = Instant::now();
    clamd.kill();
    plugin.wait_for_health(ServingStatus::NotServing).await;
    let down = started.elapsed();
    clamd.restart();
    plugin.wait_for_health(ServingStatus::Serving).await;
    eprintln!(
        "health NOT_SERVING {down:?} after clamd was killed, SERVING again {:?} after",
        started.elapsed()
    );
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["--clamd", "nowhere"][..],
        &["--malware-severity", "severe"],
        &["--clamd-connections", "0"],
    ] {
        let status = Command::new(binary())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run sidescan-clamav");
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}
