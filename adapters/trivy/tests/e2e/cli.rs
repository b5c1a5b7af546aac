//! The `sidescan` CLI against the plugin.

use crate::common::fixture_db::*;
use sidescan_testkit::plugin::workspace_binary;

use crate::{REPO, Setup, TAG};

fn sidescan(args: &[&str]) -> std::process::Output {
    std::process::Command::new(workspace_binary("sidescan"))
        .args(args)
        .env_remove("SIDESCAN_REGISTRY_USERNAME")
        .env_remove("SIDESCAN_REGISTRY_PASSWORD")
        .env_remove("SIDESCAN_REGISTRY_TOKEN")
        .output()
        .expect("run sidescan")
}

#[tokio::test]
async fn cli_fail_on_high_exits_one_and_prints_the_cves() {
    let s = Setup::start().await;
    let url = s.plugin.url();
    let reg = s.registry.url();
    let image = format!("{REPO}:{TAG}");
    let base = ["scan", image.as_str(), "--plugin", &url, "--registry", &reg];

    let high = sidescan(&[&base[..], &["--fail-on", "high"]].concat());
    assert_eq!(
        high.status.code(),
        Some(1),
        "HIGH and CRITICAL findings with --fail-on high: {high:?}"
    );
    let table = String::from_utf8_lossy(&high.stdout);
    for id in [CVE_ALPINE_OPENSSL, CVE_ALPINE_ZLIB] {
        assert!(table.contains(id), "table lacks {id}:\n{table}");
    }
    assert!(
        !table.contains(CVE_ALPINE_BUSYBOX_ALREADY_FIXED),
        "already fixed:\n{table}"
    );

    let plain = sidescan(&base);
    assert_eq!(
        plain.status.code(),
        Some(0),
        "no --fail-on, no failure: {plain:?}"
    );
}
