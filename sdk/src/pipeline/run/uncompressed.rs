//! The layers an [`Input::UncompressedLayout`](crate::Input::UncompressedLayout) scan hands over
//! uncompressed: which ones, where their files go while they are verified, and the layout
//! manifest that names them by diff_id.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::image::layer::{LayerCheck, VerifiedLayers};
use crate::image::layout::uncompressed_manifest;
use crate::image::manifest::LayerFormat;
use crate::image::reference::{digest_hex, parse_digest};

/// The uncompressed layers of one image, written into a directory of the scan's scratch dir.
pub(super) struct UncompressedLayers {
    dir: PathBuf,
    /// Layer index in the manifest, diff_id, file, and the compressed blob it replaces.
    layers: Vec<(usize, String, PathBuf, String)>,
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
    /// verification writes (`None` as well when an earlier layer of the image with the same
    /// diff_id writes it). A layer is handed over as pulled when it is not compressed, when this
    /// process verified it before (an engine's own per-layer cache, keyed by diff_id, then
    /// most likely has it, and reads nothing), or when its diff_id is not a well-formed digest
    /// (its verification fails with DATA_LOSS; no file is named after it).
    pub(super) fn plan(
        &mut self,
        index: usize,
        check: &LayerCheck,
        verified: &VerifiedLayers,
    ) -> Option<PathBuf> {
        if !matches!(check.format, LayerFormat::Gzip | LayerFormat::Zstd)
            || parse_digest(&check.diff_id).is_err()
            || verified.get(check).is_some()
        {
            return None;
        }
        let path = self.dir.join(digest_hex(&check.diff_id));
        let first = !self.layers.iter().any(|(_, d, ..)| *d == check.diff_id);
        self.layers.push((
            index,
            check.diff_id.clone(),
            path.clone(),
            check.digest.clone(),
        ));
        first.then_some(path)
    }

    /// Whether any layer goes into the layout uncompressed.
    pub(super) fn has_layers(&self) -> bool {
        !self.layers.is_empty()
    }

    /// The layout's manifest: `original` with the uncompressed layers named by diff_id, and its
    /// digest. Call once every layer's verification (which writes its file) has succeeded.
    pub(super) fn manifest(&self, original: &[u8]) -> Result<(Vec<u8>, String), Error> {
        let mut replaced = Vec::with_capacity(self.layers.len());
        for (index, diff_id, path, _) in &self.layers {
            let size = std::fs::metadata(path)
                .map_err(|e| {
                    Error::internal(format!("uncompressed layer {}: {e}", path.display()))
                })?
                .len();
            replaced.push((*index, diff_id.clone(), size));
        }
        uncompressed_manifest(original, &replaced)
    }

    /// The uncompressed layer files, by digest (their diff_id), for the layout.
    pub(super) fn blobs(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.layers
            .iter()
            .map(|(_, diff_id, path, _)| (diff_id.as_str(), path.as_path()))
    }

    /// Whether the compressed blob `digest` is replaced by its uncompressed stream.
    pub(super) fn replaces(&self, digest: &str) -> bool {
        self.layers.iter().any(|(.., d)| d == digest)
    }
}
