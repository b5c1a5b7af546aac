//! Report assembly: sorts findings, counts the summary, and renders the typed report documents
//! the SDK knows (Harbor's vulnerability report, sidescan's malware report) so that plugins only
//! produce findings.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::SystemTime;

use sidescan_proto::v1 as pb;

mod bounds;
mod documents;

pub(crate) use bounds::MAX_RESPONSE_BYTES;
#[cfg(test)]
use bounds::NOTICES_PER_CODE;

use crate::convert::{finding_to_proto, notice_to_proto, platform_to_proto, severity_to_proto};
use crate::error::Error;
use crate::model::{Finding, ReportDocument, Severity};
use crate::pipeline::{PipelineOutcome, ResolvedImage};
use crate::plugin::ScannerInfo;
use bounds::{CountedNotice, Documents, bound_notices, fit};
use documents::render_builtin;

/// Report types requested, keyed by normalised MIME type, with their parameters.
pub(crate) type RequestedReports = BTreeMap<String, BTreeMap<String, String>>;

/// Sorts findings the way reports list them: most severe first, then by id, path and package.
pub(crate) fn sort_findings(findings: &mut [Finding]) {
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
pub(crate) fn summarize(findings: &[Finding]) -> pb::Summary {
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
///
/// The response is bounded: notices are summarised per code ([`bounds::NOTICES_PER_CODE`] kept with
/// their paths) and the encoded response stays under [`MAX_RESPONSE_BYTES`], the least severe
/// findings left out with a `findings-truncated` notice when they would not fit. A report with
/// notices is marked incomplete (`Summary.incomplete`, and in the built-in documents).
pub(crate) fn build_response(
    scanner: &ScannerInfo,
    outcome: PipelineOutcome,
    requested: &RequestedReports,
    generated_at: SystemTime,
) -> pb::ScanResponse {
    build_response_capped(
        scanner,
        outcome,
        requested,
        generated_at,
        MAX_RESPONSE_BYTES,
    )
}

/// [`build_response`] with the size cap given.
fn build_response_capped(
    scanner: &ScannerInfo,
    outcome: PipelineOutcome,
    requested: &RequestedReports,
    generated_at: SystemTime,
    cap: usize,
) -> pb::ScanResponse {
    let PipelineOutcome {
        image,
        findings: mut scan,
    } = outcome;
    sort_findings(&mut scan.findings);
    scan.notices.sort();
    scan.notices.dedup();
    let notices = bound_notices(std::mem::take(&mut scan.notices));
    let documents = std::mem::take(&mut scan.documents);
    let image_proto = image_to_proto(&image);
    let scanner_proto = scanner_to_proto(scanner);
    let platforms: Vec<pb::Platform> = image.platforms.iter().map(platform_to_proto).collect();

    let assemble = |keep: usize, truncation: Option<&CountedNotice>, documents: &Documents| {
        let findings = scan.findings.get(..keep).unwrap_or(&scan.findings);
        let mut notices = notices.clone();
        notices.extend(truncation.cloned());
        let reports = requested
            .keys()
            .map(|mime_type| {
                let rendered = documents.get(mime_type).cloned().unwrap_or_else(|| {
                    render_builtin(mime_type, scanner, &image, findings, &notices, generated_at)
                });
                typed_report(mime_type, rendered)
            })
            .collect();
        let report = pb::ScanReport {
            image: Some(image_proto.clone()),
            scanner: Some(scanner_proto.clone()),
            vulnerabilities: findings.iter().map(finding_to_proto).collect(),
            generated_at: Some(prost_types::Timestamp::from(generated_at)),
            summary: Some(summary_with_notices(summarize(findings), &notices)),
            notices: notices.iter().map(counted_notice_to_proto).collect(),
            platforms: platforms.clone(),
        };
        pb::ScanResponse {
            report: Some(report),
            reports,
        }
    };
    fit(&scan.findings, documents, cap, assemble)
}

fn image_to_proto(image: &ResolvedImage) -> pb::Image {
    let single_platform = match image.platforms.as_slice() {
        [only] => Some(platform_to_proto(only)),
        _ => None,
    };
    pb::Image {
        repository: image.repository.clone(),
        tag: image.tag.clone(),
        digest: image.digest.clone(),
        media_type: image.media_type.clone(),
        platform: single_platform,
        registry: image.registry.clone(),
        manifest_digests: image.manifest_digests.clone(),
    }
}

/// Marks `summary` incomplete when there are notices, with how many things they stand for.
fn summary_with_notices(mut summary: pb::Summary, notices: &[CountedNotice]) -> pb::Summary {
    summary.incomplete = !notices.is_empty();
    summary.notice_count = notices
        .iter()
        .fold(0u32, |sum, n| sum.saturating_add(n.count.max(1)));
    summary
}

fn counted_notice_to_proto(counted: &CountedNotice) -> pb::Notice {
    pb::Notice {
        count: counted.count,
        ..notice_to_proto(&counted.notice)
    }
}

/// `ScannerInfo` → `sidescan.v1.Scanner`.
pub(crate) fn scanner_to_proto(scanner: &ScannerInfo) -> pb::Scanner {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FindingKind, Notice, ScanFindings, notice_codes};
    use sidescan_proto::mime;

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

    fn vuln_and_malware() -> RequestedReports {
        let mut requested = RequestedReports::new();
        requested.insert(mime::normalize(mime::VULNERABILITY_REPORT), BTreeMap::new());
        requested.insert(mime::normalize(mime::MALWARE_REPORT), BTreeMap::new());
        requested
    }

    fn outcome(findings: Vec<Finding>, notices: Vec<Notice>) -> PipelineOutcome {
        PipelineOutcome {
            image: ResolvedImage::default(),
            findings: ScanFindings {
                findings,
                notices,
                ..ScanFindings::default()
            },
        }
    }

    fn documents(resp: &pb::ScanResponse) -> Vec<serde_json::Value> {
        resp.reports
            .iter()
            .map(|r| serde_json::from_slice(&r.document).expect("JSON document"))
            .collect()
    }

    #[test]
    fn notices_mark_the_summary_and_both_documents_incomplete() {
        let notices = vec![
            Notice::new("unsafe-path-skipped", "escapes").at_path("/../x"),
            Notice::new("file-too-large", "big").at_path("/big"),
        ];
        let findings = vec![finding("CVE-1", Severity::Low, "")];
        let resp = build_response(
            &info(),
            outcome(findings.clone(), notices),
            &vuln_and_malware(),
            SystemTime::now(),
        );
        let summary = resp.report.as_ref().and_then(|r| r.summary).unwrap();
        assert!(summary.incomplete);
        assert_eq!(summary.notice_count, 2);
        for doc in documents(&resp) {
            assert_eq!(doc["incomplete"], true, "{doc}");
            assert_eq!(doc["notices"].as_array().map(Vec::len), Some(2), "{doc}");
            assert_eq!(doc["notices"][0]["count"], 1, "{doc}");
        }

        let complete = build_response(
            &info(),
            outcome(findings, Vec::new()),
            &vuln_and_malware(),
            SystemTime::now(),
        );
        let summary = complete.report.as_ref().and_then(|r| r.summary).unwrap();
        assert!(!summary.incomplete);
        assert_eq!(summary.notice_count, 0);
        for doc in documents(&complete) {
            assert_eq!(doc["incomplete"], false, "{doc}");
        }
    }

    #[test]
    fn ten_thousand_notices_of_one_code_are_bounded() {
        let notices = (0..10_000)
            .map(|i| {
                Notice::new("unsafe-path-skipped", "escapes the root").at_path(format!("/{i}"))
            })
            .collect();
        let resp = build_response(
            &info(),
            outcome(Vec::new(), notices),
            &vuln_and_malware(),
            SystemTime::now(),
        );
        let report = resp.report.as_ref().unwrap();
        assert_eq!(report.notices.len(), NOTICES_PER_CODE + 1);
        let last = report.notices.last().unwrap();
        assert_eq!(
            (last.message.as_str(), last.count, last.path.as_str()),
            ("unsafe-path-skipped: 9980 more", 9_980, "")
        );
        let summary = report.summary.unwrap();
        assert!(summary.incomplete);
        assert_eq!(summary.notice_count, 10_000);
        for doc in documents(&resp) {
            assert_eq!(
                doc["notices"].as_array().map(Vec::len),
                Some(NOTICES_PER_CODE + 1)
            );
        }
    }

    #[test]
    fn a_hundred_thousand_findings_fit_the_cap_with_a_truncation_notice() {
        use prost::Message as _;
        let findings: Vec<Finding> = (0..100_000)
            .map(|i| Finding {
                package: format!("package-{i}"),
                installed_version: "1.2.3-r4".into(),
                description: "a description of the problem that takes some room".into(),
                ..finding(&format!("CVE-2024-{i:06}"), Severity::ALL[i % 6], "")
            })
            .collect();
        let resp = build_response(
            &info(),
            outcome(findings, Vec::new()),
            &vuln_and_malware(),
            SystemTime::now(),
        );
        let len = resp.encoded_len();
        assert!(len <= MAX_RESPONSE_BYTES, "{len} bytes");
        assert!(
            len > MAX_RESPONSE_BYTES / 2,
            "{len} bytes: cut far too much"
        );
        let report = resp.report.as_ref().unwrap();
        let kept = report.vulnerabilities.len();
        assert!(kept > 0 && kept < 100_000, "{kept}");
        let notice = &report.notices[0];
        assert_eq!(notice.code, notice_codes::FINDINGS_TRUNCATED);
        assert_eq!(notice.count as usize, 100_000 - kept);
        let summary = report.summary.unwrap();
        assert!(summary.incomplete);
        assert_eq!(summary.total as usize, kept);
        // The most severe were kept (there are 16 667 critical ones).
        assert_eq!(summary.critical as usize, kept.min(16_667));
        assert_eq!(summary.max_severity, pb::Severity::Critical as i32);
        for doc in documents(&resp) {
            assert_eq!(doc["incomplete"], true);
            assert_eq!(doc["notices"][0]["code"], notice_codes::FINDINGS_TRUNCATED);
        }
        let harbor = &documents(&resp)[1];
        assert_eq!(
            harbor["vulnerabilities"].as_array().map(Vec::len),
            Some(kept)
        );
    }

    #[test]
    fn a_plugin_document_too_big_for_the_cap_fails_alone() {
        use prost::Message as _;
        let sbom = mime::normalize(mime::SBOM_REPORT);
        let mut requested = vuln_and_malware();
        requested.insert(sbom.clone(), BTreeMap::new());
        let mut scan = outcome(vec![finding("CVE-1", Severity::High, "")], Vec::new());
        scan.findings.documents.insert(
            sbom.clone(),
            Ok(ReportDocument {
                media_type: "application/spdx+json".into(),
                content: vec![b' '; 20_000],
            }),
        );
        let resp = build_response_capped(&info(), scan, &requested, SystemTime::now(), 8_000);
        assert!(resp.encoded_len() <= 8_000, "{}", resp.encoded_len());
        let by_type: BTreeMap<_, _> = resp.reports.iter().map(|r| (&r.mime_type, r)).collect();
        assert_eq!(by_type[&sbom].status, pb::ReportStatus::Failed as i32);
        assert_eq!(
            by_type[&sbom].error.as_ref().map(|e| e.code),
            Some(tonic::Code::ResourceExhausted as i32)
        );
        // The finding still fits once the document is out: nothing else was cut.
        let report = resp.report.as_ref().unwrap();
        assert_eq!(report.vulnerabilities.len(), 1);
        assert!(report.notices.is_empty());
    }
}
