//! The cases: one function each, registered under a stable name next to its function, one
//! module per group; [`all`] lists them in run order.
//!
//! Groups: `discovery/`, `input/`, `registry/`, `limits/`, `semantics/`, `consistency/`,
//! `deadlines/`, `concurrency/`, `compat/`, the registries' own dialects `zot/` (zot's
//! `/scan.Scan/Scan`, skipped when not served) and `harbor/` (Harbor's REST API at
//! `--harbor-url`, skipped without it), and `robustness/` (one case per hostile fixture, run
//! last). This module holds what they share: [`Ctx`] and the checks of answers and reports.

use std::collections::BTreeSet;
use std::time::Duration;

use sidescan_proto::client::{ClientError, PluginClient, ServingStatus, code_name};
use sidescan_proto::mime;
use sidescan_proto::v1::{
    Features, FindingKind, GetMetadataResponse, Limits, Platform, ScanReport, ScanRequest,
    ScanResponse, ScanVulnerability, Severity,
};
use sidescan_testkit::fake_registry::FakeRegistry;
use sidescan_testkit::fixtures::{self, Entry, Image, Layer, base_layer};
use sidescan_testkit::oci::Artifact;
use tonic::Code;

use crate::fixtures::{Fixtures, Placed};
use crate::{Case, CaseFn, CaseFuture, CaseResult, Outcome};

