//! The `sidescan` binary against an in-test Scan server (a test double for the plugin): flags
//! reach the request, output formats, exit codes.

mod gate;
mod support;

use std::path::Path;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use support::{Plugin, router, sidescan, start, text};

#[tokio::test]
async fn metadata_as_table_and_canonical_json() {
    let (url, _plugin) = start(true).await;
    let out = sidescan(&["metadata", "--plugin", &url], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "test-plugin",
        "sidescan.v1",
        "max_image_bytes",
        "engine.version",
    ] {
        assert!(stdout.contains(expected), "{expected} missing:\n{stdout}");
    }

    let out = sidescan(&["--plugin", &url, "metadata", "--format", "json"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["apiVersion"], "sidescan.v1");
    assert_eq!(json["scanner"]["name"], "test-plugin");
    // uint64 as a string, lowerCamelCase names.
    assert_eq!(json["limits"]["maxImageBytes"], "1073741824");
}

#[tokio::test]
async fn scan_json_is_canonical_and_identical_for_both_rpcs() {
    let (url, _plugin) = start(true).await;
    let base = [
        "scan",
        "app:1.0",
        "--plugin",
        &url,
        "--format",
        "json",
        "--report-type",
        "vulnerability",
    ];
    let unary = sidescan(&[&base[..], &["--rpc", "unary"]].concat(), &[]).await;
    let stream = sidescan(&[&base[..], &["--rpc", "stream"]].concat(), &[]).await;
    let auto = sidescan(&base, &[]).await;
    for out in [&unary, &stream, &auto] {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        // Not a terminal: nothing on stderr but the incomplete line (the report has a notice).
        assert_eq!(
            text(&out.stderr),
            "incomplete: 1 notice (file-too-large x1)\n"
        );
    }
    assert_eq!(unary.stdout, stream.stdout);
    assert_eq!(unary.stdout, auto.stdout);

    let json: serde_json::Value = serde_json::from_slice(&unary.stdout).expect("json");
    let report = &json["report"];
    assert_eq!(report["generatedAt"], "2023-11-14T22:13:20Z");
    assert_eq!(report["vulnerabilities"][0]["severity"], "SEVERITY_HIGH");
    assert_eq!(report["vulnerabilities"][0]["installedVersion"], "3.3.0-r0");
    assert_eq!(report["vulnerabilities"][1]["kind"], "FINDING_KIND_MALWARE");
    assert_eq!(report["notices"][0]["code"], "file-too-large");
    // The double left `incomplete` unset; the CLI derives it from the notices.
    assert_eq!(report["summary"]["incomplete"], true);
    assert_eq!(report["summary"]["noticeCount"], 1);
    let typed = &json["reports"][0];
    assert_eq!(typed["status"], "REPORT_STATUS_SUCCEEDED");
    // bytes in base64.
    assert_eq!(typed["document"], "eyJmaW5kaW5ncyI6MX0=");
}

#[tokio::test]
async fn scan_table_shows_findings_summary_and_notices() {
    let (url, _plugin) = start(true).await;
    let out = sidescan(&["scan", "app:1.0", "--plugin", &url], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for expected in [
        "127.0.0.1:5000/app:1.0@sha256:1111",
        "linux/amd64",
        "test-plugin 1.0.0 (tests)",
        "CVE-2024-0001",
        "3.3.0-r0 → 3.3.1-r1",
        "/eicar.com",
        "malware",
        "Summary: 2 findings",
        "max severity HIGH",
        "NOTICES: 1",
        "WARNING: INCOMPLETE, not everything was scanned",
        "file-too-large",
        "…",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    // The server's order is kept: HIGH before LOW.
    assert!(stdout.find("CVE-2024-0001") < stdout.find("Eicar-Test-Signature"));
}

#[tokio::test]
async fn fail_on_sets_exit_code_one() {
    let (url, _plugin) = start(true).await;
    // A complete report (no notices): only the findings decide.
    for (threshold, code) in [("unknown", 1), ("low", 1), ("high", 1), ("critical", 0)] {
        let out = sidescan(
            &[
                "scan",
                "clean:1.0",
                "--plugin",
                &url,
                "--fail-on",
                threshold,
            ],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(code), "--fail-on {threshold}");
        assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    }
}

#[tokio::test]
async fn rpc_errors_exit_two_with_the_code_name() {
    let (url, _plugin) = start(true).await;
    for rpc in ["unary", "stream"] {
        let out = sidescan(
            &["scan", "missing:1.0", "--plugin", &url, "--rpc", rpc],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            text(&out.stderr),
            "error: NOT_FOUND: manifest unknown: missing:1.0\n"
        );
        assert!(out.stdout.is_empty());
    }
    let out = sidescan(&["scan", "app", "--plugin", "http://127.0.0.1:1"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: UNAVAILABLE: "),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn flags_reach_the_request() {
    let (url, plugin) = start(true).await;
    let out = sidescan(
        &[
            "scan",
            "app:1.0",
            "--plugin",
            &url,
            "--registry",
            "http://127.0.0.1:5000",
            "--insecure",
            "--platform",
            "linux/arm64/v8",
            "--report-type",
            "malware",
            "--report-param",
            "depth=2",
            "--timeout",
            "5m",
            "--request-id",
            "req-7",
        ],
        &[
            ("SIDESCAN_REGISTRY_USERNAME", "alice"),
            ("SIDESCAN_REGISTRY_PASSWORD", "s3cret"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("s3cret"));
    let seen = plugin.last();
    let registry = seen.request.registry.expect("registry");
    assert_eq!(registry.url, "http://127.0.0.1:5000");
    assert_eq!(registry.authorization, "Basic YWxpY2U6czNjcmV0");
    assert!(registry.insecure);
    let platform = seen.request.platform.expect("platform");
    assert_eq!(
        (
            platform.os.as_str(),
            platform.architecture.as_str(),
            platform.variant.as_str()
        ),
        ("linux", "arm64", "v8")
    );
    let params = &seen.request.report_types[sidescan_proto::mime::MALWARE_REPORT];
    assert_eq!(params.parameters["depth"], "2");
    assert_eq!(seen.request_id.as_deref(), Some("req-7"));
    let timeout = seen.grpc_timeout.expect("grpc-timeout");
    assert!(
        timeout.ends_with('m')
            || timeout.ends_with('u')
            || timeout.ends_with('S')
            || timeout.ends_with('M'),
        "{timeout}"
    );

    let out = sidescan(
        &["scan", "app:1.0", "--plugin", &url, "--token", "tkn"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        plugin
            .last()
            .request
            .registry
            .expect("registry")
            .authorization,
        "Bearer tkn"
    );

    // Bad flags: exit 2 before any call.
    let before = plugin.seen.lock().expect("lock").len();
    for args in [
        vec![
            "scan",
            "app",
            "--plugin",
            url.as_str(),
            "--platform",
            "linux",
        ],
        vec!["scan", "app", "--plugin", url.as_str(), "--username", "bob"],
        vec![
            "scan",
            "app",
            "--plugin",
            url.as_str(),
            "--report-type",
            "virus",
        ],
    ] {
        let out = sidescan(&args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).starts_with("error: "),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(plugin.seen.lock().expect("lock").len(), before);
}

#[tokio::test]
async fn plugin_config_supplies_plugin_and_registry() {
    let (url, plugin) = start(true).await;
    let port = url.rsplit(':').next().expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("plugin_config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"name": "Test", "integrationPoints": [{{"interface": "VulnScanner",
                "grpcConnection": {{"addr": "127.0.0.1", "port": {port}}},
                "options": {{"zot-addr": "localhost:8080"}}}}]}}"#
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path");
    let out = sidescan(&["scan", "app:1.0", "--plugin-config", config], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        plugin.last().request.registry.expect("registry").url,
        "localhost:8080"
    );

    let out = sidescan(
        &[
            "scan",
            "app:1.0",
            "--plugin-config",
            config,
            "--registry",
            "http://other:5000",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        plugin.last().request.registry.expect("registry").url,
        "http://other:5000"
    );

    let out = sidescan(&["health", "--plugin-config", config], &[]).await;
    assert_eq!(text(&out.stdout), "SERVING\n");
}

#[tokio::test]
async fn output_dir_saves_documents_and_failed_reports_exit_two() {
    let (url, _plugin) = start(true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("reports");
    let out = sidescan(
        &[
            "scan",
            "app:1.0",
            "--plugin",
            &url,
            "--report-type",
            "vulnerability",
            "--report-type",
            "malware",
            "--output-dir",
            out_dir.to_str().expect("utf-8"),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for name in ["vulnerability.report.json", "malware.report.json"] {
        let saved = std::fs::read(out_dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(saved, br#"{"findings":1}"#);
    }
    assert!(text(&out.stdout).contains("saved to"));

    let out = sidescan(
        &[
            "scan",
            "app:1.0",
            "--plugin",
            &url,
            "--report-type",
            "sbom",
            "--format",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok());
    assert_eq!(
        text(&out.stderr),
        "error: FAILED_PRECONDITION: report \"application/vnd.security.sbom.report+json; version=1.0\" failed: no packages to list\n\
         incomplete: 1 notice (file-too-large x1); 1 report type failed\n"
    );
}

#[tokio::test]
async fn health_exit_codes() {
    let (up, _p) = start(true).await;
    let out = sidescan(&["health", "--plugin", &up], &[]).await;
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "SERVING\n".to_string())
    );

    let (down, _p) = start(false).await;
    let out = sidescan(&["health", "--plugin", &down], &[]).await;
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(2), "NOT_SERVING\n".to_string())
    );
}

#[tokio::test]
async fn unix_socket_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("plugin.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let router = router(Plugin::default(), true).await;
    tokio::spawn(router.serve_with_incoming(UnixListenerStream::new(listener)));
    let url = format!("unix:{}", Path::new(&socket).display());
    let out = sidescan(
        &["scan", "app:1.0", "--plugin", &url, "--fail-on", "high"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

/// With stderr on a terminal (a pty from util-linux `script`), `scan` streams with a progress bar
/// and prints the same result.
#[tokio::test]
async fn terminal_stderr_streams_with_progress_and_same_result() {
    let script = Path::new("/usr/bin/script");
    assert!(
        script.exists(),
        "this test needs util-linux `script`: apt-get install -y bsdutils"
    );
    let (url, plugin) = start(true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file = dir.path().join("out.json");
    let command = format!(
        "{} scan app:1.0 --plugin {url} --format json > {}",
        env!("CARGO_BIN_EXE_sidescan"),
        out_file.display()
    );
    let status = tokio::process::Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run script");
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stdout));
    assert_eq!(plugin.last().rpc, "ScanImageStream");
    let streamed = std::fs::read(&out_file).expect("output");

    let unary = sidescan(
        &["scan", "app:1.0", "--plugin", &url, "--format", "json"],
        &[],
    )
    .await;
    assert_eq!(plugin.last().rpc, "ScanImage");
    assert_eq!(streamed, unary.stdout);
}
