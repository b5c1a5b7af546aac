//! The report artifact: how a scan result is stored beside the image as an OCI referrer, and how
//! it is read back.
//!
//! Every attachment is an OCI 1.1 image manifest with an empty config
//! (`application/vnd.oci.empty.v1+json`), one layer, `subject` = the scanned manifest, and these
//! annotations (on the manifest, and so on its referrers-index entry):
//!
//! | annotation | value |
//! |---|---|
//! | `org.opencontainers.image.created` | RFC 3339 time of the scan |
//! | `dev.sidescan.scanner.name` / `.version` / `.engine-version` | who scanned, with what data |
//! | `dev.sidescan.report.complete` | `true`, or `false` when the report has notices |
//! | `dev.sidescan.summary.{critical,high,medium,low,negligible,unknown,total,fixable,notices}` | counts |
//!
//! Formats ([`Format`]): the `ScanResponse` in proto3 JSON (artifact type
//! `application/vnd.sidescan.report.v1+json`, always), SARIF 2.1.0 (`application/sarif+json`,
//! what Ratify's vulnerability-report verifier reads), and the plugin's SBOM
//! (`application/spdx+json` or `application/vnd.cyclonedx+json`, zot's convention).
//!
//! An incomplete report is never annotated complete: `complete` is `false` exactly when the
//! report's summary says `incomplete` or it carries notices.

use std::collections::BTreeMap;

use sidescan_proto::v1::{ScanReport, ScanResponse};

use crate::Error;
use crate::registry::annotations_of;

/// Artifact type (and layer media type) of the `ScanResponse` in proto3 JSON.
pub const REPORT_ARTIFACT_TYPE: &str = "application/vnd.sidescan.report.v1+json";
/// Artifact type (and layer media type) of a SARIF 2.1.0 log.
pub const SARIF_ARTIFACT_TYPE: &str = "application/sarif+json";

/// `org.opencontainers.image.created`.
pub const CREATED: &str = "org.opencontainers.image.created";
/// `org.opencontainers.image.title` (the file name of a layer).
pub const TITLE: &str = "org.opencontainers.image.title";
/// The scanner's product name.
pub const SCANNER_NAME: &str = "dev.sidescan.scanner.name";
/// The scanner's version.
pub const SCANNER_VERSION: &str = "dev.sidescan.scanner.version";
/// The engine version (signatures, DB) the scan ran with.
pub const ENGINE_VERSION: &str = "dev.sidescan.scanner.engine-version";
/// `true` when nothing was left unscanned.
pub const COMPLETE: &str = "dev.sidescan.report.complete";
/// Prefix of the summary counts.
pub const SUMMARY_PREFIX: &str = "dev.sidescan.summary.";

/// The artifact types a sidescan report may have.
pub const REPORT_TYPES: &[&str] = &[
    REPORT_ARTIFACT_TYPE,
    SARIF_ARTIFACT_TYPE,
    sidescan_proto::mime::SPDX_JSON,
    sidescan_proto::mime::CYCLONEDX_JSON,
];

/// Which documents are attached for a scan, besides the sidescan report itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// The `ScanResponse` in proto3 JSON (always attached).
    Sidescan,
    /// SARIF 2.1.0.
    Sarif,
    /// SPDX JSON from the plugin's SBOM report type.
    Spdx,
    /// CycloneDX JSON from the plugin's SBOM report type.
    CycloneDx,
}

impl Format {
    /// The artifact type the format is attached as.
    pub fn artifact_type(self) -> &'static str {
        match self {
            Self::Sidescan => REPORT_ARTIFACT_TYPE,
            Self::Sarif => SARIF_ARTIFACT_TYPE,
            Self::Spdx => sidescan_proto::mime::SPDX_JSON,
            Self::CycloneDx => sidescan_proto::mime::CYCLONEDX_JSON,
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Self::Sidescan => "sidescan-report.json",
            Self::Sarif => "report.sarif.json",
            Self::Spdx => "sbom.spdx.json",
            Self::CycloneDx => "sbom.cdx.json",
        }
    }
}

