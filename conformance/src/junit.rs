//! JUnit XML output (the subset CI systems read: one suite, one testcase per case), written
//! by `quick-junit`.

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::{Outcome, RunReport};

/// A failed or error status whose message is also the element's text.
fn non_success(kind: NonSuccessKind, reason: &str) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(kind);
    status.set_message(reason).set_description(reason);
    status
}

/// Renders `report` as JUnit XML.
pub(crate) fn render(report: &RunReport) -> String {
    let mut suite = TestSuite::new("sidescan-conformance");
    suite.set_time(report.cases.iter().map(|c| c.duration).sum());
    if let Some(scanner) = report.metadata.as_ref().and_then(|m| m.scanner.as_ref()) {
        suite.add_properties([
            Property::new("plugin", format!("{} {}", scanner.name, scanner.version)),
            Property::new(
                "suite",
                format!("{} {}", crate::VERSION, crate::API_VERSION),
            ),
        ]);
    }
    for case in &report.cases {
        let (class, name) = case.name.split_once('/').unwrap_or(("", &case.name));
        let status = match &case.outcome {
            Outcome::Passed => TestCaseStatus::success(),
            Outcome::Failed(r) => non_success(NonSuccessKind::Failure, r),
            Outcome::Error(r) => non_success(NonSuccessKind::Error, r),
            Outcome::Skipped(r) => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(r.as_str());
                status
            }
        };
        let mut testcase = TestCase::new(name, status);
        testcase.set_classname(class).set_time(case.duration);
        suite.add_test_case(testcase);
    }
    let mut junit = Report::new("sidescan-conformance");
    junit.add_test_suite(suite);
    // Serialising an in-memory report to a String only fails on a bug in quick-junit.
    junit
        .to_string()
        .unwrap_or_else(|e| format!("<!-- JUnit serialisation failed: {e} -->\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CaseReport;
    use std::time::Duration;

    #[test]
    fn renders_each_outcome_escaped() {
        let report = RunReport {
            cases: vec![
                CaseReport {
                    name: "a/pass".into(),
                    outcome: Outcome::Passed,
                    duration: Duration::from_millis(5),
                },
                CaseReport {
                    name: "a/fail".into(),
                    outcome: Outcome::Failed("expected <A> & got \"B\"".into()),
                    duration: Duration::ZERO,
                },
                CaseReport {
                    name: "b/skip".into(),
                    outcome: Outcome::Skipped("n/a".into()),
                    duration: Duration::ZERO,
                },
            ],
            metadata: None,
        };
        let xml = render(&report);
        for count in [
            "tests=\"3\"",
            "failures=\"1\"",
            "errors=\"0\"",
            "skipped=\"1\"",
        ] {
            assert!(xml.contains(count), "{count} in {xml}");
        }
        assert!(xml.contains("expected &lt;A&gt; &amp; got &quot;B&quot;"));
        assert!(xml.contains("<testcase name=\"skip\" classname=\"b\""));
    }
}
