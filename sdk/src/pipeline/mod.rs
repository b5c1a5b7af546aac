//! The image pipeline: resolve a reference, pull and verify manifests and blobs through the blob
//! cache, and feed the plugin layers, a whole image or artifact blobs.
//!
//! One scan ([`Pipeline::scan`]):
//!
//! ```text
//! validate (reference, registry url, authorization, allowlist: no network)
//!  -> per-scan scratch dir (removed on success, error, cancellation, panic)
//!  -> resolve: manifest or index (size, depth, loop checks; platform selection)
//!  -> per image: config (verified) -> layers:
//!       PerLayer:   result cache? else blob cache? else download+verify -> stream entries
//!                   (diff_id checked at the end of each layer) -> plugin -> result cache
//!       WholeImage: result cache? else download+verify all -> [rootfs unpack] -> OCI layout
//!                   -> plugin (diff_ids checked alongside) -> result cache
//!       UncompressedLayout: the same, but each new layer is written out uncompressed while it
//!                   is verified, and the plugin starts once all are verified
//!       Registry:   result cache? else digest-pinned reference + credentials -> plugin (the
//!                   engine pulls the layers) -> result cache
//!     non-image artifact: each blob -> plugin's scan_artifact_blob
//!  -> merge over platforms (dedupe, `platforms` per finding)
//! ```
//!
//! The building blocks live in `crate::image` (private); this module is the public face.

use std::path::PathBuf;
use std::sync::Arc;

use crate::context::ScanContext;
use crate::error::Error;
use crate::image::auth::parse_authorization;
use crate::image::cache::{BlobCache, ResultCache, SharedResults};
use crate::image::layer::VerifiedLayers;
use crate::image::reference::{Target, normalize_host, resolve_target};
use crate::image::registry::ClientPool;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::model::{Platform, ScanFindings};
use crate::plugin::Scanner;

mod merge;
mod progress;
mod run;

/// Settings of the image pipeline, from the SDK's flags.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Directory of the content-addressed blob cache (and the per-layer result cache).
    pub cache_dir: PathBuf,
    /// Size cap of the blob cache in bytes; least recently used blobs are evicted past it.
    pub cache_max_bytes: u64,
    /// Parent directory of per-scan scratch directories.
    pub scratch_root: PathBuf,
    /// Limits on every image.
    pub limits: Limits,
    /// Registries (`host[:port]`) the plugin may contact; empty means any.
    pub allowed_registries: Vec<String>,
}

/// What the caller asked to scan. Its `Debug` output redacts the authorization value.
#[derive(Clone, Default)]
pub struct ScanJob {
    /// The image reference as sent (full or relative to `registry_url`).
    pub image: String,
    /// Registry base URL; may be empty when `image` is a full reference.
    pub registry_url: String,
    /// HTTP Authorization value; empty for anonymous. Never logged.
    pub authorization: String,
    /// Use plain http.
    pub insecure: bool,
    /// The platform to pick from an index; `None` scans every platform.
    pub platform: Option<Platform>,
}

impl std::fmt::Debug for ScanJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let authorization = if self.authorization.is_empty() {
            "<none>"
        } else {
            "<redacted>"
        };
        f.debug_struct("ScanJob")
            .field("image", &self.image)
            .field("registry_url", &self.registry_url)
            .field("authorization", &authorization)
            .field("insecure", &self.insecure)
            .field("platform", &self.platform)
            .finish()
    }
}

/// The scanned artifact as resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Registry host and port.
    pub registry: String,
    /// Repository.
    pub repository: String,
    /// Tag, if one was given.
    pub tag: String,
    /// Digest of the manifest or index the reference resolved to.
    pub digest: String,
    /// Media type of that manifest or index.
    pub media_type: String,
    /// Digests of the image manifests scanned.
    pub manifest_digests: Vec<String>,
    /// Platforms scanned (empty for non-image artifacts).
    pub platforms: Vec<Platform>,
}

/// Result of running the pipeline and the plugin on one request.
#[derive(Debug, Clone, Default)]
pub struct PipelineOutcome {
    /// What was scanned.
    pub image: ResolvedImage,
    /// What the plugin found, merged over layers and platforms, plus the SDK's own notices.
    pub findings: ScanFindings,
}

/// The image pipeline shared by all scans of one server.
pub struct Pipeline {
    options: PipelineOptions,
    allowed: Vec<String>,
    cache: Arc<BlobCache>,
    results: ResultCache,
    /// Layers this process has read to their end and found sound, for whole-image scans.
    verified: Arc<VerifiedLayers>,
    clients: ClientPool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline with `options`; creates the cache and scratch directories and rescans the blob
    /// cache. A malformed `allowed_registries` entry is INVALID_ARGUMENT.
    pub fn new(options: PipelineOptions) -> Result<Self, Error> {
        Self::with_metrics(options, Arc::new(Metrics::new()), None)
    }

