//! End to end through the SDK pipeline: the real `sidescan-trivy` binary on 127.0.0.1, the real
//! trivy 0.76 with the fixture DB (`common::fixture_db`), and a real `docker-registry` holding
//! the Alpine-like fixture image (`common::images`). The SDK pulls and verifies the image, writes
//! the OCI layout, Trivy scans it, and the caller gets the primary report plus the typed reports
//! (Harbor vulnerability JSON, CycloneDX SBOM); the `sidescan` CLI is checked against the same
//! plugin.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::World;
use common::fixture_db::{self, *};
use common::images;
use sidescan_proto::mime;
use sidescan_proto::v1 as pb;
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::plugin::{PluginProcess, scan_stream_result, workspace_binary};
use sidescan_testkit::registry::Registry;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const UPDATED_AT: &str = "2024-05-01T00:00:00Z";
const REPO: &str = "fixtures/alpine";
const TAG: &str = "3.22";

/// A registry with the Alpine fixture pushed as `REPO:TAG`, the fixture DB, and the plugin.
struct Setup {
    // Drop order: plugin first (it may be mid-pull), then the registry, then the DB's temp dir.
    plugin: PluginProcess,
    registry: Registry,
    image: Artifact,
    digest: String,
    world: World,
}

impl Setup {
    async fn start() -> Self {
        Self::start_with(Registry::anonymous(), None, &[]).await
    }

    /// The fixture on `registry`, the plugin running `trivy_bin` (the real trivy when `None`)
    /// with `extra` flags.
    async fn start_with(
        registry: Registry,
        trivy_bin: Option<&std::path::Path>,
        extra: &[&str],
    ) -> Self {
        let world = World::with_db(UPDATED_AT);
        let image = images::alpine_image();
        let digest = registry.push(&image, REPO, TAG).await;
        let trivy = trivy_bin
            .map_or_else(common::trivy_bin, std::path::Path::to_path_buf)
            .display()
            .to_string();
        let cache = world.cache_dir().display().to_string();
        let mut args = vec![
            "--trivy-bin",
            &trivy,
            "--trivy-cache-dir",
            &cache,
            "--skip-db-update",
        ];
        args.extend_from_slice(extra);
        let plugin = PluginProcess::start(
            std::path::Path::new(env!("CARGO_BIN_EXE_sidescan-trivy")),
            &args,
        );
        let setup = Self {
            plugin,
            registry,
            image,
            digest,
            world,
        };
        assert!(
            setup.wait_health(ServingStatus::Serving).await,
            "plugin not SERVING with the fixture DB; log:\n{}",
            setup.plugin.logs()
        );
        setup
    }

