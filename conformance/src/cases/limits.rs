//! `limits/`: advertised limits are enforced with RESOURCE_EXHAUSTED.

use super::{Ctx, skip, suite_error};
use crate::{Case, CaseResult, Outcome};
use sidescan_testkit::fixtures::{self};
use sidescan_testkit::hostile::{self};
use sidescan_testkit::oci::Artifact;
use tonic::Code;

/// The `limits/` cases, in run order.
pub(super) fn cases() -> Vec<Case> {
    vec![
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
    ]
}

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
