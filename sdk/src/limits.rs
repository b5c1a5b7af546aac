//! Limits the SDK enforces on every image, advertised in `GetMetadata`.

/// Bounds on what one scan may pull and unpack. Zero means "no limit" for every field.
/// Exceeding any of them fails the scan with RESOURCE_EXHAUSTED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sum of the compressed sizes of all blobs of one image.
    pub max_image_bytes: u64,
    /// Sum of the uncompressed sizes of all layers of one image.
    pub max_uncompressed_bytes: u64,
    /// Entries (files, directories, links) across all layers of one image.
    pub max_entries: u64,
    /// Size of one file.
    pub max_file_bytes: u64,
    /// Uncompressed bytes per compressed byte of one layer (a decompression-bomb guard).
    pub max_compression_ratio: u32,
    /// Size of one manifest or index document.
    pub max_manifest_bytes: u64,
    /// Nesting depth of indexes (an index pointing to an index ...).
    pub max_index_depth: u32,
    /// Entries of one index, and images named by all the indexes of one request. The other
    /// limits hold for the request as a whole: the images of an index share one budget.
    pub max_index_entries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_image_bytes: 8 << 30,
            max_uncompressed_bytes: 16 << 30,
            max_entries: 1_000_000,
            max_file_bytes: 4 << 30,
            max_compression_ratio: 200,
            max_manifest_bytes: 4 << 20,
            max_index_depth: 4,
            max_index_entries: 64,
        }
    }
}