    /// A request for the fixture image with these report types (and their parameters).
    fn request(&self, report_types: &[(&str, &[(&str, &str)])]) -> pb::ScanRequest {
        pb::ScanRequest {
            image: format!("{REPO}:{TAG}"),
            registry: Some(pb::Registry {
                url: self.registry.url(),
                authorization: self.registry.authorization().unwrap_or_default(),
                ..Default::default()
            }),
            report_types: report_types
                .iter()
                .map(|(mime_type, params)| {
                    (
                        (*mime_type).to_owned(),
                        pb::ReportParameters {
                            parameters: params
                                .iter()
                                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                                .collect(),
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    async fn health(&self) -> i32 {
        let mut client = HealthClient::new(self.plugin.channel().await);
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status)
            .unwrap_or(-1)
    }

    async fn wait_health(&self, want: ServingStatus) -> bool {
        for _ in 0..100 {
            if self.health().await == want as i32 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

/// The typed report of `mime_type` (panics when the response lacks it).
fn typed<'a>(response: &'a pb::ScanResponse, mime_type: &str) -> &'a pb::TypedReport {
    let want = mime::normalize(mime_type);
    response
        .reports
        .iter()
        .find(|r| mime::normalize(&r.mime_type) == want)
        .unwrap_or_else(|| {
            panic!(
                "no typed report {mime_type}; got {:?}",
                response
                    .reports
                    .iter()
                    .map(|r| &r.mime_type)
                    .collect::<Vec<_>>()
            )
        })
}

fn json(report: &pb::TypedReport) -> serde_json::Value {
    serde_json::from_slice(&report.document).unwrap_or_else(|e| {
        panic!(
            "{} document is not JSON ({e}): {}",
            report.mime_type,
            String::from_utf8_lossy(&report.document)
        )
    })
}

/// Vulnerabilities of the primary report keyed by (id, package).
fn vulns(report: &pb::ScanReport) -> BTreeMap<(String, String), pb::ScanVulnerability> {
    report
        .vulnerabilities
        .iter()
        .filter(|v| v.kind == pb::FindingKind::Vulnerability as i32)
        .map(|v| ((v.id.clone(), v.package.clone()), v.clone()))
        .collect()
}

fn key(id: &str, package: &str) -> (String, String) {
    (id.to_owned(), package.to_owned())
}

/// Whether `s` is a UUID (`8-4-4-4-12` hex), bare or as `urn:uuid:...`.
fn is_uuid(s: &str) -> bool {
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Replaces every UUID string in `v` (keys too) with `<uuid>`.
fn mask_uuids(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if is_uuid(s) => *s = "<uuid>".into(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_uuids),
        serde_json::Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut item) in entries {
                mask_uuids(&mut item);
                map.insert(if is_uuid(&k) { "<uuid>".into() } else { k }, item);
            }
        }
        _ => {}
    }
}

/// Drops what legitimately differs between two scans of the same image: the primary report's
/// `generated_at`, `generated_at` inside JSON documents, and the per-run identity Trivy gives
/// every CycloneDX SBOM (`metadata.timestamp`, and fresh UUIDs for `serialNumber` and the
/// `bom-ref`s of components without a purl, which also move those components and their
/// dependency entries around in lists sorted by bom-ref).
fn without_run_identity(mut response: pb::ScanResponse) -> pb::ScanResponse {
    if let Some(report) = response.report.as_mut() {
        report.generated_at = None;
    }
    for typed in &mut response.reports {
        if let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&typed.document) {
            if let Some(o) = doc.as_object_mut() {
                o.remove("generated_at");
            }
            if let Some(m) = doc.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                m.remove("timestamp");
            }
            mask_uuids(&mut doc);
            // Trivy sorts these by bom-ref, and a fresh UUID sorts anywhere among the purls.
            for list in ["components", "dependencies"] {
                if let Some(items) = doc.get_mut(list).and_then(|l| l.as_array_mut()) {
                    for item in items.iter_mut() {
                        if let Some(deps) = item.get_mut("dependsOn").and_then(|d| d.as_array_mut())
                        {
                            deps.sort_by_key(|d| d.to_string());
                        }
                    }
                    items.sort_by_key(|item| item.to_string());
                }
            }
            typed.document = serde_json::to_vec(&doc).expect("re-encode");
        }
    }
    response
}

/// Where two JSON values first differ, as `path: left != right`.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value::{Array, Object};
    match (a, b) {
        (Object(x), Object(y)) => {
            x.keys()
                .chain(y.keys())
                .find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => first_difference(l, r, &format!("{path}.{k}")),
                    (l, r) => Some(format!("{path}.{k}: {l:?} != {r:?}")),
                })
        }
        (Array(x), Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| first_difference(l, r, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

const VULN_AND_CYCLONEDX: [(&str, &[(&str, &str)]); 2] = [
    (mime::VULNERABILITY_REPORT, &[]),
    (
        mime::SBOM_REPORT,
        &[(mime::SBOM_MEDIA_TYPE_PARAMETER, mime::CYCLONEDX_JSON)],
    ),
];

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

#[tokio::test]
async fn health_follows_the_db_dir_and_scans_are_refused_without_it() {
    let s = Setup::start().await;
    let mut client = s.plugin.scan_client().await;
    let req = s.request(&[(mime::VULNERABILITY_REPORT, &[])]);

    std::fs::remove_dir_all(s.world.db_dir()).expect("remove the DB dir");
    assert!(
        s.wait_health(ServingStatus::NotServing).await,
        "NOT_SERVING without the DB dir; log:\n{}",
        s.plugin.logs()
    );
    let err = client
        .scan_image(req.clone())
        .await
        .expect_err("no scan without a DB");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    fixture_db::write_standard(&s.world.db_dir(), UPDATED_AT);
    assert!(
        s.wait_health(ServingStatus::Serving).await,
        "SERVING again once the DB is back; log:\n{}",
        s.plugin.logs()
    );
    let report = client
        .scan_image(req)
        .await
        .expect("scan with the DB back")
        .into_inner()
        .report
        .unwrap();
    assert_eq!(report.summary.unwrap().total, 3);
}

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
