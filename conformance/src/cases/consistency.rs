//! `consistency/`: tag and digest, repeats, stream and unary, and platform selection agree.

use super::{Ctx, canonical, fail, platform, same_platform, skip};
use crate::{Case, CaseResult};
use sidescan_proto::v1::{FindingKind, ScanReport};
use sidescan_testkit::fixtures::{self};
use sidescan_testkit::oci::Artifact;
use tonic::Code;

/// The `consistency/` cases, in run order.
pub(super) fn cases() -> Vec<Case> {
    vec![
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
    ]
}

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
