//! The decode chain of one layer: cached blob file -> sha256 + byte count (the blob digest; only
//! the count for a blob this scan has just downloaded and hashed) -> gzip / zstd / plain ->
//! sha256 (the diff_id) + the budget's limits -> Go-compatible tar reader.

use std::cell::RefCell;
use std::io::{self, Read, Write as _};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use super::CHUNK;
use super::budget::Budget;
use super::tar::{TarError, TarReader};
use crate::error::Error;
use crate::image::error::Error as ImageError;
use crate::image::manifest::LayerFormat;

/// What [`ImageError::ChangedOnDisk`] names as the digest on disk of a blob hashed at download
/// whose size changed since.
pub(crate) const NOT_HASHED_AGAIN: &str = "(hashed at download, not again)";

struct Tally {
    /// `None` when the bytes are only counted (a blob hashed as it was downloaded).
    hasher: Option<Sha256>,
    bytes: u64,
}

type SharedTally = Rc<RefCell<Tally>>;

fn tally() -> SharedTally {
    counter(Some(Sha256::new()))
}

fn counter(hasher: Option<Sha256>) -> SharedTally {
    Rc::new(RefCell::new(Tally { hasher, bytes: 0 }))
}

impl Tally {
    fn add(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.hasher {
            h.update(bytes);
        }
        self.bytes += bytes.len() as u64;
    }

    /// `sha256:<hex>` of what passed, if it was hashed.
    fn digest(self) -> Option<String> {
        self.hasher
            .map(|h| format!("sha256:{}", hex::encode(h.finalize())))
    }
}

/// Hashes and counts what passes through.
struct Tee<R> {
    inner: R,
    tally: SharedTally,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tally.borrow_mut().add(&buf[..n]);
        Ok(n)
    }
}

/// The decompressed stream: hashes it (diff_id) and enforces the byte, ratio and cancellation
/// limits as bytes come out, so a bomb is stopped while inflating.
pub(crate) struct Guarded<R> {
    inner: R,
    tally: SharedTally,
    budget: Arc<Budget>,
    blob_size: u64,
    cancel: CancellationToken,
    /// Where the checked bytes are copied to, if anywhere (an uncompressed layout's layer).
    copy: Option<(io::BufWriter<std::fs::File>, PathBuf)>,
}

/// The error of a failed write of the uncompressed copy (a full disk is RESOURCE_EXHAUSTED).
fn copy_failure(path: &std::path::Path, e: io::Error) -> Error {
    ImageError::io("writing the uncompressed layer", "write", path, e).into()
}

impl<R> Guarded<R> {
    /// Flushes the copy, if any.
    fn flush_copy(&mut self) -> Result<(), Error> {
        match &mut self.copy {
            Some((copy, path)) => copy.flush().map_err(|e| copy_failure(path, e)),
            None => Ok(()),
        }
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(self.budget.trip(Error::Cancelled("scan cancelled".into())));
        }
        let n = self.inner.read(buf)?;
        let layer_total = {
            let mut t = self.tally.borrow_mut();
            t.add(&buf[..n]);
            t.bytes
        };
        self.budget
            .add_uncompressed(n as u64)
            .and_then(|()| self.budget.check_ratio(layer_total, self.blob_size))
            .map_err(|e| self.budget.trip(e))?;
        if let Some((copy, path)) = &mut self.copy {
            copy.write_all(&buf[..n])
                .map_err(|e| self.budget.trip(copy_failure(path, e)))?;
        }
        Ok(n)
    }
}

/// An opened layer: the tar reader plus the tallies to verify after reading it to the end.
pub(crate) struct OpenLayer {
    tar: TarReader<Guarded<Box<dyn Read>>>,
    compressed: Option<SharedTally>,
    uncompressed: SharedTally,
}

/// What to check a layer against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerCheck {
    /// Cached blob file.
    pub path: PathBuf,
    /// Compression.
    pub format: LayerFormat,
    /// Blob digest (`sha256:...`).
    pub digest: String,
    /// Blob size.
    pub size: u64,
    /// Expected diff_id (`sha256:...`).
    pub diff_id: String,
    /// This scan downloaded the blob just now and hashed it against `digest` as it was written
    /// (the cache then keeps it in a directory only this process writes): the decode chain only
    /// counts its bytes instead of hashing them a second time. False for every cache hit, whose
    /// bytes are hashed as they are read.
    pub hashed_at_download: bool,
}

/// Why reading a layer failed. `cache_suspect` means the cached blob may be corrupt: the caller
/// re-verifies it and downloads it again when it is.
#[derive(Debug, Clone)]
pub(crate) struct LayerFailure {
    /// The error to report if the cache is fine.
    pub error: Error,
    /// The blob file may be damaged.
    pub cache_suspect: bool,
}

impl From<Error> for LayerFailure {
    fn from(error: Error) -> Self {
        Self {
            error,
            cache_suspect: false,
        }
    }
}

impl From<ImageError> for LayerFailure {
    fn from(error: ImageError) -> Self {
        Error::from(error).into()
    }
}

