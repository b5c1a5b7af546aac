//! End to end through the SDK pipeline: the real `sidescan-trivy` binary on 127.0.0.1, the real
//! trivy 0.76 with the fixture DB (`common::fixture_db`), and a real `docker-registry` holding
//! the Alpine-like fixture image (`common::images`). The SDK pulls and verifies the image, writes
//! the OCI layout, Trivy scans it, and the caller gets the primary report plus the typed reports
//! (Harbor vulnerability JSON, CycloneDX SBOM); the `sidescan` CLI is checked against the same
//! plugin, and Harbor's scanner API (`--harbor-listen`) against a Harbor-shaped client.
//!
//! One test binary, one module per area; the setup they share is here.

mod cli;
#[path = "../common/mod.rs"]
mod common;
mod compare;
mod harbor;
mod health;
mod registry_db;
mod scan;

use std::time::Duration;

use common::World;
use common::images;
use sidescan_proto::v1 as pb;
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::plugin::PluginProcess;
use sidescan_testkit::registry::Registry;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub(crate) const UPDATED_AT: &str = "2024-05-01T00:00:00Z";
pub(crate) const REPO: &str = "fixtures/alpine";
pub(crate) const TAG: &str = "3.22";

/// A registry with the Alpine fixture pushed as `REPO:TAG`, the fixture DB, and the plugin.
pub(crate) struct Setup {
    // Drop order: plugin first (it may be mid-pull), then the registry, then the DB's temp dir.
    pub(crate) plugin: PluginProcess,
    pub(crate) registry: Registry,
    pub(crate) image: Artifact,
    pub(crate) digest: String,
    pub(crate) world: World,
}

impl Setup {
    pub(crate) async fn start() -> Self {
        Self::start_with(Registry::anonymous(), None, &[]).await
    }

    /// The fixture on `registry`, the plugin running `trivy_bin` (the real trivy when `None`)
    /// with `extra` flags.
    pub(crate) async fn start_with(
        registry: Registry,
        trivy_bin: Option<&std::path::Path>,
        extra: &[&str],
    ) -> Self {
        let world = World::with_db(UPDATED_AT);
        let image = images::alpine_image();
        let digest = registry.push(&image, REPO, TAG).await;
        let trivy = trivy_bin
            .map_or_else(common::trivy_bin, std::path::Path::to_path_buf)
            .display()
            .to_string();
        let cache = world.cache_dir().display().to_string();
        let mut args = vec![
            "--trivy-bin",
            &trivy,
            "--trivy-cache-dir",
            &cache,
            "--skip-db-update",
        ];
        args.extend_from_slice(extra);
        let plugin = PluginProcess::start(
            std::path::Path::new(env!("CARGO_BIN_EXE_sidescan-trivy")),
            &args,
        );
        let setup = Self {
            plugin,
            registry,
            image,
            digest,
            world,
        };
        assert!(
            setup.wait_health(ServingStatus::Serving).await,
            "plugin not SERVING with the fixture DB; log:\n{}",
            setup.plugin.logs()
        );
        setup
    }

    /// A request for the fixture image with these report types (and their parameters).
    pub(crate) fn request(&self, report_types: &[(&str, &[(&str, &str)])]) -> pb::ScanRequest {
        pb::ScanRequest {
            image: format!("{REPO}:{TAG}"),
            registry: Some(pb::Registry {
                url: self.registry.url(),
                authorization: self.registry.authorization().unwrap_or_default(),
                ..Default::default()
            }),
            report_types: report_types
                .iter()
                .map(|(mime_type, params)| {
                    (
                        (*mime_type).to_owned(),
                        pb::ReportParameters {
                            parameters: params
                                .iter()
                                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                                .collect(),
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    pub(crate) async fn health(&self) -> i32 {
        let mut client = HealthClient::new(self.plugin.channel().await);
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status)
            .unwrap_or(-1)
    }

    pub(crate) async fn wait_health(&self, want: ServingStatus) -> bool {
        for _ in 0..100 {
            if self.health().await == want as i32 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}
