//! Domain types a plugin works with: findings, notices, platforms, report documents.
//!
//! These are plain Rust types, not prost messages; the SDK converts them into
//! `sidescan.v1` messages (its private `convert` module).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Severity on Harbor's scale, ordered from least to most severe.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Severity {
    /// The source gave no usable severity.
    #[default]
    Unknown,
    /// Not worth acting on.
    Negligible,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// All severities, least severe first.
    pub const ALL: [Severity; 6] = [
        Severity::Unknown,
        Severity::Negligible,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// Upper-case name as Harbor and Trivy write it, e.g. `HIGH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Negligible => "NEGLIGIBLE",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = Error;

    /// Parses a severity name, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Error> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "unknown severity {s:?} (expected one of unknown, negligible, low, medium, high, critical)"
                ))
            })
    }
}

/// What sort of problem a finding is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum FindingKind {
    /// A known vulnerability in a package.
    #[default]
    Vulnerability,
    /// Malicious content matched by a signature.
    Malware,
    /// A credential or key in a file.
    Secret,
    /// A configuration problem.
    Misconfiguration,
    /// A license of concern.
    License,
}

/// CVSS data from one source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    /// CVSS v2 vector.
    pub v2_vector: String,
    /// CVSS v2 base score.
    pub v2_score: f64,
    /// CVSS v3 vector.
    pub v3_vector: String,
    /// CVSS v3 base score.
    pub v3_score: f64,
    /// CVSS v4 vector.
    pub v4_vector: String,
    /// CVSS v4 base score.
    pub v4_score: f64,
}

/// One finding of any kind.
///
/// Build one with [`Finding::new`] and fill the fields that apply; the SDK fills `layer_digest`,
/// `layer_diff_id` and `platforms` when the plugin leaves them empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What sort of finding.
    pub kind: FindingKind,
    /// CVE/GHSA id, signature name, secret rule id, ...
    pub id: String,
    /// Severity.
    pub severity: Severity,
    /// Package name (package findings).
    pub package: String,
    /// Installed package version.
    pub installed_version: String,
    /// First fixed version; empty when there is no fix.
    pub fixed_version: String,
    /// Fix status as the source states it.
    pub status: String,
    /// One-line title.
    pub title: String,
    /// Longer description.
    pub description: String,
    /// Reference URLs, primary first.
    pub links: Vec<String>,
    /// CVSS by source.
    pub cvss: BTreeMap<String, Cvss>,
    /// CWE ids.
    pub cwe_ids: Vec<String>,
    /// Path of the file inside the image, absolute (`/etc/ssl/key.pem`).
    pub path: String,
    /// Digest of the compressed layer blob.
    pub layer_digest: String,
    /// diff_id of the layer.
    pub layer_diff_id: String,
    /// Package ecosystem, e.g. `alpine`, `npm`.
    pub package_type: String,
    /// Package URL.
    pub purl: String,
    /// Scanner-specific extras.
    pub vendor_attributes: BTreeMap<String, String>,
    /// Platforms of an index this finding was seen on (set by the SDK for multi-platform scans).
    pub platforms: Vec<Platform>,
}

impl Finding {
    /// A finding of `kind` with identifier `id` and `severity`; other fields empty.
    pub fn new(kind: FindingKind, id: impl Into<String>, severity: Severity) -> Self {
        Self {
            kind,
            id: id.into(),
            severity,
            ..Self::default()
        }
    }

    /// Sets the file path and returns the finding.
    pub fn at_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets the title and returns the finding.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }
}

/// Something that was not scanned, or only in part. Notices keep unscanned content from passing as
/// clean.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Notice {
    /// Machine-readable reason, e.g. `file-too-large` (see [`notice_codes`]).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The file concerned, if any.
    pub path: String,
    /// The layer concerned, if any.
    pub layer_digest: String,
}

impl Notice {
    /// A notice with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            ..Self::default()
        }
    }

    /// Sets the path and returns the notice.
    pub fn at_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
}

