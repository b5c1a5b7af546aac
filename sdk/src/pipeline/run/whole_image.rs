//! Whole-image scans: a verified OCI layout, optionally with an unpacked rootfs
//! ([`Input::WholeImage`](crate::plugin::Input::WholeImage)) or with its new layers uncompressed
//! ([`Input::UncompressedLayout`](crate::plugin::Input::UncompressedLayout)), or a digest-pinned
//! reference the engine pulls itself
//! ([`Input::Remote`](crate::plugin::Input::Remote)); both through the whole-image result cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::uncompressed::UncompressedLayers;
use super::{Fetch, Leaf, PARALLEL_DOWNLOADS, Run, blob_digest, join_error, layer_infos};
use crate::context::{Phase, ProgressEvent, ScanContext};
use crate::error::Error;
use crate::image::cache::{self, BlobHandle};
use crate::image::layer::{Budget, LayerCheck, LayerFailure};
use crate::image::layout::{LayoutImage, write_layout};
use crate::image::manifest::{Descriptor, LayerFormat, PlatformSpec, layer_format};
use crate::image::unpack::{unpack_layer, verify_layer};
use crate::input::{ImageInput, RemoteImage};
use crate::metrics::CacheKind;
use crate::model::{Notice, Platform, ScanFindings};
use crate::pipeline::progress::Progress;

