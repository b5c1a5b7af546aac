//! Exit codes, `--fail-on` (incomplete reports included), and how errors are printed.

use std::{path::PathBuf, process::ExitCode};

use sidescan_proto::{
    client::{ClientError, code_name},
    v1::{ReportStatus, ScanReport, ScanResponse, Severity},
};

use crate::incomplete::incompleteness;

/// How a run ended; each maps to one exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Done,
    /// Exit 1: findings at or above `--fail-on`.
    FindingsAtOrAbove,
    /// Exit 1: `--fail-on` given, no finding at or above it, but the report is incomplete (it has
    /// notices) and `--allow-incomplete` was not given.
    Incomplete,
    /// Exit 2: an error (already printed).
    Error,
}

impl Outcome {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::FindingsAtOrAbove | Outcome::Incomplete => 1,
            Outcome::Error => 2,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        ExitCode::from(outcome.code())
    }
}

/// Everything that ends a run with exit code 2.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Bad flags or flag combinations detected after parsing.
    #[error("{0}")]
    Usage(String),
    /// Connection, configuration or RPC failure.
    #[error("{}", client_message(.0))]
    Client(#[from] ClientError),
    /// Writing an output file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The registry refused or failed a request (`sidescan report`, `scan --attach`).
    #[error("registry: {0}")]
    Registry(String),
    /// Rendering output failed.
    #[error("cannot render output: {0}")]
    Render(String),
}

fn client_message(err: &ClientError) -> String {
    match err {
        // Status already displays as "CODE: message".
        ClientError::Status(_) => err.to_string(),
        other => match other.code() {
            Some(code) => format!("{}: {other}", code_name(code)),
            None => other.to_string(),
        },
    }
}

impl CliError {
    /// The line printed on stderr: `error: <CODE>: <message>` for RPC and connection failures,
    /// `error: <message>` for local problems.
    pub(crate) fn line(&self) -> String {
        format!("error: {self}")
    }
}

/// Severity numbers in order; an unset severity counts as UNKNOWN.
fn rank(severity: i32) -> i32 {
    match Severity::try_from(severity) {
        Ok(Severity::Unspecified) | Err(_) => Severity::Unknown as i32,
        Ok(s) => s as i32,
    }
}

/// True when the report has a finding at or above `threshold`.
pub(crate) fn fails_threshold(report: &ScanReport, threshold: Severity) -> bool {
    let threshold = threshold as i32;
    let from_summary = report
        .summary
        .as_ref()
        .map(|s| s.max_severity)
        .filter(|s| *s != Severity::Unspecified as i32)
        .is_some_and(|s| rank(s) >= threshold);
    from_summary
        || report
            .vulnerabilities
            .iter()
            .any(|f| rank(f.severity) >= threshold)
}

/// Error lines for the requested report types that failed (one line each).
pub(crate) fn failed_reports(response: &ScanResponse) -> Vec<String> {
    response
        .reports
        .iter()
        .filter(|r| r.status != ReportStatus::Succeeded as i32)
        .map(|r| {
            let (code, message) = match &r.error {
                Some(e) => (code_name(tonic::Code::from_i32(e.code)), e.message.as_str()),
                None => ("UNKNOWN", "no error given"),
            };
            format!("error: {code}: report {:?} failed: {message}", r.mime_type)
        })
        .collect()
}