/// Notice codes the SDK and the reference plugins use.
pub mod notice_codes {
    /// A file was larger than the scanner can take.
    pub const FILE_TOO_LARGE: &str = "file-too-large";
    /// A non-distributable (foreign) layer was not pulled.
    pub const NON_DISTRIBUTABLE_LAYER: &str = "non-distributable-layer";
    /// A blob or layer media type the SDK cannot read.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported-media-type";
    /// A device, fifo or socket entry was skipped. Reserved for plugins: since parser
    /// generation 2 the SDK does not report them (they carry no data to scan).
    pub const SPECIAL_FILE_SKIPPED: &str = "special-file-skipped";
    /// An entry the rootfs unpack cannot place inside the root (a parent that is not a
    /// directory, a hard link to nothing) was not unpacked. Paths with `..` are confined and
    /// scanned, as runtimes extract them.
    pub const UNSAFE_PATH_SKIPPED: &str = "unsafe-path-skipped";
    /// The engine could not scan a file (its own error).
    pub const SCAN_ERROR: &str = "scan-error";
    /// The least severe findings were left out to keep the response under its size cap; the
    /// notice's count is how many (set by the SDK when it assembles the response).
    pub const FINDINGS_TRUNCATED: &str = "findings-truncated";
}

/// An OCI platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Architecture, e.g. `amd64`.
    pub architecture: String,
    /// Variant, e.g. `v8`; may be empty.
    pub variant: String,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

impl Platform {
    /// A platform from its parts, each validated: os and architecture required, variant
    /// optional; letters, digits, `_`, `-` and `.` only. INVALID_ARGUMENT otherwise.
    pub fn from_parts(os: &str, architecture: &str, variant: &str) -> Result<Self, Error> {
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if valid(os) && valid(architecture) && (variant.is_empty() || valid(variant)) {
            Ok(Platform {
                os: os.into(),
                architecture: architecture.into(),
                variant: variant.into(),
            })
        } else {
            Err(Error::invalid_argument(format!(
                "invalid platform os={os:?} architecture={architecture:?} variant={variant:?}: \
                 expected os/architecture[/variant], e.g. linux/arm64/v8"
            )))
        }
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// Parses `os/arch[/variant]`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.split('/').collect::<Vec<_>>().as_slice() {
            [os, arch] => Platform::from_parts(os, arch, ""),
            [os, arch, variant] if !variant.is_empty() => Platform::from_parts(os, arch, variant),
            _ => Err(Error::invalid_argument(format!(
                "invalid platform {s:?}: expected os/architecture[/variant], e.g. linux/arm64/v8"
            ))),
        }
    }
}

/// A report document a plugin renders itself (e.g. an SBOM), for one requested report type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDocument {
    /// Media type of `content`, e.g. `application/spdx+json`.
    pub media_type: String,
    /// The document (stored as base64 in the result cache).
    #[serde(with = "base64_bytes")]
    pub content: Vec<u8>,
}

/// Serde for byte buffers as base64 strings (compact in the JSON result cache).
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// What a plugin found in one layer, blob or image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanFindings {
    /// Findings of every kind.
    pub findings: Vec<Finding>,
    /// What was not scanned, and why.
    pub notices: Vec<Notice>,
    /// Documents the plugin rendered itself, keyed by requested report MIME type (normalised with
    /// [`sidescan_proto::mime::normalize`]). A failed document is an `Err`, which fails that report
    /// type only.
    #[serde(skip)]
    pub documents: BTreeMap<String, Result<ReportDocument, Error>>,
}

impl ScanFindings {
    /// Appends another result to this one.
    pub fn extend(&mut self, other: ScanFindings) {
        self.findings.extend(other.findings);
        self.notices.extend(other.notices);
        self.documents.extend(other.documents);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_parses_case_insensitively_and_orders() {
        assert_eq!("high".parse::<Severity>().unwrap(), Severity::High);
        assert_eq!("CRITICAL".parse::<Severity>().unwrap(), Severity::Critical);
        assert!("severe".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Unknown);
    }

    #[test]
    fn platform_parses_and_rejects() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_str()),
            ("linux", "arm64", "v8")
        );
        assert_eq!(p.to_string(), "linux/arm64/v8");
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?} accepted");
        }
    }
}
