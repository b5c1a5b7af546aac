//! The cases: one function each, registered in [`all`] under a stable name.
//!
//! Groups: `discovery/`, `input/`, `registry/`, `limits/`, `semantics/`, `consistency/`,
//! `deadlines/`, `concurrency/`, `robustness/` (one case per hostile fixture) and `compat/`.

use std::collections::BTreeSet;
use std::time::Duration;

use prost::Message;
use sidescan_proto::client::{ClientError, PluginClient, ServingStatus, code_name};
use sidescan_proto::mime;
use sidescan_proto::v1::{
    Features, FindingKind, GetMetadataResponse, Limits, Platform, Registry, ReportParameters,
    ScanReport, ScanRequest, ScanResponse, ScanVulnerability, Severity,
};
use sidescan_testkit::fake_registry::{FakeRegistry, Fault, Match};
use sidescan_testkit::fixtures::{self, Entry, Image, Layer, base_layer};
use sidescan_testkit::hostile::{self, Expected, HostileCase};
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::registry::basic_authorization;
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

fn is_semver(version: &str) -> bool {
    let re = regex::Regex::new(
        r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$",
    );
    re.is_ok_and(|re| re.is_match(version))
}

impl Ctx {
    pub(crate) fn new(
        client: PluginClient,
        meta: GetMetadataResponse,
        fx: Fixtures,
        case_timeout: Duration,
    ) -> Self {
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        Ctx {
            client: client.with_timeout(Some(case_timeout)),
            meta,
            fx,
            run_id,
            case_timeout,
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

fn make<F>(f: F) -> CaseFn
where
    F: for<'a> Fn(&'a Ctx) -> CaseFuture<'a> + Send + Sync + 'static,
{
    Box::new(f)
}

macro_rules! case {
    ($name:literal, $desc:literal, $f:path) => {
        Case {
            name: $name.to_string(),
            description: $desc.to_string(),
            run: make(|cx| Box::pin($f(cx))),
        }
    };
}

/// Every case, in run order.
pub fn all() -> Vec<Case> {
    let mut cases = vec![
        case!(
            "discovery/health-is-serving",
            "grpc.health.v1 Check for sidescan.v1.Scan answers SERVING",
            discovery_health
        ),
        case!(
            "discovery/reflection-lists-scan-service",
            "gRPC server reflection lists sidescan.v1.Scan",
            discovery_reflection
        ),
        case!(
            "discovery/metadata-names-the-scanner",
            "GetMetadata names the scanner with a semantic version",
            discovery_scanner
        ),
        case!(
            "discovery/metadata-api-version",
            "GetMetadata reports api_version sidescan.v1",
            discovery_api_version
        ),
        case!(
            "discovery/metadata-capabilities-use-known-mime-types",
            "every capability has a type, consumes media types and produces known report MIME types",
            discovery_capabilities
        ),
        case!(
            "discovery/metadata-is-stable",
            "two GetMetadata calls describe the same plugin",
            discovery_stable
        ),
        case!(
            "discovery/metadata-limits-are-consistent",
            "default_timeout is not above max_timeout",
            discovery_limits
        ),
        case!(
            "input/empty-reference-is-invalid-argument",
            "an empty image reference is INVALID_ARGUMENT",
            input_empty
        ),
        case!(
            "input/malformed-reference-is-invalid-argument",
            "a reference with spaces and '//' is INVALID_ARGUMENT",
            input_malformed
        ),
        case!(
            "input/bad-digest-is-invalid-argument",
            "app@sha256:xyz is INVALID_ARGUMENT",
            input_bad_digest
        ),
        case!(
            "input/short-digest-is-invalid-argument",
            "a sha256 digest of 63 hex digits is INVALID_ARGUMENT",
            input_short_digest
        ),
        case!(
            "input/bad-tag-is-invalid-argument",
            "a tag with forbidden characters is INVALID_ARGUMENT",
            input_bad_tag
        ),
        case!(
            "input/platform-without-architecture-is-invalid-argument",
            "platform {os: linux} without architecture is INVALID_ARGUMENT",
            input_platform_no_arch
        ),
        case!(
            "input/malformed-platform-is-invalid-argument",
            "platform with '/' and spaces in its fields is INVALID_ARGUMENT",
            input_platform_malformed
        ),
        case!(
            "input/unknown-report-type-is-invalid-argument",
            "a report MIME type the plugin does not produce is INVALID_ARGUMENT",
            input_unknown_report
        ),
        case!(
            "input/host-mismatch-is-invalid-argument",
            "a full reference naming another host than registry.url is INVALID_ARGUMENT",
            input_host_mismatch
        ),
        case!(
            "registry/missing-repository-is-not-found",
            "a repository that does not exist is NOT_FOUND",
            registry_missing_repo
        ),
        case!(
            "registry/missing-tag-is-not-found",
            "a tag that does not exist is NOT_FOUND",
            registry_missing_tag
        ),
        case!(
            "registry/missing-digest-is-not-found",
            "a digest that does not exist is NOT_FOUND",
            registry_missing_digest
        ),
        case!(
            "registry/bad-credentials-are-unauthenticated",
            "wrong Basic credentials are UNAUTHENTICATED",
            registry_bad_credentials
        ),
        case!(
            "registry/missing-credentials-are-unauthenticated",
            "no credentials where the registry needs some is UNAUTHENTICATED",
            registry_missing_credentials
        ),
        case!(
            "registry/forbidden-is-permission-denied",
            "a registry 403 is PERMISSION_DENIED",
            registry_forbidden
        ),
        case!(
            "registry/unreachable-is-unavailable",
            "a closed 127.0.0.1 port is UNAVAILABLE",
            registry_unreachable
        ),
        case!(
            "registry/server-error-is-unavailable",
            "a registry answering 503 is UNAVAILABLE",
            registry_server_error
        ),
        case!(
            "registry/corrupt-blob-is-data-loss",
            "a layer whose bytes do not match its digest is DATA_LOSS",
            registry_corrupt_blob
        ),
        case!(
            "registry/corrupt-manifest-is-data-loss",
            "a manifest pulled by digest whose bytes do not match is DATA_LOSS",
            registry_corrupt_manifest
        ),
        case!(
            "registry/truncated-blob-is-not-clean",
            "a layer whose every transfer breaks is DATA_LOSS or UNAVAILABLE",
            registry_truncated_blob
        ),
        case!(
            "registry/non-image-artifact-is-failed-precondition",
            "a non-image OCI artifact is FAILED_PRECONDITION unless the plugin scans artifacts",
            registry_non_image
        ),
        case!(
            "limits/image-bytes-over-limit-is-resource-exhausted",
            "an image over limits.max_image_bytes is RESOURCE_EXHAUSTED",
            limits_image_bytes
        ),
        case!(
            "limits/file-bytes-over-limit-is-resource-exhausted",
            "a file over limits.max_file_bytes is RESOURCE_EXHAUSTED",
            limits_file_bytes
        ),
        case!(
            "limits/uncompressed-bytes-over-limit-is-resource-exhausted",
            "layers over limits.max_uncompressed_bytes are RESOURCE_EXHAUSTED",
            limits_uncompressed_bytes
        ),
        case!(
            "limits/entries-over-limit-is-resource-exhausted",
            "more entries than limits.max_entries is RESOURCE_EXHAUSTED",
            limits_entries
        ),
        case!(
            "limits/manifest-bytes-over-limit-is-resource-exhausted",
            "a manifest over limits.max_manifest_bytes is RESOURCE_EXHAUSTED",
            limits_manifest_bytes
        ),
        case!(
            "limits/compression-ratio-over-limit-is-resource-exhausted",
            "a layer over limits.max_compression_ratio is RESOURCE_EXHAUSTED",
            limits_compression_ratio
        ),
        case!(
            "semantics/clean-image-has-no-findings",
            "a clean image gives no findings and the resolved manifest digest",
            semantics_clean
        ),
        case!(
            "semantics/report-names-the-image",
            "the report names repository, tag, media type and the scanner of GetMetadata",
            semantics_names_image
        ),
        case!(
            "semantics/docker-media-types-are-scanned",
            "a Docker schema2 image is scanned and its digest reported",
            semantics_docker
        ),
        case!(
            "semantics/eicar-is-a-malware-finding",
            "EICAR is a MALWARE finding with its path and layer digest",
            semantics_eicar
        ),
        case!(
            "semantics/findings-are-well-formed",
            "findings have ids and severities in range; summary counts equal the findings",
            semantics_well_formed
        ),
        case!(
            "semantics/requested-report-types-are-answered",
            "each requested report type gets its own entry with a status and a document",
            semantics_typed_reports
        ),
        case!(
            "consistency/tag-and-digest-agree",
            "scanning by tag and by digest gives the same digest and findings",
            consistency_tag_digest
        ),
        case!(
            "consistency/ten-repeats-are-identical",
            "ten scans of one image give identical findings",
            consistency_repeats
        ),
        case!(
            "consistency/stream-and-unary-agree",
            "ScanImageStream keeps its contract and its result equals ScanImage's (ignoring generated_at)",
            consistency_stream
        ),
        case!(
            "consistency/platform-selection-is-honoured",
            "a requested platform of a multi-arch index is the one scanned",
            consistency_platform
        ),
        case!(
            "consistency/docker-manifest-list-platform-selection",
            "a requested platform of a Docker manifest list is the one scanned",
            consistency_platform_docker
        ),
        case!(
            "consistency/missing-platform-is-failed-precondition",
            "a platform not in the index is FAILED_PRECONDITION",
            consistency_missing_platform
        ),
        case!(
            "consistency/index-without-platform-covers-every-platform",
            "an index scanned without a platform lists every platform",
            consistency_all_platforms
        ),
        case!(
            "deadlines/one-millisecond-deadline-is-deadline-exceeded",
            "a 1 ms deadline is DEADLINE_EXCEEDED; the plugin stays healthy and scans again",
            deadlines_one_ms
        ),
        case!(
            "deadlines/cancel-during-download-leaves-plugin-healthy",
            "a call dropped 200 ms into a slow download leaves the plugin healthy; the next scan works",
            deadlines_cancel
        ),
        case!(
            "deadlines/work-stops-when-deadline-passes",
            "after the deadline passes the plugin stops pulling the image",
            deadlines_work_stops
        ),
        case!(
            "concurrency/parallel-scans-get-their-own-answers",
            "parallel scans of different images each get their own report or RESOURCE_EXHAUSTED",
            concurrency_parallel
        ),
        case!(
            "concurrency/parallel-scans-of-one-image-agree",
            "parallel scans of one new image agree",
            concurrency_same_image
        ),
        case!(
            "compat/unknown-fields-in-scan-request-are-accepted",
            "a ScanRequest carrying unknown fields is scanned",
            compat_scan_unknown_fields
        ),
        case!(
            "compat/unknown-fields-in-metadata-request-are-accepted",
            "a GetMetadataRequest carrying unknown fields is answered",
            compat_metadata_unknown_fields
        ),
    ];
    for hostile in hostile::corpus() {
        let name = hostile.name;
        let description = match hostile.expected.eicar_path() {
            Some(path) => format!(
                "hostile fixture {name}: a malware plugin reports EICAR at {path} or refuses with a \
                 documented code, never clean; the plugin stays healthy"
            ),
            None => format!(
                "hostile fixture {name}: a documented code or a report, and the plugin stays healthy"
            ),
        };
        cases.push(Case {
            name: format!("robustness/hostile-{name}"),
            description,
            run: make(move |cx| Box::pin(robustness_hostile(cx, name))),
        });
    }
    cases
}

// ---------------------------------------------------------------- discovery

async fn discovery_health(cx: &Ctx) -> CaseResult {
    cx.expect_healthy().await
}

async fn discovery_reflection(cx: &Ctx) -> CaseResult {
    use tonic_reflection::pb::{v1, v1alpha};
    let want = sidescan_proto::SCAN_SERVICE_NAME;
    let channel = cx.client.channel();
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let services: Vec<String> = match client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
    {
        Ok(response) => {
            let mut stream = response.into_inner();
            match stream.message().await {
                Ok(Some(v1::ServerReflectionResponse {
                    message_response:
                        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(
                            list,
                        )),
                    ..
                })) => list.service.into_iter().map(|s| s.name).collect(),
                other => return Err(fail(format!("reflection v1 ListServices: {other:?}"))),
            }
        }
        Err(status) if status.code() == Code::Unimplemented => {
            let request = v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
                ),
            };
            let mut client =
                v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
            let response = client
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .map_err(|s| fail(format!("no gRPC reflection service (v1 or v1alpha): {s}")))?;
            let mut stream = response.into_inner();
            match stream.message().await {
                Ok(Some(v1alpha::ServerReflectionResponse {
                    message_response:
                        Some(
                            v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(
                                list,
                            ),
                        ),
                    ..
                })) => list.service.into_iter().map(|s| s.name).collect(),
                other => return Err(fail(format!("reflection v1alpha ListServices: {other:?}"))),
            }
        }
        Err(status) => return Err(fail(format!("reflection v1 ListServices: {status}"))),
    };
    if services.iter().any(|s| s == want) {
        Ok(())
    } else {
        Err(fail(format!(
            "expected reflection to list {want}, got {services:?}"
        )))
    }
}

