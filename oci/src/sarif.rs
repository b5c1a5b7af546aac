//! SARIF 2.1.0 from a sidescan report: one run, one rule per finding id, one result per finding,
//! and every notice (something not scanned) as a tool execution notification with
//! `executionSuccessful: false`, so a SARIF reader cannot take an incomplete scan for a clean one.
//!
//! Written with serde_json rather than a SARIF type crate: sidescan emits a fixed subset of about
//! twenty fields and reads none, which the full generated SARIF object model would not make
//! simpler or safer.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sidescan_proto::v1::{ScanReport, ScanVulnerability, Severity};

/// The SARIF schema URI.
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// SARIF `level` for a severity (GitHub code scanning's mapping).
fn level(severity: i32) -> &'static str {
    match Severity::try_from(severity).unwrap_or(Severity::Unspecified) {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        _ => "note",
    }
}

/// `security-severity` (a CVSS-like score GitHub and Ratify sort by).
fn security_severity(severity: i32) -> &'static str {
    match Severity::try_from(severity).unwrap_or(Severity::Unspecified) {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "2.0",
        _ => "0.0",
    }
}

fn location(f: &ScanVulnerability) -> String {
    if !f.path.is_empty() {
        f.path.trim_start_matches('/').to_string()
    } else if !f.package.is_empty() {
        f.package.clone()
    } else {
        "image".into()
    }
}

fn message(f: &ScanVulnerability) -> String {
    let mut text = if f.title.is_empty() {
        f.id.clone()
    } else {
        format!("{}: {}", f.id, f.title)
    };
    if !f.package.is_empty() {
        text.push_str(&format!(" in {} {}", f.package, f.installed_version));
        if !f.fixed_version.is_empty() {
            text.push_str(&format!(" (fixed in {})", f.fixed_version));
        }
    }
    if !f.path.is_empty() {
        text.push_str(&format!(" at {}", f.path));
    }
    text
}

/// `report` as a SARIF 2.1.0 log (pretty JSON).
pub fn render(report: &ScanReport) -> Vec<u8> {
    let scanner = report.scanner.clone().unwrap_or_default();
    let mut rules: BTreeMap<&str, Value> = BTreeMap::new();
    let mut results = Vec::new();
    for f in &report.vulnerabilities {
        rules.entry(f.id.as_str()).or_insert_with(|| {
            let mut rule = json!({
                "id": f.id,
                "shortDescription": {"text": if f.title.is_empty() { &f.id } else { &f.title }},
                "properties": {"security-severity": security_severity(f.severity)},
            });
            if let Some(link) = f.links.first() {
                rule["helpUri"] = json!(link);
            }
            if !f.description.is_empty() {
                rule["fullDescription"] = json!({"text": f.description});
            }
            rule
        });
        let mut properties = json!({"severity": crate::report::severity_name(f.severity)});
        for (key, value) in [
            ("package", &f.package),
            ("installedVersion", &f.installed_version),
            ("fixedVersion", &f.fixed_version),
            ("layerDigest", &f.layer_digest),
            ("purl", &f.purl),
        ] {
            if !value.is_empty() {
                properties[key] = json!(value);
            }
        }
        results.push(json!({
            "ruleId": f.id,
            "level": level(f.severity),
            "message": {"text": message(f)},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": location(f)}}}],
            "properties": properties,
        }));
    }
    let notifications: Vec<Value> = report
        .notices
        .iter()
        .map(|n| {
            let mut text = format!("{}: {}", n.code, n.message);
            if !n.path.is_empty() {
                text.push_str(&format!(" ({})", n.path));
            }
            json!({"level": "warning", "descriptor": {"id": n.code}, "message": {"text": text}})
        })
        .collect();
    let complete = crate::report::is_complete(report);
    let image = report.image.clone().unwrap_or_default();
    let log = json!({
        "version": "2.1.0",
        "$schema": SCHEMA,
        "runs": [{
            "tool": {"driver": {
                "name": scanner.name,
                "version": scanner.version,
                "organization": scanner.vendor,
                "rules": rules.into_values().collect::<Vec<_>>(),
            }},
            "invocations": [{
                "executionSuccessful": complete,
                "toolExecutionNotifications": notifications,
            }],
            "properties": {
                "imageRepository": image.repository,
                "imageDigest": image.digest,
                "complete": complete,
            },
            "results": results,
        }],
    });
    let mut text = serde_json::to_vec_pretty(&log).unwrap_or_default();
    text.push(b'\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidescan_proto::v1::{Notice, Scanner};

    #[test]
    fn findings_become_results_and_notices_fail_the_run() {
        let report = ScanReport {
            scanner: Some(Scanner {
                name: "sidescan-clamav".into(),
                version: "0.1.0".into(),
                ..Default::default()
            }),
            vulnerabilities: vec![ScanVulnerability {
                id: "Eicar-Test-Signature".into(),
                severity: Severity::Critical as i32,
                path: "/usr/share/demo/eicar.com".into(),
                ..Default::default()
            }],
            notices: vec![Notice {
                code: "size-limit".into(),
                message: "too big".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let log: Value = serde_json::from_slice(&render(&report)).unwrap();
        let run = &log["runs"][0];
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(run["results"][0]["level"], "error");
        assert_eq!(
            run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "usr/share/demo/eicar.com"
        );
        assert_eq!(run["invocations"][0]["executionSuccessful"], false);
        assert_eq!(
            run["tool"]["driver"]["rules"][0]["id"],
            "Eicar-Test-Signature"
        );
        let clean = ScanReport::default();
        let log: Value = serde_json::from_slice(&render(&clean)).unwrap();
        assert_eq!(
            log["runs"][0]["invocations"][0]["executionSuccessful"],
            true
        );
        assert_eq!(log["runs"][0]["results"].as_array().unwrap().len(), 0);
    }
}
