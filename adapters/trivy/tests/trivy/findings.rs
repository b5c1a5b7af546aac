//! What scans find: exact CVEs on the Alpine and Debian fixtures, masked secrets, the SBOM in
//! CycloneDX and SPDX, and the severity and unfixed filters.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::common::fixture_db::*;
use crate::common::{World, images};
use sidescan_proto::mime;
use sidescan_sdk::prelude::*;

use crate::{UPDATED_AT, key, vulns};

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
