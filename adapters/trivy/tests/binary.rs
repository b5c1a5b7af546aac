//! The `sidescan-trivy` binary as a registry would run it: flags, GetMetadata and health over
//! gRPC on 127.0.0.1, on the real trivy and the fixture DB.

mod common;

use std::time::Duration;

use common::World;
use common::fixture_db;
use sidescan_proto::mime;
use sidescan_proto::v1::GetMetadataRequest;
use sidescan_testkit::plugin::PluginProcess;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const UPDATED_AT: &str = "2024-05-01T00:00:00Z";

fn start(w: &World) -> PluginProcess {
    let trivy = common::trivy_bin().display().to_string();
    let cache = w.cache_dir().display().to_string();
    PluginProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_sidescan-trivy")),
        &[
            "--trivy-bin",
            &trivy,
            "--trivy-cache-dir",
            &cache,
            "--skip-db-update",
            "--scanners",
            "vuln,secret",
        ],
    )
}

async fn health(p: &PluginProcess) -> i32 {
    let mut client = HealthClient::new(p.channel().await);
    client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

async fn wait_health(p: &PluginProcess, want: ServingStatus) -> bool {
    for _ in 0..100 {
        if health(p).await == want as i32 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn metadata_reports_trivy_and_db_and_health_follows_the_db() {
    let w = World::with_db(UPDATED_AT);
    let plugin = start(&w);
    let mut client = plugin.scan_client().await;
    let meta = client
        .get_metadata(GetMetadataRequest {})
        .await
        .expect("GetMetadata")
        .into_inner();
    let scanner = meta.scanner.expect("scanner");
    assert_eq!(scanner.name, "sidescan-trivy");
    assert_eq!(meta.properties["trivy.version"], "0.76.0");
    assert_eq!(meta.properties["trivy.db.version"], "2");
    assert_eq!(meta.properties["trivy.db.updated_at"], UPDATED_AT);
    assert_eq!(meta.properties["trivy.scanners"], "vuln,secret");
    let produces: Vec<&str> = meta
        .capabilities
        .iter()
        .flat_map(|c| c.produces_mime_types.iter().map(String::as_str))
        .collect();
    assert!(
        produces.contains(&mime::VULNERABILITY_REPORT),
        "{produces:?}"
    );
    assert!(produces.contains(&mime::SBOM_REPORT), "{produces:?}");
    assert!(
        wait_health(&plugin, ServingStatus::Serving).await,
        "SERVING with a DB; log:\n{}",
        plugin.logs()
    );

    // Take the DB away: NOT_SERVING; put it back: SERVING.
    std::fs::remove_file(w.db_dir().join("metadata.json")).expect("remove");
    assert!(
        wait_health(&plugin, ServingStatus::NotServing).await,
        "NOT_SERVING without a DB"
    );
    fixture_db::write_metadata(&w.db_dir(), UPDATED_AT);
    assert!(
        wait_health(&plugin, ServingStatus::Serving).await,
        "SERVING again"
    );
}
