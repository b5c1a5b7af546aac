//! Trivy's JSON report (`--format json`, schema version 2) and its mapping to SDK
//! [`Finding`]s.
//!
//! Only the fields the adapter uses are modelled; unknown fields are ignored, missing ones default,
//! so a newer Trivy that adds fields still parses.

use std::collections::BTreeMap;

use serde::Deserialize;
use sidescan_sdk::model::Cvss;
use sidescan_sdk::{Finding, FindingKind, Severity};

use crate::error::TrivyError;

/// The top of Trivy's JSON report.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Report {
    /// Report schema version (2).
    pub schema_version: u32,
    /// What was scanned.
    pub artifact_name: String,
    /// Image metadata.
    pub metadata: Metadata,
    /// One result per target (OS packages, a lockfile, a file with secrets, ...).
    pub results: Vec<ScanResult>,
}

/// Image metadata of a report.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Metadata {
    /// Detected OS.
    #[serde(rename = "OS")]
    pub os: Option<Os>,
    /// Image ID (config digest).
    #[serde(rename = "ImageID")]
    pub image_id: String,
    /// Layer diff_ids.
    #[serde(rename = "DiffIDs")]
    pub diff_ids: Vec<String>,
}

/// The OS Trivy detected.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Os {
    /// Family, e.g. `alpine`, `debian`.
    pub family: String,
    /// Version, e.g. `3.22.1`.
    pub name: String,
    /// Whether the OS is past its end of life.
    #[serde(rename = "EOSL")]
    pub eosl: bool,
}

/// One target of a report.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScanResult {
    /// What was scanned: `image (alpine 3.22.1)`, `app/Cargo.lock`, `/app/config.env`, ...
    pub target: String,
    /// `os-pkgs`, `lang-pkgs`, `secret`, ...
    pub class: String,
    /// Package type: `alpine`, `debian`, `cargo`, `npm`, ...
    #[serde(rename = "Type")]
    pub kind: String,
    /// Vulnerabilities found.
    pub vulnerabilities: Vec<Vulnerability>,
    /// Secrets found.
    pub secrets: Vec<Secret>,
}

/// Where a finding came from in the image.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LayerRef {
    /// Compressed layer digest (OCI layouts and registries only).
    pub digest: String,
    /// Layer diff_id.
    #[serde(rename = "DiffID")]
    pub diff_id: String,
}

/// A package identifier.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PkgIdentifier {
    /// Package URL.
    #[serde(rename = "PURL")]
    pub purl: String,
}

/// CVSS of one source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TrivyCvss {
    /// CVSS v2 vector.
    pub v2_vector: String,
    /// CVSS v2 score.
    pub v2_score: f64,
    /// CVSS v3 vector.
    pub v3_vector: String,
    /// CVSS v3 score.
    pub v3_score: f64,
    /// CVSS v4 vector.
    pub v40_vector: String,
    /// CVSS v4 score.
    pub v40_score: f64,
}

/// The advisory source of a vulnerability.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DataSource {
    /// Source id, e.g. `alpine`, `ghsa`.
    #[serde(rename = "ID")]
    pub id: String,
    /// Human name.
    pub name: String,
    /// Where it lives.
    #[serde(rename = "URL")]
    pub url: String,
}

/// One vulnerability of one package.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Vulnerability {
    /// CVE or GHSA id.
    #[serde(rename = "VulnerabilityID")]
    pub vulnerability_id: String,
    /// Vendor ids (e.g. GHSA ids of a CVE).
    #[serde(rename = "VendorIDs")]
    pub vendor_ids: Vec<String>,
    /// Package name.
    pub pkg_name: String,
    /// Package identifier.
    pub pkg_identifier: PkgIdentifier,
    /// Path of the file the package came from (jars, binaries).
    pub pkg_path: String,
    /// Installed version.
    pub installed_version: String,
    /// Fixed version(s), comma-separated.
    pub fixed_version: String,
    /// `fixed`, `affected`, `will_not_fix`, ...
    pub status: String,
    /// Layer that brought the package in.
    pub layer: LayerRef,
    /// Advisory source.
    pub data_source: Option<DataSource>,
    /// Severity as Trivy chose it.
    pub severity: String,
    /// Where the severity came from.
    pub severity_source: String,
    /// Primary reference.
    #[serde(rename = "PrimaryURL")]
    pub primary_url: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// CWE ids.
    #[serde(rename = "CweIDs")]
    pub cwe_ids: Vec<String>,
    /// CVSS by source.
    #[serde(rename = "CVSS")]
    pub cvss: BTreeMap<String, TrivyCvss>,
    /// Reference URLs.
    pub references: Vec<String>,
    /// Publication date.
    pub published_date: String,
    /// Last modification date.
    pub last_modified_date: String,
}