async fn discovery_scanner(cx: &Ctx) -> CaseResult {
    let Some(scanner) = &cx.meta.scanner else {
        return Err(fail("GetMetadata has no scanner"));
    };
    if scanner.name.trim().is_empty() {
        return Err(fail("scanner.name is empty"));
    }
    if !is_semver(&scanner.version) {
        return Err(fail(format!(
            "scanner.version {:?} is not a semantic version (MAJOR.MINOR.PATCH)",
            scanner.version
        )));
    }
    Ok(())
}

async fn discovery_api_version(cx: &Ctx) -> CaseResult {
    if cx.meta.api_version == sidescan_proto::API_VERSION {
        Ok(())
    } else {
        Err(fail(format!(
            "expected api_version {:?}, got {:?}",
            sidescan_proto::API_VERSION,
            cx.meta.api_version
        )))
    }
}

async fn discovery_capabilities(cx: &Ctx) -> CaseResult {
    if cx.meta.capabilities.is_empty() {
        return Err(fail("GetMetadata lists no capability"));
    }
    let known: Vec<String> = mime::KNOWN_REPORTS
        .iter()
        .map(|m| mime::normalize(m))
        .collect();
    for (i, c) in cx.meta.capabilities.iter().enumerate() {
        if c.r#type.trim().is_empty() {
            return Err(fail(format!("capability #{i} has no type")));
        }
        if c.produces_mime_types.is_empty() {
            return Err(fail(format!("capability {:?} produces nothing", c.r#type)));
        }
        for m in &c.produces_mime_types {
            if !known.contains(&mime::normalize(m)) {
                return Err(fail(format!(
                    "capability {:?} produces {m:?}, not a known report MIME type ({})",
                    c.r#type,
                    mime::KNOWN_REPORTS.join(", ")
                )));
            }
        }
        for m in &c.consumes_mime_types {
            let ok = m.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty() && !b.is_empty() && !m.contains(char::is_whitespace)
            });
            if !ok {
                return Err(fail(format!(
                    "capability {:?} consumes {m:?}, not a media type",
                    c.r#type
                )));
            }
        }
    }
    Ok(())
}

