//! Reading layer blobs: the decode chain (file -> hash -> gzip/zstd/plain -> hash + limits -> tar),
//! entry classification (normalised paths, whiteouts, special files), and the streaming walk that
//! feeds [`crate::input::Layer`] without unpacking to disk.
//!
//! The walk runs on a blocking thread and talks to the async side over one bounded channel that
//! carries entry headers and body chunks in archive order; an unread body is skipped when the
//! plugin asks for the next entry. After the last entry the thread drains the decompressor to the
//! end, so the layer's diff_id (sha256 of the whole uncompressed tar) and the blob's digest are
//! checked before `next_entry` returns `None`.

use std::cell::RefCell;
use std::io::{self, Read};
#[cfg(test)]
use std::path::Path;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::manifest::LayerFormat;
use crate::error::Error;
use crate::input::{Entry, EntryKind, EntrySource};
use crate::limits::Limits;
use crate::model::{Notice, notice_codes};

/// Below this many uncompressed bytes the compression ratio is not checked (tiny layers of
/// empty files compress extremely well and are harmless).
const RATIO_FLOOR: u64 = 8 << 20;
/// Size of body chunks sent to the plugin.
const CHUNK: usize = 64 << 10;
/// Channel depth (messages); bounds memory to about `DEPTH * CHUNK`.
const DEPTH: usize = 8;

/// Image-wide counters for the limits, shared by all layers of one image.
#[derive(Debug)]
pub(crate) struct Budget {
    limits: Limits,
    entries: AtomicU64,
    uncompressed: AtomicU64,
    tripped: Mutex<Option<Error>>,
}