    /// [`Pipeline::new`], counting pulled bytes and cache lookups in the server's `metrics`,
    /// with the cluster's `shared` result tier behind the disk one (`--nats`).
    pub(crate) fn with_metrics(
        options: PipelineOptions,
        metrics: Arc<Metrics>,
        shared: Option<Arc<SharedResults>>,
    ) -> Result<Self, Error> {
        let cache = BlobCache::open(&options.cache_dir, options.cache_max_bytes)?;
        let results = ResultCache::new(cache.results_dir().to_path_buf(), shared, metrics.clone());
        std::fs::create_dir_all(&options.scratch_root).map_err(|e| {
            Error::failed_precondition(format!(
                "cannot create scratch dir {}: {e}",
                options.scratch_root.display()
            ))
        })?;
        let allowed = options
            .allowed_registries
            .iter()
            .map(|r| normalize_host(r.trim(), "allowed_registries"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            options,
            clients: ClientPool::new(metrics.clone(), allowed.clone()),
            allowed,
            cache,
            results,
            verified: Default::default(),
            metrics,
        })
    }

    /// The options the pipeline runs with.
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// Bytes currently held by the blob cache.
    pub fn cache_bytes(&self) -> u64 {
        self.cache.total_bytes()
    }

    /// Validates a job before it takes a scan slot: reference, digest and platform syntax, the
    /// registry URL, the authorization value and the allowlist. Errors are INVALID_ARGUMENT (or
    /// PERMISSION_DENIED for a registry outside the allowlist). No network access.
    pub fn validate(&self, job: &ScanJob) -> Result<(), Error> {
        self.target(job).map(|_| ())
    }

    fn target(&self, job: &ScanJob) -> Result<Target, Error> {
        let target = resolve_target(&job.image, &job.registry_url, job.insecure)?;
        parse_authorization(&job.authorization)?;
        if !self.allowed.is_empty() && !self.allowed.contains(&target.image.registry) {
            return Err(Error::PermissionDenied(format!(
                "registry {} is not in this plugin's allowed registries",
                target.image.registry
            )));
        }
        Ok(target)
    }

    /// Runs one scan: resolve, pull, verify, feed `scanner`, merge.
    ///
    /// The plugin gets a copy of `ctx` whose [`ScanContext::scratch_dir`] is a fresh directory
    /// under `scratch_root`, removed when the scan ends however it ends (dropping the future
    /// included), and whose `cancel` token is also cancelled when the future is dropped.
    pub async fn scan(
        &self,
        scanner: &Arc<dyn Scanner>,
        job: &ScanJob,
        ctx: &ScanContext,
    ) -> Result<PipelineOutcome, Error> {
        let target = self.target(job)?;
        let creds = parse_authorization(&job.authorization)?;
        let session = Arc::new(self.clients.session(&target, &creds)?);
        let scratch = Arc::new(
            tempfile::Builder::new()
                .prefix("scan-")
                .tempdir_in(&self.options.scratch_root)
                .map_err(|e| {
                    Error::resource_exhausted(format!(
                        "cannot create a scratch dir under {}: {e}",
                        self.options.scratch_root.display()
                    ))
                })?,
        );
        let cancel = ctx.cancel.child_token();
        let _cancel_on_drop = cancel.clone().drop_guard();
        let mut scan_ctx = ctx.with_scratch_dir(scratch.path());
        scan_ctx.cancel = cancel.clone();
        let run = run::Run {
            options: &self.options,
            cache: self.cache.clone(),
            results: self.results.clone(),
            verified: self.verified.clone(),
            metrics: self.metrics.clone(),
            session,
            scanner: scanner.clone(),
            target,
            credentials: creds,
            platform: job.platform.clone(),
            ctx: scan_ctx,
            scratch,
            budget: crate::image::layer::Budget::new(self.options.limits),
            compressed_total: Default::default(),
            cancel,
        };
        let result = run.go().await;
        match result {
            Err(e) if ctx.cancel.is_cancelled() && !matches!(e, Error::Cancelled(_)) => {
                tracing::debug!(error = %e, "scan failed after cancellation");
                Err(Error::Cancelled("scan cancelled".into()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_job_debug_never_shows_the_authorization_value() {
        let job = ScanJob {
            image: "app:1".into(),
            authorization: "Basic c2VjcmV0OnBhc3N3b3Jk".into(),
            ..ScanJob::default()
        };
        let shown = format!("{job:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("app:1"),
            "{shown}"
        );
    }
}
