//! One scan, from reference to merged findings.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
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
use crate::image::cache::{self, BlobCache, BlobHandle, CachedLayerResult, LayerIdentity};
use crate::image::layer::{Budget, LayerCheck, LayerFailure, spawn_walk};
use crate::image::layout::{LayoutImage, write_layout};
use crate::image::manifest::{
    DOCKER_LIST, Descriptor, DocKind, ImageConfig, LayerFormat, ManifestDoc, OCI_INDEX,
    PlatformSpec, has_image_layers, is_image_config, is_unknown_platform, layer_format,
    platform_rank,
};
use crate::image::reference::{Target, parse_digest};
use crate::image::registry::Session;
use crate::image::unpack::{unpack_layer, verify_layer};
use crate::input::{ArtifactBlob, ImageInput, Layer, LayerInfo, RemoteImage};
use crate::metrics::{CacheKind, Metrics};
use crate::model::{Notice, Platform, ScanFindings, notice_codes};
use crate::plugin::{Input, Scanner};

/// Blob downloads running at once per scan.
const PARALLEL_DOWNLOADS: usize = 3;

/// One scan in progress.
pub(super) struct Run<'a> {
    pub options: &'a PipelineOptions,
    pub cache: Arc<BlobCache>,
    pub metrics: Arc<Metrics>,
    pub session: Arc<Session>,
    pub scanner: Arc<dyn Scanner>,
    pub target: Target,
    /// The caller's credentials, for [`Input::Registry`] scanners (the session has its own).
    pub credentials: Credentials,
    pub platform: Option<Platform>,
    pub ctx: ScanContext,
    pub scratch: Arc<TempDir>,
    /// The image-wide limits (entries, uncompressed bytes), shared by every image of an index.
    pub budget: Arc<Budget>,
    /// Compressed bytes of the images of an index so far, against `max_image_bytes`.
    pub compressed_total: AtomicU64,
    pub cancel: CancellationToken,
}

/// An image (or artifact) manifest to scan.
struct Leaf {
    digest: String,
    bytes: Vec<u8>,
    doc: ManifestDoc,
    media_type: String,
    index_platform: Option<PlatformSpec>,
    /// containerd's rank of the entry for the requested platform (0 without one).
    rank: usize,
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