impl Budget {
    /// A fresh budget.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            entries: AtomicU64::new(0),
            uncompressed: AtomicU64::new(0),
            tripped: Mutex::new(None),
        })
    }

    /// Counts one entry.
    pub fn add_entry(&self) -> Result<(), Error> {
        let n = self.entries.fetch_add(1, Ordering::Relaxed) + 1;
        if self.limits.max_entries > 0 && n > self.limits.max_entries {
            return Err(Error::resource_exhausted(format!(
                "image has more than {} entries (files, directories, links)",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    /// Checks one file's size.
    pub fn check_file(&self, size: u64, path: &str) -> Result<(), Error> {
        if self.limits.max_file_bytes > 0 && size > self.limits.max_file_bytes {
            return Err(Error::resource_exhausted(format!(
                "file {path} is {size} bytes, over the limit of {}",
                self.limits.max_file_bytes
            )));
        }
        Ok(())
    }

    fn add_uncompressed(&self, n: u64) -> Result<(), Error> {
        let total = self.uncompressed.fetch_add(n, Ordering::Relaxed) + n;
        if self.limits.max_uncompressed_bytes > 0 && total > self.limits.max_uncompressed_bytes {
            return Err(Error::resource_exhausted(format!(
                "image unpacks to more than {} bytes",
                self.limits.max_uncompressed_bytes
            )));
        }
        Ok(())
    }

    /// The counters now, to [`rewind`](Self::rewind) to when a layer is read again.
    pub fn checkpoint(&self) -> (u64, u64) {
        (
            self.entries.load(Ordering::Relaxed),
            self.uncompressed.load(Ordering::Relaxed),
        )
    }

    /// Resets the counters (and a tripped limit) to a checkpoint.
    pub fn rewind(&self, (entries, uncompressed): (u64, u64)) {
        self.entries.store(entries, Ordering::Relaxed);
        self.uncompressed.store(uncompressed, Ordering::Relaxed);
        *self.tripped.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records `e` as the reason of a failed read and returns an io error to unwind with.
    fn trip(&self, e: Error) -> io::Error {
        let carried = io::Error::other(e.clone());
        let mut slot = self.tripped.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        carried
    }

    /// The limit or cancellation that stopped a read, if any.
    pub fn tripped(&self) -> Option<Error> {
        self.tripped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

struct Tally {
    hasher: Sha256,
    bytes: u64,
}

type SharedTally = Rc<RefCell<Tally>>;

fn tally() -> SharedTally {
    Rc::new(RefCell::new(Tally {
        hasher: Sha256::new(),
        bytes: 0,
    }))
}

/// Hashes and counts what passes through.
struct Tee<R> {
    inner: R,
    tally: SharedTally,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut t = self.tally.borrow_mut();
        t.hasher.update(&buf[..n]);
        t.bytes += n as u64;
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
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(self.budget.trip(Error::Cancelled("scan cancelled".into())));
        }
        let n = self.inner.read(buf)?;
        let layer_total = {
            let mut t = self.tally.borrow_mut();
            t.hasher.update(&buf[..n]);
            t.bytes += n as u64;
            t.bytes
        };
        self.budget
            .add_uncompressed(n as u64)
            .map_err(|e| self.budget.trip(e))?;
        let ratio = u64::from(self.budget.limits.max_compression_ratio);
        if ratio > 0
            && layer_total > RATIO_FLOOR
            && layer_total > ratio.saturating_mul(self.blob_size.max(1))
        {
            return Err(self.budget.trip(Error::resource_exhausted(format!(
                "layer expands more than {ratio} times its compressed size of {} bytes (decompression bomb?)",
                self.blob_size
            ))));
        }
        Ok(n)
    }
}

/// An opened layer: the tar archive plus the tallies to verify after reading it to the end.
pub(crate) struct OpenLayer {
    archive: tar::Archive<Guarded<Box<dyn Read>>>,
    compressed: SharedTally,
    uncompressed: SharedTally,
}

/// What to check a layer against.
#[derive(Debug, Clone)]
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

impl OpenLayer {
    /// Opens the decode chain over a cached blob.
    pub fn open(
        check: &LayerCheck,
        budget: &Arc<Budget>,
        cancel: &CancellationToken,
    ) -> Result<Self, LayerFailure> {
        let file = std::fs::File::open(&check.path).map_err(|e| LayerFailure {
            error: Error::internal(format!(
                "cannot open cached blob {}: {e}",
                check.path.display()
            )),
            cache_suspect: true,
        })?;
        let compressed = tally();
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
        };
        let mut archive = tar::Archive::new(guarded);
        archive.set_ignore_zeros(false);
        Ok(Self {
            archive,
            compressed,
            uncompressed,
        })
    }

    /// The archive, for iterating entries.
    pub fn archive(&mut self) -> &mut tar::Archive<Guarded<Box<dyn Read>>> {
        &mut self.archive
    }

    /// Reads the rest of the stream and checks the blob digest and the diff_id.
    pub fn finish(self, check: &LayerCheck, budget: &Budget) -> Result<(), LayerFailure> {
        let mut rest = self.archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| read_failure(e, check, budget))?;
        drop(rest);
        let c = Rc::try_unwrap(self.compressed)
            .map_err(|_| Error::internal("compressed tally still shared"))?
            .into_inner();
        let u = Rc::try_unwrap(self.uncompressed)
            .map_err(|_| Error::internal("uncompressed tally still shared"))?
            .into_inner();
        let blob_hex = hex::encode(c.hasher.finalize());
        if c.bytes != check.size || format!("sha256:{blob_hex}") != check.digest {
            return Err(LayerFailure {
                error: Error::data_loss(format!(
                    "cached blob {} changed on disk (sha256:{blob_hex}, {} bytes)",
                    check.digest, c.bytes
                )),
                cache_suspect: true,
            });
        }
        let diff_id = format!("sha256:{}", hex::encode(u.hasher.finalize()));
        if diff_id != check.diff_id {
            return Err(Error::data_loss(format!(
                "layer {}: uncompressed content hash {diff_id} does not match the config's diff_id {}",
                check.digest, check.diff_id
            ))
            .into());
        }
        Ok(())
    }
}

/// Maps a read error: a tripped limit or cancellation wins; otherwise the layer is undecodable
/// (DataLoss), which may be a damaged cache file.
pub(crate) fn read_failure(e: io::Error, check: &LayerCheck, budget: &Budget) -> LayerFailure {
    if let Some(err) = budget.tripped() {
        return err.into();
    }
    LayerFailure {
        error: Error::data_loss(format!(
            "layer {} ({:?}) cannot be read as a tar archive: {e}",
            check.digest, check.format
        )),
        cache_suspect: true,
    }
}

/// What an archive entry is, after normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Classified {
    /// An entry to report / apply. `components` is the normalised path below the root.
    Item {
        /// Kind.
        kind: EntryKind,
        /// Normalised path components (never empty, no `.`/`..`).
        components: Vec<Vec<u8>>,
        /// Link target: raw for symlinks, normalised components joined for hard links.
        link: Option<Vec<u8>>,
        /// Hard-link target components.
        link_components: Vec<Vec<u8>>,
    },
    /// Skipped with a notice (code, message, path).
    Skip(Notice),
    /// Skipped silently (root dir, pax globals, aufs metadata).
    Ignore,
}

/// Splits a tar path into normalised components; `None` when `..` climbs above the root.
pub(crate) fn normalize(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c.to_vec()),
        }
    }
    Some(out)
}

