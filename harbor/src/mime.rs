//! The media types of Harbor's scanner-adapter API v1.2 and how requests name them.
//!
//! Harbor's own client still sends the `version=1.0` metadata and scan-request types; both 1.0
//! and 1.1 are accepted. Comparison ignores case and spacing around `;` and `=`
//! ([`sidescan_proto::mime::normalize`]).

use sidescan_proto::mime;

/// Scanner metadata, version 1.1 (what this adapter answers unless 1.0 is asked for).
pub const METADATA_V1_1: &str = "application/vnd.scanner.adapter.metadata+json; version=1.1";
/// Scanner metadata, version 1.0 (what Harbor's client asks for).
pub const METADATA_V1_0: &str = "application/vnd.scanner.adapter.metadata+json; version=1.0";
/// The answer to `POST /scan`.
pub const SCAN_RESPONSE: &str = "application/vnd.scanner.adapter.scan.response+json; version=1.0";
/// Every error body.
pub const ERROR: &str = "application/vnd.scanner.adapter.error+json; version=1.0";

/// Harbor's native vulnerability report.
pub const NATIVE_REPORT: &str =
    "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0";
/// The generic vulnerability report (native plus `preferred_cvss`, `cwe_ids`,
/// `vendor_attributes`); what Harbor asks for today.
pub const GENERIC_REPORT: &str = mime::VULNERABILITY_REPORT;
/// The SBOM report: a wrapper with `media_type` and the `sbom` document.
pub const SBOM_REPORT: &str = mime::SBOM_REPORT;
/// Harbor's raw report type (not produced here: 501).
pub const RAW_REPORT: &str = "application/vnd.scanner.adapter.vuln.report.raw";

/// The artifact types every capability consumes (Harbor requires the Docker one).
pub const CONSUMES: [&str; 2] = [mime::OCI_MANIFEST, mime::DOCKER_MANIFEST];

/// The SBOM formats a report can be asked for with `sbom_media_type`.
pub const SBOM_FORMATS: [&str; 2] = [mime::SPDX_JSON, mime::CYCLONEDX_JSON];

/// A report type this adapter can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportType {
    /// [`NATIVE_REPORT`].
    Native,
    /// [`GENERIC_REPORT`].
    Generic,
    /// [`SBOM_REPORT`].
    Sbom,
}

impl ReportType {
    /// The media type as the spec spells it.
    pub fn media_type(self) -> &'static str {
        match self {
            ReportType::Native => NATIVE_REPORT,
            ReportType::Generic => GENERIC_REPORT,
            ReportType::Sbom => SBOM_REPORT,
        }
    }

    /// The report type named by `media_type`, if this adapter knows it.
    pub fn parse(media_type: &str) -> Option<Self> {
        let wanted = mime::normalize(media_type);
        [ReportType::Native, ReportType::Generic, ReportType::Sbom]
            .into_iter()
            .find(|t| mime::normalize(t.media_type()) == wanted)
    }
}

/// Whether `a` and `b` name the same media type (case and spacing ignored).
pub fn same(a: &str, b: &str) -> bool {
    mime::normalize(a) == mime::normalize(b)
}

/// The SBOM format as spelled by [`SBOM_FORMATS`], if `value` is one of them.
pub fn sbom_format(value: &str) -> Option<&'static str> {
    SBOM_FORMATS.into_iter().find(|f| same(f, value))
}

/// What an `Accept` header asks for, as the report endpoint reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// A report type this adapter serves.
    Report(ReportType),
    /// No type was named (no header, or only wildcards): the generic report is served.
    Default,
    /// Only types this adapter does not serve.
    Unsupported,
}

/// Reads an `Accept` header: its entries are tried in order (q-values are not weighed; Harbor
/// sends exactly one type), the first report type served here wins.
pub fn accepted(header: Option<&str>) -> Accepted {
    let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Accepted::Default;
    };
    let mut wildcard = false;
    for entry in split_accept(header) {
        let without_q = strip_q(entry);
        if let Some(t) = ReportType::parse(&without_q) {
            return Accepted::Report(t);
        }
        let essence = without_q.split(';').next().unwrap_or("").trim();
        if essence == "*/*" || essence.eq_ignore_ascii_case("application/*") {
            wildcard = true;
        }
    }
    if wildcard {
        Accepted::Default
    } else {
        Accepted::Unsupported
    }
}

/// Splits an `Accept` header at commas outside quoted strings.
fn split_accept(header: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in header.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(header[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(header[start..].trim());
    out
}

/// The entry without its `q=` parameter.
fn strip_q(entry: &str) -> String {
    entry
        .split(';')
        .filter(|p| {
            !p.trim()
                .split('=')
                .next()
                .is_some_and(|k| k.trim().eq_ignore_ascii_case("q"))
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Whether the metadata answer should be labelled 1.0: only when the caller asks for 1.0 and not
/// for 1.1.
pub fn metadata_wants_v1_0(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let entries: Vec<String> = split_accept(accept).into_iter().map(strip_q).collect();
    entries.iter().any(|e| same(e, METADATA_V1_0))
        && !entries.iter().any(|e| same(e, METADATA_V1_1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_types_match_whatever_the_spacing() {
        assert_eq!(
            ReportType::parse("application/vnd.security.vulnerability.report;version=1.1"),
            Some(ReportType::Generic)
        );
        assert_eq!(ReportType::parse(NATIVE_REPORT), Some(ReportType::Native));
        assert_eq!(ReportType::parse(RAW_REPORT), None);
    }

    #[test]
    fn accept_picks_the_first_served_type() {
        assert_eq!(accepted(None), Accepted::Default);
        assert_eq!(accepted(Some("*/*")), Accepted::Default);
        assert_eq!(
            accepted(Some(&format!("{RAW_REPORT}, {SBOM_REPORT};q=0.5"))),
            Accepted::Report(ReportType::Sbom)
        );
        assert_eq!(accepted(Some(RAW_REPORT)), Accepted::Unsupported);
        assert_eq!(accepted(Some("text/html")), Accepted::Unsupported);
    }

    #[test]
    fn metadata_version_follows_accept() {
        assert!(metadata_wants_v1_0(Some(METADATA_V1_0)));
        assert!(!metadata_wants_v1_0(Some(METADATA_V1_1)));
        assert!(!metadata_wants_v1_0(None));
        assert!(!metadata_wants_v1_0(Some(&format!(
            "{METADATA_V1_0}, {METADATA_V1_1}"
        ))));
    }
}