    pub async fn go(self) -> Result<PipelineOutcome, Error> {
        let image = &self.target.image;
        self.ctx.progress.report(ProgressEvent::phase(
            Phase::Resolving,
            format!("resolving {image}"),
        ));
        let reference = match (&image.digest, &image.tag) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        let (bytes, digest) = self
            .session
            .fetch_manifest(&reference, self.limits().max_manifest_bytes, &self.cancel)
            .await?;
        let (doc, kind) = ManifestDoc::parse(&bytes, &image.to_string())?;
        let media_type = doc.media_type_or(kind);
        let mut leaves = Vec::new();
        let is_index = kind == DocKind::Index;
        if is_index {
            let mut path = vec![digest.clone()];
            let mut seen = HashSet::new();
            self.collect(&doc, 1, &mut path, &mut seen, &mut leaves)
                .await?;
            if self.platform.is_some()
                && let Some(best) = leaves.iter().map(|l| l.rank).min()
            {
                // containerd runs the best-ranked match (the first of equals).
                let chosen = leaves.iter().position(|l| l.rank == best).unwrap_or(0);
                leaves = vec![leaves.swap_remove(chosen)];
            }
            if leaves.is_empty() {
                return Err(match &self.platform {
                    Some(p) => Error::failed_precondition(format!(
                        "platform {p} is not in the index {image}; available: {}",
                        available_platforms(&doc)
                    )),
                    None => Error::failed_precondition(format!("index {image} lists no images")),
                });
            }
        } else {
            leaves.push(Leaf {
                digest: digest.clone(),
                bytes,
                doc,
                media_type: media_type.clone(),
                index_platform: None,
                rank: 0,
            });
        }
        let multi = is_index && self.platform.is_none();
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
                digest,
                media_type,
                manifest_digests: leaves.iter().map(|l| l.digest.clone()).collect(),
                platforms,
            },
            findings: merge(outcomes, multi),
        })
    }

    /// Collects the image manifests of an index (recursively), honouring the requested platform.
    fn collect<'s>(
        &'s self,
        index: &'s ManifestDoc,
        depth: u32,
        path: &'s mut Vec<String>,
        seen: &'s mut HashSet<String>,
        leaves: &'s mut Vec<Leaf>,
    ) -> BoxFuture<'s, Result<(), Error>> {
        Box::pin(async move {
            let limits = *self.limits();
            let entries = index.manifests.as_deref().unwrap_or_default();
            if limits.max_index_entries > 0 && entries.len() > limits.max_index_entries as usize {
                return Err(Error::resource_exhausted(format!(
                    "index lists {} entries, over the limit of {}",
                    entries.len(),
                    limits.max_index_entries
                )));
            }
            for entry in entries {
                let child_is_index =
                    entry.media_type == OCI_INDEX || entry.media_type == DOCKER_LIST;
                // Choose as a runtime chooses: by platform alone (annotations such as
                // `vnd.docker.reference.type` do not count), ranked like containerd.
                let rank = match &self.platform {
                    Some(wanted) if !child_is_index => {
                        match platform_rank(wanted, entry.platform.as_ref()) {
                            Some(rank) => rank,
                            None => continue,
                        }
                    }
                    _ => 0,
                };
                let (digest, size) = blob_digest(entry, "index entry")?;
                if path.contains(&digest) {
                    return Err(Error::invalid_argument(format!(
                        "index loop: {digest} contains itself"
                    )));
                }
                if !child_is_index && !seen.insert(digest.clone()) {
                    continue;
                }
                if child_is_index
                    && limits.max_index_depth > 0
                    && depth + 1 > limits.max_index_depth
                {
                    return Err(Error::resource_exhausted(format!(
                        "indexes nested deeper than {} levels",
                        limits.max_index_depth
                    )));
                }
                if limits.max_manifest_bytes > 0 && size > limits.max_manifest_bytes {
                    return Err(Error::resource_exhausted(format!(
                        "manifest {digest} is {size} bytes, over the limit of {}",
                        limits.max_manifest_bytes
                    )));
                }
                let (bytes, got) = self
                    .session
                    .fetch_manifest(&digest, limits.max_manifest_bytes, &self.cancel)
                    .await?;
                if bytes.len() as u64 != size {
                    return Err(Error::data_loss(format!(
                        "manifest {got} is {} bytes but the index says {size}",
                        bytes.len()
                    )));
                }
                let (doc, kind) = ManifestDoc::parse(&bytes, &format!("manifest {digest}"))?;
                match kind {
                    DocKind::Index => {
                        if limits.max_index_depth > 0 && depth + 1 > limits.max_index_depth {
                            return Err(Error::resource_exhausted(format!(
                                "indexes nested deeper than {} levels",
                                limits.max_index_depth
                            )));
                        }
                        path.push(digest);
                        self.collect(&doc, depth + 1, path, seen, leaves).await?;
                        path.pop();
                    }
                    DocKind::Manifest => {
                        // With every platform asked for, an `unknown/unknown` entry that is
                        // not an image (buildx attestations: in-toto layers) has nothing a
                        // runtime runs; one with image layers can still be run by digest and
                        // is scanned like any other.
                        if self.platform.is_none()
                            && is_unknown_platform(entry)
                            && !has_image_layers(doc.layers.as_deref().unwrap_or_default())
                        {
                            continue;
                        }
                        if limits.max_index_entries > 0
                            && leaves.len() >= limits.max_index_entries as usize
                        {
                            return Err(Error::resource_exhausted(format!(
                                "indexes name more than {} images",
                                limits.max_index_entries
                            )));
                        }
                        let media_type = doc.media_type_or(kind);
                        leaves.push(Leaf {
                            digest,
                            bytes,
                            doc,
                            media_type,
                            index_platform: entry.platform.clone(),
                            rank,
                        });
                    }
                }
            }
            Ok(())
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
            return Err(Error::resource_exhausted(format!(
                "image {} brings the request to {total} bytes compressed, over the limit of {}",
                leaf.digest, limits.max_image_bytes
            )));
        }
        // An image is a manifest with image layers, whatever its config media type says (an
        // artifact type must not hide runnable layers from the scan).
        if !is_image_config(&config.media_type) && !has_image_layers(&layers) {
            // An artifact is scanned only by a plugin whose capabilities consume its type.
            let artifact_type = leaf
                .doc
                .artifact_type
                .as_deref()
                .filter(|t| !t.is_empty())
                .unwrap_or(&config.media_type);
            let consumed = self.scanner.info().capabilities.iter().any(|c| {
                c.consumes
                    .iter()
                    .any(|t| t == artifact_type || t == &config.media_type)
            });
            if !consumed {
                return Err(Error::failed_precondition(format!(
                    "{} is an artifact of type {artifact_type}, which this plugin's capabilities \
                     do not consume",
                    leaf.digest
                )));
            }
            let findings = self.scan_artifact(leaf, &layers).await?;
            return Ok((findings, None));
        }
        let (config_digest, config_size) = blob_digest(config, "image config")?;
        if limits.max_manifest_bytes > 0 && config_size > limits.max_manifest_bytes {
            return Err(Error::resource_exhausted(format!(
                "image config {config_digest} is {config_size} bytes, over the limit of {}",
                limits.max_manifest_bytes
            )));
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
            Input::WholeImage { rootfs } => {
                let image = WholeImage {
                    n,
                    leaf,
                    layers: &layers,
                    diff_ids: &cfg.rootfs.diff_ids,
                    config_digest: &config_digest,
                    config_handle: &config_handle,
                    platform: platform.clone(),
                    rootfs,
                };
                let kind = if rootfs { "layout+rootfs" } else { "layout" };
                self.cached_image_result(&leaf.digest, kind, &ctx, self.scan_whole(image, &ctx))
                    .await?
            }
            Input::Registry => {
                let image = RemoteImage {
                    registry: self.target.image.registry.clone(),
                    repository: self.target.image.repository.clone(),
                    manifest_digest: leaf.digest.clone(),
                    plain_http: self.target.plain_http,
                    credentials: self.credentials.to_registry_credentials(),
                    config_digest: config_digest.clone(),
                    layers: layer_infos(&layers, &cfg.rootfs.diff_ids),
                    platform: platform.clone(),
                };
                let scan = async {
                    self.ctx.progress.report(ProgressEvent::phase(
                        Phase::Scanning,
                        format!("scanning image {} (the engine pulls it)", leaf.digest),
                    ));
                    self.scanner.scan_remote_image(&image, &ctx).await
                };
                self.cached_image_result(&leaf.digest, "registry", &ctx, scan)
                    .await?
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

    async fn scan_layers(
        &self,
        layers: &[Descriptor],
        diff_ids: &[String],
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        enum Plan {
            Skip(Notice),
            Cached(ScanFindings),
            Scan(Fetch),
        }
        let info = self.scanner.info();
        let engine = self.scanner.engine_version().await?;
        self.metrics.set_engine_version(&engine);
        let budget = self.budget.clone();
        let results = self.cache.results_dir().to_path_buf();
        let mut to_download = 0u64;
        let mut keys = Vec::new();
        let mut cached = Vec::new();
        for (index, layer) in layers.iter().enumerate() {
            if Self::layer_notice(layer).is_some() {
                keys.push(String::new());
                cached.push(None);
                continue;
            }
            let (digest, size) = blob_digest(layer, "layer")?;
            let identity = LayerIdentity {
                digest: &digest,
                size,
                media_type: &layer.media_type,
                diff_id: &diff_ids[index],
            };
            let key = cache::result_key(&info.name, &info.version, &engine, identity);
            let hit = cache::load_result::<CachedLayerResult>(&results, &key)
                .await
                .filter(|c| c.matches(identity))
                .map(|c| c.findings);
            self.metrics.cache_lookup(CacheKind::Layer, hit.is_some());
            if hit.is_none() {
                to_download += size;
            }
            keys.push(key);
            cached.push(hit);
        }
        let progress = Arc::new(Progress::new(
            ctx.progress.clone(),
            to_download,
            layers.len(),
        ));
        let limiter = Arc::new(Semaphore::new(PARALLEL_DOWNLOADS));
        let mut plans = Vec::new();
        for (layer, hit) in layers.iter().zip(cached) {
            plans.push(match (Self::layer_notice(layer), hit) {
                (Some(n), _) => Plan::Skip(n),
                (None, Some(f)) => Plan::Cached(f),
                (None, None) => {
                    let (digest, size) = blob_digest(layer, "layer")?;
                    Plan::Scan(self.spawn_fetch(&digest, size, &progress, &limiter))
                }
            });
        }
        let mut out = ScanFindings::default();
        for (i, (plan, layer)) in plans.into_iter().zip(layers).enumerate() {
            let info = LayerInfo {
                index: i,
                digest: layer.digest.clone(),
                diff_id: diff_ids[i].clone(),
                media_type: layer.media_type.clone(),
                size: layer.size()?,
            };
            match plan {
                Plan::Skip(n) => out.notices.push(n),
                Plan::Cached(mut f) => {
                    for finding in &mut f.findings {
                        finding.layer_digest = info.digest.clone();
                        finding.layer_diff_id = info.diff_id.clone();
                    }
                    for notice in &mut f.notices {
                        notice.layer_digest = info.digest.clone();
                    }
                    out.extend(f);
                }
                Plan::Scan(fetch) => {
                    let info_diff_id = info.diff_id.clone();
                    let (handle, _) = fetch.await.map_err(join_error)??;
                    progress.scanning(format!(
                        "scanning layer {} of {} ({})",
                        i + 1,
                        layers.len(),
                        info.digest
                    ));
                    let f = self
                        .scan_one_layer(info, handle, &budget, &progress, ctx)
                        .await?;
                    if f.documents.is_empty() {
                        // Stored only now: the walk verified the layer against this diff_id.
                        let cached = CachedLayerResult {
                            verified_diff_id: info_diff_id,
                            media_type: layer.media_type.trim().to_ascii_lowercase(),
                            findings: f.clone(),
                        };
                        cache::store_result(&results, &keys[i], &cached).await;
                    }
                    out.extend(f);
                }
            }
            progress.layer_done();
        }
        Ok(out)
    }

    async fn scan_one_layer(
        &self,
        info: LayerInfo,
        mut handle: BlobHandle,
        budget: &Arc<Budget>,
        progress: &Arc<Progress>,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        let format = layer_format(&info.media_type);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let check = LayerCheck {
                path: handle.path().to_path_buf(),
                format,
                digest: info.digest.clone(),
                size: info.size,
                diff_id: info.diff_id.clone(),
            };
            let checkpoint = budget.checkpoint();
            let walk = spawn_walk(check, budget.clone(), self.cancel.clone());
            let mut layer = Layer {
                info: info.clone(),
                entries: Box::new(walk.clone()),
            };
            let plugin = self.scanner.scan_layer(&mut layer, ctx).await;
            drop(layer);
            let walked: Result<Vec<Notice>, LayerFailure> = match &plugin {
                Ok(_) => walk.finish().await,
                Err(e) => match walk.failure() {
                    Some(f) => Err(f),
                    None => return Err(e.clone()),
                },
            };
            match walked {
                Ok(notices) => {
                    let mut f = plugin?;
                    for finding in &mut f.findings {
                        if finding.layer_digest.is_empty() {
                            finding.layer_digest = info.digest.clone();
                        }
                        if finding.layer_diff_id.is_empty() {
                            finding.layer_diff_id = info.diff_id.clone();
                        }
                    }
                    for notice in &mut f.notices {
                        if notice.layer_digest.is_empty() {
                            notice.layer_digest = info.digest.clone();
                        }
                    }
                    f.notices.extend(notices);
                    return Ok(f);
                }
                Err(f) if f.cache_suspect && attempt == 1 => {
                    if self.cache.verify(&handle, true).await? {
                        return Err(f.error);
                    }
                    self.cache.invalidate(&info.digest);
                    drop(handle);
                    budget.rewind(checkpoint);
                    handle = self.fetch_now(&info.digest, info.size, progress).await?.0;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    /// Whole-image scan through the image result cache: a hit (same scanner, engine version,
    /// image manifest, report types and rootfs choice) is answered without fetching any layer.
    /// Serves a whole-image scan from the result cache (keyed by scanner, engine version,
    /// manifest digest, report types and how the image was fed), or runs `scan` and stores its
    /// result when it is complete enough to cache.
    async fn cached_image_result(
        &self,
        manifest_digest: &str,
        input_kind: &str,
        ctx: &ScanContext,
        scan: impl Future<Output = Result<ScanFindings, Error>>,
    ) -> Result<ScanFindings, Error> {
        let info = self.scanner.info();
        let engine = self.scanner.engine_version().await?;
        self.metrics.set_engine_version(&engine);
        let key = cache::image_result_key(
            &info.name,
            &info.version,
            &engine,
            manifest_digest,
            &ctx.report_types,
            input_kind,
        );
        let results = self.cache.results_dir().to_path_buf();
        let hit = cache::load_result::<cache::CachedImageResult>(&results, &key).await;
        self.metrics.cache_lookup(CacheKind::Image, hit.is_some());
        if let Some(hit) = hit {
            tracing::debug!(manifest = %manifest_digest, "image result cache hit");
            return Ok(hit.into_findings());
        }
        let findings = scan.await?;
        if let Some(cacheable) = cache::CachedImageResult::from_findings(&findings) {
            cache::store_result(&results, &key, &cacheable).await;
        }
        Ok(findings)
    }

    async fn scan_whole(
        &self,
        image: WholeImage<'_>,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        let mut notices = Vec::new();
        let mut to_download = 0u64;
        let mut wanted = Vec::new();
        for (i, layer) in image.layers.iter().enumerate() {
            if let Some(n) = Self::layer_notice(layer) {
                // A scanner that reads only the layout would fail on, or silently pass over, a
                // layer nobody can decode; with a rootfs the SDK skips it with a notice instead.
                if !image.rootfs && layer_format(&layer.media_type) == LayerFormat::Unsupported {
                    return Err(Error::failed_precondition(format!(
                        "layer {} has media type {:?}, which cannot be verified or unpacked, so a \
                         whole-image scanner cannot scan this image",
                        layer.digest, layer.media_type
                    )));
                }
                notices.push(n);
                continue;
            }
            let (digest, size) = blob_digest(layer, "layer")?;
            to_download += size;
            wanted.push((i, digest, size));
        }
        let progress = Arc::new(Progress::new(
            ctx.progress.clone(),
            to_download,
            image.layers.len(),
        ));
        // Without a rootfs the layers are still read to their end (diff_id, limits), each on a
        // blocking thread as soon as it is downloaded, while later layers download and the
        // scanner works; see below.
        let mut verifications = Vec::new();
        let limiter = Arc::new(Semaphore::new(PARALLEL_DOWNLOADS));
        let fetches: Vec<Fetch> = wanted
            .iter()
            .map(|(_, d, s)| self.spawn_fetch(d, *s, &progress, &limiter))
            .collect();
        // Layers are unpacked (or checked) in order as soon as each is downloaded, while the
        // later ones are still downloading.
        let base = self.scratch.path().join(image.n.to_string());
        let rootfs = if image.rootfs {
            let root = base.join("rootfs");
            std::fs::create_dir_all(&root).map_err(|e| {
                Error::resource_exhausted(format!("cannot create {}: {e}", root.display()))
            })?;
            Some(root)
        } else {
            None
        };
        let budget = self.budget.clone();
        let mut handles = Vec::new();
        for ((i, digest, size), fetch) in wanted.into_iter().zip(fetches) {
            let (mut handle, fetched) = fetch.await.map_err(join_error)??;
            if let Some(root) = &rootfs {
                progress.scanning(format!(
                    "unpacking layer {} of {}",
                    i + 1,
                    image.layers.len()
                ));
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let check = LayerCheck {
                        path: handle.path().to_path_buf(),
                        format: layer_format(&image.layers[i].media_type),
                        digest: digest.clone(),
                        size,
                        diff_id: image.diff_ids[i].clone(),
                    };
                    let checkpoint = budget.checkpoint();
                    let result = self.unpack(root.clone(), check, budget.clone()).await?;
                    match result {
                        Ok(mut n) => {
                            notices.append(&mut n);
                            break;
                        }
                        Err(f)
                            if f.cache_suspect
                                && attempt == 1
                                && !self.cache.verify(&handle, true).await? =>
                        {
                            self.cache.invalidate(&digest);
                            budget.rewind(checkpoint);
                            handle = self.fetch_now(&digest, size, &progress).await?.0;
                        }
                        Err(f) => return Err(f.error),
                    }
                }
                progress.layer_done();
            } else {
                if !fetched && !self.cache.verify(&handle, false).await? {
                    self.cache.invalidate(&digest);
                    handle = self.fetch_now(&digest, size, &progress).await?.0;
                }
                verifications.push(self.spawn_verification(
                    LayerCheck {
                        path: handle.path().to_path_buf(),
                        format: layer_format(&image.layers[i].media_type),
                        digest: digest.clone(),
                        size,
                        diff_id: image.diff_ids[i].clone(),
                    },
                    &budget,
                ));
            }
            handles.push((digest, handle));
        }
        let layout_dir = base.join("layout");
        let layout_ref = self
            .target
            .image
            .tag
            .clone()
            .unwrap_or_else(|| "latest".to_string());
        {
            let mut blobs: Vec<(&str, &Path)> =
                vec![(image.config_digest, image.config_handle.path())];
            for (digest, handle) in &handles {
                blobs.push((digest.as_str(), handle.path()));
            }
            let platform = image.leaf.index_platform.clone().or_else(|| {
                image.platform.as_ref().map(|p| PlatformSpec {
                    architecture: p.architecture.clone(),
                    os: p.os.clone(),
                    variant: (!p.variant.is_empty()).then(|| p.variant.clone()),
                })
            });
            let layout = LayoutImage {
                manifest: &image.leaf.bytes,
                digest: &image.leaf.digest,
                media_type: &image.leaf.media_type,
                platform,
                ref_name: &layout_ref,
                blobs,
            };
            // Small metadata writes and hard links: cheap enough to do inline.
            write_layout(&layout_dir, &layout)?;
        }
        let input = ImageInput {
            layout_dir,
            layout_ref,
            rootfs,
            manifest_digest: image.leaf.digest.clone(),
            config_digest: image.config_digest.to_string(),
            layers: layer_infos(image.layers, image.diff_ids),
            platform: image.platform.clone(),
        };
        progress.scanning(format!("scanning image {}", image.leaf.digest));
        // The first failure cancels the scan's other work; the remaining verifications are
        // still awaited, so none outlives the scan.
        let verified = async {
            let mut outcome = Ok(());
            for verification in verifications {
                let failed = match verification.await {
                    Ok(Ok(())) => None,
                    Ok(Err((failure, digest))) => {
                        if failure.cache_suspect {
                            self.cache.invalidate(&digest);
                        }
                        Some(failure.error)
                    }
                    Err(e) => Some(Error::internal(format!("layer verification failed: {e}"))),
                };
                if let (Some(error), Ok(())) = (failed, &outcome) {
                    self.cancel.cancel();
                    outcome = Err(error);
                }
            }
            outcome
        };
        let scan = self.scanner.scan_image(&input, ctx);
        tokio::pin!(verified, scan);
        // A layer that fails verification voids whatever the scanner made of it: its error wins,
        // and stops the scanner at once if it comes first.
        let scanned = tokio::select! {
            biased;
            verified = &mut verified => {
                verified?;
                scan.await
            }
            scanned = &mut scan => {
                verified.await?;
                scanned
            }
        };
        let mut findings = scanned?;
        findings.notices.extend(notices);
        drop(handles);
        Ok(findings)
    }

    /// Verifies one downloaded layer (digest, diff_id, limits) on a blocking thread. It writes
    /// nothing, so it does not hold the scratch dir: a scan that fails early removes its scratch
    /// dir at once, and the scan's cancellation (on return) stops the verification. A failure
    /// carries the layer's digest.
    fn spawn_verification(
        &self,
        check: LayerCheck,
        budget: &Arc<Budget>,
    ) -> JoinHandle<Result<(), (LayerFailure, String)>> {
        let (budget, cancel) = (budget.clone(), self.cancel.clone());
        tokio::task::spawn_blocking(move || {
            verify_layer(&check, &budget, &cancel).map_err(|failure| (failure, check.digest))
        })
    }

    /// Unpacks one layer on a blocking thread that keeps the scratch dir alive until it ends.
    async fn unpack(
        &self,
        root: PathBuf,
        check: LayerCheck,
        budget: Arc<Budget>,
    ) -> Result<Result<Vec<Notice>, LayerFailure>, Error> {
        let scratch = self.scratch.clone();
        let cancel = self.cancel.clone();
        tokio::task::spawn_blocking(move || {
            let r = unpack_layer(&root, &check, &budget, &cancel);
            drop(scratch);
            r
        })
        .await
        .map_err(|e| Error::internal(format!("unpack thread failed: {e}")))
    }

    async fn scan_artifact(
        &self,
        leaf: &Leaf,
        blobs: &[Descriptor],
    ) -> Result<ScanFindings, Error> {
        let total: u64 = blobs.iter().map(|b| b.size.max(0) as u64).sum();
        let progress = Arc::new(Progress::new(self.ctx.progress.clone(), total, blobs.len()));
        let mut out = ScanFindings::default();
        for desc in blobs {
            let (digest, size) = blob_digest(desc, "artifact blob")?;
            let handle = self.fetch_verified(&digest, size, &progress).await?;
            let file = tokio::fs::File::open(handle.path())
                .await
                .map_err(|e| Error::internal(format!("cannot open cached blob {digest}: {e}")))?;
            let mut blob = ArtifactBlob {
                digest: digest.clone(),
                media_type: desc.media_type.clone(),
                size,
                title: desc
                    .annotation("org.opencontainers.image.title")
                    .map(str::to_string),
                body: Box::pin(file),
            };
            progress.scanning(format!(
                "scanning artifact blob {digest} of {}",
                leaf.digest
            ));
            let mut f = self
                .scanner
                .scan_artifact_blob(&mut blob, &self.ctx)
                .await?;
            for finding in &mut f.findings {
                if finding.layer_digest.is_empty() {
                    finding.layer_digest = digest.clone();
                }
            }
            out.extend(f);
            progress.layer_done();
        }
        Ok(out)
    }
}

/// What `scan_whole` needs about one image.
struct WholeImage<'a> {
    n: usize,
    leaf: &'a Leaf,
    layers: &'a [Descriptor],
    diff_ids: &'a [String],
    config_digest: &'a str,
    config_handle: &'a BlobHandle,
    platform: Option<Platform>,
    rootfs: bool,
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

fn available_platforms(index: &ManifestDoc) -> String {
    let list: Vec<String> = index
        .manifests
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|e| !is_unknown_platform(e))
        .filter_map(|e| e.platform.as_ref().map(|p| p.to_platform().to_string()))
        .collect();
    if list.is_empty() {
        "none declared".into()
    } else {
        list.join(", ")
    }
}
