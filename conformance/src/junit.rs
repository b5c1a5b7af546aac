//! JUnit XML output (the subset CI systems read: one suite, one testcase per case).

use std::fmt::Write as _;

use crate::{Outcome, RunReport};

/// Escapes text for XML attributes and content.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Renders `report` as JUnit XML.
pub(crate) fn render(report: &RunReport) -> String {
    let total: f64 = report.cases.iter().map(|c| c.duration.as_secs_f64()).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites><testsuite name=\"sidescan-conformance\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{total:.3}\">",
        report.cases.len(),
        report.failed(),
        report.errors(),
        report.skipped()
    );
    if let Some(scanner) = report.metadata.as_ref().and_then(|m| m.scanner.as_ref()) {
        let _ = writeln!(
            xml,
            "  <properties><property name=\"plugin\" value=\"{} {}\"/><property name=\"suite\" value=\"{} {}\"/></properties>",
            escape(&scanner.name),
            escape(&scanner.version),
            crate::VERSION,
            crate::API_VERSION
        );
    }
    for case in &report.cases {
        let (class, name) = case.name.split_once('/').unwrap_or(("", &case.name));
        let _ = write!(
            xml,
            "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            escape(class),
            escape(name),
            case.duration.as_secs_f64()
        );
        match &case.outcome {
            Outcome::Passed => xml.push_str("/>\n"),
            Outcome::Failed(r) => {
                let _ = writeln!(
                    xml,
                    "><failure message=\"{0}\">{0}</failure></testcase>",
                    escape(r)
                );
            }
            Outcome::Skipped(r) => {
                let _ = writeln!(xml, "><skipped message=\"{}\"/></testcase>", escape(r));
            }
            Outcome::Error(r) => {
                let _ = writeln!(
                    xml,
                    "><error message=\"{0}\">{0}</error></testcase>",
                    escape(r)
                );
            }
        }
    }
    xml.push_str("</testsuite></testsuites>\n");
    xml
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
        assert!(xml.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""));
        assert!(xml.contains("expected &lt;A&gt; &amp; got &quot;B&quot;"));
        assert!(xml.contains("<testcase classname=\"b\" name=\"skip\""));
    }
}
