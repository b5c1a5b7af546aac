//! Per-layer scans ([`Input::PerLayer`](crate::plugin::Input::PerLayer)): each layer's entries
//! streamed to the scanner while the layer is verified, through the per-layer result cache.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{Fetch, PARALLEL_DOWNLOADS, Run, blob_digest, join_error};
use crate::context::ScanContext;
use crate::error::Error;
use crate::image::cache::{self, BlobHandle, CachedLayerResult, LayerIdentity};
use crate::image::layer::{Budget, LayerCheck, LayerFailure, spawn_walk};
use crate::image::manifest::{Descriptor, layer_format};
use crate::input::{Layer, LayerInfo};
use crate::metrics::CacheKind;
use crate::model::{Notice, ScanFindings};
use crate::pipeline::progress::Progress;

impl Run<'_> {
    /// Scans an image's layers one by one: cached results are reused, the others are
    /// downloaded (a few at once) and walked in order; a complete result is cached.
    pub(super) async fn scan_layers(
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
            let hit = self
                .results
                .load::<CachedLayerResult>(CacheKind::Layer, &key, |c| c.matches(identity))
                .await
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
                    let (handle, fetched) = fetch.await.map_err(join_error)??;
                    progress.scanning(format!(
                        "scanning layer {} of {} ({})",
                        i + 1,
                        layers.len(),
                        info.digest
                    ));
                    let f = self
                        .scan_one_layer(info, (handle, fetched), &budget, &progress, ctx)
                        .await?;
                    if f.documents.is_empty() {
                        // Stored only now: the walk verified the layer against this diff_id.
                        let cached = CachedLayerResult {
                            verified_diff_id: info_diff_id,
                            media_type: layer.media_type.trim().to_ascii_lowercase(),
                            findings: f.clone(),
                        };
                        self.results.store(&keys[i], &cached).await;
                    }
                    out.extend(f);
                }
            }
            progress.layer_done();
        }
        Ok(out)
    }

    /// Feeds one downloaded layer to the scanner while the walk verifies it; a failure that
    /// may come from a corrupt cache entry is retried once with the blob downloaded again.
    /// `fetched`: this scan just downloaded (and hashed) the blob.
    async fn scan_one_layer(
        &self,
        info: LayerInfo,
        (mut handle, mut fetched): (BlobHandle, bool),
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
                hashed_at_download: fetched,
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
                    (handle, fetched) = self.fetch_now(&info.digest, info.size, progress).await?;
                }
                Err(f) => return Err(f.error),
            }
        }
    }
}
