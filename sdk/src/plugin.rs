//! The [`Scanner`] trait: the one thing a plugin author implements.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::context::ScanContext;
use crate::error::Error;
use crate::input::{ArtifactBlob, ImageInput, Layer, RemoteImage};
use crate::model::ScanFindings;

/// Identity and capabilities of a scanner plugin, as `GetMetadata` reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScannerInfo {
    /// Product name, e.g. `sidescan-clamav`.
    pub name: String,
    /// Who makes it.
    pub vendor: String,
    /// Semantic version of the plugin.
    pub version: String,
    /// What the plugin produces.
    pub capabilities: Vec<Capability>,
}

/// One kind of scan a plugin performs (Harbor's capability shape).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capability {
    /// Kind of scan: `vulnerability`, `malware`, `sbom`, `secret`, ...
    pub kind: String,
    /// Artifact media types accepted. Empty means OCI and Docker image manifests and indexes;
    /// list non-image types (e.g. a rules-file config type) to advertise that
    /// [`Scanner::scan_artifact_blob`] handles them.
    pub consumes: Vec<String>,
    /// Report MIME types produced (see [`sidescan_proto::mime`]). The first capability's first type
    /// is the plugin's primary report type.
    pub produces: Vec<String>,
}

/// How the SDK feeds a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The SDK streams every layer's entries to [`Scanner::scan_layer`], and caches the result per
    /// layer digest and [`Scanner::engine_version`]; a base layer shared by many images is scanned
    /// once.
    PerLayer,
    /// The SDK hands [`Scanner::scan_image`] a verified local OCI layout of the image and, when
    /// `rootfs` is true, an unpacked root filesystem with whiteouts applied.
    WholeImage {
        /// Unpack the layers into a root filesystem as well.
        rootfs: bool,
    },
    /// Like `WholeImage { rootfs: false }`, but each gzip or zstd layer is in the layout
    /// uncompressed: the SDK writes the tar stream out as it reads and verifies the layer
    /// (digest, diff_id, tar rules, limits), and the layout's manifest names it by its diff_id
    /// with the matching uncompressed media type. The scanner starts once every layer is
    /// verified, so the engine never sees a byte the SDK has not checked, and it decompresses
    /// nothing: for engines that read every layer through and decompress slower than the SDK
    /// (Trivy). A layer this process verified before is handed over as it was pulled
    /// (compressed) instead: an engine with its own per-layer cache (keyed by diff_id) does not
    /// read it again. The layout's manifest is therefore not the registry's: use
    /// [`ImageInput::manifest_digest`](crate::ImageInput::manifest_digest) to name the image.
    /// The scratch dir holds the uncompressed layers (at most the `max_uncompressed_bytes`
    /// limit) until the scan ends.
    UncompressedLayout,
    /// The SDK resolves the image to one manifest (allowlist, platform, manifest and config
    /// verified, declared sizes within limits) and hands [`Scanner::scan_remote_image`] a
    /// digest-pinned reference with the caller's credentials; the engine pulls the layers
    /// itself. For engines whose own pull overlaps download and analysis (Trivy): faster on a
    /// first scan, but the layers bypass the SDK's verification, limits and blob cache, and the
    /// credentials reach the engine. The whole-image result cache applies as for `WholeImage`.
    Remote,
}

/// The error of a default scan method: the plugin's [`Scanner::input`] selects `method`, which it
/// does not implement. Default methods cannot be detected when the server starts (Rust has no
/// reflection on trait impls, and calling a plugin's real scan method with a dummy input would
/// run its engine), so the mismatch surfaces at the first scan, as INTERNAL with this message.
fn not_implemented(method: &str, input: Input) -> Error {
    Error::internal(format!(
        "plugin bug: its input() is Input::{input:?}, which the SDK feeds through \
         Scanner::{method}, but the plugin does not implement Scanner::{method}"
    ))
}

/// Whether a scanner's engine can scan right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready: health reports SERVING.
    Ready,
    /// Not ready, with the reason: health reports NOT_SERVING and scans answer UNAVAILABLE.
    NotReady(String),
}