/// One secret found in a file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Secret {
    /// Rule id, e.g. `aws-access-key-id`.
    #[serde(rename = "RuleID")]
    pub rule_id: String,
    /// Category, e.g. `AWS`.
    pub category: String,
    /// Severity.
    pub severity: String,
    /// Title.
    pub title: String,
    /// First line of the match.
    pub start_line: u64,
    /// Last line of the match.
    pub end_line: u64,
    /// The matched line, with the secret masked by `*`.
    #[serde(rename = "Match")]
    pub matched: String,
    /// Layer holding the file.
    pub layer: LayerRef,
}

/// Parses Trivy's JSON report.
pub fn parse(json: &[u8]) -> Result<Report, TrivyError> {
    serde_json::from_slice(json).map_err(|e| TrivyError::BadOutput(format!("JSON report: {e}")))
}

/// Trivy's severity name to the SDK's scale (Trivy has no NEGLIGIBLE).
pub fn severity(trivy: &str) -> Severity {
    match trivy.trim().to_ascii_uppercase().as_str() {
        "LOW" => Severity::Low,
        "MEDIUM" => Severity::Medium,
        "HIGH" => Severity::High,
        "CRITICAL" => Severity::Critical,
        _ => Severity::Unknown,
    }
}

/// `/`-rooted path of a target Trivy names relative to the image root.
fn image_path(target: &str) -> String {
    if target.is_empty() || target.starts_with('/') {
        target.to_owned()
    } else {
        format!("/{target}")
    }
}

/// Masks any character of a secret match that Trivy left in clear *after* its own mask, as a
/// second line of defence: a match must never carry a secret into a report. Trivy masks the secret
/// with `*`; a match without any `*` is replaced whole.
pub fn ensure_masked(matched: &str) -> String {
    if matched.contains('*') {
        matched.to_owned()
    } else {
        "*".repeat(matched.chars().count().min(64))
    }
}

/// Maps a report to findings: one per vulnerability (per package) and one per secret.
pub fn findings(report: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    for result in &report.results {
        // OS package results are named after the image; aggregated language results after the
        // language (`Node.js`, with each package's own PkgPath); lockfile results after the file.
        let target_path = if result.class == "os-pkgs" || !result.target.contains('/') {
            String::new()
        } else {
            image_path(&result.target)
        };
        let target = stable_target(&report.artifact_name, result);
        for v in &result.vulnerabilities {
            out.push(vulnerability_finding(result, &target, &target_path, v));
        }
        for s in &result.secrets {
            out.push(secret_finding(result, s));
        }
    }
    out
}

/// The target as the caller should see it. Trivy names OS-package results after the scanned
/// artifact, here the SDK's per-scan layout (`/scratch/scan-X/0/layout:ref (alpine 3.22.1)`): a
/// path that means nothing to the caller and differs on every scan. Such a target becomes the OS
/// alone (`alpine 3.22.1`); other targets (a lockfile, `Node.js`) are kept as they are.
pub fn stable_target(artifact_name: &str, result: &ScanResult) -> String {
    let target = result.target.as_str();
    if artifact_name.is_empty() {
        return target.to_owned();
    }
    match target.strip_prefix(artifact_name).map(str::trim) {
        Some(rest) => rest
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or(rest)
            .to_owned(),
        None => target.to_owned(),
    }
}