/// Who produced a report: the plugin and the engine data it used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScannerId {
    /// Product name, e.g. `sidescan-clamav`.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Engine version (signatures or DB); a new one calls for a rescan.
    pub engine_version: String,
}

impl ScannerId {
    /// Who answered `GetMetadata`: its scanner name and version, and its engine version: the
    /// `sidescan.engine_version` property SDK plugins report, or for other plugins a digest of
    /// all their properties (signature and DB versions live there), so that a change of engine
    /// data still reads as a new engine version. `fallback_name` (the plugin's URL) names a
    /// plugin that gives no name.
    pub fn from_metadata(
        metadata: &sidescan_proto::v1::GetMetadataResponse,
        fallback_name: &str,
    ) -> Self {
        let scanner = metadata.scanner.clone().unwrap_or_default();
        let engine_version = match metadata
            .properties
            .get(sidescan_proto::ENGINE_VERSION_PROPERTY)
        {
            Some(v) => v.clone(),
            None => {
                let sorted: BTreeMap<_, _> = metadata.properties.iter().collect();
                format!(
                    "properties-{:016x}",
                    fnv1a(format!("{sorted:?}").as_bytes())
                )
            }
        };
        Self {
            name: if scanner.name.is_empty() {
                fallback_name.to_string()
            } else {
                scanner.name
            },
            version: scanner.version,
            engine_version,
        }
    }
}

/// FNV-1a: a hash stable across processes and Rust versions (std's `DefaultHasher` is not
/// promised to be), enough to tell two property sets apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One document to attach.
#[derive(Clone, Debug)]
pub struct Attachment {
    /// Its format.
    pub format: Format,
    /// The document.
    pub document: Vec<u8>,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Attachment {
    /// The artifact type.
    pub fn artifact_type(&self) -> &'static str {
        self.format.artifact_type()
    }

    /// The layer's file name (its `org.opencontainers.image.title`).
    pub fn file_name(&self) -> &'static str {
        self.format.file_name()
    }
}

/// The annotations of a report of `response` by `scanner`, made at `created` (RFC 3339).
pub fn annotations(
    response: &ScanResponse,
    scanner: &ScannerId,
    created: &str,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(CREATED.into(), created.into());
    a.insert(SCANNER_NAME.into(), scanner.name.clone());
    a.insert(SCANNER_VERSION.into(), scanner.version.clone());
    a.insert(ENGINE_VERSION.into(), scanner.engine_version.clone());
    let report = response.report.clone().unwrap_or_default();
    a.insert(COMPLETE.into(), is_complete(&report).to_string());
    let s = report.summary.unwrap_or_default();
    let notices: u64 = u64::from(s.notice_count).max(report.notices.len() as u64);
    for (key, value) in [
        ("critical", u64::from(s.critical)),
        ("high", u64::from(s.high)),
        ("medium", u64::from(s.medium)),
        ("low", u64::from(s.low)),
        ("negligible", u64::from(s.negligible)),
        ("unknown", u64::from(s.unknown)),
        ("total", u64::from(s.total)),
        ("fixable", u64::from(s.fixable)),
        ("notices", notices),
    ] {
        a.insert(format!("{SUMMARY_PREFIX}{key}"), value.to_string());
    }
    a
}

/// Whether `report` scanned everything: no notices and not marked incomplete.
pub fn is_complete(report: &ScanReport) -> bool {
    let summary = report.summary.unwrap_or_default();
    !summary.incomplete && summary.notice_count == 0 && report.notices.is_empty()
}

/// The documents to attach, and each extra format that could not be made with the reason.
pub type Attachments = (Vec<Attachment>, Vec<(Format, String)>);

