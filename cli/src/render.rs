//! Output: readable tables, the proto3 canonical JSON mapping, and report documents on disk.

use std::{
    collections::HashSet,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, UNIX_EPOCH},
};

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use sidescan_proto::{
    client::code_name,
    v1::{
        FindingKind, GetMetadataResponse, Platform, ReportStatus, ScanReport, ScanResponse,
        ScanVulnerability, Severity, TypedReport,
    },
};

use crate::outcome::CliError;

/// Longest title shown in the findings table, in characters.
const TITLE_WIDTH: usize = 60;

/// Renders `message` (whose protobuf full name is `full_name`) in the proto3 canonical JSON
/// mapping, pretty-printed, with a final newline.
pub(crate) fn canonical_json<M: prost::Message>(
    message: &M,
    full_name: &str,
) -> Result<String, CliError> {
    sidescan_proto::json::to_string_pretty(message, full_name)
        .map_err(|e| CliError::Render(e.to_string()))
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    table
}

/// `SEVERITY_HIGH` → `HIGH`.
pub(crate) fn severity_name(severity: i32) -> &'static str {
    match Severity::try_from(severity) {
        Ok(Severity::Unspecified) | Err(_) => "UNSPECIFIED",
        Ok(Severity::Unknown) => "UNKNOWN",
        Ok(Severity::Negligible) => "NEGLIGIBLE",
        Ok(Severity::Low) => "LOW",
        Ok(Severity::Medium) => "MEDIUM",
        Ok(Severity::High) => "HIGH",
        Ok(Severity::Critical) => "CRITICAL",
    }
}

fn kind_name(kind: i32) -> &'static str {
    match FindingKind::try_from(kind) {
        Ok(FindingKind::Unspecified) | Err(_) => "-",
        Ok(FindingKind::Vulnerability) => "vulnerability",
        Ok(FindingKind::Malware) => "malware",
        Ok(FindingKind::Secret) => "secret",
        Ok(FindingKind::Misconfiguration) => "misconfiguration",
        Ok(FindingKind::License) => "license",
    }
}

/// `linux/arm64/v8`.
pub(crate) fn platform_string(p: &Platform) -> String {
    let mut s = format!("{}/{}", p.os, p.architecture);
    if !p.variant.is_empty() {
        s.push('/');
        s.push_str(&p.variant);
    }
    s
}

