//! The typed report documents the SDK renders itself from the findings: Harbor's vulnerability
//! report and sidescan's malware report. Both say when the scan was incomplete.

use std::time::SystemTime;

use serde_json::json;
use sidescan_proto::mime;

use super::bounds::CountedNotice;
use crate::error::Error;
use crate::model::{Finding, FindingKind, ReportDocument, Severity};
use crate::pipeline::ResolvedImage;
use crate::plugin::ScannerInfo;

/// Renders the built-in document for `mime_type`; INTERNAL for a type the SDK cannot render (the
/// plugin should have produced it).
pub(super) fn render_builtin(
    mime_type: &str,
    scanner: &ScannerInfo,
    image: &ResolvedImage,
    findings: &[Finding],
    notices: &[CountedNotice],
    generated_at: SystemTime,
) -> Result<ReportDocument, Error> {
    let generated_at = humantime::format_rfc3339_seconds(generated_at).to_string();
    let value = if mime_type == mime::normalize(mime::VULNERABILITY_REPORT) {
        harbor_vulnerability_report(scanner, image, findings, notices, &generated_at)
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

/// The notices as the built-in documents list them; `count` is how many occurrences each stands
/// for (more than 1 for a "<code>: N more" summary or `findings-truncated`).
fn notices_json(notices: &[CountedNotice]) -> Vec<serde_json::Value> {
    notices
        .iter()
        .map(|CountedNotice { notice: n, count }| {
            json!({
                "code": n.code, "message": n.message, "path": n.path,
                "layer_digest": n.layer_digest, "count": count,
            })
        })
        .collect()
}

/// Harbor's `application/vnd.security.vulnerability.report; version=1.1` from the vulnerability
/// findings. Two top-level properties beyond Harbor's schema (which ignores unknown fields) keep
/// an incomplete scan from reading as complete: `incomplete` (true when there are notices) and
/// `notices` (the report's notices, as in the malware document).
fn harbor_vulnerability_report(
    scanner: &ScannerInfo,
    image: &ResolvedImage,
    findings: &[Finding],
    notices: &[CountedNotice],
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
        "incomplete": !notices.is_empty(),
        "notices": notices_json(notices),
    })
}

/// sidescan's `application/vnd.security.malware.report; version=1.0`. Its `status` is
/// `infected` when malware was found, `incomplete` when nothing was found but something was not
/// scanned (notices), and `clean` only when everything was scanned and nothing found;
/// `incomplete` is true whenever there are notices (also when `infected`).
fn malware_report(
    scanner: &ScannerInfo,
    image: &ResolvedImage,
    findings: &[Finding],
    notices: &[CountedNotice],
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
    json!({
        "generated_at": generated_at,
        "artifact": artifact_json(image),
        "scanner": scanner_json(scanner),
        "status": status,
        "incomplete": !notices.is_empty(),
        "malware": malware,
        "notices": notices_json(notices),
    })
}
