//! Report assembly: sorts findings, counts the summary, and renders the typed report documents
//! the SDK knows (Harbor's vulnerability report, sidescan's malware report) so that plugins only
//! produce findings.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::json;
use sidescan_proto::{mime, v1 as pb};

use crate::convert::{finding_to_proto, notice_to_proto, platform_to_proto, severity_to_proto};
use crate::error::Error;
use crate::model::{Finding, FindingKind, Notice, ReportDocument, Severity};
use crate::pipeline::{PipelineOutcome, ResolvedImage};
use crate::plugin::ScannerInfo;

/// Report types requested, keyed by normalised MIME type, with their parameters.
pub type RequestedReports = BTreeMap<String, BTreeMap<String, String>>;

/// Sorts findings the way reports list them: most severe first, then by id, path and package.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (
            Reverse(a.severity),
            &a.id,
            &a.path,
            &a.package,
            &a.layer_digest,
        )
            .cmp(&(
                Reverse(b.severity),
                &b.id,
                &b.path,
                &b.package,
                &b.layer_digest,
            ))
    });
}

/// Counts findings per severity, fixable findings and the highest severity.
pub fn summarize(findings: &[Finding]) -> pb::Summary {
    let mut summary = pb::Summary {
        total: u32::try_from(findings.len()).unwrap_or(u32::MAX),
        ..Default::default()
    };
    let mut max: Option<Severity> = None;
    for finding in findings {
        let counter = match finding.severity {
            Severity::Unknown => &mut summary.unknown,
            Severity::Negligible => &mut summary.negligible,
            Severity::Low => &mut summary.low,
            Severity::Medium => &mut summary.medium,
            Severity::High => &mut summary.high,
            Severity::Critical => &mut summary.critical,
        };
        *counter += 1;
        if !finding.fixed_version.is_empty() {
            summary.fixable += 1;
        }
        max = max.max(Some(finding.severity));
    }
    summary.max_severity = max.map_or(pb::Severity::Unspecified, severity_to_proto) as i32;
    summary
}

/// Builds the `ScanResponse` for a finished scan: the primary report plus one typed report per
/// requested MIME type.
pub fn build_response(
    scanner: &ScannerInfo,
    outcome: PipelineOutcome,
    requested: &RequestedReports,
    generated_at: SystemTime,
) -> pb::ScanResponse {
    let PipelineOutcome {
        image,
        findings: mut scan,
    } = outcome;
    sort_findings(&mut scan.findings);
    scan.notices.sort();
    scan.notices.dedup();

    let documents = std::mem::take(&mut scan.documents);
    let reports = requested
        .keys()
        .map(|mime_type| {
            let rendered = documents.get(mime_type).cloned().unwrap_or_else(|| {
                render_builtin(
                    mime_type,
                    scanner,
                    &image,
                    &scan.findings,
                    &scan.notices,
                    generated_at,
                )
            });
            typed_report(mime_type, rendered)
        })
        .collect();

    let single_platform = match image.platforms.as_slice() {
        [only] => Some(platform_to_proto(only)),
        _ => None,
    };
    let report = pb::ScanReport {
        image: Some(pb::Image {
            repository: image.repository.clone(),
            tag: image.tag.clone(),
            digest: image.digest.clone(),
            media_type: image.media_type.clone(),
            platform: single_platform,
            registry: image.registry.clone(),
            manifest_digests: image.manifest_digests.clone(),
        }),
        scanner: Some(scanner_to_proto(scanner)),
        vulnerabilities: scan.findings.iter().map(finding_to_proto).collect(),
        generated_at: Some(prost_types::Timestamp::from(generated_at)),
        summary: Some(summarize(&scan.findings)),
        notices: scan.notices.iter().map(notice_to_proto).collect(),
        platforms: image.platforms.iter().map(platform_to_proto).collect(),
    };
    pb::ScanResponse {
        report: Some(report),
        reports,
    }
}

/// `ScannerInfo` → `sidescan.v1.Scanner`.
pub fn scanner_to_proto(scanner: &ScannerInfo) -> pb::Scanner {
    pb::Scanner {
        name: scanner.name.clone(),
        vendor: scanner.vendor.clone(),
        version: scanner.version.clone(),
    }
}