impl OpenLayer {
    /// Opens the decode chain over a cached blob; with `copy`, every uncompressed byte that
    /// passes the limits is written there as well.
    pub(crate) fn open(
        check: &LayerCheck,
        budget: &Arc<Budget>,
        cancel: &CancellationToken,
        copy: Option<(std::fs::File, PathBuf)>,
    ) -> Result<Self, LayerFailure> {
        let file = std::fs::File::open(&check.path).map_err(|e| LayerFailure {
            error: Error::internal(format!(
                "cannot open cached blob {}: {e}",
                check.path.display()
            )),
            cache_suspect: true,
        })?;
        let compressed = counter((!check.hashed_at_download).then(Sha256::new));
        let tee = Tee {
            inner: file,
            tally: compressed.clone(),
        };
        let decoder: Box<dyn Read> = match check.format {
            LayerFormat::Gzip => Box::new(flate2::read::MultiGzDecoder::new(tee)),
            LayerFormat::Zstd => Box::new(zstd::stream::read::Decoder::new(tee).map_err(|e| {
                LayerFailure::from(Error::internal(format!("cannot start zstd decoder: {e}")))
            })?),
            LayerFormat::Tar => Box::new(io::BufReader::with_capacity(CHUNK, tee)),
            LayerFormat::NonDistributable | LayerFormat::Unsupported => {
                return Err(Error::internal("layer format is not readable").into());
            }
        };
        let uncompressed = tally();
        let guarded = Guarded {
            inner: decoder,
            tally: uncompressed.clone(),
            budget: budget.clone(),
            blob_size: check.size,
            cancel: cancel.clone(),
            copy: copy.map(|(f, path)| (io::BufWriter::with_capacity(4 * CHUNK, f), path)),
        };
        Ok(Self {
            tar: TarReader::new(guarded),
            compressed: Some(compressed),
            uncompressed,
        })
    }

    /// Opens an uncompressed tar stream that has no blob to verify (listing an archive).
    pub(crate) fn uncompressed(
        reader: Box<dyn Read>,
        budget: &Arc<Budget>,
        cancel: &CancellationToken,
    ) -> Self {
        let uncompressed = tally();
        let guarded = Guarded {
            inner: reader,
            tally: uncompressed.clone(),
            budget: budget.clone(),
            blob_size: 0,
            cancel: cancel.clone(),
            copy: None,
        };
        Self {
            tar: TarReader::new(guarded),
            compressed: None,
            uncompressed,
        }
    }

    /// The tar reader, for reading entries.
    pub(crate) fn tar(&mut self) -> &mut TarReader<Guarded<Box<dyn Read>>> {
        &mut self.tar
    }

    /// Reads the rest of the stream and checks the blob digest and the diff_id. Returns the
    /// layer's uncompressed size.
    pub(crate) fn finish(self, check: &LayerCheck, budget: &Budget) -> Result<u64, LayerFailure> {
        let mut rest = self.tar.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| read_failure(e, check, budget))?;
        rest.flush_copy()?;
        drop(rest);
        let c = self
            .compressed
            .ok_or_else(|| Error::internal("a listed archive has no blob to verify"))?;
        let c = Rc::try_unwrap(c)
            .map_err(|_| Error::internal("compressed tally still shared"))?
            .into_inner();
        let u = Rc::try_unwrap(self.uncompressed)
            .map_err(|_| Error::internal("uncompressed tally still shared"))?
            .into_inner();
        let bytes = c.bytes;
        let actual = c.digest();
        if bytes != check.size || actual.as_ref().is_some_and(|a| *a != check.digest) {
            return Err(LayerFailure {
                error: ImageError::ChangedOnDisk {
                    digest: check.digest.clone(),
                    actual: actual.unwrap_or_else(|| NOT_HASHED_AGAIN.into()),
                    bytes,
                }
                .into(),
                cache_suspect: true,
            });
        }
        let uncompressed_bytes = u.bytes;
        let diff_id = u
            .digest()
            .ok_or_else(|| Error::internal("the uncompressed stream was not hashed"))?;
        if diff_id != check.diff_id {
            return Err(ImageError::DiffIdMismatch {
                layer: check.digest.clone(),
                expected: check.diff_id.clone(),
                actual: diff_id,
            }
            .into());
        }
        Ok(uncompressed_bytes)
    }
}

/// Maps a tar reader error: a tripped limit or cancellation wins; an archive Go's reader would
/// read differently or not at all is refused with DataLoss (possibly a damaged cache file).
pub(crate) fn tar_failure(e: TarError, check: &LayerCheck, budget: &Budget) -> LayerFailure {
    match e {
        TarError::Io(e) => read_failure(e, check, budget),
        other => {
            if let Some(err) = budget.tripped() {
                return err.into();
            }
            LayerFailure {
                error: ImageError::Refused {
                    what: format!("layer {} ({:?})", check.digest, check.format),
                    why: other.to_string(),
                }
                .into(),
                cache_suspect: true,
            }
        }
    }
}

/// Maps a read error: a tripped limit or cancellation wins; otherwise the layer is undecodable
/// (DataLoss), which may be a damaged cache file.
pub(crate) fn read_failure(e: io::Error, check: &LayerCheck, budget: &Budget) -> LayerFailure {
    if let Some(err) = budget.tripped() {
        return err.into();
    }
    LayerFailure {
        error: ImageError::Unreadable {
            what: format!("layer {} ({:?})", check.digest, check.format),
            source: e,
        }
        .into(),
        cache_suspect: true,
    }
}
