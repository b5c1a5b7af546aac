//! One scan, from reference to merged findings.
//!
//! [`Run::go`] resolves the reference to the image manifests to scan ([`resolve`]: indexes,
//! platform choice), then scans each one ([`Run::scan_leaf`]): its config is fetched and verified,
//! and its layers are fed to the scanner as its [`Input`] asks: one by one through the per-layer
//! result cache ([`per_layer`]), as a verified OCI layout and rootfs or as a digest-pinned
//! reference the engine pulls itself ([`whole_image`]). A manifest that is not an image is a
//! non-image artifact ([`artifact`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tempfile::TempDir;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::merge::merge;
use super::progress::Progress;
use super::{PipelineOptions, PipelineOutcome, ResolvedImage};
use crate::context::{Phase, ProgressEvent, ScanContext};
use crate::error::Error;
use crate::image::auth::Credentials;
use crate::image::cache::{BlobCache, BlobHandle, ResultCache};
use crate::image::error::Error as ImageError;
use crate::image::layer::{Budget, VerifiedLayers};
use crate::image::manifest::{
    Descriptor, ImageConfig, LayerFormat, ManifestDoc, PlatformSpec, has_image_layers,
    is_image_config, layer_format,
};
use crate::image::reference::{Target, parse_digest};
use crate::image::registry::Session;
use crate::input::LayerInfo;
use crate::metrics::{CacheKind, Metrics};
use crate::model::{Notice, Platform, ScanFindings, notice_codes};
use crate::plugin::{Input, Scanner};

mod artifact;
mod per_layer;
mod resolve;
mod uncompressed;
mod whole_image;

use whole_image::{RemoteLeaf, WholeImage};

/// Blob downloads running at once per scan.
const PARALLEL_DOWNLOADS: usize = 3;

/// One scan in progress.
pub(super) struct Run<'a> {
    pub(super) options: &'a PipelineOptions,
    pub(super) cache: Arc<BlobCache>,
    /// The per-layer and whole-image result caches (disk, then the cluster's tier).
    pub(super) results: ResultCache,
    /// Layers verified before by this process (whole-image scans replay their totals).
    pub(super) verified: Arc<VerifiedLayers>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) session: Arc<Session>,
    pub(super) scanner: Arc<dyn Scanner>,
    pub(super) target: Target,
    /// The caller's credentials, for [`Input::Remote`] scanners (the session has its own).
    pub(super) credentials: Credentials,
    pub(super) platform: Option<Platform>,
    pub(super) ctx: ScanContext,
    pub(super) scratch: Arc<TempDir>,
    /// The image-wide limits (entries, uncompressed bytes), shared by every image of an index.
    pub(super) budget: Arc<Budget>,
    /// Compressed bytes of the images of an index so far, against `max_image_bytes`.
    pub(super) compressed_total: AtomicU64,
    pub(super) cancel: CancellationToken,
}

/// An image (or artifact) manifest to scan.
struct Leaf {
    digest: String,
    bytes: Vec<u8>,
    doc: ManifestDoc,
    media_type: String,
    index_platform: Option<PlatformSpec>,
}

type Fetch = JoinHandle<Result<(BlobHandle, bool), Error>>;

fn join_error(e: tokio::task::JoinError) -> Error {
    if e.is_cancelled() {
        Error::Cancelled("scan cancelled".into())
    } else {
        Error::internal(format!("download task failed: {e}"))
    }
}

/// Validates a digest from a manifest (it becomes a file name in the cache).
fn blob_digest(d: &Descriptor, what: &str) -> Result<(String, u64), Error> {
    let digest = parse_digest(&d.digest)
        .map_err(|e| Error::failed_precondition(format!("{what}: {}", e.message())))?;
    Ok((digest, d.size()?))
}

