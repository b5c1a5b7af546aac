//! The image pipeline: resolve a reference, pull and verify manifests and blobs through the blob
//! cache, and feed the plugin layers, a whole image or artifact blobs.

use std::path::PathBuf;
use std::sync::Arc;

use crate::context::ScanContext;
use crate::error::Error;
use crate::limits::Limits;
use crate::model::{Platform, ScanFindings};
use crate::plugin::Scanner;

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

/// What the caller asked to scan.
#[derive(Debug, Clone, Default)]
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
#[derive(Debug)]
pub struct Pipeline {
    options: PipelineOptions,
}

impl Pipeline {
    /// A pipeline with `options`; creates the cache directory.
    pub fn new(options: PipelineOptions) -> Result<Self, Error> {
        std::fs::create_dir_all(&options.cache_dir).map_err(|e| {
            Error::failed_precondition(format!(
                "cannot create cache dir {}: {e}",
                options.cache_dir.display()
            ))
        })?;
        Ok(Self { options })
    }

    /// The options the pipeline runs with.
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    /// Validates a job before it takes a scan slot: reference, digest and platform syntax, the
    /// registry URL and the allowlist. Errors are INVALID_ARGUMENT (or PERMISSION_DENIED for a
    /// registry outside the allowlist).
    pub fn validate(&self, job: &ScanJob) -> Result<(), Error> {
        if job.image.trim().is_empty() {
            return Err(Error::invalid_argument("image reference is empty"));
        }
        Ok(())
    }

    /// Runs one scan: resolve, pull, verify, feed `scanner`, merge.
    pub async fn scan(
        &self,
        scanner: &Arc<dyn Scanner>,
        job: &ScanJob,
        ctx: &ScanContext,
    ) -> Result<PipelineOutcome, Error> {
        let _ = (scanner, job, ctx);
        Err(Error::internal("image pipeline not wired yet"))
    }
}
