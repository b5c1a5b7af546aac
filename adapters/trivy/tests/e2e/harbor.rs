//! Harbor's pluggable-scanner API served by the plugin itself (`--harbor-listen`), called as
//! Harbor calls it (`sidescan_testkit::harbor`: version=1.0 types, Basic robot credentials for a
//! real htpasswd `docker-registry`, 5 s timeout, no redirects, first poll after 2 s, then
//! `Refresh-After`): metadata Harbor registers, one scan with both capabilities, the fixture CVEs
//! in the generic and native reports, the SBOM as SPDX and CycloneDX, and the 400 of an SBOM
//! report asked for without its format.

use std::time::Duration;

use serde_json::Value;
use sidescan_proto::mime;
use sidescan_testkit::harbor::{self, GENERIC_REPORT, NATIVE_REPORT, SBOM_REPORT};
use sidescan_testkit::registry::Registry;

use crate::common::fixture_db::*;
use crate::{REPO, Setup, UPDATED_AT};

/// The vulnerability items of a Harbor report as (id, package, version, fix_version, severity),
/// sorted.
fn items(doc: &Value) -> Vec<(String, String, String, String, String)> {
    let mut items: Vec<_> = doc["vulnerabilities"]
        .as_array()
        .unwrap_or_else(|| panic!("no vulnerabilities array: {doc:#}"))
        .iter()
        .map(|i| {
            let field = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
            (
                field("id"),
                field("package"),
                field("version"),
                field("fix_version"),
                field("severity"),
            )
        })
        .collect();
    items.sort();
    items
}

/// Exactly the fixture image's vulnerable packages (the already-fixed busybox CVE absent), with
/// the severities the plugin's own e2e tests assert: nvd's HIGH for openssl, Alpine's CRITICAL
/// over nvd's MEDIUM for zlib.
fn fixture_items() -> Vec<(String, String, String, String, String)> {
    [
        (
            CVE_ALPINE_OPENSSL,
            "libcrypto3",
            "3.3.0-r0",
            "3.3.1-r1",
            "High",
        ),
        (
            CVE_ALPINE_OPENSSL,
            "libssl3",
            "3.3.0-r0",
            "3.3.1-r1",
            "High",
        ),
        (CVE_ALPINE_ZLIB, "zlib", "1.3.1-r1", "1.3.1-r2", "Critical"),
    ]
    .map(|(a, b, c, d, e)| (a.into(), b.into(), c.into(), d.into(), e.into()))
    .to_vec()
}