impl Run<'_> {
    fn limits(&self) -> &crate::limits::Limits {
        &self.options.limits
    }

    /// Runs the scan: resolve, scan every chosen image, merge.
    pub(super) async fn go(self) -> Result<PipelineOutcome, Error> {
        let image = &self.target.image;
        self.ctx.progress.report(ProgressEvent::phase(
            Phase::Resolving,
            format!("resolving {image}"),
        ));
        let resolved = self.resolve().await?;
        let leaves = resolved.leaves;
        let multi = resolved.is_index && self.platform.is_none();
        let mut outcomes = Vec::new();
        for (i, leaf) in leaves.iter().enumerate() {
            outcomes.push(self.scan_leaf(i, leaf).await?);
        }
        let platforms = outcomes.iter().filter_map(|(_, p)| p.clone()).collect();
        self.ctx
            .progress
            .report(ProgressEvent::phase(Phase::Reporting, "merging results"));
        Ok(PipelineOutcome {
            image: ResolvedImage {
                registry: image.registry.clone(),
                repository: image.repository.clone(),
                tag: image.tag.clone().unwrap_or_default(),
                digest: resolved.digest,
                media_type: resolved.media_type,
                manifest_digests: leaves.iter().map(|l| l.digest.clone()).collect(),
                platforms,
            },
            findings: merge(outcomes, multi),
        })
    }

    /// Starts downloading a blob through the cache (bounded parallelism, progress counted).
    fn spawn_fetch(
        &self,
        digest: &str,
        size: u64,
        progress: &Arc<Progress>,
        limiter: &Arc<Semaphore>,
    ) -> Fetch {
        let cache = self.cache.clone();
        let session = self.session.clone();
        let cancel = self.cancel.clone();
        let progress = progress.clone();
        let limiter = limiter.clone();
        let digest = digest.to_string();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let _permit = tokio::select! {
                p = limiter.acquire_owned() => p.map_err(|_| Error::internal("download limiter closed"))?,
                () = cancel.cancelled() => return Err(Error::Cancelled("scan cancelled".into())),
            };
            let seen = Arc::new(AtomicU64::new(0));
            let source = session.source_key().to_string();
            let (handle, fetched) = cache
                .get_or_fetch(&digest, size, &source, |tmp| {
                    let progress = progress.clone();
                    let seen = seen.clone();
                    let digest = digest.clone();
                    async move {
                        let on_bytes = move |total: u64| {
                            let prev = seen.swap(total, Ordering::Relaxed);
                            progress.downloaded(total.saturating_sub(prev));
                        };
                        session
                            .download_blob(&digest, size, &tmp, &cancel, &on_bytes)
                            .await
                    }
                })
                .await?;
            metrics.cache_lookup(CacheKind::Blob, !fetched);
            if !fetched {
                progress.downloaded(size);
            }
            progress.blob_ready(&digest, !fetched);
            Ok((handle, fetched))
        }
        // Its log lines (retries, cache repairs) belong to the scan.
        .in_current_span())
    }

    /// Fetches one blob now.
    async fn fetch_now(
        &self,
        digest: &str,
        size: u64,
        progress: &Arc<Progress>,
    ) -> Result<(BlobHandle, bool), Error> {
        let limiter = Arc::new(Semaphore::new(1));
        self.spawn_fetch(digest, size, progress, &limiter)
            .await
            .map_err(join_error)?
    }

    /// A cached blob, verified by re-hashing when it came from the cache (downloaded blobs were
    /// verified on the way in); a corrupt entry is downloaded again.
    async fn fetch_verified(
        &self,
        digest: &str,
        size: u64,
        progress: &Arc<Progress>,
    ) -> Result<BlobHandle, Error> {
        let (handle, fetched) = self.fetch_now(digest, size, progress).await?;
        if fetched || self.cache.verify(&handle, false).await? {
            return Ok(handle);
        }
        self.cache.invalidate(digest);
        drop(handle);
        Ok(self.fetch_now(digest, size, progress).await?.0)
    }

    /// Scans one image (or artifact) manifest: checks its sizes against the limits, fetches and
    /// verifies its config, and feeds its layers to the scanner as its [`Input`] asks.
    async fn scan_leaf(
        &self,
        n: usize,
        leaf: &Leaf,
    ) -> Result<(ScanFindings, Option<Platform>), Error> {
        let Some(config) = leaf.doc.config.as_ref() else {
            return Err(Error::failed_precondition(format!(
                "manifest {} has no config",
                leaf.digest
            )));
        };
        let layers = leaf.doc.layers.clone().unwrap_or_default();
        let limits = *self.limits();
        let mut total = config.size()?;
        for l in &layers {
            total = total.saturating_add(l.size()?);
        }
        // One budget for the whole request: the images of an index add up.
        let total = self
            .compressed_total
            .fetch_add(total, Ordering::Relaxed)
            .saturating_add(total);
        if limits.max_image_bytes > 0 && total > limits.max_image_bytes {
            return Err(ImageError::Limit {
                what: format!(
                    "image {} brings the request to {total} bytes compressed",
                    leaf.digest
                ),
                max: limits.max_image_bytes,
            }
            .into());
        }
        // An image is a manifest with image layers, whatever its config media type says (an
        // artifact type must not hide runnable layers from the scan).
        if !is_image_config(&config.media_type) && !has_image_layers(&layers) {
            let findings = self
                .scan_artifact(leaf, &config.media_type, &layers)
                .await?;
            return Ok((findings, None));
        }
        let (config_digest, config_size) = blob_digest(config, "image config")?;
        if limits.max_manifest_bytes > 0 && config_size > limits.max_manifest_bytes {
            return Err(ImageError::Limit {
                what: format!("image config {config_digest} is {config_size} bytes"),
                max: limits.max_manifest_bytes,
            }
            .into());
        }
        let quiet = Arc::new(Progress::new(
            crate::context::ProgressSink::disabled(),
            0,
            0,
        ));
        let config_handle = self
            .fetch_verified(&config_digest, config_size, &quiet)
            .await?;
        let config_bytes = tokio::fs::read(config_handle.path())
            .await
            .map_err(|e| Error::internal(format!("cannot read cached config: {e}")))?;
        let cfg = ImageConfig::parse(&config_bytes, &format!("image config {config_digest}"))?;
        if cfg.rootfs.diff_ids.len() != layers.len() {
            return Err(Error::failed_precondition(format!(
                "image {}: config lists {} diff_ids for {} layers",
                leaf.digest,
                cfg.rootfs.diff_ids.len(),
                layers.len()
            )));
        }
        let platform = cfg
            .platform()
            .or_else(|| leaf.index_platform.as_ref().map(PlatformSpec::to_platform));
        let mut ctx = self.ctx.clone();
        ctx.platform = platform.clone();
        let findings = match self.scanner.input() {
            Input::PerLayer => {
                self.scan_layers(&layers, &cfg.rootfs.diff_ids, &ctx)
                    .await?
            }
            input @ (Input::WholeImage { .. } | Input::UncompressedLayout) => {
                let (rootfs, uncompressed) = match input {
                    Input::WholeImage { rootfs } => (rootfs, false),
                    _ => (false, true),
                };
                let image = WholeImage {
                    n,
                    leaf,
                    layers: &layers,
                    diff_ids: &cfg.rootfs.diff_ids,
                    config_digest: &config_digest,
                    config_handle: &config_handle,
                    platform: platform.clone(),
                    rootfs,
                    uncompressed,
                };
                let kind = match (rootfs, uncompressed) {
                    (true, _) => "layout+rootfs",
                    (false, false) => "layout",
                    (false, true) => "uncompressed-layout",
                };
                self.cached_image_result(&leaf.digest, kind, &ctx, self.scan_whole(image, &ctx))
                    .await?
            }
            Input::Remote => {
                let remote = RemoteLeaf {
                    leaf,
                    config_digest: &config_digest,
                    layers: &layers,
                    diff_ids: &cfg.rootfs.diff_ids,
                    platform: platform.clone(),
                };
                self.scan_remote(remote, &ctx).await?
            }
        };
        Ok((findings, platform))
    }

    /// Notice for a layer the SDK does not read, or None when it does.
    fn layer_notice(layer: &Descriptor) -> Option<Notice> {
        let mut n = match layer_format(&layer.media_type) {
            LayerFormat::NonDistributable => Notice::new(
                notice_codes::NON_DISTRIBUTABLE_LAYER,
                format!(
                    "non-distributable layer ({}) not pulled and not scanned",
                    layer.media_type
                ),
            ),
            LayerFormat::Unsupported => Notice::new(
                notice_codes::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "layer media type {:?} is not supported; layer not scanned",
                    layer.media_type
                ),
            ),
            _ => return None,
        };
        n.layer_digest = layer.digest.clone();
        Some(n)
    }
}

/// The scanner's view of a manifest's layers (`diff_ids` has one entry per layer).
fn layer_infos(layers: &[Descriptor], diff_ids: &[String]) -> Vec<LayerInfo> {
    layers
        .iter()
        .zip(diff_ids)
        .enumerate()
        .map(|(index, (l, diff_id))| LayerInfo {
            index,
            digest: l.digest.clone(),
            diff_id: diff_id.clone(),
            media_type: l.media_type.clone(),
            size: l.size.max(0) as u64,
        })
        .collect()
}