/// The documents to attach for `response`: each of `extra` the response can supply (SARIF
/// always; an SBOM only when the plugin returned one in that format), then the sidescan report.
/// Returns the attachments and, for each extra format that could not be made, why.
pub fn attachments(
    response: &ScanResponse,
    scanner: &ScannerId,
    created: &str,
    extra: &[Format],
) -> Result<Attachments, Error> {
    let annotations = annotations(response, scanner, created);
    let json = sidescan_proto::json::to_string_pretty(response, "sidescan.v1.ScanResponse")
        .map_err(|e| Error::Malformed(format!("report: {e}")))?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for &format in extra {
        let document = match format {
            Format::Sidescan => continue,
            Format::Sarif => {
                let report = response.report.clone().unwrap_or_default();
                crate::sarif::render(&report)
            }
            Format::Spdx | Format::CycloneDx => {
                let wanted = format.artifact_type();
                let found = response.reports.iter().find(|r| {
                    r.status == sidescan_proto::v1::ReportStatus::Succeeded as i32
                        && sidescan_proto::mime::normalize(&r.document_media_type) == wanted
                });
                match found {
                    Some(r) => r.document.clone(),
                    None => {
                        skipped.push((format, format!("the plugin returned no {wanted} SBOM")));
                        continue;
                    }
                }
            }
        };
        out.push(Attachment {
            format,
            document,
            annotations: annotations.clone(),
        });
    }
    // The sidescan report goes last: its presence is what "reported by this scanner and engine
    // version" means, so it must not appear before the other documents are in place.
    out.push(Attachment {
        format: Format::Sidescan,
        document: json.into_bytes(),
        annotations,
    });
    Ok((out, skipped))
}

/// A report found among an image's referrers, read from its descriptor alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportInfo {
    /// Digest of the report manifest.
    pub digest: String,
    /// Its artifact type.
    pub artifact_type: String,
    /// Who made it.
    pub scanner: ScannerId,
    /// When (RFC 3339, as annotated).
    pub created: String,
    /// Whether it is complete.
    pub complete: bool,
    /// Summary counts by name (`critical`, `high`, ..., `notices`).
    pub summary: BTreeMap<String, u64>,
}

impl ReportInfo {
    /// The report a referrers-index entry describes, or `None` when the entry is not a sidescan
    /// report (another tool's artifact, or missing the scanner annotations).
    pub fn from_entry(entry: &oci_client::manifest::ImageIndexEntry) -> Option<Self> {
        let artifact_type = entry.artifact_type.clone()?;
        if !REPORT_TYPES.contains(&artifact_type.as_str()) {
            return None;
        }
        let a = annotations_of(&entry.annotations);
        let name = a.get(SCANNER_NAME)?.clone();
        let summary = a
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(SUMMARY_PREFIX)?;
                Some((key.to_string(), v.parse().ok()?))
            })
            .collect();
        Some(Self {
            digest: entry.digest.clone(),
            artifact_type,
            scanner: ScannerId {
                name,
                version: a.get(SCANNER_VERSION).cloned().unwrap_or_default(),
                engine_version: a.get(ENGINE_VERSION).cloned().unwrap_or_default(),
            },
            created: a.get(CREATED).cloned().unwrap_or_default(),
            // Fail closed: anything but an explicit "true" is incomplete.
            complete: a.get(COMPLETE).is_some_and(|v| v == "true"),
            summary,
        })
    }
}

/// The newest report per (scanner, artifact type) among `entries`, sorted by scanner name
/// then artifact type. Newest by `created` (RFC 3339 in UTC sorts as text), then by digest.
pub fn latest(entries: &[oci_client::manifest::ImageIndexEntry]) -> Vec<ReportInfo> {
    let mut best: BTreeMap<(String, String), ReportInfo> = BTreeMap::new();
    for info in entries.iter().filter_map(ReportInfo::from_entry) {
        let key = (info.scanner.name.clone(), info.artifact_type.clone());
        match best.get(&key) {
            Some(old) if (&old.created, &old.digest) >= (&info.created, &info.digest) => {}
            _ => {
                best.insert(key, info);
            }
        }
    }
    best.into_values().collect()
}