fn typed_report(mime_type: &str, rendered: Result<ReportDocument, Error>) -> pb::TypedReport {
    match rendered {
        Ok(doc) => pb::TypedReport {
            mime_type: mime_type.to_owned(),
            status: pb::ReportStatus::Succeeded as i32,
            error: None,
            document: doc.content,
            document_media_type: doc.media_type,
        },
        Err(err) => pb::TypedReport {
            mime_type: mime_type.to_owned(),
            status: pb::ReportStatus::Failed as i32,
            error: Some(pb::ReportError {
                code: err.code() as i32,
                message: err.message().to_owned(),
            }),
            document: Vec::new(),
            document_media_type: String::new(),
        },
    }
}

fn render_builtin(
    mime_type: &str,
    scanner: &ScannerInfo,
    image: &ResolvedImage,
    findings: &[Finding],
    notices: &[Notice],
    generated_at: SystemTime,
) -> Result<ReportDocument, Error> {
    let generated_at = humantime::format_rfc3339_seconds(generated_at).to_string();
    let value = if mime_type == mime::normalize(mime::VULNERABILITY_REPORT) {
        harbor_vulnerability_report(scanner, image, findings, &generated_at)
    } else if mime_type == mime::normalize(mime::MALWARE_REPORT) {
        malware_report(scanner, image, findings, notices, &generated_at)
    } else {
        return Err(Error::internal(format!(
            "the plugin produced no {mime_type} document"
        )));
    };
    let content = serde_json::to_vec_pretty(&value)
        .map_err(|e| Error::internal(format!("cannot encode {mime_type}: {e}")))?;
    Ok(ReportDocument {
        media_type: "application/json".into(),
        content,
    })
}

/// Harbor spells severities capitalised: `High`.
fn harbor_severity(severity: Severity) -> String {
    let upper = severity.as_str();
    let mut out = upper[..1].to_owned();
    out.push_str(&upper[1..].to_ascii_lowercase());
    out
}

fn artifact_json(image: &ResolvedImage) -> serde_json::Value {
    json!({
        "repository": image.repository,
        "tag": image.tag,
        "digest": image.digest,
        "mime_type": image.media_type,
    })
}

fn scanner_json(scanner: &ScannerInfo) -> serde_json::Value {
    json!({ "name": scanner.name, "vendor": scanner.vendor, "version": scanner.version })
}

/// Harbor's `application/vnd.security.vulnerability.report; version=1.1` from the vulnerability
/// findings.
fn harbor_vulnerability_report(
    scanner: &ScannerInfo,
    image: &ResolvedImage,
    findings: &[Finding],
    generated_at: &str,
) -> serde_json::Value {
    let vulns: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::Vulnerability)
        .collect();
    let max = vulns.iter().map(|f| f.severity).max();
    let items: Vec<serde_json::Value> = vulns
        .iter()
        .map(|f| {
            let preferred = f
                .cvss
                .get("nvd")
                .or_else(|| f.cvss.values().next())
                .map(|c| {
                    json!({
                        "score_v2": c.v2_score, "score_v3": c.v3_score,
                        "vector_v2": c.v2_vector, "vector_v3": c.v3_vector,
                    })
                });
            json!({
                "id": f.id,
                "package": f.package,
                "version": f.installed_version,
                "fix_version": f.fixed_version,
                "severity": harbor_severity(f.severity),
                "description": f.description,
                "links": f.links,
                "layer": { "digest": f.layer_digest, "diff_id": f.layer_diff_id },
                "preferred_cvss": preferred,
                "cwe_ids": f.cwe_ids,
                "vendor_attributes": f.vendor_attributes,
            })
        })
        .collect();
    json!({
        "generated_at": generated_at,
        "artifact": artifact_json(image),
        "scanner": scanner_json(scanner),
        "severity": max.map_or_else(|| "None".to_owned(), harbor_severity),
        "vulnerabilities": items,
    })
}

