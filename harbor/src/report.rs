//! The report documents served by `GET /scan/{id}/report`, rendered from the plugin's primary
//! `sidescan.v1` report (so they work for any plugin) and its SBOM documents.
//!
//! Vulnerability reports (native 1.0 and generic 1.1; generic adds `preferred_cvss`, `cwe_ids`,
//! `vendor_attributes`) list **every** finding as an item, whatever its kind, so Harbor's UI,
//! its `prevent_vul` gate and its webhooks see it: a vulnerability as Harbor knows it; malware
//! with `id` = the signature, `package` = the file path, the plugin's severity; a secret or
//! misconfiguration likewise with the path as `package` when it names no package. The kind is
//! in `vendor_attributes["sidescan.kind"]`.
//!
//! **An incomplete scan never looks clean.** For each notice code of the report one item is
//! added first: `id` `SIDESCAN-INCOMPLETE-<code>`, `package` `sidescan`, severity
//! [`crate::HarborOptions::incomplete_severity`] (Critical by default, so that the scan fails
//! Harbor's gate at every threshold, as the `sidescan` CLI fails an incomplete scan), the
//! notices' messages and paths as description, and their count in `vendor_attributes`. The
//! document also carries `incomplete: true` and the `notices`, two fields Harbor ignores.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sidescan_proto::v1::{FindingKind, Notice, ScanReport, ScanVulnerability, Severity};

use crate::jobs::{ArtifactRef, Failure, SbomDocument, ScanOutcome};
use crate::metadata::Scanner;

/// At most this many notice lines go into one incomplete item's description.
const NOTICE_LINES: usize = 10;

/// Harbor's spelling of a severity (`Unknown` for an unset one).
pub fn harbor_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Unspecified | Severity::Unknown => "Unknown",
        Severity::Negligible => "Negligible",
        Severity::Low => "Low",
        Severity::Medium => "Medium",
        Severity::High => "High",
        Severity::Critical => "Critical",
    }
}

/// Parses Harbor's spelling of a severity (any case).
pub fn parse_severity(value: &str) -> Option<Severity> {
    [
        Severity::Unknown,
        Severity::Negligible,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ]
    .into_iter()
    .find(|s| harbor_severity(*s).eq_ignore_ascii_case(value.trim()))
}

fn artifact_json(artifact: &ArtifactRef) -> Value {
    json!({
        "repository": artifact.repository,
        "digest": artifact.digest,
        "tag": artifact.tag,
        "mime_type": artifact.mime_type,
    })
}

/// The scanner named in the report, or the metadata's when the report names none.
fn scanner_json(report: &ScanReport, fallback: &Scanner) -> Value {
    match &report.scanner {
        Some(s) if !s.name.is_empty() => json!({
            "name": s.name,
            "vendor": if s.vendor.is_empty() { fallback.vendor.as_str() } else { s.vendor.as_str() },
            "version": if s.version.is_empty() { fallback.version.as_str() } else { s.version.as_str() },
        }),
        _ => json!(fallback),
    }
}

fn generated_at(report: &ScanReport) -> String {
    let at = report
        .generated_at
        .as_ref()
        .and_then(|t| {
            // RFC 3339 ends at year 9999: a later time (a hostile plugin) falls back to now
            // rather than fail to format.
            let secs = u64::try_from(t.seconds)
                .ok()
                .filter(|s| *s < 253_402_300_800)?;
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        })
        .unwrap_or_else(std::time::SystemTime::now);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn kind_name(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::Unspecified => "unspecified",
        FindingKind::Vulnerability => "vulnerability",
        FindingKind::Malware => "malware",
        FindingKind::Secret => "secret",
        FindingKind::Misconfiguration => "misconfiguration",
        FindingKind::License => "license",
    }
}

