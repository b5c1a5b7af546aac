//! "Incomplete" at the CLI's gate: a report with notices (something not scanned, scanned only in
//! part, or left out of the response) is never reported as clean.

use sidescan_proto::v1::{ReportStatus, ScanResponse};

/// What makes a response incomplete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Incomplete {
    /// Notice codes of the primary report with the occurrences they stand for, most first.
    pub by_code: Vec<(String, u64)>,
    /// Requested report types that failed.
    pub failed_reports: usize,
}

impl Incomplete {
    /// Occurrences over all notices (a notice's `count`, 0 counting as 1).
    pub(crate) fn notices(&self) -> u64 {
        self.by_code.iter().map(|(_, n)| n).sum()
    }

    /// The stderr line, e.g.
    /// `incomplete: 2 notices (unsafe-path-skipped x1, file-too-large x1)`.
    pub(crate) fn line(&self, allowed: bool) -> String {
        let mut parts = Vec::new();
        let notices = self.notices();
        if notices > 0 || self.failed_reports == 0 {
            let codes: Vec<String> = self
                .by_code
                .iter()
                .map(|(code, n)| format!("{code} x{n}"))
                .collect();
            let mut part = format!("{notices} notice{}", plural(notices));
            if codes.is_empty() {
                part.push_str(" listed, but the plugin marked the report incomplete");
            } else {
                part.push_str(&format!(" ({})", codes.join(", ")));
            }
            parts.push(part);
        }
        if self.failed_reports > 0 {
            let n = self.failed_reports;
            parts.push(format!("{n} report type{} failed", plural(n as u64)));
        }
        let mut line = format!("incomplete: {}", parts.join("; "));
        if allowed {
            line.push_str(" (allowed by --allow-incomplete)");
        }
        line
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `Some` when the response is incomplete: its primary report has notices or says
/// `summary.incomplete`, or a requested report type failed.
pub(crate) fn incompleteness(response: &ScanResponse) -> Option<Incomplete> {
    let mut by_code: Vec<(String, u64)> = Vec::new();
    let mut flagged = false;
    if let Some(report) = &response.report {
        flagged = report.summary.is_some_and(|s| s.incomplete);
        for notice in &report.notices {
            let n = u64::from(notice.count.max(1));
            match by_code.iter_mut().find(|(code, _)| *code == notice.code) {
                Some((_, total)) => *total += n,
                None => by_code.push((notice.code.clone(), n)),
            }
        }
    }
    // Most occurrences first; codes with equal counts keep the report's order.
    by_code.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let failed_reports = response
        .reports
        .iter()
        .filter(|r| r.status != ReportStatus::Succeeded as i32)
        .count();
    (flagged || !by_code.is_empty() || failed_reports > 0).then_some(Incomplete {
        by_code,
        failed_reports,
    })
}

/// Sets `summary.incomplete` and `summary.notice_count` from the notices when a plugin (an older
/// SDK, another language) left them unset, so the JSON output shows it too. Never clears them.
pub(crate) fn mark_incomplete(response: &mut ScanResponse) {
    let Some(report) = response.report.as_mut() else {
        return;
    };
    if report.notices.is_empty() {
        return;
    }
    let count = report
        .notices
        .iter()
        .fold(0u32, |sum, n| sum.saturating_add(n.count.max(1)));
    let summary = report.summary.get_or_insert_with(Default::default);
    summary.incomplete = true;
    summary.notice_count = summary.notice_count.max(count);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidescan_proto::v1::{Notice, ScanReport, Summary, TypedReport};

    fn notice(code: &str, count: u32) -> Notice {
        Notice {
            code: code.into(),
            count,
            ..Default::default()
        }
    }

    fn with_notices(notices: Vec<Notice>) -> ScanResponse {
        ScanResponse {
            report: Some(ScanReport {
                notices,
                ..Default::default()
            }),
            reports: vec![],
        }
    }

    #[test]
    fn notices_are_counted_per_code_most_first() {
        let response = with_notices(vec![
            notice("file-too-large", 0),
            notice("unsafe-path-skipped", 1),
            notice("unsafe-path-skipped", 9_980),
        ]);
        let inc = incompleteness(&response).expect("incomplete");
        assert_eq!(inc.notices(), 9_982);
        assert_eq!(
            inc.line(false),
            "incomplete: 9982 notices (unsafe-path-skipped x9981, file-too-large x1)"
        );
        assert_eq!(
            inc.line(true),
            "incomplete: 9982 notices (unsafe-path-skipped x9981, file-too-large x1) \
             (allowed by --allow-incomplete)"
        );
        let one = incompleteness(&with_notices(vec![notice("scan-error", 0)])).expect("one");
        assert_eq!(one.line(false), "incomplete: 1 notice (scan-error x1)");
    }

    #[test]
    fn complete_reports_are_not_incomplete() {
        assert_eq!(incompleteness(&with_notices(vec![])), None);
        assert_eq!(incompleteness(&ScanResponse::default()), None);
    }

    #[test]
    fn a_flag_or_a_failed_report_alone_is_incomplete() {
        let mut flagged = with_notices(vec![]);
        if let Some(r) = flagged.report.as_mut() {
            r.summary = Some(Summary {
                incomplete: true,
                ..Default::default()
            });
        }
        let inc = incompleteness(&flagged).expect("flagged");
        assert_eq!(
            inc.line(false),
            "incomplete: 0 notices listed, but the plugin marked the report incomplete"
        );
        let mut failed = with_notices(vec![notice("file-too-large", 1)]);
        failed.reports.push(TypedReport {
            status: ReportStatus::Failed as i32,
            ..Default::default()
        });
        assert_eq!(
            incompleteness(&failed).expect("failed").line(false),
            "incomplete: 1 notice (file-too-large x1); 1 report type failed"
        );
    }

    #[test]
    fn marking_fills_the_summary_from_the_notices() {
        let mut response = with_notices(vec![notice("a", 0), notice("b", 30)]);
        mark_incomplete(&mut response);
        let summary = response
            .report
            .as_ref()
            .and_then(|r| r.summary)
            .expect("summary");
        assert!(summary.incomplete);
        assert_eq!(summary.notice_count, 31);
        let mut complete = with_notices(vec![]);
        mark_incomplete(&mut complete);
        assert_eq!(complete.report.and_then(|r| r.summary), None);
    }
}
