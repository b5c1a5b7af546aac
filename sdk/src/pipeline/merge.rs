//! Merging the results of several images of an index into one.

use std::collections::{BTreeSet, HashMap};

use crate::model::{Platform, ScanFindings};

/// Merges per-image results. With `multi` (an index scanned for every platform) each finding
/// lists the platforms it was found on and identical findings are reported once; notices are
/// deduplicated; the first image's document of each report type is kept.
pub(super) fn merge(outcomes: Vec<(ScanFindings, Option<Platform>)>, multi: bool) -> ScanFindings {
    let mut out = ScanFindings::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    // Notices already in `out`: a set, so that many notices (a hostile image can make one per
    // entry) merge in O(n log n), not O(n²).
    let mut seen_notices = BTreeSet::new();
    for (findings, platform) in outcomes {
        for mut f in findings.findings {
            if multi {
                if f.platforms.is_empty() {
                    f.platforms.extend(platform.clone());
                }
                let platforms = std::mem::take(&mut f.platforms);
                let key = serde_json::to_string(&f).unwrap_or_default();
                match seen.get(&key) {
                    Some(&i) => {
                        let existing = &mut out.findings[i].platforms;
                        for p in platforms {
                            if !existing.contains(&p) {
                                existing.push(p);
                            }
                        }
                    }
                    None => {
                        f.platforms = platforms;
                        seen.insert(key, out.findings.len());
                        out.findings.push(f);
                    }
                }
            } else {
                out.findings.push(f);
            }
        }
        for n in findings.notices {
            if seen_notices.insert(n.clone()) {
                out.notices.push(n);
            }
        }
        for (k, v) in findings.documents {
            out.documents.entry(k).or_insert(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Finding, FindingKind, Notice, Severity};

    #[test]
    fn identical_findings_merge_their_platforms() {
        let amd: Platform = "linux/amd64".parse().unwrap();
        let arm: Platform = "linux/arm64/v8".parse().unwrap();
        let f = |id: &str| {
            Finding::new(FindingKind::Vulnerability, id, Severity::High).at_path("/lib/x")
        };
        let a = ScanFindings {
            findings: vec![f("CVE-1"), f("CVE-2")],
            notices: vec![Notice::new("n", "same")],
            ..Default::default()
        };
        let b = ScanFindings {
            findings: vec![f("CVE-1"), f("CVE-3")],
            notices: vec![Notice::new("n", "same")],
            ..Default::default()
        };
        let m = merge(vec![(a, Some(amd.clone())), (b, Some(arm.clone()))], true);
        let got: Vec<(&str, Vec<Platform>)> = m
            .findings
            .iter()
            .map(|f| (f.id.as_str(), f.platforms.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("CVE-1", vec![amd.clone(), arm.clone()]),
                ("CVE-2", vec![amd.clone()]),
                ("CVE-3", vec![arm.clone()]),
            ]
        );
        assert_eq!(m.notices.len(), 1);
    }

    #[test]
    fn notices_are_deduplicated_in_order() {
        let n = |i: u32| Notice::new("c", format!("n{i}"));
        let a = ScanFindings {
            notices: vec![n(2), n(1), n(2)],
            ..Default::default()
        };
        let b = ScanFindings {
            notices: vec![n(3), n(1)],
            ..Default::default()
        };
        let m = merge(vec![(a, None), (b, None)], true);
        assert_eq!(m.notices, vec![n(2), n(1), n(3)]);
    }
}