fn finding_item(f: &ScanVulnerability, generic: bool) -> Value {
    let kind = f.kind();
    let package = if f.package.is_empty() {
        &f.path
    } else {
        &f.package
    };
    let mut description = if f.description.is_empty() {
        f.title.clone()
    } else {
        f.description.clone()
    };
    if kind != FindingKind::Vulnerability && !f.path.is_empty() {
        let found = format!("{} {} found in {}", kind_name(kind), f.id, f.path);
        description = if description.is_empty() {
            found
        } else {
            format!("{found}: {description}")
        };
    }
    let mut item = json!({
        "id": f.id,
        "package": package,
        "version": f.installed_version,
        "fix_version": f.fixed_version,
        "severity": harbor_severity(f.severity()),
        "status": f.status,
        "description": description,
        "links": f.links,
        "layer": { "digest": f.layer_digest, "diff_id": f.layer_diff_id },
    });
    if generic {
        let cvss = f.cvss.get("nvd").or_else(|| f.cvss.values().next());
        if let Some(c) = cvss {
            let mut preferred = Map::new();
            if c.v3_score > 0.0 {
                preferred.insert("score_v3".into(), json!(c.v3_score));
            }
            if c.v2_score > 0.0 {
                preferred.insert("score_v2".into(), json!(c.v2_score));
            }
            if !c.v3_vector.is_empty() {
                preferred.insert("vector_v3".into(), json!(c.v3_vector));
            }
            if !c.v2_vector.is_empty() {
                preferred.insert("vector_v2".into(), json!(c.v2_vector));
            }
            item["preferred_cvss"] = Value::Object(preferred);
        }
        item["cwe_ids"] = json!(f.cwe_ids);
        let mut attrs: Map<String, Value> = f
            .vendor_attributes
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        attrs.insert("sidescan.kind".into(), json!(kind_name(kind)));
        for (key, value) in [
            ("sidescan.path", &f.path),
            ("sidescan.purl", &f.purl),
            ("sidescan.package_type", &f.package_type),
        ] {
            if !value.is_empty() {
                attrs.insert(key.into(), json!(value));
            }
        }
        item["vendor_attributes"] = Value::Object(attrs);
    }
    item
}

/// One item per notice code (see the module documentation).
fn incomplete_items(notices: &[Notice], severity: Severity, generic: bool) -> Vec<Value> {
    let mut by_code: BTreeMap<&str, Vec<&Notice>> = BTreeMap::new();
    for n in notices {
        let code = if n.code.is_empty() {
            "unspecified"
        } else {
            n.code.as_str()
        };
        by_code.entry(code).or_default().push(n);
    }
    by_code
        .into_iter()
        .map(|(code, list)| {
            let count: u64 = list.iter().map(|n| u64::from(n.count.max(1))).sum();
            let mut lines: Vec<String> = list
                .iter()
                .take(NOTICE_LINES)
                .map(|n| {
                    if n.path.is_empty() {
                        n.message.clone()
                    } else {
                        format!("{} ({})", n.message, n.path)
                    }
                })
                .collect();
            if list.len() > NOTICE_LINES {
                lines.push(format!("... {} more notices", list.len() - NOTICE_LINES));
            }
            let mut item = json!({
                "id": format!("SIDESCAN-INCOMPLETE-{code}"),
                "package": "sidescan",
                "version": "",
                "fix_version": "",
                "severity": harbor_severity(severity),
                "description": format!(
                    "Incomplete scan: {count} part(s) of the image were not scanned ({code}); a \
                     clean result would not be a clean bill of health.\n{}",
                    lines.join("\n")
                ),
                "links": [],
            });
            if generic {
                let paths: Vec<&str> = list
                    .iter()
                    .map(|n| n.path.as_str())
                    .filter(|p| !p.is_empty())
                    .collect();
                item["cwe_ids"] = json!([]);
                item["vendor_attributes"] = json!({
                    "sidescan.kind": "notice",
                    "sidescan.notice_code": code,
                    "sidescan.count": count,
                    "sidescan.paths": paths,
                });
            }
            item
        })
        .collect()
}

