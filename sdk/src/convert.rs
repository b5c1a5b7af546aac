//! Domain types to and from `sidescan.v1` messages. Besides [`crate::server`], this is the only
//! module that knows prost types.

use sidescan_proto::v1 as pb;

use crate::context::{Phase, ProgressEvent};
use crate::model::{Cvss, Finding, FindingKind, Notice, Platform, Severity};

/// `Severity` → `sidescan.v1.Severity`.
pub(crate) fn severity_to_proto(severity: Severity) -> pb::Severity {
    match severity {
        Severity::Unknown => pb::Severity::Unknown,
        Severity::Negligible => pb::Severity::Negligible,
        Severity::Low => pb::Severity::Low,
        Severity::Medium => pb::Severity::Medium,
        Severity::High => pb::Severity::High,
        Severity::Critical => pb::Severity::Critical,
    }
}

/// `sidescan.v1.Severity` → `Severity`; `None` for UNSPECIFIED or an unknown number.
#[cfg(test)]
pub(crate) fn severity_from_proto(value: i32) -> Option<Severity> {
    match pb::Severity::try_from(value).ok()? {
        pb::Severity::Unspecified => None,
        pb::Severity::Unknown => Some(Severity::Unknown),
        pb::Severity::Negligible => Some(Severity::Negligible),
        pb::Severity::Low => Some(Severity::Low),
        pb::Severity::Medium => Some(Severity::Medium),
        pb::Severity::High => Some(Severity::High),
        pb::Severity::Critical => Some(Severity::Critical),
    }
}

fn kind_to_proto(kind: FindingKind) -> pb::FindingKind {
    match kind {
        FindingKind::Vulnerability => pb::FindingKind::Vulnerability,
        FindingKind::Malware => pb::FindingKind::Malware,
        FindingKind::Secret => pb::FindingKind::Secret,
        FindingKind::Misconfiguration => pb::FindingKind::Misconfiguration,
        FindingKind::License => pb::FindingKind::License,
    }
}

/// `Platform` → `sidescan.v1.Platform`.
pub(crate) fn platform_to_proto(platform: &Platform) -> pb::Platform {
    pb::Platform {
        os: platform.os.clone(),
        architecture: platform.architecture.clone(),
        variant: platform.variant.clone(),
    }
}

fn cvss_to_proto(cvss: &Cvss) -> pb::Cvss {
    pb::Cvss {
        v2_vector: cvss.v2_vector.clone(),
        v2_score: cvss.v2_score,
        v3_vector: cvss.v3_vector.clone(),
        v3_score: cvss.v3_score,
        v4_vector: cvss.v4_vector.clone(),
        v4_score: cvss.v4_score,
    }
}

/// `Finding` → `sidescan.v1.ScanVulnerability`.
pub(crate) fn finding_to_proto(finding: &Finding) -> pb::ScanVulnerability {
    pb::ScanVulnerability {
        id: finding.id.clone(),
        package: finding.package.clone(),
        installed_version: finding.installed_version.clone(),
        fixed_version: finding.fixed_version.clone(),
        severity: severity_to_proto(finding.severity) as i32,
        title: finding.title.clone(),
        description: finding.description.clone(),
        links: finding.links.clone(),
        cvss: finding
            .cvss
            .iter()
            .map(|(source, cvss)| (source.clone(), cvss_to_proto(cvss)))
            .collect(),
        cwe_ids: finding.cwe_ids.clone(),
        layer_digest: finding.layer_digest.clone(),
        layer_diff_id: finding.layer_diff_id.clone(),
        vendor_attributes: finding.vendor_attributes.clone().into_iter().collect(),
        kind: kind_to_proto(finding.kind) as i32,
        path: finding.path.clone(),
        package_type: finding.package_type.clone(),
        purl: finding.purl.clone(),
        status: finding.status.clone(),
        platforms: finding.platforms.iter().map(platform_to_proto).collect(),
    }
}

/// `Notice` → `sidescan.v1.Notice`, standing for one occurrence (`count` 1).
pub(crate) fn notice_to_proto(notice: &Notice) -> pb::Notice {
    pb::Notice {
        code: notice.code.clone(),
        message: notice.message.clone(),
        path: notice.path.clone(),
        layer_digest: notice.layer_digest.clone(),
        count: 1,
    }
}

/// `ProgressEvent` → `sidescan.v1.Progress`.
pub(crate) fn progress_to_proto(event: &ProgressEvent) -> pb::Progress {
    let phase = match event.phase {
        Phase::Queued => pb::ScanPhase::Queued,
        Phase::Resolving => pb::ScanPhase::Resolving,
        Phase::Downloading => pb::ScanPhase::Downloading,
        Phase::Scanning => pb::ScanPhase::Scanning,
        Phase::Reporting => pb::ScanPhase::Reporting,
    };
    pb::Progress {
        phase: phase as i32,
        bytes_done: event.bytes_done,
        bytes_total: event.bytes_total,
        layers_done: event.layers_done,
        layers_total: event.layers_total,
        message: event.message.clone(),
    }
}

/// `sidescan.v1.Platform` → `Platform`, validating it: `None` when unset or all empty;
/// INVALID_ARGUMENT when os or architecture is missing or malformed.
pub(crate) fn platform_from_proto(
    platform: Option<&pb::Platform>,
) -> Result<Option<Platform>, crate::Error> {
    let Some(p) = platform else { return Ok(None) };
    if p.os.is_empty() && p.architecture.is_empty() && p.variant.is_empty() {
        return Ok(None);
    }
    Platform::from_parts(&p.os, &p.architecture, &p.variant).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_round_trip() {
        for sev in Severity::ALL {
            assert_eq!(
                severity_from_proto(severity_to_proto(sev) as i32),
                Some(sev)
            );
        }
        assert_eq!(severity_from_proto(0), None);
        assert_eq!(severity_from_proto(99), None);
    }

    #[test]
    fn platform_validation() {
        assert_eq!(platform_from_proto(None).unwrap(), None);
        assert_eq!(
            platform_from_proto(Some(&pb::Platform::default())).unwrap(),
            None
        );
        let arm = pb::Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: "v8".into(),
        };
        assert_eq!(
            platform_from_proto(Some(&arm))
                .unwrap()
                .unwrap()
                .to_string(),
            "linux/arm64/v8"
        );
        let missing_arch = pb::Platform {
            os: "linux".into(),
            ..Default::default()
        };
        assert_eq!(
            platform_from_proto(Some(&missing_arch)).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let slash = pb::Platform {
            os: "linux/x".into(),
            architecture: "amd64".into(),
            variant: String::new(),
        };
        assert!(platform_from_proto(Some(&slash)).is_err());
    }
}