/// The outcome of a successful scan: `Error` if a requested report type failed, else
/// `FindingsAtOrAbove` when `--fail-on` is met, else `Incomplete` when `--fail-on` is given and
/// the report is incomplete without `--allow-incomplete`, else `Done`. Without `--fail-on` an
/// incomplete report exits 0 (the caller still prints the incomplete line).
pub(crate) fn scan_outcome(
    response: &ScanResponse,
    fail_on: Option<Severity>,
    allow_incomplete: bool,
) -> Outcome {
    if !failed_reports(response).is_empty() {
        return Outcome::Error;
    }
    let Some(threshold) = fail_on else {
        return Outcome::Done;
    };
    if let Some(report) = &response.report
        && fails_threshold(report, threshold)
    {
        return Outcome::FindingsAtOrAbove;
    }
    if !allow_incomplete && incompleteness(response).is_some() {
        return Outcome::Incomplete;
    }
    Outcome::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidescan_proto::v1::{Notice, ReportError, ScanVulnerability, Summary, TypedReport};

    fn report(severities: &[Severity]) -> ScanReport {
        ScanReport {
            vulnerabilities: severities
                .iter()
                .map(|s| ScanVulnerability {
                    severity: *s as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn response(report: ScanReport) -> ScanResponse {
        ScanResponse {
            report: Some(report),
            reports: vec![],
        }
    }

    #[test]
    fn fail_on_is_at_or_above() {
        let r = report(&[Severity::Low, Severity::High]);
        assert!(fails_threshold(&r, Severity::High));
        assert!(fails_threshold(&r, Severity::Low));
        assert!(fails_threshold(&r, Severity::Unknown));
        assert!(!fails_threshold(&r, Severity::Critical));
        assert!(!fails_threshold(&report(&[]), Severity::Unknown));
        // Unset severity counts as unknown: caught by --fail-on unknown only.
        let unset = report(&[Severity::Unspecified]);
        assert!(fails_threshold(&unset, Severity::Unknown));
        assert!(!fails_threshold(&unset, Severity::Negligible));
        // The summary counts too.
        let summarized = ScanReport {
            summary: Some(Summary {
                max_severity: Severity::Critical as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(fails_threshold(&summarized, Severity::Critical));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Outcome::Done.code(), 0);
        assert_eq!(Outcome::FindingsAtOrAbove.code(), 1);
        assert_eq!(Outcome::Error.code(), 2);
        assert_eq!(Outcome::Incomplete.code(), 1);
        let high = response(report(&[Severity::High]));
        assert_eq!(scan_outcome(&high, None, false), Outcome::Done);
        assert_eq!(
            scan_outcome(&high, Some(Severity::Medium), false),
            Outcome::FindingsAtOrAbove
        );
        assert_eq!(
            scan_outcome(&high, Some(Severity::Critical), false),
            Outcome::Done
        );

        let mut failed = high.clone();
        failed.reports.push(TypedReport {
            mime_type: "application/vnd.security.sbom.report+json; version=1.0".into(),
            status: ReportStatus::Failed as i32,
            error: Some(ReportError {
                code: 9,
                message: "no packages".into(),
            }),
            ..Default::default()
        });
        assert_eq!(scan_outcome(&failed, None, false), Outcome::Error);
        assert_eq!(
            scan_outcome(&failed, Some(Severity::Critical), true),
            Outcome::Error
        );
        assert_eq!(
            failed_reports(&failed),
            [
                "error: FAILED_PRECONDITION: report \"application/vnd.security.sbom.report+json; version=1.0\" failed: no packages"
            ]
        );
    }

    #[test]
    fn error_lines_name_the_code() {
        let err = CliError::from(ClientError::Status(tonic::Status::not_found("no tag 9.9")));
        assert_eq!(err.line(), "error: NOT_FOUND: no tag 9.9");
        let err = CliError::from(ClientError::Connect {
            url: "http://127.0.0.1:1".into(),
            detail: "connection refused".into(),
        });
        assert_eq!(
            err.line(),
            "error: UNAVAILABLE: cannot connect to http://127.0.0.1:1: connection refused"
        );
        assert_eq!(CliError::Usage("bad".into()).line(), "error: bad");
    }

    #[test]
    fn incomplete_reports_fail_fail_on_unless_allowed() {
        let mut incomplete = response(report(&[Severity::Low]));
        if let Some(r) = incomplete.report.as_mut() {
            r.notices.push(Notice {
                code: "unsafe-path-skipped".into(),
                ..Default::default()
            });
        }
        // Nothing at or above CRITICAL, but something was not scanned.
        assert_eq!(
            scan_outcome(&incomplete, Some(Severity::Critical), false),
            Outcome::Incomplete
        );
        assert_eq!(
            scan_outcome(&incomplete, Some(Severity::Critical), true),
            Outcome::Done
        );
        // Findings at or above the threshold still say so.
        assert_eq!(
            scan_outcome(&incomplete, Some(Severity::Low), false),
            Outcome::FindingsAtOrAbove
        );
        // Without --fail-on the exit code stays 0.
        assert_eq!(scan_outcome(&incomplete, None, false), Outcome::Done);
        // A plugin that only sets the flag is incomplete too.
        let flagged = response(ScanReport {
            summary: Some(Summary {
                incomplete: true,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            scan_outcome(&flagged, Some(Severity::Unknown), false),
            Outcome::Incomplete
        );
    }
}
