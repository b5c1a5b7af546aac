//! The image-wide budget: entry, file-size and uncompressed-byte limits shared by all layers of
//! one image, and the first limit (or cancellation) that stopped a read.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::RATIO_FLOOR;
use crate::error::Error;
use crate::image::error::Error as ImageError;
use crate::limits::Limits;

/// Image-wide counters for the limits, shared by all layers of one image.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(super) limits: Limits,
    entries: AtomicU64,
    pub(super) uncompressed: AtomicU64,
    tripped: Mutex<Option<Error>>,
}

impl Budget {
    /// A fresh budget.
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            entries: AtomicU64::new(0),
            uncompressed: AtomicU64::new(0),
            tripped: Mutex::new(None),
        })
    }

    /// Counts one entry.
    pub(crate) fn add_entry(&self) -> Result<(), Error> {
        self.add_entries(1)
    }

    /// Counts `count` entries at once (a verified layer's totals replayed).
    pub(crate) fn add_entries(&self, count: u64) -> Result<(), Error> {
        let n = self.entries.fetch_add(count, Ordering::Relaxed) + count;
        if self.limits.max_entries > 0 && n > self.limits.max_entries {
            return Err(Error::resource_exhausted(format!(
                "image has more than {} entries (files, directories, links)",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    /// Checks one file's size.
    pub(crate) fn check_file(&self, size: u64, path: &str) -> Result<(), Error> {
        if self.limits.max_file_bytes > 0 && size > self.limits.max_file_bytes {
            return Err(ImageError::Limit {
                what: format!("file {path} is {size} bytes"),
                max: self.limits.max_file_bytes,
            }
            .into());
        }
        Ok(())
    }

    /// Counts uncompressed bytes against the image-wide limit.
    pub(super) fn add_uncompressed(&self, n: u64) -> Result<(), Error> {
        let total = self.uncompressed.fetch_add(n, Ordering::Relaxed) + n;
        if self.limits.max_uncompressed_bytes > 0 && total > self.limits.max_uncompressed_bytes {
            return Err(Error::resource_exhausted(format!(
                "image unpacks to more than {} bytes",
                self.limits.max_uncompressed_bytes
            )));
        }
        Ok(())
    }

    /// Checks one layer's compression ratio: `layer_total` uncompressed bytes so far from a blob
    /// of `blob_size` bytes. Layers under [`RATIO_FLOOR`] bytes are not checked.
    pub(super) fn check_ratio(&self, layer_total: u64, blob_size: u64) -> Result<(), Error> {
        let ratio = u64::from(self.limits.max_compression_ratio);
        if ratio > 0
            && layer_total > RATIO_FLOOR
            && layer_total > ratio.saturating_mul(blob_size.max(1))
        {
            return Err(Error::resource_exhausted(format!(
                "layer expands more than {ratio} times its compressed size of {blob_size} bytes (decompression bomb?)"
            )));
        }
        Ok(())
    }

    /// The counters now, to [`rewind`](Self::rewind) to when a layer is read again.
    pub(crate) fn checkpoint(&self) -> (u64, u64) {
        (
            self.entries.load(Ordering::Relaxed),
            self.uncompressed.load(Ordering::Relaxed),
        )
    }

    /// Resets the counters (and a tripped limit) to a checkpoint.
    pub(crate) fn rewind(&self, (entries, uncompressed): (u64, u64)) {
        self.entries.store(entries, Ordering::Relaxed);
        self.uncompressed.store(uncompressed, Ordering::Relaxed);
        *self.tripped.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records `e` as the reason of a failed read and returns an io error to unwind with.
    pub(super) fn trip(&self, e: Error) -> io::Error {
        let carried = io::Error::other(e.clone());
        let mut slot = self.tripped.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        carried
    }

    /// The limit or cancellation that stopped a read, if any.
    pub(crate) fn tripped(&self) -> Option<Error> {
        self.tripped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
