//! Reading and comparing responses: typed reports, their JSON, vulnerabilities keyed by (id,
//! package), and a response without what differs from run to run.

use std::collections::BTreeMap;

use sidescan_proto::mime;
use sidescan_proto::v1 as pb;

/// The typed report of `mime_type` (panics when the response lacks it).
pub(crate) fn typed<'a>(response: &'a pb::ScanResponse, mime_type: &str) -> &'a pb::TypedReport {
    let want = mime::normalize(mime_type);
    response
        .reports
        .iter()
        .find(|r| mime::normalize(&r.mime_type) == want)
        .unwrap_or_else(|| {
            panic!(
                "no typed report {mime_type}; got {:?}",
                response
                    .reports
                    .iter()
                    .map(|r| &r.mime_type)
                    .collect::<Vec<_>>()
            )
        })
}

pub(crate) fn json(report: &pb::TypedReport) -> serde_json::Value {
    serde_json::from_slice(&report.document).unwrap_or_else(|e| {
        panic!(
            "{} document is not JSON ({e}): {}",
            report.mime_type,
            String::from_utf8_lossy(&report.document)
        )
    })
}

/// Vulnerabilities of the primary report keyed by (id, package).
pub(crate) fn vulns(report: &pb::ScanReport) -> BTreeMap<(String, String), pb::ScanVulnerability> {
    report
        .vulnerabilities
        .iter()
        .filter(|v| v.kind == pb::FindingKind::Vulnerability as i32)
        .map(|v| ((v.id.clone(), v.package.clone()), v.clone()))
        .collect()
}

pub(crate) fn key(id: &str, package: &str) -> (String, String) {
    (id.to_owned(), package.to_owned())
}

/// Whether `s` is a UUID (`8-4-4-4-12` hex), bare or as `urn:uuid:...`.
pub(crate) fn is_uuid(s: &str) -> bool {
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Replaces every UUID string in `v` (keys too) with `<uuid>`.
pub(crate) fn mask_uuids(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if is_uuid(s) => *s = "<uuid>".into(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_uuids),
        serde_json::Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut item) in entries {
                mask_uuids(&mut item);
                map.insert(if is_uuid(&k) { "<uuid>".into() } else { k }, item);
            }
        }
        _ => {}
    }
}

/// Drops what legitimately differs between two scans of the same image: the primary report's
/// `generated_at`, `generated_at` inside JSON documents, and the per-run identity Trivy gives
/// every CycloneDX SBOM (`metadata.timestamp`, and fresh UUIDs for `serialNumber` and the
/// `bom-ref`s of components without a purl, which also move those components and their
/// dependency entries around in lists sorted by bom-ref).
pub(crate) fn without_run_identity(mut response: pb::ScanResponse) -> pb::ScanResponse {
    if let Some(report) = response.report.as_mut() {
        report.generated_at = None;
    }
    for typed in &mut response.reports {
        if let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&typed.document) {
            if let Some(o) = doc.as_object_mut() {
                o.remove("generated_at");
            }
            if let Some(m) = doc.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                m.remove("timestamp");
            }
            mask_uuids(&mut doc);
            // Trivy sorts these by bom-ref, and a fresh UUID sorts anywhere among the purls.
            for list in ["components", "dependencies"] {
                if let Some(items) = doc.get_mut(list).and_then(|l| l.as_array_mut()) {
                    for item in items.iter_mut() {
                        if let Some(deps) = item.get_mut("dependsOn").and_then(|d| d.as_array_mut())
                        {
                            deps.sort_by_key(|d| d.to_string());
                        }
                    }
                    items.sort_by_key(|item| item.to_string());
                }
            }
            typed.document = serde_json::to_vec(&doc).expect("re-encode");
        }
    }
    response
}

/// Where two JSON values first differ, as `path: left != right`.
pub(crate) fn first_difference(
    a: &serde_json::Value,
    b: &serde_json::Value,
    path: &str,
) -> Option<String> {
    use serde_json::Value::{Array, Object};
    match (a, b) {
        (Object(x), Object(y)) => {
            x.keys()
                .chain(y.keys())
                .find_map(|k| match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => first_difference(l, r, &format!("{path}.{k}")),
                    (l, r) => Some(format!("{path}.{k}: {l:?} != {r:?}")),
                })
        }
        (Array(x), Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| first_difference(l, r, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

pub(crate) const VULN_AND_CYCLONEDX: [(&str, &[(&str, &str)]); 2] = [
    (mime::VULNERABILITY_REPORT, &[]),
    (
        mime::SBOM_REPORT,
        &[(mime::SBOM_MEDIA_TYPE_PARAMETER, mime::CYCLONEDX_JSON)],
    ),
];
