//! Scans through the plugin: the reports and the stream agreeing, `--image-source registry` with
//! credentials, an unknown SBOM media type.

use std::collections::BTreeMap;

use crate::common::fixture_db::*;
use sidescan_proto::mime;
use sidescan_proto::v1 as pb;
use sidescan_testkit::plugin::scan_stream_result;
use sidescan_testkit::registry::Registry;
use tonic::Code;

use crate::common;
use crate::compare::*;
use crate::{REPO, Setup, TAG};

#[tokio::test]
async fn scan_image_reports_exact_cves_harbor_json_and_a_cyclonedx_sbom_and_the_stream_agrees() {
    let s = Setup::start().await;
    let mut client = s.plugin.scan_client().await;
    let req = s.request(&VULN_AND_CYCLONEDX);
    let unary = client
        .scan_image(req.clone())
        .await
        .unwrap_or_else(|e| panic!("ScanImage: {e:?}; log:\n{}", s.plugin.logs()))
        .into_inner();

    // Primary report: the pulled image, exactly the vulnerable packages, Trivy's data.
    let report = unary.report.as_ref().expect("primary report");
    let image = report.image.as_ref().expect("image");
    assert_eq!(image.digest, s.digest, "the pushed manifest was scanned");
    assert_eq!(image.repository, REPO);
    assert_eq!(image.tag, TAG);
    assert_eq!(report.scanner.as_ref().unwrap().name, "sidescan-trivy");
    let v = vulns(report);
    assert_eq!(
        v.keys().cloned().collect::<Vec<_>>(),
        vec![
            key(CVE_ALPINE_OPENSSL, "libcrypto3"),
            key(CVE_ALPINE_OPENSSL, "libssl3"),
            key(CVE_ALPINE_ZLIB, "zlib"),
        ],
        "exactly the vulnerable packages; {CVE_ALPINE_BUSYBOX_ALREADY_FIXED} is fixed in the installed busybox"
    );
    assert!(
        !report
            .vulnerabilities
            .iter()
            .any(|f| f.id == CVE_ALPINE_BUSYBOX_ALREADY_FIXED),
        "the already-fixed CVE is absent"
    );
    let base_layer = &s.image.layers[0];
    for pkg in ["libcrypto3", "libssl3"] {
        let f = &v[&key(CVE_ALPINE_OPENSSL, pkg)];
        assert_eq!(f.installed_version, "3.3.0-r0", "{pkg}");
        assert_eq!(f.fixed_version, "3.3.1-r1", "{pkg}");
        assert_eq!(f.severity, pb::Severity::High as i32, "{pkg}: nvd HIGH");
        assert_eq!(f.status, "fixed", "{pkg}");
        assert_eq!(f.title, "openssl out-of-bounds read");
        assert_eq!(f.cvss["nvd"].v3_score, 7.5);
        assert_eq!(f.cwe_ids, ["CWE-125"]);
        assert_eq!(
            (f.layer_digest.as_str(), f.layer_diff_id.as_str()),
            (base_layer.blob.digest.as_str(), base_layer.diff_id.as_str()),
            "{pkg}: the registry layer that installed it"
        );
        assert!(
            f.purl
                .starts_with(&format!("pkg:apk/alpine/{pkg}@3.3.0-r0")),
            "{}",
            f.purl
        );
    }
    let zlib = &v[&key(CVE_ALPINE_ZLIB, "zlib")];
    assert_eq!(
        (zlib.installed_version.as_str(), zlib.fixed_version.as_str()),
        ("1.3.1-r1", "1.3.1-r2")
    );
    assert_eq!(
        zlib.severity,
        pb::Severity::Critical as i32,
        "Alpine's own severity wins over nvd's MEDIUM"
    );
    let summary = report.summary.as_ref().expect("summary");
    assert_eq!(
        (
            summary.total,
            summary.fixable,
            summary.high,
            summary.critical
        ),
        (3, 3, 2, 1),
        "{summary:?}"
    );
    assert_eq!(summary.max_severity, pb::Severity::Critical as i32);
    assert!(
        report.notices.is_empty(),
        "Alpine 3.22 is detected and supported: {:?}",
        report.notices
    );

    // Harbor vulnerability report, rendered by the SDK from the same findings.
    let harbor = typed(&unary, mime::VULNERABILITY_REPORT);
    assert_eq!(
        harbor.status,
        pb::ReportStatus::Succeeded as i32,
        "{harbor:?}"
    );
    let doc = json(harbor);
    let mut ids: Vec<(&str, &str, &str)> = doc["vulnerabilities"]
        .as_array()
        .expect("vulnerabilities array")
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap(),
                x["package"].as_str().unwrap(),
                x["severity"].as_str().unwrap(),
            )
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            (CVE_ALPINE_OPENSSL, "libcrypto3", "High"),
            (CVE_ALPINE_OPENSSL, "libssl3", "High"),
            (CVE_ALPINE_ZLIB, "zlib", "Critical"),
        ]
    );
    assert_eq!(doc["severity"], "Critical");
    assert_eq!(doc["artifact"]["digest"], s.digest.as_str());

    // The SBOM: Trivy's CycloneDX inventory of the image, every installed apk package.
    let sbom = typed(&unary, mime::SBOM_REPORT);
    assert_eq!(sbom.status, pb::ReportStatus::Succeeded as i32, "{sbom:?}");
    assert_eq!(sbom.document_media_type, mime::CYCLONEDX_JSON);
    let bom = json(sbom);
    assert_eq!(bom["bomFormat"], "CycloneDX");
    let components: BTreeMap<&str, &str> = bom["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| (c["name"].as_str().unwrap(), c["version"].as_str().unwrap()))
        .collect();
    assert_eq!(
        components,
        BTreeMap::from([
            ("busybox", "1.36.1-r2"),
            ("libcrypto3", "3.3.0-r0"),
            ("libssl3", "3.3.0-r0"),
            ("musl", "1.2.5-r10"),
            ("zlib", "1.3.1-r1"),
        ]),
        "the SBOM lists the installed packages"
    );
    assert_eq!(
        bom["metadata"]["component"]["name"],
        s.digest.as_str(),
        "the SBOM's subject is the image, not the plugin's scratch layout"
    );
    let scratch = s.plugin.dir().display().to_string();
    for r in &unary.reports {
        assert!(
            !String::from_utf8_lossy(&r.document).contains(&scratch),
            "{} leaks the plugin's scratch path {scratch}",
            r.mime_type
        );
    }
    assert!(
        !format!("{report:?}").contains(&scratch),
        "the report leaks the plugin's scratch path {scratch}"
    );
    assert!(
        bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "operating-system" && c["name"] == "alpine"),
        "the SBOM names the OS"
    );

    // The stream ends with one result equal to the unary one.
    let streamed = scan_stream_result(&mut client, req).await;
    let (stream, unary) = (without_run_identity(streamed), without_run_identity(unary));
    assert_eq!(stream.report, unary.report, "primary reports differ");
    assert_eq!(stream.reports.len(), unary.reports.len());
    for (s, u) in stream.reports.iter().zip(&unary.reports) {
        assert_eq!(s.mime_type, u.mime_type);
        if let Some(diff) = first_difference(&json(s), &json(u), "$") {
            panic!("{} documents differ: {diff}", s.mime_type);
        }
    }
    assert_eq!(stream, unary);
}