fn notices_json(notices: &[Notice]) -> Vec<Value> {
    notices
        .iter()
        .map(|n| {
            json!({
                "code": n.code, "message": n.message, "path": n.path,
                "layer_digest": n.layer_digest, "count": n.count.max(1),
            })
        })
        .collect()
}

/// The native (1.0) or generic (1.1) vulnerability report.
pub fn vulnerability_report(
    outcome: &ScanOutcome,
    artifact: &ArtifactRef,
    scanner: &Scanner,
    incomplete_severity: Severity,
    generic: bool,
) -> Value {
    let report = outcome.response.report.clone().unwrap_or_default();
    let incomplete =
        !report.notices.is_empty() || report.summary.as_ref().is_some_and(|s| s.incomplete);
    let mut notices = report.notices.clone();
    if incomplete && notices.is_empty() {
        notices.push(Notice {
            code: "incomplete".into(),
            message: "the plugin marked the report incomplete without a notice".into(),
            ..Notice::default()
        });
    }
    let mut items = incomplete_items(&notices, incomplete_severity, generic);
    items.extend(
        report
            .vulnerabilities
            .iter()
            .map(|f| finding_item(f, generic)),
    );
    let mut max: Option<Severity> = report.vulnerabilities.iter().map(|f| f.severity()).max();
    if incomplete {
        max = max.max(Some(incomplete_severity));
    }
    json!({
        "generated_at": generated_at(&report),
        "artifact": artifact_json(artifact),
        "scanner": scanner_json(&report, scanner),
        "severity": max.map_or("None", harbor_severity),
        "vulnerabilities": items,
        "incomplete": incomplete,
        "notices": notices_json(&notices),
    })
}

/// The SBOM report for `format`, or the failure of that format.
pub fn sbom_report(
    outcome: &ScanOutcome,
    artifact: &ArtifactRef,
    scanner: &Scanner,
    format: &str,
    document: &SbomDocument,
) -> Value {
    let report = outcome.response.report.clone().unwrap_or_default();
    let incomplete =
        !report.notices.is_empty() || report.summary.as_ref().is_some_and(|s| s.incomplete);
    json!({
        "generated_at": generated_at(&report),
        "artifact": artifact_json(artifact),
        "scanner": scanner_json(&report, scanner),
        "vendor_attributes": {
            "sidescan.document_media_type": document.media_type,
            "sidescan.incomplete": incomplete,
            "sidescan.notice_count": report.notices.len(),
        },
        "media_type": format,
        "sbom": document.document,
    })
}

