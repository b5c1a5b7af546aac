//! The conformance suite's self-tests: runs it against a conforming plugin built on the SDK and
//! against a deliberately non-conforming one, and checks the binary's CLI. They live here, not in
//! `conformance/`, so that the shipped suite does not even dev-depend on the SDK.

mod support;

use std::time::Duration;

use sidescan_conformance::{Config, Outcome, RunReport, run};
use support::nonconforming::BadPlugin;
use support::sdk_plugin::SdkPlugin;

async fn run_suite(endpoint: &str, harbor_url: Option<&str>) -> RunReport {
    let mut config = Config::new(endpoint);
    config.case_timeout = Duration::from_secs(90);
    config.harbor_url = harbor_url.map(str::to_owned);
    run(&config, |r| println!("{}", r.line()))
        .await
        .expect("the suite runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_plugin_passes_every_case_that_applies() {
    let plugin = SdkPlugin::start().await;
    let report = run_suite(plugin.url(), Some(plugin.harbor_url())).await;
    println!("{}", report.summary_line());
    plugin.stop().await;
    // Both registry dialects apply (zot's proto on the gRPC port, Harbor's API on
    // --harbor-listen) and pass: "works with zot", "works with Harbor".
    for group in ["zot/", "harbor/"] {
        let cases: Vec<_> = report
            .cases
            .iter()
            .filter(|c| c.name.starts_with(group))
            .collect();
        assert!(cases.len() >= 3, "{group}: {} cases", cases.len());
        for c in cases {
            assert_eq!(c.outcome, Outcome::Passed, "{}", c.name);
        }
    }
    assert!(report.cases.len() >= 40, "{} cases ran", report.cases.len());
    assert_eq!(
        report.failed_names(),
        Vec::<&str>::new(),
        "{}",
        report.summary_line()
    );
    assert_eq!(report.errors(), 0, "{}", report.summary_line());
    // The malware cases apply to this plugin; the artifact case does not.
    assert_eq!(
        report.outcome("semantics/eicar-is-a-malware-finding"),
        Some(&Outcome::Passed)
    );
    assert_fail_closed_cases_pass(&report);
    assert!(matches!(
        report.outcome("limits/image-bytes-over-limit-is-resource-exhausted"),
        Some(Outcome::Passed)
    ));
}

/// The fail-closed cases: EICAR hidden from readers that differ from the container runtime's.
const FAIL_CLOSED_CASES: &[&str] = &[
    "robustness/hostile-header-only-type-smuggling",
    "robustness/hostile-duplicate-pax-path",
    "robustness/hostile-attestation-annotated-entry",
    "robustness/hostile-polyglot-layer",
    "robustness/hostile-eicar-dotdot-path",
];

fn assert_fail_closed_cases_pass(report: &RunReport) {
    for name in FAIL_CLOSED_CASES {
        assert_eq!(report.outcome(name), Some(&Outcome::Passed), "{name}");
    }
}

/// The cases the non-conforming plugin must fail, and why (see `support/nonconforming.rs`).
const NONCONFORMING_FAILURES: &[&str] = &[
    // It validates nothing: bad input goes to the registry, 404 comes back as INTERNAL, and a
    // request that happens to resolve is scanned as if it were valid.
    "input/empty-reference-is-invalid-argument",
    "input/malformed-reference-is-invalid-argument",
    "input/bad-digest-is-invalid-argument",
    "input/short-digest-is-invalid-argument",
    "input/bad-tag-is-invalid-argument",
    "input/platform-without-architecture-is-invalid-argument",
    "input/malformed-platform-is-invalid-argument",
    "input/unknown-report-type-is-invalid-argument",
    "input/host-mismatch-is-invalid-argument",
    // INTERNAL for NOT_FOUND.
    "registry/missing-repository-is-not-found",
    "registry/missing-tag-is-not-found",
    "registry/missing-digest-is-not-found",
    // Clean when the pull fails.
    "registry/bad-credentials-are-unauthenticated",
    "registry/missing-credentials-are-unauthenticated",
    "registry/forbidden-is-permission-denied",
    "registry/unreachable-is-unavailable",
    "registry/server-error-is-unavailable",
    // No digest verification, no media-type check.
    "registry/corrupt-blob-is-data-loss",
    "registry/corrupt-manifest-is-data-loss",
    "registry/truncated-blob-is-not-clean",
    "registry/non-image-artifact-is-failed-precondition",
    // The pull runs on after the deadline.
    "deadlines/work-stops-when-deadline-passes",
    // Hostile content that must never pass as clean.
    "robustness/hostile-wrong-layer-digest",
    "robustness/hostile-wrong-diff-id",
    "robustness/hostile-truncated-blob",
    "robustness/hostile-index-loop",
    "robustness/hostile-config-not-json",
    "robustness/hostile-not-a-tar",
    "robustness/hostile-not-gzip",
    // EICAR hidden from its naive tar reader and its digest-only cache: clean.
    "robustness/hostile-header-only-type-smuggling",
    "robustness/hostile-duplicate-pax-path",
    // It never opens an index: "clean" for the annotated linux/amd64 entry holding EICAR.
    "robustness/hostile-attestation-annotated-entry",
    "robustness/hostile-polyglot-layer",
    "robustness/hostile-eicar-dotdot-path",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonconforming_plugin_fails_the_right_cases() {
    let plugin = BadPlugin::start().await;
    let report = run_suite(&plugin.url(), None).await;
    println!("{}", report.summary_line());
    assert_eq!(report.errors(), 0, "{}", report.summary_line());
    assert_eq!(report.failed_names(), NONCONFORMING_FAILURES);
    // It serves neither registry dialect, so neither is certified: skipped, not failed.
    for c in report.cases.iter().filter(|c| c.name.starts_with("zot/")) {
        assert!(
            matches!(c.outcome, Outcome::Skipped(_)),
            "{}: {:?}",
            c.name,
            c.outcome
        );
    }
    // Its naive reader finds plain EICAR: only the hidden ones are missed.
    assert_eq!(
        report.outcome("semantics/eicar-is-a-malware-finding"),
        Some(&Outcome::Passed)
    );
}

/// The `sidescan-conformance` binary (`scripts/test` builds every binary first).
fn bin() -> std::path::PathBuf {
    sidescan_testkit::plugin::workspace_binary("sidescan-conformance")
}

#[test]
fn the_binary_lists_cases_and_prints_its_versions() {
    let out = std::process::Command::new(bin())
        .args(["list", "--focus", "registry/", "--skip", "credentials"])
        .output()
        .expect("run the binary");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.contains(sidescan_conformance::VERSION), "{header}");
    assert!(header.contains("sidescan.v1"), "{header}");
    let names: Vec<&str> = lines.filter_map(|l| l.split_whitespace().next()).collect();
    assert!(
        names.contains(&"registry/missing-tag-is-not-found"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("registry/") && !n.contains("credentials"))
    );
    // Regex focus.
    let out = std::process::Command::new(bin())
        .args(["list", "--focus", "^robustness/hostile-(gzip|tar)-bomb$"])
        .output()
        .expect("run the binary");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fails_a_nonconforming_plugin_and_writes_junit() {
    let plugin = BadPlugin::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let junit = dir.path().join("results.xml");
    let out = tokio::process::Command::new(bin())
        .args([
            "--endpoint",
            &plugin.url(),
            "--focus=^registry/.*-is-not-found$",
            "--fixture-listen",
            "127.0.0.1:0",
            "--junit",
        ])
        .arg(&junit)
        .output()
        .await
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  registry/missing-tag-is-not-found"),
        "{stdout}"
    );
    assert!(
        stdout.contains("expected NOT_FOUND, got INTERNAL"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 passed, 3 failed, 0 skipped, 0 errors"),
        "{stdout}"
    );
    let xml = std::fs::read_to_string(&junit).expect("junit file");
    assert!(xml.contains("failures=\"3\""), "{xml}");
    assert!(xml.contains("name=\"missing-tag-is-not-found\""), "{xml}");
}

#[test]
fn the_binary_refuses_to_run_without_an_endpoint() {
    let out = std::process::Command::new(bin())
        .output()
        .expect("run the binary");
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_pushed_to_a_real_registry_with_credentials() {
    use sidescan_conformance::{FixtureSource, Selection};
    use sidescan_testkit::registry::{Auth, Registry};
    let registry = tokio::task::spawn_blocking(|| Registry::start(Auth::htpasswd()))
        .await
        .expect("start docker-registry");
    let (user, password) = registry.credentials().expect("htpasswd credentials");
    let plugin = SdkPlugin::start().await;
    let mut config = Config::new(plugin.url());
    config.fixtures = FixtureSource::Registry {
        url: registry.url(),
        credentials: Some((user.to_string(), password.to_string())),
    };
    config.selection = Selection::new(
        &[
            "semantics/".into(),
            "^registry/.*is-not-found$".into(),
            "registry/bad-credentials".into(),
            "consistency/platform-selection".into(),
        ],
        &[],
    )
    .expect("patterns");
    let report = run(&config, |r| println!("{}", r.line()))
        .await
        .expect("the suite runs");
    plugin.stop().await;
    assert!(report.success(), "{}", report.summary_line());
    assert_eq!(report.passed(), 10, "{}", report.summary_line());
    // Fault injection needs the embedded registry.
    assert!(matches!(
        report.outcome("registry/bad-credentials-are-unauthenticated"),
        Some(Outcome::Skipped(reason)) if reason.contains("embedded")
    ));
    drop(registry);
}

async fn assert_binary_conforms(plugin: &sidescan_testkit::plugin::PluginProcess) -> RunReport {
    plugin
        .wait_for_health(sidescan_testkit::plugin::ServingStatus::Serving)
        .await;
    let report = run_suite(&plugin.url(), None).await;
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
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_example_plugin_binary_passes_every_case_that_applies() {
    let plugin = sidescan_testkit::plugin::PluginProcess::start(
        &sidescan_testkit::plugin::workspace_binary("private_keys"),
        sidescan_conformance::SMALL_LIMIT_FLAGS,
    );
    assert_binary_conforms(&plugin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clamav_adapter_with_a_real_clamd_passes_every_case_that_applies() {
    let clamd = sidescan_testkit::clamd::ClamdProcess::start();
    let addr = clamd.unix_addr();
    let args = [
        &["--clamd", addr.as_str()][..],
        sidescan_conformance::SMALL_LIMIT_FLAGS,
    ]
    .concat();
    let plugin = sidescan_testkit::plugin::PluginProcess::start(
        &sidescan_testkit::plugin::workspace_binary("sidescan-clamav"),
        &args,
    );
    let report = assert_binary_conforms(&plugin).await;
    assert_eq!(
        report.outcome("semantics/eicar-is-a-malware-finding"),
        Some(&Outcome::Passed),
        "the malware cases apply to the ClamAV adapter"
    );
    assert_fail_closed_cases_pass(&report);
}