#[tokio::test]
async fn with_image_source_registry_trivy_pulls_the_resolved_digest_with_credentials_in_its_env() {
    // A wrapper records how the adapter runs Trivy (arguments and credential variables), then
    // runs the real one. The registry wants Basic credentials. (Not a token registry: Trivy
    // refuses token realms on private addresses such as 127.0.0.1.)
    let bin_dir = tempfile::tempdir().unwrap();
    let wrapper = bin_dir.path().join("trivy");
    let calls = bin_dir.path().join("calls");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             printf 'argv: %s\\n' \"$*\" >> '{calls}'\n\
             printf 'env: user=%s password=%s token=%s\\n' \"${{TRIVY_USERNAME-unset}}\" \
             \"${{TRIVY_PASSWORD-unset}}\" \"${{TRIVY_REGISTRY_TOKEN-unset}}\" >> '{calls}'\n\
             exec '{real}' \"$@\"\n",
            calls = calls.display(),
            real = common::trivy_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let s = Setup::start_with(
        Registry::htpasswd(),
        Some(&wrapper),
        &["--image-source", "registry"],
    )
    .await;
    let (user, password) = s.registry.credentials().expect("credentials");
    let mut client = s.plugin.scan_client().await;
    let response = client
        .scan_image(s.request(&VULN_AND_CYCLONEDX))
        .await
        .unwrap_or_else(|e| panic!("ScanImage: {e:?}; log:\n{}", s.plugin.logs()))
        .into_inner();

    let report = response.report.as_ref().expect("primary report");
    assert_eq!(report.image.as_ref().unwrap().digest, s.digest);
    let v = vulns(report);
    assert_eq!(
        v.keys().cloned().collect::<Vec<_>>(),
        vec![
            key(CVE_ALPINE_OPENSSL, "libcrypto3"),
            key(CVE_ALPINE_OPENSSL, "libssl3"),
            key(CVE_ALPINE_ZLIB, "zlib"),
        ]
    );
    let base_layer = &s.image.layers[0];
    let f = &v[&key(CVE_ALPINE_OPENSSL, "libssl3")];
    assert_eq!(
        (f.layer_digest.as_str(), f.layer_diff_id.as_str()),
        (base_layer.blob.digest.as_str(), base_layer.diff_id.as_str()),
    );
    let bom = json(typed(&response, mime::SBOM_REPORT));
    assert_eq!(
        bom["metadata"]["component"]["name"],
        s.digest.as_str(),
        "the SBOM's subject is the manifest digest"
    );

    // Both image runs (report and SBOM) pulled the digest the SDK resolved, over plain http,
    // with the credentials in the environment and nowhere on the command line.
    let calls = std::fs::read_to_string(&calls).unwrap();
    let pinned = format!("{}/{REPO}@{}", s.registry.host(), s.digest);
    let image_runs: Vec<&str> = calls
        .lines()
        .filter(|l| l.starts_with("argv: image "))
        .collect();
    assert_eq!(image_runs.len(), 2, "{calls}");
    for run in &image_runs {
        assert!(
            run.contains("--image-src remote --insecure") && run.ends_with(&pinned),
            "{run}"
        );
    }
    for argv in calls.lines().filter(|l| l.starts_with("argv: ")) {
        assert!(
            !argv.contains(password),
            "password on a command line: {argv}"
        );
    }
    let env_lines: Vec<&str> = calls.lines().filter(|l| l.starts_with("env: ")).collect();
    assert!(
        env_lines
            .iter()
            .filter(|l| **l == format!("env: user={user} password={password} token=unset"))
            .count()
            == 2,
        "{calls}"
    );
    assert!(
        !s.plugin.logs().contains(password),
        "the password reached the plugin's log"
    );

    // Without credentials the SDK refuses before Trivy runs at all.
    let before = std::fs::read_to_string(bin_dir.path().join("calls")).unwrap();
    let mut anonymous = s.request(&[]);
    anonymous.registry.as_mut().unwrap().authorization.clear();
    let err = client.scan_image(anonymous).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::Unauthenticated | Code::PermissionDenied),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read_to_string(bin_dir.path().join("calls")).unwrap(),
        before,
        "Trivy ran for a refused request"
    );
}