/// Cuts `text` to `width` characters (on a character boundary), marking the cut with `…`.
pub(crate) fn truncate(text: &str, width: usize) -> String {
    let text = text.lines().next().unwrap_or("").trim();
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// RFC 3339 for the range protobuf allows (years 1970 to 9999 here); anything else is shown raw
/// rather than risking a panic in the formatter.
fn rfc3339(ts: &prost_types::Timestamp) -> String {
    // 9999-12-31T23:59:59Z
    const MAX_SECONDS: i64 = 253_402_300_799;
    if (0..=MAX_SECONDS).contains(&ts.seconds) {
        let time = UNIX_EPOCH + Duration::from_secs(ts.seconds.unsigned_abs());
        humantime::format_rfc3339_seconds(time).to_string()
    } else {
        format!("{}s since 1970-01-01T00:00:00Z", ts.seconds)
    }
}

fn image_line(report: &ScanReport) -> String {
    let Some(image) = &report.image else {
        return "(not reported)".to_string();
    };
    let mut s = String::new();
    if !image.registry.is_empty() {
        s.push_str(&image.registry);
        s.push('/');
    }
    s.push_str(&image.repository);
    if !image.tag.is_empty() {
        s.push(':');
        s.push_str(&image.tag);
    }
    if !image.digest.is_empty() {
        s.push('@');
        s.push_str(&image.digest);
    }
    s
}

fn package_or_path(f: &ScanVulnerability) -> String {
    match (f.package.is_empty(), f.path.is_empty()) {
        (false, false) => format!("{} ({})", f.package, f.path),
        (false, true) => f.package.clone(),
        (true, false) => f.path.clone(),
        (true, true) => String::new(),
    }
}

fn versions(f: &ScanVulnerability) -> String {
    match (f.installed_version.is_empty(), f.fixed_version.is_empty()) {
        (true, true) => String::new(),
        (false, false) => format!("{} → {}", f.installed_version, f.fixed_version),
        (false, true) => format!("{} → (no fix)", f.installed_version),
        (true, false) => format!("→ {}", f.fixed_version),
    }
}

/// The readable scan report. `saved` lists the documents written by `--output-dir`.
pub(crate) fn scan_table(response: &ScanResponse, saved: &[(String, PathBuf)]) -> String {
    let mut out = String::new();
    let empty = ScanReport::default();
    let report = response.report.as_ref().unwrap_or(&empty);

    let _ = writeln!(out, "Image:      {}", image_line(report));
    if let Some(image) = &report.image
        && !image.media_type.is_empty()
    {
        let _ = writeln!(out, "Media type: {}", image.media_type);
    }
    let mut platforms: Vec<String> = report.platforms.iter().map(platform_string).collect();
    if platforms.is_empty()
        && let Some(p) = report.image.as_ref().and_then(|i| i.platform.as_ref())
    {
        platforms.push(platform_string(p));
    }
    if !platforms.is_empty() {
        let _ = writeln!(out, "Platforms:  {}", platforms.join(", "));
    }
    if let Some(scanner) = &report.scanner {
        let mut line = format!("{} {}", scanner.name, scanner.version);
        if !scanner.vendor.is_empty() {
            let _ = write!(line, " ({})", scanner.vendor);
        }
        let _ = writeln!(out, "Scanner:    {}", line.trim());
    }
    if let Some(ts) = &report.generated_at {
        let _ = writeln!(out, "Generated:  {}", rfc3339(ts));
    }
    if !report.notices.is_empty() {
        let _ = writeln!(
            out,
            "WARNING: INCOMPLETE, not everything was scanned: {} notice(s), listed under NOTICES below",
            notice_total(report)
        );
    }
    out.push('\n');

    if report.vulnerabilities.is_empty() {
        out.push_str("Findings: none\n");
    } else {
        let _ = writeln!(out, "Findings ({}):", report.vulnerabilities.len());
        let mut findings = table(&[
            "SEVERITY",
            "KIND",
            "ID",
            "PACKAGE / PATH",
            "INSTALLED → FIXED",
            "TITLE",
        ]);
        // In the order the plugin sent them.
        for f in &report.vulnerabilities {
            let title = if f.title.is_empty() {
                &f.description
            } else {
                &f.title
            };
            findings.add_row(vec![
                severity_name(f.severity).to_string(),
                kind_name(f.kind).to_string(),
                f.id.clone(),
                package_or_path(f),
                versions(f),
                truncate(title, TITLE_WIDTH),
            ]);
        }
        let _ = writeln!(out, "{findings}");
    }

    let s = report.summary.unwrap_or_default();
    let _ = writeln!(
        out,
        "\nSummary: {} findings ({} critical, {} high, {} medium, {} low, {} negligible, {} unknown), \
         {} fixable, max severity {}",
        s.total,
        s.critical,
        s.high,
        s.medium,
        s.low,
        s.negligible,
        s.unknown,
        s.fixable,
        if s.max_severity == Severity::Unspecified as i32 {
            "none"
        } else {
            severity_name(s.max_severity)
        }
    );

    if !response.reports.is_empty() {
        out.push_str("\nReports:\n");
        let mut reports = table(&["REPORT TYPE", "STATUS", "DOCUMENT"]);
        for r in &response.reports {
            reports.add_row(vec![
                r.mime_type.clone(),
                report_status(r),
                document_cell(r, saved),
            ]);
        }
        let _ = writeln!(out, "{reports}");
    }

    if !report.notices.is_empty() {
        let _ = writeln!(
            out,
            "\n!!! NOTICES: {} — parts of this image were NOT scanned; they are not known to be clean:",
            notice_total(report)
        );
        for n in &report.notices {
            let mut line = format!("  ! [{}] {}", n.code, n.message);
            if n.count > 1 {
                let _ = write!(line, " (x{})", n.count);
            }
            if !n.path.is_empty() {
                let _ = write!(line, " (path {})", n.path);
            }
            if !n.layer_digest.is_empty() {
                let _ = write!(line, " (layer {})", n.layer_digest);
            }
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// Occurrences the notices stand for (a notice's `count`, 0 counting as 1).
fn notice_total(report: &ScanReport) -> u64 {
    report
        .notices
        .iter()
        .map(|n| u64::from(n.count.max(1)))
        .sum()
}

fn report_status(r: &TypedReport) -> String {
    if r.status == ReportStatus::Succeeded as i32 {
        return "SUCCEEDED".to_string();
    }
    match &r.error {
        Some(e) => format!(
            "FAILED: {}: {}",
            code_name(tonic::Code::from_i32(e.code)),
            e.message
        ),
        None => "FAILED".to_string(),
    }
}

fn document_cell(r: &TypedReport, saved: &[(String, PathBuf)]) -> String {
    if r.status != ReportStatus::Succeeded as i32 {
        return String::new();
    }
    let mut cell = format!("{} bytes", r.document.len());
    if !r.document_media_type.is_empty() {
        let _ = write!(cell, " {}", r.document_media_type);
    }
    if let Some((_, path)) = saved.iter().find(|(mime, _)| *mime == r.mime_type) {
        let _ = write!(cell, "\nsaved to {}", path.display());
    }
    cell
}

/// The readable plugin description.
pub(crate) fn metadata_table(md: &GetMetadataResponse) -> String {
    let mut out = String::new();
    let scanner = md.scanner.clone().unwrap_or_default();
    let _ = writeln!(out, "Name:        {}", scanner.name);
    let _ = writeln!(out, "Vendor:      {}", scanner.vendor);
    let _ = writeln!(out, "Version:     {}", scanner.version);
    let _ = writeln!(out, "API version: {}", md.api_version);

    out.push_str("\nCapabilities:\n");
    if md.capabilities.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut caps = table(&["TYPE", "CONSUMES", "PRODUCES"]);
        for c in &md.capabilities {
            caps.add_row(vec![
                c.r#type.clone(),
                c.consumes_mime_types.join("\n"),
                c.produces_mime_types.join("\n"),
            ]);
        }
        let _ = writeln!(out, "{caps}");
    }

    let f = md.features.unwrap_or_default();
    let features: Vec<&str> = [
        (f.streaming, "streaming"),
        (f.platform_selection, "platform_selection"),
        (f.multi_platform, "multi_platform"),
        (f.layer_result_cache, "layer_result_cache"),
        (f.artifact_blobs, "artifact_blobs"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let _ = writeln!(
        out,
        "\nFeatures: {}",
        if features.is_empty() {
            "none".to_string()
        } else {
            features.join(", ")
        }
    );

    let l = md.limits.unwrap_or_default();
    let duration = |d: &Option<prost_types::Duration>| {
        d.as_ref().map(|d| {
            humantime::format_duration(Duration::new(
                d.seconds.max(0).unsigned_abs(),
                d.nanos.clamp(0, 999_999_999) as u32,
            ))
            .to_string()
        })
    };
    let limits: Vec<(&str, String)> = [
        ("max_concurrent_scans", u64::from(l.max_concurrent_scans)),
        ("max_queued_scans", u64::from(l.max_queued_scans)),
        ("max_image_bytes", l.max_image_bytes),
        ("max_uncompressed_bytes", l.max_uncompressed_bytes),
        ("max_entries", l.max_entries),
        ("max_file_bytes", l.max_file_bytes),
        ("max_compression_ratio", u64::from(l.max_compression_ratio)),
        ("max_manifest_bytes", l.max_manifest_bytes),
    ]
    .into_iter()
    .filter(|(_, v)| *v != 0)
    .map(|(k, v)| (k, v.to_string()))
    .chain(duration(&l.default_timeout).map(|d| ("default_timeout", d)))
    .chain(duration(&l.max_timeout).map(|d| ("max_timeout", d)))
    .collect();
    out.push_str("\nLimits:\n");
    if limits.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut t = table(&["LIMIT", "VALUE"]);
        for (k, v) in limits {
            t.add_row(vec![k.to_string(), v]);
        }
        let _ = writeln!(out, "{t}");
    }

    out.push_str("\nProperties:\n");
    if md.properties.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut props: Vec<_> = md.properties.iter().collect();
        props.sort();
        let mut t = table(&["PROPERTY", "VALUE"]);
        for (k, v) in props {
            t.add_row(vec![k.clone(), v.clone()]);
        }
        let _ = writeln!(out, "{t}");
    }
    out
}

/// A file name for a report document: the MIME type without `application/`, `vnd.security.`,
/// parameters and `+json`, then an extension from the document's media type.
pub(crate) fn document_file_name(report: &TypedReport) -> String {
    let essence = report.mime_type.split(';').next().unwrap_or("").trim();
    let essence = essence.strip_prefix("application/").unwrap_or(essence);
    let essence = essence.strip_prefix("vnd.security.").unwrap_or(essence);
    let essence = essence.strip_suffix("+json").unwrap_or(essence);
    let mut stem: String = essence
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    stem = stem.trim_matches(|c| c == '.' || c == '-').to_string();
    if stem.is_empty() {
        stem.push_str("report");
    }
    let media = report.document_media_type.to_ascii_lowercase();
    let json = media.contains("json")
        || (media.is_empty()
            && report
                .document
                .first()
                .is_some_and(|b| *b == b'{' || *b == b'['));
    format!("{stem}.{}", if json { "json" } else { "bin" })
}

/// Writes every succeeded typed report document into `dir` (created if missing) and returns
/// (MIME type, file) pairs.
pub(crate) fn save_documents(
    response: &ScanResponse,
    dir: &Path,
) -> Result<Vec<(String, PathBuf)>, CliError> {
    std::fs::create_dir_all(dir).map_err(|source| CliError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut used = HashSet::new();
    let mut saved = Vec::new();
    for report in response
        .reports
        .iter()
        .filter(|r| r.status == ReportStatus::Succeeded as i32)
    {
        let name = document_file_name(report);
        let mut candidate = name.clone();
        let mut n = 2;
        while !used.insert(candidate.clone()) {
            let (stem, ext) = name.rsplit_once('.').unwrap_or((&name, "bin"));
            candidate = format!("{stem}-{n}.{ext}");
            n += 1;
        }
        let path = dir.join(&candidate);
        std::fs::write(&path, &report.document).map_err(|source| CliError::Write {
            path: path.clone(),
            source,
        })?;
        saved.push((report.mime_type.clone(), path));
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidescan_proto::mime;

    fn typed(mime_type: &str, media: &str, document: &[u8]) -> TypedReport {
        TypedReport {
            mime_type: mime_type.into(),
            status: ReportStatus::Succeeded as i32,
            document: document.to_vec(),
            document_media_type: media.into(),
            ..Default::default()
        }
    }

    #[test]
    fn document_file_names() {
        let name = |m: &str, media: &str| document_file_name(&typed(m, media, b"{}"));
        assert_eq!(
            name(mime::VULNERABILITY_REPORT, "application/json"),
            "vulnerability.report.json"
        );
        assert_eq!(name(mime::MALWARE_REPORT, ""), "malware.report.json");
        assert_eq!(name(mime::SBOM_REPORT, mime::SPDX_JSON), "sbom.report.json");
        assert_eq!(name("text/plain", "text/plain"), "text-plain.bin");
        assert_eq!(name("../../etc/passwd", "x"), "etc-passwd.bin");
    }

    #[test]
    fn saving_documents_avoids_collisions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let response = ScanResponse {
            report: None,
            reports: vec![
                typed(
                    "application/vnd.security.vulnerability.report; version=1.0",
                    "application/json",
                    b"1",
                ),
                typed(mime::VULNERABILITY_REPORT, "application/json", b"2"),
            ],
        };
        let saved = save_documents(&response, &dir.path().join("out")).expect("saved");
        let names: Vec<_> = saved
            .iter()
            .map(|(_, p)| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            ["vulnerability.report.json", "vulnerability.report-2.json"]
        );
        assert_eq!(std::fs::read(&saved[1].1).expect("read"), b"2");
    }

    #[test]
    fn timestamps_never_panic() {
        let ts = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        assert_eq!(rfc3339(&ts(1_700_000_000)), "2023-11-14T22:13:20Z");
        assert!(rfc3339(&ts(-5)).contains("-5s"));
        assert!(rfc3339(&ts(i64::MAX)).contains("since"));
        assert!(rfc3339(&ts(i64::MIN)).contains("since"));
    }

    #[test]
    fn truncation_is_char_safe() {
        assert_eq!(truncate("héllo wörld", 5), "héll…");
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("first line\nsecond", 40), "first line");
    }

    #[test]
    fn canonical_json_of_an_empty_response() {
        let json =
            canonical_json(&ScanResponse::default(), "sidescan.v1.ScanResponse").expect("json");
        assert_eq!(json, "{}\n");
        assert!(canonical_json(&ScanResponse::default(), "sidescan.v1.Nope").is_err());
    }
}
