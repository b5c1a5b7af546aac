//! The streaming walk that feeds [`crate::input::Layer`] without unpacking to disk.
//!
//! The walk runs on a blocking thread and talks to the async side over one bounded channel that
//! carries entry headers and body chunks in archive order, in batches of about a chunk (so a
//! layer of many small files is not one thread wake-up per header, chunk and body end); an
//! unread body is skipped when the plugin asks for the next entry. After the last entry the
//! thread drains the decompressor to the end, so the layer's diff_id (sha256 of the whole
//! uncompressed tar) and the blob's digest (or, for a blob just downloaded and hashed, its size)
//! are checked before `next_entry` returns `None`.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::budget::Budget;
use super::classify::{LayerEntries, display_path};
use super::decode::{LayerCheck, LayerFailure};
use super::{CHUNK, DEPTH};
use crate::error::Error;
use crate::input::{Entry, EntryKind, EntrySource};
use crate::model::Notice;

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

/// Messages sent at once: a batch is sent when it holds [`CHUNK`] body bytes or this many
/// messages, and before the walk's last message.
const BATCH_MESSAGES: usize = 64;

/// Collects the walk's messages and sends them in batches.
struct Batcher {
    tx: mpsc::Sender<Vec<Msg>>,
    batch: Vec<Msg>,
    bytes: usize,
}

impl Batcher {
    /// Adds `msg`, sending the batch when it is full; `Err` when the receiver is gone.
    fn push(&mut self, msg: Msg) -> Result<(), LayerFailure> {
        if let Msg::Chunk(c) = &msg {
            self.bytes += c.len();
        }
        self.batch.push(msg);
        if self.bytes >= CHUNK || self.batch.len() >= BATCH_MESSAGES {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends what is collected.
    fn flush(&mut self) -> Result<(), LayerFailure> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        self.tx
            .blocking_send(std::mem::take(&mut self.batch))
            .map_err(|_| Error::Cancelled("layer reader abandoned".into()).into())
    }
}

/// Outcome of a finished walk.
pub(crate) type WalkResult = Result<Vec<Notice>, LayerFailure>;

struct Shared {
    rx: mpsc::Receiver<Vec<Msg>>,
    /// The rest of the batch received last.
    queue: VecDeque<Msg>,
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
        loop {
            if let Some(m) = self.queue.pop_front() {
                return Poll::Ready(m);
            }
            match std::task::ready!(self.rx.poll_recv(cx)) {
                Some(batch) => self.queue.extend(batch),
                None => {
                    return Poll::Ready(Msg::Failed(
                        Error::internal("layer reader stopped without a result").into(),
                    ));
                }
            }
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
    pub(crate) fn failure(&self) -> Option<LayerFailure> {
        match &lock(&self.shared).finished {
            Some(Err(f)) => Some(f.clone()),
            _ => None,
        }
    }

    /// Walks whatever the plugin left unread and returns the walk's result: the SDK's notices,
    /// or the failure (limits, DataLoss on a digest or diff_id mismatch, cancellation).
    pub(crate) async fn finish(&self) -> WalkResult {
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
            queue: VecDeque::new(),
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
        let mut out = Batcher {
            tx,
            batch: Vec::new(),
            bytes: 0,
        };
        let result = walk_blocking(&check, &budget, &cancel, &mut out, &skip);
        // What was collected before a failure still goes first, in archive order.
        out.batch.push(match result {
            Ok(notices) => Msg::Done(notices),
            Err(f) => Msg::Failed(f),
        });
        let _ = out.flush();
    });
    handle
}

fn walk_blocking(
    check: &LayerCheck,
    budget: &Arc<Budget>,
    cancel: &CancellationToken,
    out: &mut Batcher,
    skip: &AtomicU64,
) -> WalkResult {
    let mut entries = LayerEntries::open(check, budget, cancel)?;
    let mut seq = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while let Some(item) = entries.next_item()? {
        let header = Header {
            path: display_path(&item.components),
            kind: item.kind,
            size: item.size,
            mode: item.mode,
            link_target: item.link.map(|l| String::from_utf8_lossy(&l).into_owned()),
        };
        seq += 1;
        out.push(Msg::Header(header))?;
        if item.kind != EntryKind::File {
            continue;
        }
        loop {
            if skip.load(Ordering::Relaxed) >= seq {
                break; // the plugin moved on: the reader skips the rest
            }
            let n = entries.read_body(&mut buf)?;
            if n == 0 {
                break;
            }
            out.push(Msg::Chunk(Bytes::copy_from_slice(&buf[..n])))?;
        }
        out.push(Msg::EndBody)?;
    }
    // The plugin gets the last entries while the rest of the stream is drained and checked.
    out.flush()?;
    entries.finish()?;
    Ok(Vec::new())
}
