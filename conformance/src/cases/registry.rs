//! `registry/`: registry answers and failures map to the documented status codes.

use super::{Ctx, clean_placed, skip, suite_error};
use crate::{Case, CaseResult};
use sidescan_proto::v1::{Registry, ScanRequest};
use sidescan_testkit::fake_registry::{Fault, Match};
use sidescan_testkit::fixtures::{self};
use sidescan_testkit::registry::basic_authorization;
use tonic::Code;

/// The `registry/` cases, in run order.
pub(super) fn cases() -> Vec<Case> {
    vec![
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
    ]
}

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
