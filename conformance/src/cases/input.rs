//! `input/`: malformed requests are INVALID_ARGUMENT before anything is pulled.

use super::{Ctx, clean_placed, platform};
use crate::{Case, CaseResult};
use sidescan_proto::v1::ReportParameters;
use sidescan_testkit::fixtures::{self};
use tonic::Code;

/// The `input/` cases, in run order.
pub(super) fn cases() -> Vec<Case> {
    vec![
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
    ]
}

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
