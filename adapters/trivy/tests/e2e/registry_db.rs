//! The vulnerability DB from the site's own registry (`--db-repository`), end to end: a real
//! `docker-registry` holding a fixture DB pushed with `sidescan artifact push trivy-db` (Trivy's
//! layout), the real trivy downloading it, the plugin starting from an empty cache. NOT_SERVING
//! until the DB is there, then SERVING; a newer DB under the same tag is picked up on
//! `--db-update-interval`, and a rescan shows its advisory (no result of the old DB is served).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sidescan_proto::v1 as pb;
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, workspace_binary};
use sidescan_testkit::registry::Registry;

use crate::common::fixture_db::{self, CVE_ALPINE_OPENSSL, CVE_ALPINE_ZLIB};
use crate::common::{World, images, trivy_bin};
use crate::{REPO, TAG};

/// Writes a fixture DB updated at `updated_at` (without the zlib advisory unless `with_zlib`)
/// into a new directory and pushes it to `reference` with the CLI.
fn push_db(reference: &str, updated_at: &str, with_zlib: bool, envs: &[(&str, &str)]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let advisories: Vec<_> = fixture_db::standard_advisories()
        .into_iter()
        .filter(|a| with_zlib || a.id != CVE_ALPINE_ZLIB)
        .collect();
    fixture_db::write_db(dir.path(), &advisories);
    fixture_db::write_metadata(dir.path(), updated_at);
    let out = Command::new(workspace_binary("sidescan"))
        .args(["artifact", "push", "trivy-db", reference])
        .arg(dir.path())
        .envs(envs.iter().copied())
        .output()
        .expect("run sidescan");
    assert!(
        out.status.success(),
        "sidescan artifact push trivy-db: {out:?}"
    );
}

async fn updated_at(plugin: &PluginProcess) -> Option<String> {
    let meta = plugin
        .scan_client()
        .await
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("metadata")
        .into_inner();
    meta.properties.get("trivy.db.updated_at").cloned()
}

/// Vulnerability ids found in the fixture image.
async fn scan_ids(plugin: &PluginProcess, registry: &Registry) -> Vec<String> {
    let req = pb::ScanRequest {
        image: format!("{REPO}:{TAG}"),
        registry: Some(pb::Registry {
            url: registry.url(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let report = plugin
        .scan_client()
        .await
        .scan_image(req)
        .await
        .unwrap_or_else(|e| panic!("scan: {e:?}\n{}", plugin.logs()))
        .into_inner()
        .report
        .expect("report");
    let mut ids: Vec<String> = report.vulnerabilities.into_iter().map(|f| f.id).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Starts the plugin on `world`'s (empty) cache with the DB from `db_ref`, checked every 2 s,
/// with `env` added to its environment.
fn start(world: &World, db_ref: &str, env: &[(&str, &str)]) -> PluginProcess {
    let trivy = trivy_bin().display().to_string();
    let cache = world.cache_dir().display().to_string();
    let flags = [
        "--trivy-bin",
        &trivy,
        "--trivy-cache-dir",
        &cache,
        "--db-repository",
        db_ref,
        "--db-update-interval",
        "2s",
    ];
    let plugin = Path::new(env!("CARGO_BIN_EXE_sidescan-trivy"));
    PluginProcess::start_with_env(plugin, &flags, env)
}

/// Waits until the plugin is SERVING (60 s at most); how long it took.
async fn until_serving(plugin: &PluginProcess) -> Duration {
    let started = Instant::now();
    while plugin.health().await != ServingStatus::Serving {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not SERVING after the DB was pushed; log:\n{}",
            plugin.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn db_from_a_registry_bootstraps_and_updates() {
    let registry = Registry::anonymous();
    registry.push(&images::alpine_image(), REPO, TAG).await;
    let world = World::empty();
    let db_ref = registry.image_ref("mirror/trivy-db", "2");
    let plugin = start(&world, &db_ref, &[]);

    // Nothing in the registry yet: not serving, scans refused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        plugin.health().await,
        ServingStatus::NotServing,
        "{}",
        plugin.logs()
    );

    push_db(&db_ref, "2024-05-01T00:00:00Z", false, &[]);
    let took = until_serving(&plugin).await;
    eprintln!("trivy DB bootstrap: push to SERVING took {took:?}");
    assert_eq!(
        updated_at(&plugin).await.as_deref(),
        Some("2024-05-01T00:00:00Z")
    );
    let first = scan_ids(&plugin, &registry).await;
    assert!(first.iter().any(|id| id == CVE_ALPINE_OPENSSL), "{first:?}");
    assert!(!first.iter().any(|id| id == CVE_ALPINE_ZLIB), "{first:?}");

    // A newer DB under the same tag, now with the zlib advisory.
    push_db(&db_ref, "2024-06-01T00:00:00Z", true, &[]);
    let pushed = Instant::now();
    while updated_at(&plugin).await.as_deref() != Some("2024-06-01T00:00:00Z") {
        assert!(
            pushed.elapsed() < Duration::from_secs(60),
            "new DB not picked up; log:\n{}",
            plugin.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = scan_ids(&plugin, &registry).await;
    eprintln!(
        "trivy DB update: push to a scan with the new DB took {:?}",
        pushed.elapsed()
    );
    assert!(second.iter().any(|id| id == CVE_ALPINE_ZLIB), "{second:?}");
    assert!(
        second.iter().any(|id| id == CVE_ALPINE_OPENSSL),
        "{second:?}"
    );
}

/// A registry with htpasswd auth: Trivy finds the credentials in the docker config the
/// plugin's environment names (`DOCKER_CONFIG`), as skopeo and oras would.
#[tokio::test]
async fn db_from_a_registry_with_credentials_from_the_docker_config() {
    let registry = Registry::htpasswd();
    let (user, password) = registry.credentials().expect("htpasswd credentials");
    let db_ref = registry.image_ref("mirror/trivy-db", "2");
    let creds = [
        ("SIDESCAN_REGISTRY_USERNAME", user),
        ("SIDESCAN_REGISTRY_PASSWORD", password),
    ];
    push_db(&db_ref, "2024-05-01T00:00:00Z", true, &creds);

    let world = World::empty();
    let docker = world.dir.path().join("docker");
    std::fs::create_dir(&docker).expect("docker config dir");
    let auth = sidescan_testkit::registry::basic_authorization(user, password);
    let auth = auth.trim_start_matches("Basic ");
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .expect("write config.json");
    let docker = docker.display().to_string();
    let plugin = start(&world, &db_ref, &[("DOCKER_CONFIG", &docker)]);
    until_serving(&plugin).await;
    // Without the credentials the registry refuses the DB: the same start never serves.
    let bare = World::empty();
    let without = start(&bare, &db_ref, &[("DOCKER_CONFIG", "/nonexistent")]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(without.health().await, ServingStatus::NotServing);
    assert_eq!(
        updated_at(&plugin).await.as_deref(),
        Some("2024-05-01T00:00:00Z")
    );
}