/// `SEVERITY_HIGH` → `HIGH`; unset counts as `UNKNOWN`.
pub fn severity_name(severity: i32) -> &'static str {
    use sidescan_proto::v1::Severity;
    match Severity::try_from(severity).unwrap_or(Severity::Unspecified) {
        Severity::Critical => "CRITICAL",
        Severity::High => "HIGH",
        Severity::Medium => "MEDIUM",
        Severity::Low => "LOW",
        Severity::Negligible => "NEGLIGIBLE",
        Severity::Unknown | Severity::Unspecified => "UNKNOWN",
    }
}

/// Now, in RFC 3339 (UTC, seconds), as the `created` annotation wants.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidescan_proto::v1::{Notice, Summary};

    fn response(incomplete: bool, high: u32) -> ScanResponse {
        ScanResponse {
            report: Some(ScanReport {
                summary: Some(Summary {
                    high,
                    total: high,
                    incomplete,
                    notice_count: u32::from(incomplete),
                    ..Default::default()
                }),
                notices: if incomplete {
                    vec![Notice {
                        code: "size-limit".into(),
                        ..Default::default()
                    }]
                } else {
                    vec![]
                },
                ..Default::default()
            }),
            reports: vec![],
        }
    }

    fn scanner() -> ScannerId {
        ScannerId {
            name: "sidescan-clamav".into(),
            version: "0.1.0".into(),
            engine_version: "27000".into(),
        }
    }

    fn entry(digest: &str, a: BTreeMap<String, String>) -> oci_client::manifest::ImageIndexEntry {
        oci_client::manifest::ImageIndexEntry {
            media_type: crate::media::OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: None,
            annotations: Some(a),
            artifact_type: Some(REPORT_ARTIFACT_TYPE.into()),
        }
    }

    #[test]
    fn incomplete_reports_are_never_annotated_complete() {
        let a = annotations(&response(true, 0), &scanner(), "2026-12-02T00:00:00Z");
        assert_eq!(a[COMPLETE], "false");
        assert_eq!(a["dev.sidescan.summary.notices"], "1");
        let a = annotations(&response(false, 2), &scanner(), "2026-12-02T00:00:00Z");
        assert_eq!(a[COMPLETE], "true");
        assert_eq!(a["dev.sidescan.summary.high"], "2");
        let mut missing = a.clone();
        missing.remove(COMPLETE);
        assert!(
            !ReportInfo::from_entry(&entry("sha256:1", missing))
                .unwrap()
                .complete
        );
    }

    #[test]
    fn latest_per_scanner_and_type() {
        let old = annotations(&response(false, 1), &scanner(), "2026-12-01T00:00:00Z");
        let new = annotations(&response(false, 0), &scanner(), "2026-12-02T00:00:00Z");
        let mut other = new.clone();
        other.insert(SCANNER_NAME.into(), "sidescan-trivy".into());
        let entries = vec![
            entry("sha256:new", new),
            entry("sha256:old", old),
            entry("sha256:trivy", other),
        ];
        let latest = latest(&entries);
        let digests: Vec<_> = latest.iter().map(|r| r.digest.as_str()).collect();
        assert_eq!(digests, ["sha256:new", "sha256:trivy"]);
        assert_eq!(latest[0].summary["high"], 0);
    }

    #[test]
    fn sarif_always_and_sbom_only_when_returned() {
        let (docs, skipped) = attachments(
            &response(false, 0),
            &scanner(),
            "2026-12-02T00:00:00Z",
            &[Format::Sarif, Format::Spdx],
        )
        .unwrap();
        let formats: Vec<_> = docs.iter().map(|d| d.format).collect();
        assert_eq!(formats, [Format::Sarif, Format::Sidescan]);
        assert_eq!(skipped.len(), 1);
        let back: ScanResponse =
            sidescan_proto::json::from_slice(&docs[1].document, "sidescan.v1.ScanResponse")
                .unwrap();
        assert_eq!(back, response(false, 0));
    }
}