/// Absolute display path of components.
pub(crate) fn display_path(components: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for c in components {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(c));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// Classifies one tar entry header.
pub(crate) fn classify(
    entry_type: tar::EntryType,
    path: &[u8],
    link_name: Option<&[u8]>,
) -> Classified {
    let shown = String::from_utf8_lossy(path).into_owned();
    let Some(mut components) = normalize(path) else {
        return Classified::Skip(
            Notice::new(
                notice_codes::UNSAFE_PATH_SKIPPED,
                format!("entry {shown:?} escapes the root with '..'"),
            )
            .at_path(shown),
        );
    };
    use tar::EntryType as T;
    let kind = match entry_type {
        T::Regular | T::Continuous | T::GNUSparse => EntryKind::File,
        T::Directory => EntryKind::Directory,
        T::Symlink => EntryKind::Symlink,
        T::Link => EntryKind::Hardlink,
        T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {
            return Classified::Ignore;
        }
        other => {
            let what = match other {
                T::Char => "character device",
                T::Block => "block device",
                T::Fifo => "fifo",
                _ => "unsupported entry type",
            };
            return Classified::Skip(
                Notice::new(
                    notice_codes::SPECIAL_FILE_SKIPPED,
                    format!("{what} not scanned"),
                )
                .at_path(display_path(&components)),
            );
        }
    };
    let Some(name) = components.last().cloned() else {
        return Classified::Ignore; // the root directory itself
    };
    if let Some(rest) = name.strip_prefix(b".wh.") {
        components.pop();
        if rest == b".wh..opq" {
            return Classified::Item {
                kind: EntryKind::OpaqueWhiteout,
                components,
                link: None,
                link_components: Vec::new(),
            };
        }
        if rest.starts_with(b".wh.") || rest.is_empty() || rest == b"." || rest == b".." {
            return Classified::Ignore; // aufs metadata (.wh..wh.plnk, ...)
        }
        components.push(rest.to_vec());
        return Classified::Item {
            kind: EntryKind::Whiteout,
            components,
            link: None,
            link_components: Vec::new(),
        };
    }
    match kind {
        EntryKind::Symlink => Classified::Item {
            kind,
            components,
            link: Some(link_name.unwrap_or_default().to_vec()),
            link_components: Vec::new(),
        },
        EntryKind::Hardlink => {
            let target = link_name.unwrap_or_default();
            match normalize(target) {
                Some(t) if !t.is_empty() => Classified::Item {
                    kind,
                    link: Some(display_path(&t).into_bytes()),
                    components,
                    link_components: t,
                },
                _ => Classified::Skip(
                    Notice::new(
                        notice_codes::UNSAFE_PATH_SKIPPED,
                        format!(
                            "hard link to {:?} escapes the root",
                            String::from_utf8_lossy(target)
                        ),
                    )
                    .at_path(display_path(&components)),
                ),
            }
        }
        _ => Classified::Item {
            kind,
            components,
            link: None,
            link_components: Vec::new(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming walk
// ---------------------------------------------------------------------------------------------

struct Header {
    path: String,
    kind: EntryKind,
    size: u64,
    mode: u32,
    link_target: Option<String>,
}

enum Msg {
    Header(Header),
    Chunk(Bytes),
    EndBody,
    Done(Vec<Notice>),
    Failed(LayerFailure),
}

/// Outcome of a finished walk.
pub(crate) type WalkResult = Result<Vec<Notice>, LayerFailure>;

struct Shared {
    rx: mpsc::Receiver<Msg>,
    /// Sequence number of the current entry (1-based).
    seq: u64,
    /// The current entry's body is still being delivered.
    in_body: bool,
    leftover: Bytes,
    /// A message received while reading a body that belongs to what follows.
    pending: Option<Msg>,
    finished: Option<WalkResult>,
}

impl Shared {
    fn poll_msg(&mut self, cx: &mut Context<'_>) -> Poll<Msg> {
        if let Some(m) = self.pending.take() {
            return Poll::Ready(m);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(m)) => Poll::Ready(m),
            Poll::Ready(None) => Poll::Ready(Msg::Failed(
                Error::internal("layer reader stopped without a result").into(),
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Drives to the next header, skipping the rest of the current body.
    fn poll_next_header(
        &mut self,
        cx: &mut Context<'_>,
        skip: &AtomicU64,
    ) -> Poll<Result<Option<Header>, Error>> {
        loop {
            if let Some(done) = &self.finished {
                return Poll::Ready(match done {
                    Ok(_) => Ok(None),
                    Err(f) => Err(f.error.clone()),
                });
            }
            if self.in_body {
                skip.store(self.seq, Ordering::Relaxed);
                self.leftover = Bytes::new();
            }
            match std::task::ready!(self.poll_msg(cx)) {
                Msg::Chunk(_) => {}
                Msg::EndBody => self.in_body = false,
                Msg::Header(h) => {
                    self.seq += 1;
                    self.in_body = h.kind == EntryKind::File;
                    return Poll::Ready(Ok(Some(h)));
                }
                Msg::Done(notices) => {
                    self.in_body = false;
                    self.finished = Some(Ok(notices));
                }
                Msg::Failed(f) => {
                    self.in_body = false;
                    self.finished = Some(Err(f));
                }
            }
        }
    }
}

/// The async side of a walk: the [`EntrySource`] of a [`crate::input::Layer`], plus
/// [`WalkHandle::finish`] for the pipeline.
#[derive(Clone)]
pub(crate) struct WalkHandle {
    shared: Arc<Mutex<Shared>>,
    skip: Arc<AtomicU64>,
    cancel: CancellationToken,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl WalkHandle {
    async fn next(&self) -> Result<Option<Entry>, Error> {
        let header = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Err(Error::Cancelled("scan cancelled".into())),
            h = futures::future::poll_fn(|cx| lock(&self.shared).poll_next_header(cx, &self.skip)) => h?,
        };
        let Some(h) = header else { return Ok(None) };
        let seq = lock(&self.shared).seq;
        let body: Pin<Box<dyn AsyncRead + Send>> = if h.kind == EntryKind::File {
            Box::pin(Body {
                shared: self.shared.clone(),
                seq,
            })
        } else {
            Box::pin(tokio::io::empty())
        };
        Ok(Some(Entry {
            path: h.path,
            kind: h.kind,
            size: h.size,
            mode: h.mode,
            link_target: h.link_target,
            body,
        }))
    }

    /// The walk's failure, if it already failed.
    pub fn failure(&self) -> Option<LayerFailure> {
        match &lock(&self.shared).finished {
            Some(Err(f)) => Some(f.clone()),
            _ => None,
        }
    }

    /// Walks whatever the plugin left unread and returns the walk's result: the SDK's notices,
    /// or the failure (limits, DataLoss on a digest or diff_id mismatch, cancellation).
    pub async fn finish(&self) -> WalkResult {
        loop {
            let next = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(Error::Cancelled("scan cancelled".into()).into()),
                h = futures::future::poll_fn(|cx| lock(&self.shared).poll_next_header(cx, &self.skip)) => h,
            };
            match next {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        lock(&self.shared)
            .finished
            .clone()
            .unwrap_or_else(|| Err(Error::internal("layer walk did not finish").into()))
    }
}

impl EntrySource for WalkHandle {
    fn next_entry(&mut self) -> BoxFuture<'_, Result<Option<Entry>, Error>> {
        Box::pin(self.next())
    }
}

/// The body of the current entry.
struct Body {
    shared: Arc<Mutex<Shared>>,
    seq: u64,
}

impl AsyncRead for Body {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = lock(&self.shared);
        if s.seq != self.seq || !s.in_body {
            return Poll::Ready(Ok(())); // an old entry, or fully read: EOF
        }
        loop {
            if !s.leftover.is_empty() {
                let n = s.leftover.len().min(buf.remaining());
                let chunk = s.leftover.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match std::task::ready!(s.poll_msg(cx)) {
                Msg::Chunk(c) => s.leftover = c,
                Msg::EndBody => {
                    s.in_body = false;
                    return Poll::Ready(Ok(()));
                }
                Msg::Failed(f) => {
                    let carried = io::Error::other(f.error.clone());
                    s.in_body = false;
                    s.finished = Some(Err(f));
                    return Poll::Ready(Err(carried));
                }
                other => {
                    s.in_body = false;
                    s.pending = Some(other);
                    return Poll::Ready(Err(io::Error::other(Error::internal(
                        "layer entry body ended early",
                    ))));
                }
            }
        }
    }
}

/// Starts walking a cached, verified layer blob on a blocking thread.
pub(crate) fn spawn_walk(
    check: LayerCheck,
    budget: Arc<Budget>,
    cancel: CancellationToken,
) -> WalkHandle {
    let (tx, rx) = mpsc::channel(DEPTH);
    let skip = Arc::new(AtomicU64::new(0));
    let handle = WalkHandle {
        shared: Arc::new(Mutex::new(Shared {
            rx,
            seq: 0,
            in_body: false,
            leftover: Bytes::new(),
            pending: None,
            finished: None,
        })),
        skip: skip.clone(),
        cancel: cancel.clone(),
    };
    tokio::task::spawn_blocking(move || {
        let result = walk_blocking(&check, &budget, &cancel, &tx, &skip);
        let msg = match result {
            Ok(notices) => Msg::Done(notices),
            Err(f) => Msg::Failed(f),
        };
        let _ = tx.blocking_send(msg);
    });
    handle
}

fn walk_blocking(
    check: &LayerCheck,
    budget: &Arc<Budget>,
    cancel: &CancellationToken,
    tx: &mpsc::Sender<Msg>,
    skip: &AtomicU64,
) -> WalkResult {
    let gone = || -> LayerFailure { Error::Cancelled("layer reader abandoned".into()).into() };
    let mut open = OpenLayer::open(check, budget, cancel)?;
    let mut notices = Vec::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; CHUNK];
    {
        let entries = open
            .archive()
            .entries()
            .map_err(|e| read_failure(e, check, budget))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| read_failure(e, check, budget))?;
            budget.add_entry()?;
            let path_bytes = entry.path_bytes().into_owned();
            let link = entry.link_name_bytes().map(|l| l.into_owned());
            let header_kind = entry.header().entry_type();
            let (kind, components, link) = match classify(header_kind, &path_bytes, link.as_deref())
            {
                Classified::Ignore => continue,
                Classified::Skip(mut n) => {
                    n.layer_digest = check.digest.clone();
                    notices.push(n);
                    continue;
                }
                Classified::Item {
                    kind,
                    components,
                    link,
                    ..
                } => (kind, components, link),
            };
            let path = display_path(&components);
            let size = if kind == EntryKind::File {
                entry.size()
            } else {
                0
            };
            if kind == EntryKind::File {
                budget.check_file(size, &path)?;
            }
            let header = Header {
                path,
                kind,
                size,
                mode: entry.header().mode().unwrap_or(0) & 0o7777,
                link_target: link.map(|l| String::from_utf8_lossy(&l).into_owned()),
            };
            seq += 1;
            tx.blocking_send(Msg::Header(header)).map_err(|_| gone())?;
            if kind != EntryKind::File {
                continue;
            }
            loop {
                if skip.load(Ordering::Relaxed) >= seq {
                    break; // the plugin moved on: the tar reader skips the rest
                }
                let n = entry
                    .read(&mut buf)
                    .map_err(|e| read_failure(e, check, budget))?;
                if n == 0 {
                    break;
                }
                tx.blocking_send(Msg::Chunk(Bytes::copy_from_slice(&buf[..n])))
                    .map_err(|_| gone())?;
            }
            tx.blocking_send(Msg::EndBody).map_err(|_| gone())?;
        }
    }
    open.finish(check, budget)?;
    Ok(notices)
}

/// sha256 of the given bytes as `sha256:<hex>` (tests and fixtures).
#[cfg(test)]
pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Path helper for tests.
#[cfg(test)]
pub(crate) fn write_blob(dir: &Path, data: &[u8]) -> PathBuf {
    let p = dir.join(hex::encode(Sha256::digest(data)));
    std::fs::write(&p, data).expect("write blob");
    p
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Building tar layers in tests.

    /// One entry of a test layer.
    pub enum E<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Fifo(&'a str),
    }

    /// A tar built from entries, with raw (unchecked) paths.
    pub fn tar(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            let (path, data): (&str, &[u8]) = match e {
                E::File(p, d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    (p, d)
                }
                E::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    (p, &[])
                }
                E::Symlink(p, t) | E::Hardlink(p, t) => {
                    h.set_entry_type(if matches!(e, E::Symlink(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.set_mode(0o777);
                    // set_link_name validates; write the raw bytes instead
                    let raw = &mut h.as_old_mut().linkname;
                    raw[..t.len()].copy_from_slice(t.as_bytes());
                    (p, &[])
                }
                E::Fifo(p) => {
                    h.set_entry_type(tar::EntryType::Fifo);
                    h.set_mode(0o644);
                    (p, &[])
                }
            };
            {
                let raw = &mut h.as_old_mut().name;
                raw.fill(0);
                raw[..path.len()].copy_from_slice(path.as_bytes());
            }
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, data).expect("append");
        }
        b.into_inner().expect("finish tar")
    }

    /// gzip of `data`.
    pub fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("gzip");
        enc.finish().expect("gzip")
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{E, gzip, tar};
    use super::*;
    use tokio::io::AsyncReadExt as _;

    fn check_for(dir: &Path, tar_bytes: &[u8], format: LayerFormat) -> LayerCheck {
        let blob = match format {
            LayerFormat::Gzip => gzip(tar_bytes),
            LayerFormat::Zstd => zstd::encode_all(tar_bytes, 3).unwrap(),
            _ => tar_bytes.to_vec(),
        };
        LayerCheck {
            path: write_blob(dir, &blob),
            format,
            digest: sha256_digest(&blob),
            size: blob.len() as u64,
            diff_id: sha256_digest(tar_bytes),
        }
    }

    async fn walk_all(
        check: LayerCheck,
        limits: Limits,
        read_bodies: bool,
    ) -> (
        Vec<(String, EntryKind, Option<String>, Vec<u8>)>,
        WalkResult,
    ) {
        let mut h = spawn_walk(check, Budget::new(limits), CancellationToken::new());
        let mut out = Vec::new();
        loop {
            match h.next_entry().await {
                Ok(Some(mut e)) => {
                    let mut body = Vec::new();
                    if read_bodies {
                        e.read_to_end(&mut body).await.unwrap();
                    }
                    out.push((e.path.clone(), e.kind, e.link_target.clone(), body));
                }
                Ok(None) => break,
                Err(_) => break,
            }
        }
        let r = h.finish().await;
        (out, r)
    }

    #[test]
    fn classification_normalises_and_flags() {
        use tar::EntryType as T;
        let item = |c: Classified| match c {
            Classified::Item {
                kind, components, ..
            } => (kind, display_path(&components)),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            item(classify(T::Regular, b"./etc//passwd", None)),
            (EntryKind::File, "/etc/passwd".into())
        );
        assert_eq!(
            item(classify(T::Regular, b"/abs/x", None)),
            (EntryKind::File, "/abs/x".into())
        );
        assert_eq!(
            item(classify(T::Regular, b"a/../b", None)),
            (EntryKind::File, "/b".into())
        );
        assert_eq!(
            item(classify(T::Regular, b"etc/.wh.passwd", None)),
            (EntryKind::Whiteout, "/etc/passwd".into())
        );
        assert_eq!(
            item(classify(T::Regular, b"etc/.wh..wh..opq", None)),
            (EntryKind::OpaqueWhiteout, "/etc".into())
        );
        assert_eq!(
            classify(T::Regular, b".wh..wh.plnk/1", None),
            Classified::Item {
                kind: EntryKind::File,
                components: vec![b".wh..wh.plnk".to_vec(), b"1".to_vec()],
                link: None,
                link_components: vec![],
            }
        );
        assert_eq!(
            classify(T::Regular, b"x/.wh..wh.plnk", None),
            Classified::Ignore
        );
        assert_eq!(classify(T::Directory, b"./", None), Classified::Ignore);
        for bad in [&b"../x"[..], b"a/../../x", b"/../etc/passwd"] {
            assert!(
                matches!(classify(T::Regular, bad, None), Classified::Skip(n) if n.code == notice_codes::UNSAFE_PATH_SKIPPED)
            );
        }
        assert!(
            matches!(classify(T::Link, b"x", Some(b"../../etc/shadow")), Classified::Skip(n) if n.code == notice_codes::UNSAFE_PATH_SKIPPED)
        );
        assert!(
            matches!(classify(T::Char, b"dev/null", None), Classified::Skip(n) if n.code == notice_codes::SPECIAL_FILE_SKIPPED)
        );
        assert!(matches!(classify(T::Fifo, b"p", None), Classified::Skip(n) if n.path == "/p"));
    }

    #[tokio::test]
    async fn streams_entries_in_every_format_and_verifies() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let t = tar(&[
            E::Dir("etc/"),
            E::File("etc/passwd", b"root:x:0:0"),
            E::File("big.bin", &big),
            E::File("skipped", b"not read"),
            E::Symlink("etc/link", "/etc/passwd"),
            E::Hardlink("hard", "etc/passwd"),
            E::File("etc/.wh.old", b""),
            E::File("var/.wh..wh..opq", b""),
            E::Fifo("fifo"),
            E::File("../escape", b"x"),
        ]);
        for format in [LayerFormat::Gzip, LayerFormat::Zstd, LayerFormat::Tar] {
            let dir = tempfile::tempdir().unwrap();
            let (entries, result) =
                walk_all(check_for(dir.path(), &t, format), Limits::default(), true).await;
            let notices = result.unwrap_or_else(|f| panic!("{format:?}: {f:?}"));
            let summary: Vec<(&str, EntryKind)> =
                entries.iter().map(|e| (e.0.as_str(), e.1)).collect();
            assert_eq!(
                summary,
                vec![
                    ("/etc", EntryKind::Directory),
                    ("/etc/passwd", EntryKind::File),
                    ("/big.bin", EntryKind::File),
                    ("/skipped", EntryKind::File),
                    ("/etc/link", EntryKind::Symlink),
                    ("/hard", EntryKind::Hardlink),
                    ("/etc/old", EntryKind::Whiteout),
                    ("/var", EntryKind::OpaqueWhiteout),
                ]
            );
            assert_eq!(entries[1].3, b"root:x:0:0");
            assert_eq!(entries[2].3, big);
            assert_eq!(entries[4].2.as_deref(), Some("/etc/passwd"));
            assert_eq!(entries[5].2.as_deref(), Some("/etc/passwd"));
            let codes: Vec<&str> = notices.iter().map(|n| n.code.as_str()).collect();
            assert_eq!(
                codes,
                vec![
                    notice_codes::SPECIAL_FILE_SKIPPED,
                    notice_codes::UNSAFE_PATH_SKIPPED
                ]
            );
        }
    }

    #[tokio::test]
    async fn unread_bodies_are_skipped_and_early_stop_still_verifies() {
        let big = vec![7u8; 500_000];
        let t = tar(&[E::File("a", &big), E::File("b", &big), E::File("c", b"c")]);
        let dir = tempfile::tempdir().unwrap();
        let (entries, result) = walk_all(
            check_for(dir.path(), &t, LayerFormat::Gzip),
            Limits::default(),
            false,
        )
        .await;
        assert_eq!(entries.len(), 3);
        assert!(result.is_ok());
        // The plugin stops after the first entry: finish() still reads to the end and verifies.
        let mut check = check_for(dir.path(), &t, LayerFormat::Gzip);
        check.diff_id = sha256_digest(b"something else");
        let mut h = spawn_walk(
            check,
            Budget::new(Limits::default()),
            CancellationToken::new(),
        );
        let first = h.next_entry().await.unwrap().unwrap();
        assert_eq!(first.path, "/a");
        let err = h.finish().await.unwrap_err();
        assert_eq!(err.error.code(), tonic::Code::DataLoss, "{:?}", err.error);
        assert!(!err.cache_suspect);
    }

    #[tokio::test]
    async fn diff_id_mismatch_is_data_loss_and_damaged_blob_is_suspect() {
        let t = tar(&[E::File("a", b"hello")]);
        let dir = tempfile::tempdir().unwrap();
        let mut check = check_for(dir.path(), &t, LayerFormat::Gzip);
        check.diff_id = sha256_digest(b"x");
        let (_, r) = walk_all(check, Limits::default(), true).await;
        assert_eq!(r.unwrap_err().error.code(), tonic::Code::DataLoss);
        // flip a byte in the cached gzip: decoding or the blob digest fails, cache suspect
        let check = check_for(dir.path(), &t, LayerFormat::Gzip);
        let mut bytes = std::fs::read(&check.path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&check.path, &bytes).unwrap();
        let (_, r) = walk_all(check, Limits::default(), true).await;
        let f = r.unwrap_err();
        assert!(f.cache_suspect, "{f:?}");
    }

    #[tokio::test]
    async fn limits_stop_bombs_while_streaming() {
        // 64 MiB of zeros gzips to ~64 KiB: ratio ~1000
        let zeros = vec![0u8; 64 << 20];
        let t = tar(&[E::File("zeros", &zeros)]);
        let dir = tempfile::tempdir().unwrap();
        let check = check_for(dir.path(), &t, LayerFormat::Gzip);
        let budget = Budget::new(Limits::default());
        let mut h = spawn_walk(check.clone(), budget.clone(), CancellationToken::new());
        let mut e = h.next_entry().await.unwrap().unwrap();
        let mut sink = Vec::new();
        let _ = e.read_to_end(&mut sink).await;
        drop(e);
        let f = h.finish().await.unwrap_err();
        assert_eq!(
            f.error.code(),
            tonic::Code::ResourceExhausted,
            "{:?}",
            f.error
        );
        assert!(f.error.message().contains("expands"), "{}", f.error);
        // stopped early: far less than the whole 64 MiB went through
        assert!(budget.uncompressed.load(Ordering::Relaxed) < 32 << 20);

        let small = tar(&[
            E::File("a", b"1"),
            E::File("b", b"2"),
            E::File("c", &[1u8; 100]),
        ]);
        let limits = |f: &dyn Fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            l
        };
        for (l, what) in [
            (limits(&|l| l.max_entries = 2), "entries"),
            (limits(&|l| l.max_file_bytes = 50), "file"),
            (limits(&|l| l.max_uncompressed_bytes = 1000), "unpacks"),
        ] {
            let (_, r) = walk_all(check_for(dir.path(), &small, LayerFormat::Gzip), l, true).await;
            let f = r.unwrap_err();
            assert_eq!(
                f.error.code(),
                tonic::Code::ResourceExhausted,
                "{what}: {:?}",
                f.error
            );
            assert!(f.error.message().contains(what), "{what}: {}", f.error);
        }
    }

    #[tokio::test]
    async fn cancellation_stops_the_walk() {
        let t = tar(&[E::File("a", &vec![1u8; 1 << 20]), E::File("b", b"b")]);
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let mut h = spawn_walk(
            check_for(dir.path(), &t, LayerFormat::Gzip),
            Budget::new(Limits::default()),
            cancel.clone(),
        );
        let _first = h.next_entry().await.unwrap().unwrap();
        cancel.cancel();
        let err = h.next_entry().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Cancelled);
    }
}