/// sidescan's `application/vnd.security.malware.report; version=1.0`. Its `status` is
/// `infected` when malware was found, `incomplete` when nothing was found but something was not
/// scanned (notices), and `clean` only when everything was scanned and nothing found.
fn malware_report(
    scanner: &ScannerInfo,
    image: &ResolvedImage,
    findings: &[Finding],
    notices: &[Notice],
    generated_at: &str,
) -> serde_json::Value {
    let malware: Vec<serde_json::Value> = findings
        .iter()
        .filter(|f| f.kind == FindingKind::Malware)
        .map(|f| {
            json!({
                "signature": f.id,
                "path": f.path,
                "severity": harbor_severity(f.severity),
                "layer": { "digest": f.layer_digest, "diff_id": f.layer_diff_id },
                "platforms": f.platforms.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    let status = if !malware.is_empty() {
        "infected"
    } else if !notices.is_empty() {
        "incomplete"
    } else {
        "clean"
    };
    let notices: Vec<serde_json::Value> = notices
        .iter()
        .map(|n| json!({ "code": n.code, "message": n.message, "path": n.path, "layer_digest": n.layer_digest }))
        .collect();
    json!({
        "generated_at": generated_at,
        "artifact": artifact_json(image),
        "scanner": scanner_json(scanner),
        "status": status,
        "malware": malware,
        "notices": notices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ScanFindings;

    fn info() -> ScannerInfo {
        ScannerInfo {
            name: "t".into(),
            vendor: "v".into(),
            version: "1.0.0".into(),
            capabilities: Vec::new(),
        }
    }

    fn finding(id: &str, sev: Severity, fixed: &str) -> Finding {
        Finding {
            fixed_version: fixed.into(),
            ..Finding::new(FindingKind::Vulnerability, id, sev)
        }
    }

    #[test]
    fn summary_counts_match_findings() {
        let findings = vec![
            finding("a", Severity::High, "1.1"),
            finding("b", Severity::Low, ""),
            finding("c", Severity::High, ""),
        ];
        let s = summarize(&findings);
        assert_eq!((s.total, s.high, s.low, s.fixable), (3, 2, 1, 1));
        assert_eq!(s.max_severity, pb::Severity::High as i32);
        assert_eq!(
            summarize(&[]).max_severity,
            pb::Severity::Unspecified as i32
        );
    }

    #[test]
    fn findings_sort_most_severe_first() {
        let mut findings = vec![
            finding("z", Severity::Low, ""),
            finding("b", Severity::Critical, ""),
            finding("a", Severity::Critical, ""),
        ];
        sort_findings(&mut findings);
        let ids: Vec<_> = findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "z"]);
    }

    #[test]
    fn malware_report_is_never_clean_with_notices() {
        let mut requested = RequestedReports::new();
        requested.insert(mime::normalize(mime::MALWARE_REPORT), BTreeMap::new());
        let outcome = PipelineOutcome {
            image: ResolvedImage::default(),
            findings: ScanFindings {
                notices: vec![Notice::new(
                    "file-too-large",
                    "not scanned: larger than 1 MiB",
                )],
                ..ScanFindings::default()
            },
        };
        let resp = build_response(&info(), outcome, &requested, SystemTime::now());
        let doc: serde_json::Value = serde_json::from_slice(&resp.reports[0].document).unwrap();
        assert_eq!(doc["status"], "incomplete");
        assert_eq!(resp.report.unwrap().notices.len(), 1);
    }

    #[test]
    fn plugin_document_errors_fail_only_their_type() {
        let sbom = mime::normalize(mime::SBOM_REPORT);
        let vuln = mime::normalize(mime::VULNERABILITY_REPORT);
        let mut requested = RequestedReports::new();
        requested.insert(sbom.clone(), BTreeMap::new());
        requested.insert(vuln.clone(), BTreeMap::new());
        let mut findings = ScanFindings {
            findings: vec![finding("CVE-1", Severity::Medium, "2")],
            ..ScanFindings::default()
        };
        findings
            .documents
            .insert(sbom.clone(), Err(Error::unavailable("sbom tool down")));
        let outcome = PipelineOutcome {
            image: ResolvedImage::default(),
            findings,
        };
        let resp = build_response(&info(), outcome, &requested, SystemTime::now());
        let by_type: BTreeMap<_, _> = resp
            .reports
            .iter()
            .map(|r| (r.mime_type.clone(), r))
            .collect();
        assert_eq!(by_type[&sbom].status, pb::ReportStatus::Failed as i32);
        assert_eq!(
            by_type[&sbom].error.as_ref().unwrap().code,
            tonic::Code::Unavailable as i32
        );
        assert_eq!(by_type[&vuln].status, pb::ReportStatus::Succeeded as i32);
        let doc: serde_json::Value = serde_json::from_slice(&by_type[&vuln].document).unwrap();
        assert_eq!(doc["vulnerabilities"][0]["id"], "CVE-1");
        assert_eq!(doc["severity"], "Medium");
    }
}