/// Replaces `from` with `to` inside every string of `doc` (an SBOM Trivy wrote): the artifact
/// name Trivy took from its input path appears as the root component's name, in SPDX's document
/// name and namespace, and in relationships. Does nothing when `from` is empty.
pub fn rename_artifact(doc: &mut serde_json::Value, from: &str, to: &str) {
    if from.is_empty() {
        return;
    }
    match doc {
        serde_json::Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        serde_json::Value::Array(items) => {
            for item in items {
                rename_artifact(item, from, to);
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values_mut() {
                rename_artifact(item, from, to);
            }
        }
        _ => {}
    }
}

fn vulnerability_finding(
    result: &ScanResult,
    target: &str,
    target_path: &str,
    v: &Vulnerability,
) -> Finding {
    let mut f = Finding::new(
        FindingKind::Vulnerability,
        &v.vulnerability_id,
        severity(&v.severity),
    );
    f.package = v.pkg_name.clone();
    f.installed_version = v.installed_version.clone();
    f.fixed_version = v.fixed_version.clone();
    f.status = v.status.clone();
    f.title = v.title.clone();
    f.description = v.description.clone();
    let mut links: Vec<String> = Vec::new();
    for url in std::iter::once(&v.primary_url).chain(&v.references) {
        if !url.is_empty() && !links.contains(url) {
            links.push(url.clone());
        }
    }
    f.links = links;
    f.cvss = v
        .cvss
        .iter()
        .map(|(src, c)| {
            (
                src.clone(),
                Cvss {
                    v2_vector: c.v2_vector.clone(),
                    v2_score: c.v2_score,
                    v3_vector: c.v3_vector.clone(),
                    v3_score: c.v3_score,
                    v4_vector: c.v40_vector.clone(),
                    v4_score: c.v40_score,
                },
            )
        })
        .collect();
    f.cwe_ids = v.cwe_ids.clone();
    f.path = if v.pkg_path.is_empty() {
        target_path.to_owned()
    } else {
        image_path(&v.pkg_path)
    };
    f.layer_digest = v.layer.digest.clone();
    f.layer_diff_id = v.layer.diff_id.clone();
    f.package_type = result.kind.clone();
    f.purl = v.pkg_identifier.purl.clone();
    let attrs = &mut f.vendor_attributes;
    attrs.insert("trivy.target".into(), target.to_owned());
    if let Some(ds) = &v.data_source {
        attrs.insert("trivy.data_source".into(), ds.id.clone());
    }
    if !v.severity_source.is_empty() {
        attrs.insert("trivy.severity_source".into(), v.severity_source.clone());
    }
    if !v.vendor_ids.is_empty() {
        attrs.insert("trivy.vendor_ids".into(), v.vendor_ids.join(","));
    }
    if !v.published_date.is_empty() {
        attrs.insert("trivy.published_date".into(), v.published_date.clone());
    }
    if !v.last_modified_date.is_empty() {
        attrs.insert(
            "trivy.last_modified_date".into(),
            v.last_modified_date.clone(),
        );
    }
    f
}

fn secret_finding(result: &ScanResult, s: &Secret) -> Finding {
    let masked = ensure_masked(&s.matched);
    let mut f = Finding::new(FindingKind::Secret, &s.rule_id, severity(&s.severity))
        .at_path(image_path(&result.target))
        .with_title(&s.title);
    f.description = if s.start_line > 0 {
        format!("line {}: {masked}", s.start_line)
    } else {
        masked.clone()
    };
    f.layer_digest = s.layer.digest.clone();
    f.layer_diff_id = s.layer.diff_id.clone();
    let attrs = &mut f.vendor_attributes;
    attrs.insert("trivy.category".into(), s.category.clone());
    attrs.insert("trivy.match".into(), masked);
    attrs.insert("trivy.start_line".into(), s.start_line.to_string());
    attrs.insert("trivy.end_line".into(), s.end_line.to_string());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "SchemaVersion": 2,
      "ArtifactName": "/x:alpine",
      "Metadata": {"OS": {"Family": "alpine", "Name": "3.22.1"}, "ImageID": "sha256:c", "DiffIDs": ["sha256:d"]},
      "Results": [
        {"Target": "/x:alpine (alpine 3.22.1)", "Class": "os-pkgs", "Type": "alpine",
         "Vulnerabilities": [{
           "VulnerabilityID": "CVE-2024-0001", "PkgName": "libssl3",
           "PkgIdentifier": {"PURL": "pkg:apk/alpine/libssl3@3.3.0-r0?distro=3.22.1"},
           "InstalledVersion": "3.3.0-r0", "FixedVersion": "3.3.1-r1", "Status": "fixed",
           "Layer": {"Digest": "sha256:l", "DiffID": "sha256:d"},
           "SeveritySource": "nvd", "PrimaryURL": "https://avd.aquasec.com/nvd/cve-2024-0001",
           "DataSource": {"ID": "alpine", "Name": "Alpine Secdb", "URL": "https://secdb.alpinelinux.org/"},
           "Title": "t", "Description": "d", "Severity": "HIGH", "CweIDs": ["CWE-79"],
           "CVSS": {"nvd": {"V2Vector": "AV:N", "V2Score": 5.0, "V3Vector": "CVSS:3.1/AV:N", "V3Score": 7.5}},
           "References": ["https://a", "https://avd.aquasec.com/nvd/cve-2024-0001", "https://a", "https://b"],
           "NewField": {"ignored": true}
         }]},
        {"Target": "/app/config.env", "Class": "secret",
         "Secrets": [{"RuleID": "aws-access-key-id", "Category": "AWS", "Severity": "CRITICAL",
                      "Title": "AWS Access Key ID", "StartLine": 2, "EndLine": 2,
                      "Match": "AWS_ACCESS_KEY_ID=********************",
                      "Layer": {"Digest": "sha256:l2", "DiffID": "sha256:d2"}}]}
      ]
    }"#;

    #[test]
    fn maps_vulnerabilities_and_secrets() {
        let report = parse(SAMPLE.as_bytes()).expect("parses");
        let f = findings(&report);
        assert_eq!(f.len(), 2);
        let v = &f[0];
        assert_eq!(v.kind, FindingKind::Vulnerability);
        assert_eq!(
            (v.id.as_str(), v.package.as_str()),
            ("CVE-2024-0001", "libssl3")
        );
        assert_eq!(
            (v.installed_version.as_str(), v.fixed_version.as_str()),
            ("3.3.0-r0", "3.3.1-r1")
        );
        assert_eq!(v.severity, Severity::High);
        assert_eq!(
            v.links,
            [
                "https://avd.aquasec.com/nvd/cve-2024-0001",
                "https://a",
                "https://b"
            ]
        );
        assert_eq!(v.cvss["nvd"].v3_score, 7.5);
        assert_eq!(v.cvss["nvd"].v2_vector, "AV:N");
        assert_eq!(v.cwe_ids, ["CWE-79"]);
        assert_eq!(
            (v.layer_digest.as_str(), v.layer_diff_id.as_str()),
            ("sha256:l", "sha256:d")
        );
        assert_eq!(v.package_type, "alpine");
        assert!(v.purl.starts_with("pkg:apk/alpine/libssl3"));
        assert_eq!(v.path, "");
        assert_eq!(
            v.vendor_attributes["trivy.target"], "alpine 3.22.1",
            "the scanned layout's path is not the caller's business"
        );
        let s = &f[1];
        assert_eq!(s.kind, FindingKind::Secret);
        assert_eq!(s.id, "aws-access-key-id");
        assert_eq!(s.path, "/app/config.env");
        assert_eq!(s.severity, Severity::Critical);
        assert_eq!(
            s.vendor_attributes["trivy.match"],
            "AWS_ACCESS_KEY_ID=********************"
        );
    }

    #[test]
    fn targets_named_after_the_scanned_layout_become_the_os() {
        let result = |target: &str| ScanResult {
            target: target.into(),
            ..ScanResult::default()
        };
        let artifact = "/scratch/scan-1/0/layout:ref";
        assert_eq!(
            stable_target(
                artifact,
                &result("/scratch/scan-1/0/layout:ref (debian 12.5)")
            ),
            "debian 12.5"
        );
        assert_eq!(stable_target(artifact, &result("Node.js")), "Node.js");
        assert_eq!(
            stable_target(artifact, &result("app/Cargo.lock")),
            "app/Cargo.lock"
        );
        assert_eq!(
            stable_target("", &result("x (alpine 3.22.1)")),
            "x (alpine 3.22.1)"
        );
    }

    #[test]
    fn the_artifact_name_is_replaced_in_every_string() {
        let mut doc = serde_json::json!({
            "metadata": {"component": {"name": "/s/scan-1/layout:v1", "type": "container"}},
            "documentNamespace": "http://trivy.dev/container_image//s/scan-1/layout:v1-1234",
            "n": [1, "/s/scan-1/layout:v1 (alpine 3.22.1)", "other"],
        });
        rename_artifact(&mut doc, "/s/scan-1/layout:v1", "sha256:abc");
        assert_eq!(
            doc,
            serde_json::json!({
                "metadata": {"component": {"name": "sha256:abc", "type": "container"}},
                "documentNamespace": "http://trivy.dev/container_image/sha256:abc-1234",
                "n": [1, "sha256:abc (alpine 3.22.1)", "other"],
            })
        );
    }

    #[test]
    fn unmasked_matches_are_masked_and_garbage_is_an_error() {
        assert_eq!(ensure_masked("AKIAIOSFODNN7EXAMPLE"), "*".repeat(20));
        assert_eq!(ensure_masked("KEY=****"), "KEY=****");
        assert!(matches!(parse(b"{"), Err(TrivyError::BadOutput(_))));
        assert!(severity("negligible") == Severity::Unknown);
    }
}
