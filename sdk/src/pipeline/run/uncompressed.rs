//! The layers an [`Input::UncompressedLayout`](crate::Input::UncompressedLayout) scan hands over
//! uncompressed: which ones, where their files go while they are verified, and the layout
//! manifest that names them by diff_id.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::image::layer::{LayerCheck, VerifiedLayers};
use crate::image::layout::uncompressed_manifest;
use crate::image::manifest::LayerFormat;
use crate::image::reference::{digest_hex, parse_digest};

/// One manifest layer handed over uncompressed.
struct Rewritten {
    /// Its index in the manifest's `layers`.
    index: usize,
    /// Its diff_id: the digest of the uncompressed file.
    diff_id: String,
    /// The uncompressed file in the scan's scratch dir.
    path: PathBuf,
}

/// The uncompressed layers of one image, written into a directory of the scan's scratch dir.
/// The compressed blobs stay in the layout as well (unreferenced blobs are valid there), so a
/// manifest entry that keeps the compressed form always finds its blob.
pub(super) struct UncompressedLayers {
    dir: PathBuf,
    layers: Vec<Rewritten>,
}

impl UncompressedLayers {
    /// Creates the directory the layers are written to.
    pub(super) fn create(dir: PathBuf) -> Result<Self, Error> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::resource_exhausted(format!("cannot create {}: {e}", dir.display()))
        })?;
        Ok(Self {
            dir,
            layers: Vec::new(),
        })
    }

    /// Whether layer `index` goes into the layout uncompressed, and if so the file its
    /// verification writes. A layer whose diff_id an earlier layer of the image already writes
    /// is handed over uncompressed too, sharing that file (`None`: nothing more to write).
    /// Otherwise a layer is handed over as pulled when it is not compressed, when this process
    /// verified it before (an engine's own per-layer cache, keyed by diff_id, then most likely
    /// has it, and reads nothing), or when its diff_id is not a well-formed digest (its
    /// verification fails with DATA_LOSS; no file is named after it).
    pub(super) fn plan(
        &mut self,
        index: usize,
        check: &LayerCheck,
        verified: &VerifiedLayers,
    ) -> Option<PathBuf> {
        if let Some(earlier) = self.layers.iter().find(|l| l.diff_id == check.diff_id) {
            let path = earlier.path.clone();
            self.layers.push(Rewritten {
                index,
                diff_id: check.diff_id.clone(),
                path,
            });
            return None;
        }
        if !matches!(check.format, LayerFormat::Gzip | LayerFormat::Zstd)
            || parse_digest(&check.diff_id).is_err()
            || verified.get(check).is_some()
        {
            return None;
        }
        let path = self.dir.join(digest_hex(&check.diff_id));
        self.layers.push(Rewritten {
            index,
            diff_id: check.diff_id.clone(),
            path: path.clone(),
        });
        Some(path)
    }

    /// Whether any layer goes into the layout uncompressed.
    pub(super) fn has_layers(&self) -> bool {
        !self.layers.is_empty()
    }

    /// The layout's manifest: `original` with the uncompressed layers named by diff_id, and its
    /// digest. Call once every layer's verification (which writes its file) has succeeded.
    pub(super) fn manifest(&self, original: &[u8]) -> Result<(Vec<u8>, String), Error> {
        let mut replaced = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let size = std::fs::metadata(&layer.path)
                .map_err(|e| {
                    Error::internal(format!("uncompressed layer {}: {e}", layer.path.display()))
                })?
                .len();
            replaced.push((layer.index, layer.diff_id.clone(), size));
        }
        uncompressed_manifest(original, &replaced)
    }

    /// The uncompressed layer files, by digest (their diff_id), for the layout.
    pub(super) fn blobs(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.layers
            .iter()
            .map(|l| (l.diff_id.as_str(), l.path.as_path()))
    }
}
