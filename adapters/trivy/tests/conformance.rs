//! The conformance suite against the real `sidescan-trivy` binary with the real trivy and the
//! fixture DB: with the default `--image-source layout` every case that applies to a
//! vulnerability scanner must pass; with `--image-source registry` exactly the cases that need
//! the SDK to read the layers fail, as README and BENCHMARKS.md say.

mod common;

use std::time::Duration;

use common::World;
use sidescan_conformance::{Config, RunReport, SMALL_LIMIT_FLAGS, run};
use sidescan_testkit::plugin::{PluginProcess, ServingStatus};

/// Runs the whole suite against the adapter started with `extra` flags; returns the report and
/// the plugin's log.
async fn run_suite(extra: &[&str]) -> (RunReport, String) {
    let world = World::with_db("2024-05-01T00:00:00Z");
    let trivy = common::trivy_bin().display().to_string();
    let cache = world.cache_dir().display().to_string();
    let trivy_flags = [
        "--trivy-bin",
        &trivy,
        "--trivy-cache-dir",
        &cache,
        "--skip-db-update",
    ];
    // Small limits, so the limit cases apply and run quickly.
    let args = [&trivy_flags[..], SMALL_LIMIT_FLAGS, extra].concat();
    let plugin = PluginProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_sidescan-trivy")),
        &args,
    );
    plugin.wait_for_health(ServingStatus::Serving).await;
    let mut config = Config::new(plugin.url());
    config.case_timeout = Duration::from_secs(120);
    let report = run(&config, |r| println!("{}", r.line()))
        .await
        .expect("the suite runs");
    println!("{}", report.summary_line());
    assert!(report.cases.len() >= 40, "{} cases ran", report.cases.len());
    assert_eq!(report.errors(), 0, "{}", report.summary_line());
    (report, plugin.logs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trivy_adapter_passes_every_conformance_case_that_applies() {
    let (report, logs) = run_suite(&[]).await;
    assert_eq!(
        report.failed_names(),
        Vec::<&str>::new(),
        "{}\nplugin log:\n{logs}",
        report.summary_line(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_image_source_registry_only_the_cases_that_need_the_sdk_to_read_layers_fail() {
    let (report, logs) = run_suite(&["--image-source", "registry"]).await;
    // Trivy pulls the layers itself: the SDK cannot bound their uncompressed content or check
    // their diff_ids. Corrupt content is still DATA_LOSS (Trivy checks blob digests; its errors
    // are mapped), so those cases pass.
    assert_eq!(
        report.failed_names(),
        vec![
            "limits/file-bytes-over-limit-is-resource-exhausted",
            "limits/uncompressed-bytes-over-limit-is-resource-exhausted",
            "limits/entries-over-limit-is-resource-exhausted",
            "limits/compression-ratio-over-limit-is-resource-exhausted",
            "robustness/hostile-wrong-diff-id",
        ],
        "{}\nplugin log:\n{logs}",
        report.summary_line(),
    );
}