/// The SBOM document for `format` out of a plugin response, or why there is none.
pub fn sbom_from_response(
    response: &sidescan_proto::v1::ScanResponse,
) -> Result<SbomDocument, Failure> {
    let typed = response
        .reports
        .iter()
        .find(|r| crate::mime::same(&r.mime_type, crate::mime::SBOM_REPORT))
        .ok_or_else(|| Failure {
            code: "INTERNAL".into(),
            message: "the plugin returned no SBOM report".into(),
        })?;
    if typed.status != sidescan_proto::v1::ReportStatus::Succeeded as i32 {
        let error = typed.error.clone().unwrap_or_default();
        return Err(Failure {
            code: sidescan_proto::client::code_name(tonic::Code::from(error.code)).to_owned(),
            message: error.message,
        });
    }
    let document = serde_json::from_slice(&typed.document).map_err(|e| Failure {
        code: "INTERNAL".into(),
        message: format!("the plugin's SBOM is not JSON: {e}"),
    })?;
    Ok(SbomDocument {
        media_type: typed.document_media_type.clone(),
        document,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidescan_proto::v1::{ScanResponse, Summary};

    fn outcome(findings: Vec<ScanVulnerability>, notices: Vec<Notice>) -> ScanOutcome {
        ScanOutcome {
            response: ScanResponse {
                report: Some(ScanReport {
                    vulnerabilities: findings,
                    summary: Some(Summary {
                        incomplete: !notices.is_empty(),
                        ..Summary::default()
                    }),
                    notices,
                    ..ScanReport::default()
                }),
                reports: vec![],
            },
            sboms: BTreeMap::new(),
        }
    }

    fn scanner() -> Scanner {
        Scanner {
            name: "p".into(),
            vendor: "v".into(),
            version: "1".into(),
        }
    }

    fn eicar() -> ScanVulnerability {
        ScanVulnerability {
            id: "Eicar-Test-Signature".into(),
            path: "/eicar.com".into(),
            severity: Severity::High as i32,
            kind: FindingKind::Malware as i32,
            ..ScanVulnerability::default()
        }
    }

    #[test]
    fn malware_is_an_item_with_the_signature_and_the_path() {
        let doc = vulnerability_report(
            &outcome(vec![eicar()], vec![]),
            &ArtifactRef::default(),
            &scanner(),
            Severity::Critical,
            true,
        );
        let item = &doc["vulnerabilities"][0];
        assert_eq!(item["id"], "Eicar-Test-Signature");
        assert_eq!(item["package"], "/eicar.com");
        assert_eq!(item["severity"], "High");
        assert_eq!(item["vendor_attributes"]["sidescan.kind"], "malware");
        assert_eq!(doc["severity"], "High");
        assert_eq!(doc["incomplete"], false);
    }

    #[test]
    fn a_clean_complete_scan_is_none() {
        let doc = vulnerability_report(
            &outcome(vec![], vec![]),
            &ArtifactRef::default(),
            &scanner(),
            Severity::Critical,
            false,
        );
        assert_eq!(doc["severity"], "None");
        assert_eq!(doc["vulnerabilities"], json!([]));
        assert!(doc["vulnerabilities"].get(0).is_none());
    }

    #[test]
    fn an_incomplete_scan_is_never_clean() {
        let notice = |path: &str| Notice {
            code: "file-too-large".into(),
            message: "file exceeds the scanner's limit".into(),
            path: path.into(),
            ..Notice::default()
        };
        let summary = Notice {
            code: "file-too-large".into(),
            message: "file-too-large: 30 more".into(),
            count: 30,
            ..Notice::default()
        };
        let doc = vulnerability_report(
            &outcome(vec![], vec![notice("/a"), notice("/b"), summary]),
            &ArtifactRef::default(),
            &scanner(),
            Severity::Critical,
            true,
        );
        assert_eq!(doc["severity"], "Critical");
        assert_eq!(doc["incomplete"], true);
        let items = doc["vulnerabilities"].as_array().unwrap();
        assert_eq!(items.len(), 1, "one item per code: {doc}");
        assert_eq!(items[0]["id"], "SIDESCAN-INCOMPLETE-file-too-large");
        assert_eq!(items[0]["severity"], "Critical");
        assert_eq!(items[0]["vendor_attributes"]["sidescan.count"], 32);
        assert!(items[0]["description"].as_str().unwrap().contains("(/a)"));
    }

    #[test]
    fn incomplete_severity_is_the_documents_floor_not_its_ceiling() {
        let doc = vulnerability_report(
            &outcome(
                vec![eicar()],
                vec![Notice {
                    code: "scan-error".into(),
                    ..Notice::default()
                }],
            ),
            &ArtifactRef::default(),
            &scanner(),
            Severity::Unknown,
            false,
        );
        assert_eq!(doc["severity"], "High");
        assert_eq!(doc["vulnerabilities"][0]["severity"], "Unknown");
        assert!(doc["vulnerabilities"][0].get("vendor_attributes").is_none());
    }

    #[test]
    fn severities_round_trip() {
        for s in ["unknown", "Negligible", "LOW", "Medium", "High", "critical"] {
            let parsed = parse_severity(s).unwrap();
            assert!(harbor_severity(parsed).eq_ignore_ascii_case(s));
        }
        assert!(parse_severity("None").is_none());
    }
}