/// A scanner plugin.
///
/// Implement [`info`](Scanner::info), [`input`](Scanner::input) and the scan method that matches
/// the input ([`scan_layer`](Scanner::scan_layer) or [`scan_image`](Scanner::scan_image)); pass the
/// scanner to [`crate::serve`]. Everything else has a default.
///
/// Errors are [`Error`]s, whose variants are the status codes of `sidescan.v1`: return
/// [`Error::Unavailable`] when the engine is down, [`Error::FailedPrecondition`] when it is
/// misconfigured. A scanner must never return findings for content it did not scan without a
/// [`crate::model::Notice`] saying so.
///
/// Logging: the scan methods run inside the request's `scan` span (request id, image), so a
/// `tracing` line they emit carries it. A task the plugin spawns for a scan does not inherit the
/// span: spawn it with `tracing::Instrument::in_current_span` so its lines do too.
#[async_trait]
pub trait Scanner: Send + Sync + 'static {
    /// Identity and capabilities.
    fn info(&self) -> ScannerInfo;

    /// How the SDK should feed this scanner.
    fn input(&self) -> Input;

    /// Engine facts for `GetMetadata.properties`, e.g. signature or DB version and update time.
    async fn properties(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Whether the engine can scan now. The SDK polls this to drive `grpc.health.v1` and refuses
    /// scans with UNAVAILABLE while it is not ready.
    async fn readiness(&self) -> Readiness {
        Readiness::Ready
    }

    /// Identifies the engine's state (e.g. signature set or DB version). Part of every result-cache
    /// key, so a change here means no older result is served. Return an error while the engine
    /// cannot say (the scan then fails with that error).
    async fn engine_version(&self) -> Result<String, Error> {
        Ok(String::new())
    }

    /// Scans one layer by walking its entries ([`Input::PerLayer`] scanners).
    ///
    /// The SDK calls only the scan method its [`input`](Scanner::input) selects. The defaults of
    /// `scan_layer`, `scan_image` and `scan_remote_image` are reached only when a plugin's
    /// `input()` names a method it does not implement: they fail the scan with INTERNAL (a bug in
    /// the plugin, not in the request) and a message naming the mismatch.
    async fn scan_layer(
        &self,
        layer: &mut Layer,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        let _ = (layer, ctx);
        Err(not_implemented("scan_layer", self.input()))
    }

    /// Scans a whole image ([`Input::WholeImage`] and [`Input::UncompressedLayout`] scanners).
    /// The default is a plugin bug: see
    /// [`scan_layer`](Scanner::scan_layer).
    async fn scan_image(
        &self,
        image: &ImageInput,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        let _ = (image, ctx);
        Err(not_implemented("scan_image", self.input()))
    }

    /// Scans an image the engine pulls itself ([`Input::Remote`] scanners). The default is a
    /// plugin bug: see [`scan_layer`](Scanner::scan_layer).
    async fn scan_remote_image(
        &self,
        image: &RemoteImage,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        let _ = (image, ctx);
        Err(not_implemented("scan_remote_image", self.input()))
    }

    /// Scans one blob of a non-image OCI artifact (e.g. a plugin or rule file distributed through
    /// a registry). The default answers FAILED_PRECONDITION: the artifact is not scannable here.
    async fn scan_artifact_blob(
        &self,
        blob: &mut ArtifactBlob,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        let _ = (blob, ctx);
        Err(Error::failed_precondition(
            "this scanner does not scan non-image artifacts",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::RegistryCredentials;

    /// A remote scanner that forgot to implement `scan_remote_image`.
    struct Forgetful;

    #[async_trait]
    impl Scanner for Forgetful {
        fn info(&self) -> ScannerInfo {
            ScannerInfo::default()
        }
        fn input(&self) -> Input {
            Input::Remote
        }
    }

    #[tokio::test]
    async fn a_default_scan_method_is_an_internal_error_naming_the_mismatch() {
        let image = RemoteImage {
            registry: "r".into(),
            repository: "x".into(),
            manifest_digest: String::new(),
            plain_http: false,
            credentials: RegistryCredentials::Anonymous,
            config_digest: String::new(),
            layers: Vec::new(),
            platform: None,
        };
        let err = Forgetful
            .scan_remote_image(&image, &ScanContext::new("r", std::env::temp_dir()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Internal);
        assert!(
            err.message().contains("Input::Remote")
                && err.message().contains("Scanner::scan_remote_image"),
            "{err}"
        );
    }
}
