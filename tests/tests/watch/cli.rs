//! `sidescan report` reads what the watcher (or `sidescan scan --attach`) attached.

use std::process::Command;

use sidescan_testkit::fixtures;
use sidescan_testkit::plugin::workspace_binary;
use sidescan_testkit::registry::Registry;

use crate::support::{marked_image, test_plugin};

fn sidescan(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(workspace_binary("sidescan"))
        .args(args)
        .env("HOME", std::env::temp_dir())
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("run sidescan");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn scan_attach_then_report_in_every_format_and_unscanned_is_not_clean() {
    let plugin = test_plugin("e1").await;
    let registry = Registry::anonymous();
    registry.push(&marked_image("cli"), "ci", "1").await;
    registry.push(&fixtures::clean_image(), "never", "1").await;
    let image = format!("{}/ci:1", registry.host());
    let url = registry.url();

    // An image nobody scanned: no report; with --fail-on that is a failure, not a pass.
    let never = format!("{}/never:1", registry.host());
    let (code, _, err) = sidescan(&["report", &never, "--registry", &url, "--fail-on", "high"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no sidescan report"), "{err}");
    let (code, _, err) = sidescan(&["report", &never, "--registry", &url]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = sidescan(&[
        "--plugin",
        &plugin.url(),
        "scan",
        &image,
        "--registry",
        &url,
        "--insecure",
        "--attach",
        "--attach-format",
        "sarif",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("attached: ci@sha256:"), "{err}");

    let (code, out, err) = sidescan(&["report", &image, "--registry", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("sidescan-test-plugin") && out.contains("app/finding.txt"),
        "{out}"
    );
    assert!(out.contains("complete"), "{out}");

    let (code, out, _) = sidescan(&["report", &image, "--registry", &url, "--format", "json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["reports"][0]["scanner"], "sidescan-test-plugin");
    assert_eq!(json["reports"][0]["engineVersion"], "e1");
    assert_eq!(
        json["reports"][0]["response"]["report"]["summary"]["high"],
        1
    );

    let (code, out, _) = sidescan(&["report", &image, "--registry", &url, "--format", "sarif"]);
    assert_eq!(code, 0);
    let sarif: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "SIDESCAN-TEST");

    let (code, _, _) = sidescan(&["report", &image, "--registry", &url, "--fail-on", "high"]);
    assert_eq!(code, 1, "a HIGH finding fails --fail-on high");
    let (code, _, _) = sidescan(&[
        "report",
        &image,
        "--registry",
        &url,
        "--fail-on",
        "critical",
    ]);
    assert_eq!(code, 0);
    let (code, _, err) = sidescan(&["report", "nope:1", "--registry", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NOT_FOUND"), "{err}");
}

#[tokio::test]
async fn an_incomplete_scan_is_annotated_incomplete_and_fails_the_report_gate() {
    // A layer of a media type nobody can unpack is skipped with a notice: the report is
    // incomplete.
    let plugin = test_plugin("e1").await;
    let registry = Registry::anonymous();
    let case = sidescan_testkit::hostile::unknown_layer_media_type();
    registry.push(&case.artifact, "partial", "1").await;
    let image = format!("{}/partial:1", registry.host());
    let url = registry.url();
    let (code, out, err) = sidescan(&[
        "--plugin",
        &plugin.url(),
        "scan",
        &image,
        "--registry",
        &url,
        "--insecure",
        "--attach",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("incomplete"), "{err}");
    let (_, out, _) = sidescan(&["report", &image, "--registry", &url, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["reports"][0]["complete"], false, "{out}");
    let (code, out, err) = sidescan(&[
        "report",
        &image,
        "--registry",
        &url,
        "--fail-on",
        "critical",
    ]);
    assert_eq!(code, 1, "an incomplete report is not a pass:\n{out}\n{err}");
    assert!(out.contains("INCOMPLETE"), "{out}");
}