/// Everything a case needs: the plugin client, the plugin's metadata and the fixtures.
pub struct Ctx {
    client: PluginClient,
    meta: GetMetadataResponse,
    fx: Fixtures,
    run_id: String,
    case_timeout: Duration,
    /// The plugin's Harbor API base URL (`--harbor-url`), for the `harbor/` cases.
    harbor: Option<String>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("endpoint", &self.client.url())
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

fn fail(message: impl Into<String>) -> Outcome {
    Outcome::Failed(message.into())
}

fn skip(message: impl Into<String>) -> Outcome {
    Outcome::Skipped(message.into())
}

fn suite_error(message: impl Into<String>) -> Outcome {
    Outcome::Error(message.into())
}

fn names(codes: &[Code]) -> String {
    codes
        .iter()
        .map(|c| code_name(*c))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn describe(response: &ScanResponse) -> String {
    match &response.report {
        None => "a response without a report".into(),
        Some(r) => format!(
            "a report with {} finding(s) for digest {:?}",
            r.vulnerabilities.len(),
            r.image.as_ref().map(|i| i.digest.as_str()).unwrap_or("")
        ),
    }
}

/// Findings in a canonical order, for comparisons.
fn canonical(report: &ScanReport) -> Vec<ScanVulnerability> {
    let mut findings = report.vulnerabilities.clone();
    findings.sort_by_cached_key(|f| format!("{f:?}"));
    findings
}

fn platform(os: &str, arch: &str, variant: &str) -> Platform {
    Platform {
        os: os.into(),
        architecture: arch.into(),
        variant: variant.into(),
    }
}

/// Whether `got` is the platform `want` (a missing variant in `got` matches any).
fn same_platform(got: &Platform, want: &Platform) -> bool {
    got.os == want.os
        && got.architecture == want.architecture
        && (got.variant.is_empty() || got.variant == want.variant)
}

/// Checks a report's findings and summary; returns what is wrong.
fn check_report(report: &ScanReport) -> Result<(), String> {
    let mut counts = [0u32; 7];
    let mut max = 0i32;
    for (i, f) in report.vulnerabilities.iter().enumerate() {
        if f.id.is_empty() {
            return Err(format!("finding #{i} has no id"));
        }
        match Severity::try_from(f.severity) {
            Ok(Severity::Unspecified) | Err(_) => {
                return Err(format!(
                    "finding {} has severity {} (not one of UNKNOWN..CRITICAL)",
                    f.id, f.severity
                ));
            }
            Ok(s) => {
                counts[s as usize] += 1;
                max = max.max(s as i32);
            }
        }
        if FindingKind::try_from(f.kind).is_err() {
            return Err(format!("finding {} has unknown kind {}", f.id, f.kind));
        }
    }
    let Some(s) = &report.summary else {
        return Err("the report has no summary".into());
    };
    let total = u32::try_from(report.vulnerabilities.len()).unwrap_or(u32::MAX);
    let want = [
        ("total", s.total, total),
        ("unknown", s.unknown, counts[Severity::Unknown as usize]),
        (
            "negligible",
            s.negligible,
            counts[Severity::Negligible as usize],
        ),
        ("low", s.low, counts[Severity::Low as usize]),
        ("medium", s.medium, counts[Severity::Medium as usize]),
        ("high", s.high, counts[Severity::High as usize]),
        ("critical", s.critical, counts[Severity::Critical as usize]),
    ];
    for (field, got, expected) in want {
        if got != expected {
            return Err(format!(
                "summary.{field} is {got} but the findings give {expected}"
            ));
        }
    }
    if s.max_severity != max {
        return Err(format!(
            "summary.max_severity is {} but the highest finding severity is {max}",
            s.max_severity
        ));
    }
    if s.fixable > total {
        return Err(format!(
            "summary.fixable {} exceeds total {total}",
            s.fixable
        ));
    }
    Ok(())
}

/// `MAJOR.MINOR.PATCH[-pre][+build]` as Semantic Versioning 2.0.0 defines it (a leading `v` is
/// tolerated).
fn is_semver(version: &str) -> bool {
    semver::Version::parse(version.strip_prefix('v').unwrap_or(version)).is_ok()
}

impl Ctx {
    pub(crate) fn new(
        client: PluginClient,
        meta: GetMetadataResponse,
        fx: Fixtures,
        case_timeout: Duration,
        harbor: Option<String>,
    ) -> Self {
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        Ctx {
            client: client.with_timeout(Some(case_timeout)),
            meta,
            fx,
            run_id,
            case_timeout,
            harbor,
        }
    }

    /// Clears faults and credential requirements between cases.
    pub(crate) fn after_case(&self) {
        self.fx.reset();
    }

    fn features(&self) -> Features {
        self.meta.features.unwrap_or_default()
    }

    fn limits(&self) -> Limits {
        self.meta.limits.unwrap_or_default()
    }

    fn has_malware(&self) -> bool {
        self.meta.capabilities.iter().any(|c| c.r#type == "malware")
    }

    fn produced(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.meta
            .capabilities
            .iter()
            .flat_map(|c| c.produces_mime_types.iter())
            .filter(|m| seen.insert(mime::normalize(m)))
            .cloned()
            .collect()
    }

    fn fake(&self) -> Result<&FakeRegistry, Outcome> {
        self.fx.fake().ok_or_else(|| {
            skip("needs the embedded fixture registry (fault injection); not available with --registry")
        })
    }

    fn require_malware(&self) -> CaseResult {
        if self.has_malware() {
            Ok(())
        } else {
            Err(skip("the plugin advertises no \"malware\" capability"))
        }
    }

    /// A request for `image` (relative to the fixture registry).
    fn req(&self, image: impl Into<String>) -> ScanRequest {
        ScanRequest {
            image: image.into(),
            registry: Some(self.fx.registry()),
            ..Default::default()
        }
    }

    /// A fixture image no plugin has seen before (unique per run and label), so that no cache
    /// can answer for it.
    fn unique(&self, label: &str) -> Artifact {
        Image::new()
            .layer(base_layer())
            .layer(Layer::new([Entry::file(
                "conformance/nonce.txt",
                format!("sidescan-conformance {} {label}\n", self.run_id),
            )]))
            .build()
    }

    async fn put(&self, label: &str, artifact: &Artifact) -> Result<Placed, Outcome> {
        self.fx
            .put(
                &format!("conformance/{label}"),
                &format!("run-{}", self.run_id),
                artifact,
            )
            .await
            .map_err(suite_error)
    }

    async fn scan(&self, request: ScanRequest) -> Result<ScanResponse, ClientError> {
        self.client.scan(request).await
    }

    /// Scans and requires OK with a well-formed report.
    async fn scan_ok(&self, request: ScanRequest) -> Result<ScanReport, Outcome> {
        let image = request.image.clone();
        match self.scan(request).await {
            Ok(ScanResponse {
                report: Some(report),
                ..
            }) => {
                check_report(&report).map_err(|e| fail(format!("scan of {image}: {e}")))?;
                Ok(report)
            }
            Ok(_) => Err(fail(format!("scan of {image}: OK without a report"))),
            Err(e) => Err(fail(format!("scan of {image}: expected OK, got {e}"))),
        }
    }

    async fn expect_healthy(&self) -> CaseResult {
        match self
            .client
            .with_timeout(Some(Duration::from_secs(10)))
            .health()
            .await
        {
            Ok(ServingStatus::Serving) => Ok(()),
            Ok(other) => Err(fail(format!(
                "the plugin is not healthy afterwards: health is {other}"
            ))),
            Err(e) => Err(fail(format!(
                "the plugin is not healthy afterwards: health check: {e}"
            ))),
        }
    }

    /// Requires one of `want` (never OK, UNKNOWN or INTERNAL unless asked for) and a healthy
    /// plugin afterwards.
    async fn expect_codes(
        &self,
        result: Result<ScanResponse, ClientError>,
        want: &[Code],
    ) -> CaseResult {
        match result {
            Ok(response) => Err(fail(format!(
                "expected {}, got OK with {}",
                names(want),
                describe(&response)
            ))),
            Err(e) => match e.code() {
                Some(code) if want.contains(&code) => self.expect_healthy().await,
                Some(_) => Err(fail(format!("expected {}, got {e}", names(want)))),
                None => Err(fail(format!(
                    "expected {}, got a protocol error: {e}",
                    names(want)
                ))),
            },
        }
    }

    async fn expect_code(&self, request: ScanRequest, want: Code) -> CaseResult {
        let result = self.scan(request).await;
        self.expect_codes(result, &[want]).await
    }
}

async fn clean_placed(cx: &Ctx) -> Result<Placed, Outcome> {
    cx.put("clean", &fixtures::clean_image()).await
}

pub(crate) fn make<F>(f: F) -> CaseFn
where
    F: for<'a> Fn(&'a Ctx) -> CaseFuture<'a> + Send + Sync + 'static,
{
    Box::new(f)
}

/// One [`Case`]: a stable name, a description and the function that runs it.
macro_rules! case {
    ($name:literal, $desc:literal, $f:path) => {
        $crate::Case {
            name: $name.to_string(),
            description: $desc.to_string(),
            run: $crate::cases::make(|cx| Box::pin($f(cx))),
        }
    };
}

mod compat;
mod concurrency;
mod consistency;
mod deadlines;
mod discovery;
mod harbor;
mod input;
mod limits;
mod registry;
mod robustness;
mod semantics;
mod zot;

/// Every case, in run order.
pub fn all() -> Vec<Case> {
    [
        discovery::cases(),
        input::cases(),
        registry::cases(),
        limits::cases(),
        semantics::cases(),
        consistency::cases(),
        deadlines::cases(),
        concurrency::cases(),
        compat::cases(),
        zot::cases(),
        harbor::cases(),
        robustness::cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_stable_shaped() {
        let cases = all();
        assert!(cases.len() >= 40, "{} cases", cases.len());
        let mut seen = BTreeSet::new();
        let shape = regex::Regex::new(r"^[a-z]+/[a-z0-9-]+$").expect("regex");
        for case in &cases {
            assert!(seen.insert(case.name.clone()), "duplicate {}", case.name);
            assert!(shape.is_match(&case.name), "bad name {}", case.name);
        }
    }

    #[test]
    fn summaries_are_checked() {
        let finding = ScanVulnerability {
            id: "X".into(),
            severity: Severity::High as i32,
            ..Default::default()
        };
        let mut report = ScanReport {
            vulnerabilities: vec![finding],
            summary: Some(sidescan_proto::v1::Summary {
                total: 1,
                high: 1,
                max_severity: Severity::High as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(check_report(&report), Ok(()));
        if let Some(s) = report.summary.as_mut() {
            s.high = 0;
        }
        assert!(check_report(&report).is_err());
    }

    #[test]
    fn semver() {
        assert!(is_semver("1.2.3"));
        assert!(is_semver("0.1.0-rc.1+build.5"));
        assert!(!is_semver("1.2"));
        assert!(!is_semver("latest"));
    }
}