#[tokio::test]
async fn an_unknown_sbom_media_type_fails_only_the_sbom_report() {
    let s = Setup::start().await;
    let mut client = s.plugin.scan_client().await;
    let response = client
        .scan_image(s.request(&[
            (mime::VULNERABILITY_REPORT, &[]),
            (
                mime::SBOM_REPORT,
                &[(mime::SBOM_MEDIA_TYPE_PARAMETER, "application/x-made-up+xml")],
            ),
        ]))
        .await
        .unwrap_or_else(|e| panic!("ScanImage: {e:?}; log:\n{}", s.plugin.logs()))
        .into_inner();

    let sbom = typed(&response, mime::SBOM_REPORT);
    assert_eq!(sbom.status, pb::ReportStatus::Failed as i32, "{sbom:?}");
    let error = sbom
        .error
        .as_ref()
        .expect("a failed report carries its error");
    assert_eq!(error.code, Code::InvalidArgument as i32, "{error:?}");
    assert!(
        error.message.contains("application/x-made-up+xml"),
        "{error:?}"
    );
    assert!(sbom.document.is_empty());

    let harbor = typed(&response, mime::VULNERABILITY_REPORT);
    assert_eq!(
        harbor.status,
        pb::ReportStatus::Succeeded as i32,
        "{harbor:?}"
    );
    let doc = json(harbor);
    let mut ids: Vec<&str> = doc["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [CVE_ALPINE_OPENSSL, CVE_ALPINE_OPENSSL, CVE_ALPINE_ZLIB]
    );
    assert_eq!(
        response.report.unwrap().summary.unwrap().total,
        3,
        "the primary report is whole"
    );
}