impl Run<'_> {
    /// Serves a whole-image scan from the result cache (keyed by scanner, engine version,
    /// manifest digest, report types and how the image was fed), or runs `scan` and stores its
    /// result when it is complete enough to cache.
    pub(super) async fn cached_image_result(
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
        let hit = self
            .results
            .load::<cache::CachedImageResult>(CacheKind::Image, &key, |_| true)
            .await;
        self.metrics.cache_lookup(CacheKind::Image, hit.is_some());
        if let Some(hit) = hit {
            tracing::debug!(manifest = %manifest_digest, "image result cache hit");
            return Ok(hit.into_findings());
        }
        let findings = scan.await?;
        if let Some(cacheable) = cache::CachedImageResult::from_findings(&findings) {
            self.results.store(&key, &cacheable).await;
        }
        Ok(findings)
    }

    /// Whole-image scan ([`Input::WholeImage`](crate::plugin::Input::WholeImage),
    /// [`Input::UncompressedLayout`](crate::plugin::Input::UncompressedLayout)): downloads the
    /// layers, unpacks them into a rootfs or verifies them beside the scanner (or, uncompressed,
    /// before it), writes the verified OCI layout and hands it over.
    pub(super) async fn scan_whole(
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
        let mut uncompressed = if image.uncompressed {
            Some(UncompressedLayers::create(base.join("uncompressed"))?)
        } else {
            None
        };
        let budget = self.budget.clone();
        let mut handles = Vec::new();
        // A layer that fails to download or unpack ends the scan; verifications already
        // started are stopped and awaited first, since one may be writing into the scratch dir.
        let gathered: Result<(), Error> = async {
            for ((i, digest, size), fetch) in wanted.into_iter().zip(fetches) {
                let (mut handle, mut fetched) = fetch.await.map_err(join_error)??;
                let layer_check = |path: &Path, fetched: bool| LayerCheck {
                    path: path.to_path_buf(),
                    format: layer_format(&image.layers[i].media_type),
                    digest: digest.clone(),
                    size,
                    diff_id: image.diff_ids[i].clone(),
                    hashed_at_download: fetched,
                };
                if let Some(root) = &rootfs {
                    progress.scanning(format!(
                        "unpacking layer {} of {}",
                        i + 1,
                        image.layers.len()
                    ));
                    let mut attempt = 0;
                    loop {
                        attempt += 1;
                        let check = layer_check(handle.path(), fetched);
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
                                (handle, fetched) =
                                    self.fetch_now(&digest, size, &progress).await?;
                            }
                            Err(f) => return Err(f.error),
                        }
                    }
                    progress.layer_done();
                } else {
                    if !fetched && !self.cache.verify(&handle, false).await? {
                        self.cache.invalidate(&digest);
                        (handle, fetched) = self.fetch_now(&digest, size, &progress).await?;
                    }
                    let check = layer_check(handle.path(), fetched);
                    let copy_to = match &mut uncompressed {
                        Some(dir) => dir.plan(i, &check, &self.verified),
                        None => None,
                    };
                    verifications.push(self.spawn_verification(check, &budget, copy_to));
                }
                handles.push((digest, handle));
            }
            Ok(())
        }
        .await;
        if let Err(e) = gathered {
            self.cancel.cancel();
            for verification in verifications {
                let _ = verification.await;
            }
            return Err(e);
        }
        // The first failure cancels the scan's other work; the remaining verifications are
        // still awaited, so none outlives the scan.
        let all_verified = async {
            let mut outcome = Ok(());
            for verification in verifications {
                let failed = match verification.await {
                    Ok(Ok(())) => None,
                    Ok(Err((failure, digest))) => {
                        if failure.cache_suspect {
                            self.cache.invalidate(&digest);
                            self.verified.forget(&digest);
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
        tokio::pin!(all_verified);
        // An uncompressed layout is complete only when every layer it holds uncompressed has
        // been read and verified: its scanner starts after every layer's verification.
        let rewritten = match &uncompressed {
            Some(dir) => {
                (&mut all_verified).await?;
                match dir.has_layers() {
                    true => Some(dir.manifest(&image.leaf.bytes)?),
                    false => None,
                }
            }
            None => None,
        };
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
            if let Some(dir) = &uncompressed {
                blobs.extend(dir.blobs());
            }
            let (manifest, manifest_digest) = match &rewritten {
                Some((bytes, digest)) => (bytes.as_slice(), digest.as_str()),
                None => (image.leaf.bytes.as_slice(), image.leaf.digest.as_str()),
            };
            let platform = image.leaf.index_platform.clone().or_else(|| {
                image.platform.as_ref().map(|p| PlatformSpec {
                    architecture: p.architecture.clone(),
                    os: p.os.clone(),
                    variant: (!p.variant.is_empty()).then(|| p.variant.clone()),
                })
            });
            let layout = LayoutImage {
                manifest,
                digest: manifest_digest,
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
        let scan = self.scanner.scan_image(&input, ctx);
        tokio::pin!(scan);
        // A layer that fails verification voids whatever the scanner made of it: its error wins,
        // and stops the scanner at once if it comes first.
        let scanned = if uncompressed.is_some() {
            scan.await
        } else {
            tokio::select! {
                biased;
                verified = &mut all_verified => {
                    verified?;
                    scan.await
                }
                scanned = &mut scan => {
                    all_verified.await?;
                    scanned
                }
            }
        };
        let mut findings = scanned?;
        findings.notices.extend(notices);
        drop(handles);
        Ok(findings)
    }

    /// Verifies one downloaded layer (digest, diff_id, limits) on a blocking thread, or replays
    /// the totals of a layer this process verified before
    /// ([`VerifiedLayers`](crate::image::layer::VerifiedLayers)). Unless it writes the layer
    /// uncompressed (`copy_to`), it writes nothing and does not hold the scratch dir: a scan that
    /// fails early removes its scratch dir at once, and the scan's cancellation (on return)
    /// stops the verification. A failure carries the layer's digest.
    fn spawn_verification(
        &self,
        check: LayerCheck,
        budget: &Arc<Budget>,
        copy_to: Option<PathBuf>,
    ) -> JoinHandle<Result<(), (LayerFailure, String)>> {
        let (budget, cancel, verified) =
            (budget.clone(), self.cancel.clone(), self.verified.clone());
        // Writing the uncompressed layer holds the scratch dir until the write ends.
        let scratch = copy_to.as_ref().map(|_| self.scratch.clone());
        tokio::task::spawn_blocking(move || {
            let result = verify_layer(&check, &budget, &cancel, &verified, copy_to.as_deref())
                .map_err(|failure| (failure, check.digest));
            drop(scratch);
            result
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

    /// Remote scan ([`Input::Remote`](crate::plugin::Input::Remote)): the engine pulls the digest-pinned image itself, through
    /// the whole-image result cache.
    pub(super) async fn scan_remote(
        &self,
        remote: RemoteLeaf<'_>,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        let leaf = remote.leaf;
        let image = RemoteImage {
            registry: self.target.image.registry.clone(),
            repository: self.target.image.repository.clone(),
            manifest_digest: leaf.digest.clone(),
            plain_http: self.target.plain_http,
            credentials: self.credentials.to_registry_credentials(),
            config_digest: remote.config_digest.to_string(),
            layers: layer_infos(remote.layers, remote.diff_ids),
            platform: remote.platform,
        };
        let scan = async {
            self.ctx.progress.report(ProgressEvent::phase(
                Phase::Scanning,
                format!("scanning image {} (the engine pulls it)", leaf.digest),
            ));
            self.scanner.scan_remote_image(&image, ctx).await
        };
        // The cache key's input kind keeps the variant's old name: renaming it would only void
        // the caches.
        self.cached_image_result(&leaf.digest, "registry", ctx, scan)
            .await
    }
}

/// What `scan_whole` needs about one image.
pub(super) struct WholeImage<'a> {
    pub(super) n: usize,
    pub(super) leaf: &'a Leaf,
    pub(super) layers: &'a [Descriptor],
    pub(super) diff_ids: &'a [String],
    pub(super) config_digest: &'a str,
    pub(super) config_handle: &'a BlobHandle,
    pub(super) platform: Option<Platform>,
    pub(super) rootfs: bool,
    /// Layers uncompressed in the layout ([`Input::UncompressedLayout`](crate::Input)).
    pub(super) uncompressed: bool,
}

/// What `scan_remote` needs about one image.
pub(super) struct RemoteLeaf<'a> {
    pub(super) leaf: &'a Leaf,
    pub(super) config_digest: &'a str,
    pub(super) layers: &'a [Descriptor],
    pub(super) diff_ids: &'a [String],
    pub(super) platform: Option<Platform>,
}