async fn discovery_stable(cx: &Ctx) -> CaseResult {
    let again = cx
        .client
        .metadata()
        .await
        .map_err(|e| fail(format!("second GetMetadata: {e}")))?;
    if again.scanner != cx.meta.scanner
        || again.api_version != cx.meta.api_version
        || again.capabilities != cx.meta.capabilities
        || again.features != cx.meta.features
    {
        return Err(fail(format!(
            "GetMetadata changed between calls: {:?} then {:?}",
            (&cx.meta.scanner, &cx.meta.capabilities, &cx.meta.features),
            (&again.scanner, &again.capabilities, &again.features)
        )));
    }
    Ok(())
}

async fn discovery_limits(cx: &Ctx) -> CaseResult {
    let limits = cx.limits();
    let secs = |d: &Option<prost_types::Duration>| d.as_ref().map(|d| (d.seconds, d.nanos));
    match (secs(&limits.default_timeout), secs(&limits.max_timeout)) {
        (Some(default), Some(max)) if max != (0, 0) && default > max => Err(fail(format!(
            "limits.default_timeout {default:?} is above limits.max_timeout {max:?}"
        ))),
        (None, None) if limits == Limits::default() => Err(skip("the plugin advertises no limits")),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------- input

async fn input_empty(cx: &Ctx) -> CaseResult {
    cx.expect_code(cx.req(""), Code::InvalidArgument).await
}

async fn input_malformed(cx: &Ctx) -> CaseResult {
    cx.expect_code(cx.req("not a//valid reference!!"), Code::InvalidArgument)
        .await
}

async fn input_bad_digest(cx: &Ctx) -> CaseResult {
    cx.expect_code(cx.req("app@sha256:xyz"), Code::InvalidArgument)
        .await
}

async fn input_short_digest(cx: &Ctx) -> CaseResult {
    let image = format!("app@sha256:{}", "a".repeat(63));
    cx.expect_code(cx.req(image), Code::InvalidArgument).await
}

async fn input_bad_tag(cx: &Ctx) -> CaseResult {
    cx.expect_code(cx.req("app:bad$tag"), Code::InvalidArgument)
        .await
}

async fn clean_placed(cx: &Ctx) -> Result<Placed, Outcome> {
    cx.put("clean", &fixtures::clean_image()).await
}

async fn input_platform_no_arch(cx: &Ctx) -> CaseResult {
    let placed = cx.put("multi-arch", &fixtures::multi_arch_index()).await?;
    let mut request = cx.req(placed.by_tag());
    request.platform = Some(platform("linux", "", ""));
    cx.expect_code(request, Code::InvalidArgument).await
}

async fn input_platform_malformed(cx: &Ctx) -> CaseResult {
    let placed = cx.put("multi-arch", &fixtures::multi_arch_index()).await?;
    let mut request = cx.req(placed.by_tag());
    request.platform = Some(platform("linux/amd64", "arm 64", ""));
    cx.expect_code(request, Code::InvalidArgument).await
}

async fn input_unknown_report(cx: &Ctx) -> CaseResult {
    let placed = clean_placed(cx).await?;
    let mut request = cx.req(placed.by_tag());
    request.report_types.insert(
        "application/vnd.sidescan.conformance.unknown-report; version=9.9".into(),
        ReportParameters::default(),
    );
    cx.expect_code(request, Code::InvalidArgument).await
}

async fn input_host_mismatch(cx: &Ctx) -> CaseResult {
    let placed = clean_placed(cx).await?;
    let image = format!("registry.example.invalid:5000/{}", placed.by_tag());
    cx.expect_code(cx.req(image), Code::InvalidArgument).await
}

// ---------------------------------------------------------------- registry

async fn registry_missing_repo(cx: &Ctx) -> CaseResult {
    let image = format!("conformance/does-not-exist-{}:latest", cx.run_id);
    cx.expect_code(cx.req(image), Code::NotFound).await
}

async fn registry_missing_tag(cx: &Ctx) -> CaseResult {
    let placed = clean_placed(cx).await?;
    let image = format!("{}:no-such-tag-{}", placed.repo, cx.run_id);
    cx.expect_code(cx.req(image), Code::NotFound).await
}

async fn registry_missing_digest(cx: &Ctx) -> CaseResult {
    let placed = clean_placed(cx).await?;
    let missing = cx.unique("never-pushed").manifest.digest;
    let image = format!("{}@{missing}", placed.repo);
    cx.expect_code(cx.req(image), Code::NotFound).await
}

async fn registry_bad_credentials(cx: &Ctx) -> CaseResult {
    let fake = cx.fake()?;
    let placed = cx.put("auth", &cx.unique("auth")).await?;
    fake.require_basic("conformance", "the-right-password");
    let mut request = cx.req(placed.by_tag());
    if let Some(registry) = request.registry.as_mut() {
        registry.authorization = basic_authorization("conformance", "a-wrong-password");
    }
    cx.expect_code(request, Code::Unauthenticated).await
}

async fn registry_missing_credentials(cx: &Ctx) -> CaseResult {
    let fake = cx.fake()?;
    let placed = cx.put("auth", &cx.unique("auth")).await?;
    fake.require_basic("conformance", "the-right-password");
    let mut request = cx.req(placed.by_tag());
    if let Some(registry) = request.registry.as_mut() {
        registry.authorization.clear();
    }
    cx.expect_code(request, Code::Unauthenticated).await
}

async fn registry_forbidden(cx: &Ctx) -> CaseResult {
    let fake = cx.fake()?;
    let placed = cx.put("forbidden", &cx.unique("forbidden")).await?;
    fake.inject(
        Match::PathContains(format!("/v2/{}/", placed.repo)),
        Fault::Status(403),
    );
    cx.expect_code(cx.req(placed.by_tag()), Code::PermissionDenied)
        .await
}

async fn registry_unreachable(cx: &Ctx) -> CaseResult {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| suite_error(format!("cannot pick a closed port: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| suite_error(format!("cannot pick a closed port: {e}")))?
        .port();
    drop(listener);
    let request = ScanRequest {
        image: "conformance/unreachable:latest".into(),
        registry: Some(Registry {
            url: format!("http://127.0.0.1:{port}"),
            authorization: String::new(),
            insecure: true,
        }),
        ..Default::default()
    };
    cx.expect_code(request, Code::Unavailable).await
}

async fn registry_server_error(cx: &Ctx) -> CaseResult {
    let fake = cx.fake()?;
    let placed = cx.put("server-error", &cx.unique("server-error")).await?;
    fake.inject(
        Match::PathContains(format!("/v2/{}/", placed.repo)),
        Fault::Status(503),
    );
    cx.expect_code(cx.req(placed.by_tag()), Code::Unavailable)
        .await
}

async fn registry_corrupt_blob(cx: &Ctx) -> CaseResult {
    let fake = cx.fake()?;
    let artifact = cx.unique("corrupt-blob");
    let placed = cx.put("corrupt-blob", &artifact).await?;
    let layer = artifact.layers[artifact.layers.len() - 1]
        .blob
        .digest
        .clone();
    fake.inject(Match::Digest(layer), Fault::WrongBytes);
    cx.expect_code(cx.req(placed.by_tag()), Code::DataLoss)
        .await
}

async fn registry_corrupt_manifest(cx: &Ctx) -> CaseResult {
    let fake = cx.fake()?;
    let placed = cx
        .put("corrupt-manifest", &cx.unique("corrupt-manifest"))
        .await?;
    fake.inject(
        Match::Path(format!("/v2/{}/manifests/{}", placed.repo, placed.digest)),
        Fault::WrongBytes,
    );
    cx.expect_code(cx.req(placed.by_digest()), Code::DataLoss)
        .await
}

async fn registry_truncated_blob(cx: &Ctx) -> CaseResult {
    let fake = cx.fake()?;
    let artifact = cx.unique("truncated-blob");
    let placed = cx.put("truncated-blob", &artifact).await?;
    let layer = &artifact.layers[artifact.layers.len() - 1].blob;
    fake.inject(
        Match::Digest(layer.digest.clone()),
        // Every transfer (ranged resumes too) breaks before the first byte: a plugin that
        // resumes cannot complete, and must not report what it never read.
        Fault::Truncate { after: 0 },
    );
    let result = cx.scan(cx.req(placed.by_tag())).await;
    cx.expect_codes(result, &[Code::DataLoss, Code::Unavailable])
        .await
}

async fn registry_non_image(cx: &Ctx) -> CaseResult {
    if cx.features().artifact_blobs {
        return Err(skip(
            "the plugin scans non-image artifacts (features.artifact_blobs)",
        ));
    }
    let placed = cx
        .put("falco-rules", &fixtures::non_image_artifact())
        .await?;
    cx.expect_code(cx.req(placed.by_tag()), Code::FailedPrecondition)
        .await
}

// ---------------------------------------------------------------- limits

/// The limit if it is set and small enough for the suite to exceed, else the skip reason.
fn limit_under(value: u64, field: &str, cap: u64) -> Result<u64, Outcome> {
    if value == 0 {
        Err(skip(format!("the plugin advertises no limits.{field}")))
    } else if value > cap {
        Err(skip(format!(
            "limits.{field} is {value}, above the {cap} the suite builds; start the plugin with a lower limit to check it"
        )))
    } else {
        Ok(value)
    }
}

async fn expect_exhausted(cx: &Ctx, label: &str, artifact: &Artifact) -> CaseResult {
    let placed = cx.put(label, artifact).await?;
    cx.expect_code(cx.req(placed.by_tag()), Code::ResourceExhausted)
        .await
}

async fn limits_image_bytes(cx: &Ctx) -> CaseResult {
    let limit = limit_under(cx.limits().max_image_bytes, "max_image_bytes", 64 << 20)?;
    expect_exhausted(
        cx,
        "over-image-bytes",
        &fixtures::large_file_image(limit + 1),
    )
    .await
}

async fn limits_file_bytes(cx: &Ctx) -> CaseResult {
    let limit = limit_under(cx.limits().max_file_bytes, "max_file_bytes", 64 << 20)?;
    expect_exhausted(
        cx,
        "over-file-bytes",
        &hostile::huge_file(limit + 1).artifact,
    )
    .await
}

async fn limits_uncompressed_bytes(cx: &Ctx) -> CaseResult {
    let limit = limit_under(
        cx.limits().max_uncompressed_bytes,
        "max_uncompressed_bytes",
        1 << 30,
    )?;
    expect_exhausted(
        cx,
        "over-uncompressed-bytes",
        &hostile::gzip_bomb(limit + 1).artifact,
    )
    .await
}

async fn limits_entries(cx: &Ctx) -> CaseResult {
    let limit = limit_under(cx.limits().max_entries, "max_entries", 200_000)?;
    let entries = usize::try_from(limit + 1).map_err(|e| suite_error(e.to_string()))?;
    expect_exhausted(cx, "over-entries", &hostile::tar_bomb(entries).artifact).await
}

async fn limits_manifest_bytes(cx: &Ctx) -> CaseResult {
    let limit = limit_under(
        cx.limits().max_manifest_bytes,
        "max_manifest_bytes",
        16 << 20,
    )?;
    if cx.fx.fake().is_none() && limit >= 4 << 20 {
        return Err(skip(
            "a manifest over 4 MiB needs the embedded fixture registry (real registries refuse it)",
        ));
    }
    let size = usize::try_from(limit + 1).map_err(|e| suite_error(e.to_string()))?;
    expect_exhausted(
        cx,
        "over-manifest-bytes",
        &hostile::huge_manifest(size).artifact,
    )
    .await
}

async fn limits_compression_ratio(cx: &Ctx) -> CaseResult {
    let ratio = cx.limits().max_compression_ratio;
    if ratio == 0 {
        return Err(skip(
            "the plugin advertises no limits.max_compression_ratio",
        ));
    }
    if ratio >= 500 {
        return Err(skip(format!(
            "limits.max_compression_ratio is {ratio}; the suite's zero-filled layer compresses about 1000:1"
        )));
    }
    expect_exhausted(
        cx,
        "over-compression-ratio",
        &hostile::gzip_bomb(32 << 20).artifact,
    )
    .await
}

// ---------------------------------------------------------------- semantics

async fn semantics_clean(cx: &Ctx) -> CaseResult {
    let placed = cx.put("clean-unique", &cx.unique("clean")).await?;
    let report = cx.scan_ok(cx.req(placed.by_tag())).await?;
    if !report.vulnerabilities.is_empty() {
        return Err(fail(format!(
            "expected no findings for a clean image, got {:?}",
            report.vulnerabilities
        )));
    }
    let digest = report.image.map(|i| i.digest).unwrap_or_default();
    if digest != placed.digest {
        return Err(fail(format!(
            "expected report.image.digest {}, got {digest:?}",
            placed.digest
        )));
    }
    Ok(())
}

async fn semantics_names_image(cx: &Ctx) -> CaseResult {
    let placed = clean_placed(cx).await?;
    let report = cx.scan_ok(cx.req(placed.by_tag())).await?;
    let image = report.image.unwrap_or_default();
    if !image.repository.ends_with(&placed.repo) {
        return Err(fail(format!(
            "expected report.image.repository {:?}, got {:?}",
            placed.repo, image.repository
        )));
    }
    if image.tag != placed.tag {
        return Err(fail(format!(
            "expected report.image.tag {:?}, got {:?}",
            placed.tag, image.tag
        )));
    }
    if mime::normalize(&image.media_type) != mime::normalize(mime::OCI_MANIFEST) {
        return Err(fail(format!(
            "expected report.image.media_type {:?}, got {:?}",
            mime::OCI_MANIFEST,
            image.media_type
        )));
    }
    let (Some(got), Some(want)) = (&report.scanner, &cx.meta.scanner) else {
        return Err(fail("the report has no scanner"));
    };
    if got.name != want.name || got.version != want.version {
        return Err(fail(format!(
            "report.scanner {} {} differs from GetMetadata's {} {}",
            got.name, got.version, want.name, want.version
        )));
    }
    Ok(())
}

async fn semantics_docker(cx: &Ctx) -> CaseResult {
    let placed = cx
        .put("docker-media-types", &fixtures::docker_media_types_image())
        .await?;
    let report = cx.scan_ok(cx.req(placed.by_tag())).await?;
    let digest = report.image.map(|i| i.digest).unwrap_or_default();
    if digest != placed.digest {
        return Err(fail(format!(
            "expected report.image.digest {}, got {digest:?}",
            placed.digest
        )));
    }
    Ok(())
}

async fn semantics_eicar(cx: &Ctx) -> CaseResult {
    cx.require_malware()?;
    let artifact = fixtures::eicar_top_layer();
    let layer = artifact.layers[1].blob.digest.clone();
    let placed = cx.put("eicar", &artifact).await?;
    let report = cx.scan_ok(cx.req(placed.by_tag())).await?;
    let found = report.vulnerabilities.iter().find(|f| {
        f.kind == FindingKind::Malware as i32
            && f.path.trim_start_matches('/') == fixtures::EICAR_PATH
    });
    let Some(finding) = found else {
        return Err(fail(format!(
            "expected a MALWARE finding at {}, got {:?}",
            fixtures::EICAR_PATH,
            report.vulnerabilities
        )));
    };
    if finding.layer_digest != layer {
        return Err(fail(format!(
            "expected the EICAR finding's layer_digest {layer}, got {:?}",
            finding.layer_digest
        )));
    }
    Ok(())
}

async fn semantics_well_formed(cx: &Ctx) -> CaseResult {
    let produces_vuln = cx
        .produced()
        .iter()
        .any(|m| mime::normalize(m) == mime::normalize(mime::VULNERABILITY_REPORT));
    for (label, artifact) in [
        ("eicar", fixtures::eicar_top_layer()),
        ("private-key", fixtures::private_key_image()),
        ("whiteouts", fixtures::whiteout_image()),
    ] {
        let placed = cx.put(label, &artifact).await?;
        let mut request = cx.req(placed.by_tag());
        if produces_vuln {
            request.report_types.insert(
                mime::VULNERABILITY_REPORT.into(),
                ReportParameters::default(),
            );
        }
        // scan_ok checks ids, severities and the summary.
        cx.scan_ok(request).await?;
    }
    Ok(())
}

async fn semantics_typed_reports(cx: &Ctx) -> CaseResult {
    let produced = cx.produced();
    if produced.is_empty() {
        return Err(skip("the plugin produces no report type"));
    }
    let placed = clean_placed(cx).await?;
    let mut request = cx.req(placed.by_tag());
    for m in &produced {
        request
            .report_types
            .insert(m.clone(), ReportParameters::default());
    }
    let response = cx
        .scan(request)
        .await
        .map_err(|e| fail(format!("expected OK, got {e}")))?;
    for m in &produced {
        let Some(typed) = response
            .reports
            .iter()
            .find(|r| mime::normalize(&r.mime_type) == mime::normalize(m))
        else {
            return Err(fail(format!(
                "requested {m:?}, no entry in response.reports"
            )));
        };
        match typed.status {
            1 => {
                if typed.document.is_empty() {
                    return Err(fail(format!("{m}: SUCCEEDED with an empty document")));
                }
                if typed.document_media_type.contains("json")
                    && serde_json::from_slice::<serde_json::Value>(&typed.document).is_err()
                {
                    return Err(fail(format!(
                        "{m}: document_media_type {} but the document is not JSON",
                        typed.document_media_type
                    )));
                }
            }
            2 => {
                if typed.error.as_ref().is_none_or(|e| e.code == 0) {
                    return Err(fail(format!("{m}: FAILED without an error code")));
                }
            }
            other => {
                return Err(fail(format!(
                    "{m}: status {other} is neither SUCCEEDED nor FAILED"
                )));
            }
        }
    }
    if response.reports.len() != produced.len() {
        return Err(fail(format!(
            "requested {} report types, got {} entries",
            produced.len(),
            response.reports.len()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- consistency

async fn consistency_tag_digest(cx: &Ctx) -> CaseResult {
    let placed = cx.put("eicar", &fixtures::eicar_top_layer()).await?;
    let by_tag = cx.scan_ok(cx.req(placed.by_tag())).await?;
    let by_digest = cx.scan_ok(cx.req(placed.by_digest())).await?;
    let digest = |r: &ScanReport| {
        r.image
            .as_ref()
            .map(|i| i.digest.clone())
            .unwrap_or_default()
    };
    if digest(&by_tag) != placed.digest || digest(&by_digest) != placed.digest {
        return Err(fail(format!(
            "expected digest {} both ways, got {:?} by tag and {:?} by digest",
            placed.digest,
            digest(&by_tag),
            digest(&by_digest)
        )));
    }
    if canonical(&by_tag) != canonical(&by_digest) {
        return Err(fail(format!(
            "findings differ: by tag {:?}, by digest {:?}",
            by_tag.vulnerabilities, by_digest.vulnerabilities
        )));
    }
    Ok(())
}

async fn consistency_repeats(cx: &Ctx) -> CaseResult {
    let placed = cx.put("eicar", &fixtures::eicar_top_layer()).await?;
    let first = canonical(&cx.scan_ok(cx.req(placed.by_tag())).await?);
    for i in 2..=10 {
        let next = canonical(&cx.scan_ok(cx.req(placed.by_tag())).await?);
        if next != first {
            return Err(fail(format!(
                "scan {i} of 10 differs: first {first:?}, then {next:?}"
            )));
        }
    }
    Ok(())
}

async fn consistency_stream(cx: &Ctx) -> CaseResult {
    let placed = cx.put("eicar", &fixtures::eicar_top_layer()).await?;
    let mut unary = cx.scan_ok(cx.req(placed.by_tag())).await?;
    let stream = cx
        .client
        .scan_stream(cx.req(placed.by_tag()))
        .await
        .map_err(|e| fail(format!("ScanImageStream: expected OK, got {e}")))?;
    let streamed = stream
        .result(|_| {})
        .await
        .map_err(|e| fail(format!("ScanImageStream: {e}")))?;
    let Some(mut streamed) = streamed.report else {
        return Err(fail("ScanImageStream's result has no report"));
    };
    unary.generated_at = None;
    streamed.generated_at = None;
    unary.vulnerabilities = canonical(&unary);
    streamed.vulnerabilities = canonical(&streamed);
    if unary != streamed {
        return Err(fail(format!(
            "stream and unary reports differ: unary {unary:?}, stream {streamed:?}"
        )));
    }
    Ok(())
}

async fn platform_selection(cx: &Ctx, label: &str, artifact: Artifact) -> CaseResult {
    if !cx.features().platform_selection {
        return Err(skip(
            "the plugin does not advertise features.platform_selection",
        ));
    }
    let placed = cx.put(label, &artifact).await?;
    let arm = platform("linux", "arm64", "v8");
    let amd = platform("linux", "amd64", "");
    for (want, child) in [(&arm, &artifact.children[1]), (&amd, &artifact.children[0])] {
        let mut request = cx.req(placed.by_tag());
        request.platform = Some(want.clone());
        let report = cx.scan_ok(request).await?;
        let image = report.image.clone().unwrap_or_default();
        let got = image.platform.clone().unwrap_or_default();
        if !same_platform(&got, want) {
            return Err(fail(format!(
                "requested {}/{}, report.image.platform is {got:?}",
                want.os, want.architecture
            )));
        }
        let child_digest = &child.manifest.digest;
        let names_child = image.digest == *child_digest
            || image.manifest_digests.iter().any(|d| d == child_digest);
        if !names_child {
            return Err(fail(format!(
                "requested {}/{}: expected the report to name its manifest {child_digest} (image.digest or image.manifest_digests), got {:?} / {:?}",
                want.os, want.architecture, image.digest, image.manifest_digests
            )));
        }
        if cx.has_malware() {
            let malware = report
                .vulnerabilities
                .iter()
                .any(|f| f.kind == FindingKind::Malware as i32);
            if malware != (want.architecture == "arm64") {
                return Err(fail(format!(
                    "requested {}/{}: EICAR is only in the arm64 image, malware findings: {malware}",
                    want.os, want.architecture
                )));
            }
        }
    }
    Ok(())
}

async fn consistency_platform(cx: &Ctx) -> CaseResult {
    platform_selection(cx, "multi-arch", fixtures::multi_arch_index()).await
}

async fn consistency_platform_docker(cx: &Ctx) -> CaseResult {
    platform_selection(
        cx,
        "multi-arch-docker",
        fixtures::multi_arch_manifest_list(),
    )
    .await
}

async fn consistency_missing_platform(cx: &Ctx) -> CaseResult {
    if !cx.features().platform_selection {
        return Err(skip(
            "the plugin does not advertise features.platform_selection",
        ));
    }
    let placed = cx.put("multi-arch", &fixtures::multi_arch_index()).await?;
    let mut request = cx.req(placed.by_tag());
    request.platform = Some(platform("linux", "s390x", ""));
    cx.expect_code(request, Code::FailedPrecondition).await
}

async fn consistency_all_platforms(cx: &Ctx) -> CaseResult {
    if !cx.features().multi_platform {
        return Err(skip(
            "the plugin does not advertise features.multi_platform",
        ));
    }
    let placed = cx.put("multi-arch", &fixtures::multi_arch_index()).await?;
    let report = cx.scan_ok(cx.req(placed.by_tag())).await?;
    for want in [
        platform("linux", "amd64", ""),
        platform("linux", "arm64", "v8"),
    ] {
        if !report.platforms.iter().any(|p| same_platform(p, &want)) {
            return Err(fail(format!(
                "expected report.platforms to list {}/{}, got {:?}",
                want.os, want.architecture, report.platforms
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- deadlines

async fn deadlines_one_ms(cx: &Ctx) -> CaseResult {
    let placed = cx.put("deadline", &cx.unique("deadline")).await?;
    let result = cx
        .client
        .with_timeout(Some(Duration::from_millis(1)))
        .scan(cx.req(placed.by_tag()))
        .await;
    cx.expect_codes(result, &[Code::DeadlineExceeded]).await?;
    cx.scan_ok(cx.req(placed.by_tag())).await.map(drop)
}

async fn deadlines_cancel(cx: &Ctx) -> CaseResult {
    let fake = cx.fake()?;
    let artifact = Image::new()
        .layer(base_layer())
        .layer(Layer::new([
            Entry::file("conformance/nonce.txt", format!("{} cancel\n", cx.run_id)),
            Entry::pseudo_random("conformance/slow.bin", 256 << 10, 11),
        ]))
        .build();
    let placed = cx.put("cancel", &artifact).await?;
    let layer = artifact.layers[1].blob.digest.clone();
    fake.inject(
        Match::Digest(layer.clone()),
        Fault::Dribble {
            chunk: 4096,
            interval: Duration::from_millis(50),
        },
    );
    let call = cx.scan(cx.req(placed.by_tag()));
    if let Ok(result) = tokio::time::timeout(Duration::from_millis(200), call).await {
        return Err(fail(format!(
            "expected the scan to be still downloading after 200 ms, it answered {}",
            match result {
                Ok(r) => describe(&r),
                Err(e) => e.to_string(),
            }
        )));
    }
    fake.clear_faults();
    cx.expect_healthy().await?;
    let report = cx.scan_ok(cx.req(placed.by_tag())).await?;
    let digest = report.image.map(|i| i.digest).unwrap_or_default();
    if digest != placed.digest {
        return Err(fail(format!(
            "the scan after the cancel reported digest {digest:?}, expected {}",
            placed.digest
        )));
    }
    Ok(())
}

async fn deadlines_work_stops(cx: &Ctx) -> CaseResult {
    let fake = cx.fake()?;
    let artifact = cx.unique("work-stops");
    let placed = cx.put("work-stops", &artifact).await?;
    // The manifest trickles in over about 3 s: a plugin that honours a 500 ms deadline never
    // gets to the blobs.
    let chunk = artifact.manifest.data.len().div_ceil(30).max(1);
    fake.inject(
        Match::PathContains(format!("/v2/{}/manifests/", placed.repo)),
        Fault::Dribble {
            chunk,
            interval: Duration::from_millis(100),
        },
    );
    let result = cx
        .client
        .with_timeout(Some(Duration::from_millis(500)))
        .scan(cx.req(placed.by_tag()))
        .await;
    match &result {
        Err(e) if e.code() == Some(Code::DeadlineExceeded) => {}
        _ => return cx.expect_codes(result, &[Code::DeadlineExceeded]).await,
    }
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let blobs = format!("/v2/{}/blobs/", placed.repo);
    let late: Vec<String> = fake
        .request_log()
        .into_iter()
        .filter(|r| r.path.starts_with(&blobs))
        .map(|r| r.path)
        .collect();
    if !late.is_empty() {
        return Err(fail(format!(
            "the plugin kept pulling after the 500 ms deadline passed: it requested {late:?}"
        )));
    }
    cx.expect_healthy().await
}

// ---------------------------------------------------------------- concurrency

async fn concurrency_parallel(cx: &Ctx) -> CaseResult {
    const N: usize = 6;
    let mut placed = Vec::new();
    for i in 0..N {
        placed.push(
            cx.put(
                &format!("parallel-{i}"),
                &cx.unique(&format!("parallel-{i}")),
            )
            .await?,
        );
    }
    let results =
        futures::future::join_all(placed.iter().map(|p| cx.scan(cx.req(p.by_tag())))).await;
    let mut ok = 0;
    for (p, result) in placed.iter().zip(results) {
        match result {
            Ok(response) => {
                let digest = response
                    .report
                    .as_ref()
                    .and_then(|r| r.image.as_ref())
                    .map(|i| i.digest.clone())
                    .unwrap_or_default();
                if digest != p.digest {
                    return Err(fail(format!(
                        "the scan of {} reported digest {digest:?}, expected {}",
                        p.repo, p.digest
                    )));
                }
                if let Some(report) = &response.report {
                    check_report(report).map_err(fail)?;
                    if !report.vulnerabilities.is_empty() {
                        return Err(fail(format!(
                            "the clean image {} got findings {:?}",
                            p.repo, report.vulnerabilities
                        )));
                    }
                }
                ok += 1;
            }
            Err(e) if e.code() == Some(Code::ResourceExhausted) => {}
            Err(e) => {
                return Err(fail(format!(
                    "{}: expected OK or RESOURCE_EXHAUSTED, got {e}",
                    p.repo
                )));
            }
        }
    }
    if ok == 0 {
        return Err(fail(format!("all {N} parallel scans were refused")));
    }
    cx.expect_healthy().await
}

async fn concurrency_same_image(cx: &Ctx) -> CaseResult {
    let artifact = Image::new()
        .layer(base_layer())
        .layer(Layer::new([
            Entry::file("conformance/nonce.txt", format!("{} same\n", cx.run_id)),
            Entry::file(fixtures::EICAR_PATH, fixtures::EICAR),
        ]))
        .build();
    let placed = cx.put("parallel-same", &artifact).await?;
    let results = futures::future::join_all((0..4).map(|_| cx.scan(cx.req(placed.by_tag())))).await;
    let mut first: Option<Vec<ScanVulnerability>> = None;
    for result in results {
        match result {
            Ok(ScanResponse {
                report: Some(report),
                ..
            }) => {
                let findings = canonical(&report);
                match &first {
                    None => first = Some(findings),
                    Some(f) if *f != findings => {
                        return Err(fail(format!(
                            "parallel scans of one image differ: {f:?} vs {findings:?}"
                        )));
                    }
                    Some(_) => {}
                }
            }
            Ok(_) => return Err(fail("OK without a report")),
            Err(e) if e.code() == Some(Code::ResourceExhausted) => {}
            Err(e) => return Err(fail(format!("expected OK or RESOURCE_EXHAUSTED, got {e}"))),
        }
    }
    if first.is_none() {
        return Err(fail("all parallel scans were refused"));
    }
    Ok(())
}

// ---------------------------------------------------------------- robustness

/// Codes a plugin may use to refuse content it will not scan.
const REFUSALS: &[Code] = &[
    Code::DataLoss,
    Code::FailedPrecondition,
    Code::ResourceExhausted,
];

async fn robustness_hostile(cx: &Ctx, name: &'static str) -> CaseResult {
    let Some(case) = hostile::corpus().iter().find(|c| c.name == name) else {
        return Err(suite_error(format!("no hostile case {name}")));
    };
    robustness(cx, case).await
}

async fn robustness(cx: &Ctx, case: &HostileCase) -> CaseResult {
    if !case.real_registry && cx.fx.fake().is_none() {
        return Err(skip(
            "a real registry refuses this fixture; it needs the embedded fixture registry",
        ));
    }
    if let Some(primer) = &case.primer {
        // Scanned first by the same plugin: an answer cached for it must not be reused.
        let placed = cx
            .put(&format!("hostile-{}-primer", case.name), primer)
            .await?;
        if let Err(e) = cx.scan(cx.req(placed.by_tag())).await
            && matches!(e.code(), None | Some(Code::Internal | Code::Unknown))
        {
            return Err(fail(format!("scan of the primer: {e}")));
        }
    }
    let placed = cx
        .put(&format!("hostile-{}", case.name), &case.artifact)
        .await?;
    let result = cx.scan(cx.req(placed.by_tag())).await;
    if let (Expected::FindsEicar { path, or_fails }, true) = (&case.expected, cx.has_malware()) {
        return fail_closed(cx, case, path, or_fails, result).await;
    }
    // Content that does not match its digest must never be reported; resource bombs and
    // other refusals may also be scanned in full by a plugin without the relevant limit.
    let (ok_allowed, codes): (bool, &[Code]) = match &case.expected {
        Expected::Fails(codes) if codes.contains(&Code::DataLoss) => (false, codes),
        Expected::Fails(codes) => (true, codes),
        _ => (true, REFUSALS),
    };
    match result {
        Ok(response) if ok_allowed => {
            if let Some(report) = &response.report {
                check_report(report).map_err(fail)?;
            } else {
                return Err(fail("OK without a report"));
            }
            cx.expect_healthy().await
        }
        Ok(response) => Err(fail(format!(
            "expected {}, got OK with {} ({})",
            names(codes),
            describe(&response),
            case.description
        ))),
        Err(e) => match e.code() {
            Some(code) if codes.contains(&code) => cx.expect_healthy().await,
            _ => Err(fail(format!(
                "expected {}{}, got {e}",
                if ok_allowed { "a report or " } else { "" },
                names(codes)
            ))),
        },
    }
}

/// A fail-closed case for a malware plugin: EICAR at `path`, or one of `or_fails`.
async fn fail_closed(
    cx: &Ctx,
    case: &HostileCase,
    path: &str,
    or_fails: &[Code],
    result: Result<ScanResponse, ClientError>,
) -> CaseResult {
    match result {
        Ok(ScanResponse {
            report: Some(report),
            ..
        }) => {
            check_report(&report).map_err(fail)?;
            let found = report.vulnerabilities.iter().any(|f| {
                f.kind == FindingKind::Malware as i32
                    && f.path.trim_start_matches('/') == path.trim_start_matches('/')
            });
            if !found {
                return Err(fail(format!(
                    "expected a MALWARE finding at {path} or {}, got a report with {} finding(s) \
                     and {} notice(s) without it: clean where a container runtime extracts EICAR \
                     ({})",
                    names(or_fails),
                    report.vulnerabilities.len(),
                    report.notices.len(),
                    case.description
                )));
            }
            cx.expect_healthy().await
        }
        Ok(_) => Err(fail("OK without a report")),
        Err(e) => match e.code() {
            Some(code) if or_fails.contains(&code) => cx.expect_healthy().await,
            _ => Err(fail(format!(
                "expected a MALWARE finding at {path} or {}, got {e}",
                names(or_fails)
            ))),
        },
    }
}

// ---------------------------------------------------------------- compat

/// Appends unknown fields (a varint with field number 1000 and a string with 1001), as a newer
/// host would send them.
fn with_unknown_fields(mut bytes: Vec<u8>) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    varint(1000 << 3, &mut bytes);
    varint(42, &mut bytes);
    let text = b"a field from a future version";
    varint((1001 << 3) | 2, &mut bytes);
    varint(text.len() as u64, &mut bytes);
    bytes.extend_from_slice(text);
    bytes
}

async fn raw_call(cx: &Ctx, method: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Outcome> {
    let mut grpc = tonic::client::Grpc::new(cx.client.channel());
    grpc.ready()
        .await
        .map_err(|e| fail(format!("plugin connection not ready: {e}")))?;
    let mut request = tonic::Request::new(body);
    request.set_timeout(cx.case_timeout);
    let path = http::uri::PathAndQuery::from_static(method);
    grpc.unary(request, path, sidescan_proto::client::RawCodec)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| {
            fail(format!(
                "expected OK, got {}: {}",
                code_name(s.code()),
                s.message()
            ))
        })
}

async fn compat_scan_unknown_fields(cx: &Ctx) -> CaseResult {
    let placed = clean_placed(cx).await?;
    let body = with_unknown_fields(cx.req(placed.by_tag()).encode_to_vec());
    let reply = raw_call(cx, "/sidescan.v1.Scan/ScanImage", body).await?;
    let response = ScanResponse::decode(reply.as_slice())
        .map_err(|e| fail(format!("the answer is not a ScanResponse: {e}")))?;
    let digest = response
        .report
        .and_then(|r| r.image)
        .map(|i| i.digest)
        .unwrap_or_default();
    if digest != placed.digest {
        return Err(fail(format!(
            "expected report.image.digest {}, got {digest:?}",
            placed.digest
        )));
    }
    Ok(())
}

async fn compat_metadata_unknown_fields(cx: &Ctx) -> CaseResult {
    let body = with_unknown_fields(Vec::new());
    let reply = raw_call(cx, "/sidescan.v1.Scan/GetMetadata", body).await?;
    let response = GetMetadataResponse::decode(reply.as_slice())
        .map_err(|e| fail(format!("the answer is not a GetMetadataResponse: {e}")))?;
    if response.api_version != cx.meta.api_version {
        return Err(fail(format!(
            "api_version {:?} differs from the plain call's {:?}",
            response.api_version, cx.meta.api_version
        )));
    }
    Ok(())
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
    fn unknown_fields_decode_as_the_same_message() {
        let request = ScanRequest {
            image: "app:1".into(),
            ..Default::default()
        };
        let bytes = with_unknown_fields(request.encode_to_vec());
        assert_eq!(ScanRequest::decode(bytes.as_slice()).ok(), Some(request));
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