#[tokio::test]
async fn trivy_with_harbor_listen_serves_cves_and_sboms_to_a_harbor_shaped_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let addr_file = dir.path().join("harbor-addr").display().to_string();
    let s = Setup::start_with(
        Registry::htpasswd(),
        None,
        &[
            "--harbor-listen",
            "127.0.0.1:0",
            "--harbor-addr-file",
            &addr_file,
        ],
    )
    .await;
    let authorization = s.registry.authorization().expect("htpasswd credentials");
    let base = format!(
        "http://{}",
        std::fs::read_to_string(&addr_file).expect("--harbor-addr-file written")
    );
    let client = harbor::client();

    // 1. Registration: both capabilities, the DB date Harbor shows.
    let md = harbor::metadata(&client, &base).await;
    assert_eq!(md.status(), 200);
    assert_eq!(md.headers()["content-type"], harbor::METADATA_V1_0);
    let md: Value = md.json().await.expect("metadata JSON");
    assert_eq!(md["scanner"]["name"], "sidescan-trivy", "{md:#}");
    let capability = |kind: &str| {
        md["capabilities"]
            .as_array()
            .expect("capabilities")
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} capability: {md:#}"))
            .clone()
    };
    let vulnerability = capability("vulnerability");
    assert_eq!(
        vulnerability["produces_mime_types"],
        serde_json::json!([NATIVE_REPORT, GENERIC_REPORT]),
        "{md:#}"
    );
    let sbom = capability("sbom");
    assert_eq!(
        sbom["produces_mime_types"],
        serde_json::json!([SBOM_REPORT]),
        "{md:#}"
    );
    assert_eq!(
        sbom["additional_attributes"]["sbom_media_types"],
        serde_json::json!([mime::SPDX_JSON, mime::CYCLONEDX_JSON]),
        "{md:#}"
    );
    for cap in [&vulnerability, &sbom] {
        let consumes = cap["consumes_mime_types"].to_string();
        assert!(
            consumes.contains(mime::DOCKER_MANIFEST) && consumes.contains(mime::OCI_MANIFEST),
            "{md:#}"
        );
    }
    let updated_at = md["properties"]["harbor.scanner-adapter/vulnerability-database-updated-at"]
        .as_str()
        .unwrap_or_else(|| panic!("no DB date: {md:#}"));
    humantime::parse_rfc3339(updated_at)
        .unwrap_or_else(|e| panic!("DB date {updated_at:?} is not RFC 3339: {e}"));
    assert_eq!(updated_at, UPDATED_AT, "the fixture DB's date");
    assert_eq!(
        md["properties"]["harbor.scanner-adapter/registry-authorization-type"],
        "Basic"
    );

    // 2. One scan with both capabilities, accepted at once.
    let body = harbor::scan_request_with(
        &s.registry.url(),
        &authorization,
        REPO,
        &s.digest,
        s.image.media_type(),
        serde_json::json!([
            {"type": "vulnerability", "produces_mime_types": [GENERIC_REPORT]},
            {"type": "sbom", "produces_mime_types": [SBOM_REPORT],
             "parameters": {"sbom_media_types": [mime::SPDX_JSON, mime::CYCLONEDX_JSON]}},
        ]),
    );
    let id = harbor::submit_accepted(&client, &base, &body).await;

    // The generic report: exactly the fixture CVEs.
    let generic = harbor::poll_report(
        &client,
        &base,
        &id,
        GENERIC_REPORT,
        "",
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(
        generic.status,
        200,
        "{}\nplugin log:\n{}",
        generic.body,
        s.plugin.logs()
    );
    assert_eq!(generic.content_type.as_deref(), Some(GENERIC_REPORT));
    let doc = generic.json();
    assert_eq!(items(&doc), fixture_items(), "{doc:#}");
    assert!(
        !generic.body.contains(CVE_ALPINE_BUSYBOX_ALREADY_FIXED),
        "the already-fixed CVE is absent"
    );
    assert_eq!(doc["severity"], "Critical");
    assert_eq!(doc["incomplete"], false, "{doc:#}");
    assert_eq!(doc["artifact"]["digest"], s.digest.as_str());
    assert_eq!(doc["artifact"]["repository"], REPO);
    assert_eq!(doc["scanner"]["name"], "sidescan-trivy");
    let base_layer = &s.image.layers[0];
    for item in doc["vulnerabilities"].as_array().unwrap() {
        assert_eq!(item["status"], "fixed", "{item:#}");
        assert_eq!(item["vendor_attributes"]["sidescan.kind"], "vulnerability");
        assert_eq!(
            item["layer"]["digest"],
            base_layer.blob.digest.as_str(),
            "{item:#}"
        );
        assert_eq!(item["layer"]["diff_id"], base_layer.diff_id.as_str());
        if item["id"] == CVE_ALPINE_OPENSSL {
            assert_eq!(item["preferred_cvss"]["score_v3"], 7.5, "{item:#}");
            assert_eq!(item["cwe_ids"], serde_json::json!(["CWE-125"]));
        }
    }

    // The native report of the same job: the same items, without the generic fields.
    let native = harbor::get_report(&client, &base, &id, NATIVE_REPORT, "").await;
    assert_eq!(native.status, 200, "{}", native.body);
    assert_eq!(native.content_type.as_deref(), Some(NATIVE_REPORT));
    let native = native.json();
    assert_eq!(items(&native), fixture_items(), "{native:#}");
    assert_eq!(native["severity"], "Critical");
    assert!(
        native["vulnerabilities"][0]
            .get("vendor_attributes")
            .is_none(),
        "{native:#}"
    );

    // The SBOM as SPDX, then as CycloneDX: the image's packages, its digest as subject.
    let sbom_query = |format: &str| {
        format!(
            "?sbom_media_type={}",
            format.replace('/', "%2F").replace('+', "%2B")
        )
    };
    let spdx = harbor::get_report(
        &client,
        &base,
        &id,
        SBOM_REPORT,
        &sbom_query(mime::SPDX_JSON),
    )
    .await;
    assert_eq!(
        spdx.status,
        200,
        "{}\nplugin log:\n{}",
        spdx.body,
        s.plugin.logs()
    );
    assert_eq!(spdx.content_type.as_deref(), Some(SBOM_REPORT));
    let spdx = spdx.json();
    assert_eq!(spdx["media_type"], mime::SPDX_JSON, "{spdx:#}");
    assert_eq!(spdx["artifact"]["digest"], s.digest.as_str());
    let document = &spdx["sbom"];
    assert!(
        document["spdxVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("SPDX-2.")),
        "{document:#}"
    );
    assert!(
        document["packages"]
            .as_array()
            .expect("SPDX packages")
            .iter()
            .any(|p| p["name"] == "libssl3" && p["versionInfo"] == "3.3.0-r0"),
        "libssl3 3.3.0-r0 listed: {document:#}"
    );

    let cyclonedx = harbor::get_report(
        &client,
        &base,
        &id,
        SBOM_REPORT,
        &sbom_query(mime::CYCLONEDX_JSON),
    )
    .await;
    assert_eq!(cyclonedx.status, 200, "{}", cyclonedx.body);
    assert_eq!(cyclonedx.content_type.as_deref(), Some(SBOM_REPORT));
    let cyclonedx = cyclonedx.json();
    assert_eq!(
        cyclonedx["media_type"],
        mime::CYCLONEDX_JSON,
        "{cyclonedx:#}"
    );
    let bom = &cyclonedx["sbom"];
    assert_eq!(bom["bomFormat"], "CycloneDX", "{bom:#}");
    assert!(
        bom["components"]
            .as_array()
            .expect("CycloneDX components")
            .iter()
            .any(|c| c["name"] == "zlib" && c["version"] == "1.3.1-r1"),
        "zlib 1.3.1-r1 listed: {bom:#}"
    );
    assert_eq!(
        bom["metadata"]["component"]["name"],
        s.digest.as_str(),
        "the SBOM's subject is the image, not the plugin's scratch layout"
    );
    let scratch = s.plugin.dir().display().to_string();
    for doc in [&doc, &native, &spdx, &cyclonedx] {
        assert!(
            !doc.to_string().contains(&scratch),
            "a Harbor report leaks the plugin's scratch path {scratch}"
        );
    }

    // 3. An SBOM report without its format: 400 in Harbor's error format.
    let missing = harbor::get_report(&client, &base, &id, SBOM_REPORT, "").await;
    let message = harbor::assert_error(&missing, 400);
    assert!(message.contains("sbom_media_type"), "{message}");

    assert!(
        !s.plugin
            .logs()
            .contains(authorization.trim_start_matches("Basic ")),
        "credentials logged"
    );
}
