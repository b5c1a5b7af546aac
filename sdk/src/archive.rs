//! What the SDK reads from a layer archive: the entries a container runtime would extract, as
//! the SDK hands them to a scanner.
//!
//! The SDK reads tar the way Go's `archive/tar` does (the parser containerd, Docker and BuildKit
//! extract layers with) and places entries the way containerd does: paths are confined to the
//! root (`../../evil` is `/evil`), whiteouts are recognised by name, header-only types have no
//! data, and archives a runtime would refuse or that are ambiguous (sparse entries, unknown
//! types, malformed headers, whiteouts that carry data) are refused with DATA_LOSS. Nothing a
//! runtime would extract goes unscanned. [`list_tar`] runs that same code on one uncompressed
//! archive: for tools, plugin authors, and the differential test against Go's reader.

use sha2::{Digest as _, Sha256};

pub use crate::image::layer::PARSER_GENERATION;
use crate::image::layer::{Budget, LayerEntries, display_path};
use crate::{EntryKind, Error, Limits};

/// One entry of an archive as the SDK reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedEntry {
    /// Absolute, normalised path (lossy UTF-8). For a whiteout, the path it deletes; for an
    /// opaque whiteout, the directory it empties.
    pub path: String,
    /// The same path as raw bytes (`/`-separated, leading `/`).
    pub raw_path: Vec<u8>,
    /// What the entry is.
    pub kind: EntryKind,
    /// Body size (files only; 0 otherwise).
    pub size: u64,
    /// Lowercase hex sha256 of the body (files only).
    pub sha256: Option<String>,
    /// Symlink target as written, or a hard link's normalised absolute target.
    pub link_target: Option<String>,
}

/// Lists what the SDK's layer reader yields for one uncompressed tar archive, reading every body.
///
/// # Errors
/// DATA_LOSS when the archive is malformed, ambiguous or of a kind runtimes refuse;
/// RESOURCE_EXHAUSTED when it is over `limits`.
pub fn list_tar(tar: &[u8], limits: Limits) -> Result<Vec<ListedEntry>, Error> {
    let budget = Budget::new(limits);
    let reader: Box<dyn std::io::Read> = Box::new(std::io::Cursor::new(tar.to_vec()));
    let mut entries = LayerEntries::uncompressed(reader, &budget);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    while let Some(item) = entries.next_item().map_err(|f| f.error)? {
        let mut raw_path = Vec::new();
        for c in &item.components {
            raw_path.push(b'/');
            raw_path.extend_from_slice(c);
        }
        if raw_path.is_empty() {
            raw_path.push(b'/');
        }
        let sha256 = if item.kind == EntryKind::File {
            let mut hasher = Sha256::new();
            loop {
                let n = entries.read_body(&mut buf).map_err(|f| f.error)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Some(hex::encode(hasher.finalize()))
        } else {
            None
        };
        out.push(ListedEntry {
            path: display_path(&item.components),
            raw_path,
            kind: item.kind,
            size: item.size,
            sha256,
            link_target: item.link.map(|l| String::from_utf8_lossy(&l).into_owned()),
        });
    }
    Ok(out)
}
