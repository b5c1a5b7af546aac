//! The conformance suite against the real `sidescan-trivy` binary with the real trivy and the
//! fixture DB: every case that applies to a vulnerability scanner must pass.

mod common;

use std::time::Duration;

use common::World;
use sidescan_conformance::{Config, SMALL_LIMIT_FLAGS, run};
use sidescan_tests::plugin::{PluginProcess, ServingStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trivy_adapter_passes_every_conformance_case_that_applies() {
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
    let args = [&trivy_flags[..], SMALL_LIMIT_FLAGS].concat();
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
    assert_eq!(
        report.failed_names(),
        Vec::<&str>::new(),
        "{}\nplugin log:\n{}",
        report.summary_line(),
        plugin.logs()
    );
    assert_eq!(report.errors(), 0, "{}", report.summary_line());
}
