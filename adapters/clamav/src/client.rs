//! [`Clamd`]: a clamd client with a bounded connection pool and timeouts on every step.
//!
//! clamd closes a connection after each command (outside `IDSESSION`), so the pool is a bound on
//! concurrent connections rather than a set of kept-open sockets: each scan takes a slot
//! ([`Clamd::acquire`]), opens a fresh connection, and gives the slot back when clamd has
//! answered. Fresh connections are also what makes recovery automatic after clamd restarts.
//! Health checks (`PING`, `VERSION`) do not take a slot, so they answer promptly under load.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::ClamavError;
use crate::protocol::{self, ClamdAddr, Verdict, VersionInfo};

/// Size of the chunks content is sent to clamd in (1 MiB: about twice as fast as 4 KiB).
pub const CHUNK_SIZE: usize = 1 << 20;

/// A clamd client. Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Clamd {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    addr: ClamdAddr,
    pool: Arc<Semaphore>,
    connections: usize,
    file_timeout: Duration,
    ping_timeout: Duration,
    /// Whether content is passed to clamd as a descriptor (`FILDES`); cleared for good when
    /// clamd refuses one.
    fd_passing: AtomicBool,
}

impl Clamd {
    /// A client of clamd at `addr` using at most `connections` concurrent scan connections
    /// (at least 1). `file_timeout` bounds each step of a file's scan (connecting, clamd
    /// accepting a chunk, clamd answering after the last byte); `ping_timeout` bounds `PING` and
    /// `VERSION`.
    pub fn new(
        addr: ClamdAddr,
        connections: usize,
        file_timeout: Duration,
        ping_timeout: Duration,
    ) -> Self {
        let connections = connections.max(1);
        Self {
            inner: Arc::new(Inner {
                addr,
                pool: Arc::new(Semaphore::new(connections)),
                connections,
                file_timeout,
                ping_timeout,
                fd_passing: AtomicBool::new(false),
            }),
        }
    }

    /// clamd's address.
    pub fn addr(&self) -> &ClamdAddr {
        &self.inner.addr
    }

    /// Size of the connection pool.
    pub fn connections(&self) -> usize {
        self.inner.connections
    }

    /// The per-file step timeout.
    pub fn file_timeout(&self) -> Duration {
        self.inner.file_timeout
    }

    /// Turns file-descriptor passing (`FILDES`) on or off; it only takes effect for a `unix:`
    /// address. Off by default.
    pub fn with_fd_passing(self, on: bool) -> Self {
        self.inner.fd_passing.store(
            on && matches!(self.inner.addr, ClamdAddr::Unix(_)),
            Ordering::Relaxed,
        );
        self
    }

    /// Whether files are currently passed to clamd as descriptors (`FILDES`).
    pub fn fd_passing(&self) -> bool {
        self.inner.fd_passing.load(Ordering::Relaxed)
    }

    /// Scans `file` (an anonymous memory file holding the content, or any readable file) by
    /// passing its descriptor to clamd (`FILDES`); when clamd refuses the descriptor, turns fd
    /// passing off for this client and scans the content with `INSTREAM` instead. The caller
    /// holds a pool slot.
    pub async fn scan_file(&self, file: std::fs::File) -> Result<Verdict, ClamavError> {
        if self.fd_passing() {
            let addr = &self.inner.addr;
            match protocol::fildes(addr, file.as_fd(), self.inner.file_timeout).await? {
                Some(verdict) => return Ok(verdict),
                None => {
                    if self.inner.fd_passing.swap(false, Ordering::Relaxed) {
                        tracing::warn!(clamd = %addr, "clamd refused FILDES: using INSTREAM");
                    }
                }
            }
        }
        let (tx, rx) = mpsc::channel(2);
        let file = Arc::new(file);
        let feed = async move {
            use std::os::unix::fs::FileExt;
            let mut offset = 0u64;
            loop {
                let file = Arc::clone(&file);
                let read = tokio::task::spawn_blocking(move || {
                    let mut chunk = vec![0u8; CHUNK_SIZE];
                    let n = file.read_at(&mut chunk, offset)?;
                    chunk.truncate(n);
                    Ok::<_, std::io::Error>(chunk)
                })
                .await;
                let Ok(Ok(chunk)) = read else {
                    // Unreadable: the stream is cut short below.
                    return false;
                };
                if chunk.is_empty() {
                    return true;
                }
                offset += chunk.len() as u64;
                if tx.send(chunk).await.is_err() {
                    return true;
                }
            }
        };
        let (verdict, complete) = tokio::join!(self.scan_stream(rx), feed);
        if !complete {
            return Err(ClamavError::Internal(
                "could not re-read a file's content for INSTREAM".into(),
            ));
        }
        verdict
    }

    /// Waits for a free connection slot; hold the permit for the duration of one file's scan.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, ClamavError> {
        Arc::clone(&self.inner.pool)
            .acquire_owned()
            .await
            .map_err(|_| ClamavError::Internal("clamd connection pool closed".into()))
    }

    /// `PING` (not pooled).
    pub async fn ping(&self) -> Result<(), ClamavError> {
        protocol::ping(&self.inner.addr, self.inner.ping_timeout).await
    }

    /// `VERSION` (not pooled).
    pub async fn version(&self) -> Result<VersionInfo, ClamavError> {
        protocol::version(&self.inner.addr, self.inner.ping_timeout).await
    }

    /// `RELOAD`: clamd re-reads its signature databases in the background.
    pub async fn reload(&self) -> Result<(), ClamavError> {
        let reply = protocol::command(&self.inner.addr, "RELOAD", self.inner.ping_timeout).await?;
        if reply.trim() == "RELOADING" {
            Ok(())
        } else {
            Err(ClamavError::Protocol {
                addr: self.inner.addr.to_string(),
                reply,
            })
        }
    }

    /// Scans the content arriving on `chunks` with `INSTREAM` on a new connection. The caller
    /// holds a pool slot ([`Clamd::acquire`]). Dropping the sender ends the stream; when clamd
    /// answers early (e.g. the stream is over its `StreamMaxLength`) the receiver is dropped, so
    /// the sender's `send` fails and it should stop.
    pub async fn scan_stream(
        &self,
        chunks: mpsc::Receiver<Vec<u8>>,
    ) -> Result<Verdict, ClamavError> {
        let timeout = self.inner.file_timeout;
        let sock = self.connect_within(timeout).await?;
        protocol::instream(&self.inner.addr, sock, chunks, timeout).await
    }

    /// A new connection to clamd, or a timeout error after `timeout`.
    async fn connect_within(
        &self,
        timeout: Duration,
    ) -> Result<std::pin::Pin<Box<dyn protocol::Socket>>, ClamavError> {
        let addr = &self.inner.addr;
        tokio::time::timeout(timeout, protocol::connect(addr))
            .await
            .map_err(|_| ClamavError::Timeout {
                addr: addr.to_string(),
                what: "accept the connection",
                after: timeout,
            })?
    }

    /// Scans an in-memory buffer with `INSTREAM` (takes a pool slot itself).
    pub async fn scan_bytes(&self, data: &[u8]) -> Result<Verdict, ClamavError> {
        let _slot = self.acquire().await?;
        let (tx, rx) = mpsc::channel(2);
        let feed = async move {
            for chunk in data.chunks(CHUNK_SIZE) {
                if tx.send(chunk.to_vec()).await.is_err() {
                    break;
                }
            }
        };
        let (verdict, ()) = tokio::join!(self.scan_stream(rx), feed);
        verdict
    }

    /// Scans a small in-memory sample with `INSTREAM` without taking a pool slot, every step
    /// bounded by the ping timeout: for health checks ([`crate::selfcheck`]).
    pub async fn scan_sample(&self, data: &[u8]) -> Result<Verdict, ClamavError> {
        let timeout = self.inner.ping_timeout;
        let addr = &self.inner.addr;
        let sock = self.connect_within(timeout).await?;
        let (tx, rx) = mpsc::channel(2);
        let feed = async move {
            for chunk in data.chunks(CHUNK_SIZE) {
                if tx.send(chunk.to_vec()).await.is_err() {
                    break;
                }
            }
        };
        let (verdict, ()) = tokio::join!(protocol::instream(addr, sock, rx, timeout), feed);
        verdict
    }

    /// `SCAN /path`: clamd reads the file itself, so it must share this filesystem and be
    /// allowed to read the file. The caller holds a pool slot. The whole exchange is bounded by
    /// the file timeout.
    pub async fn scan_path(&self, path: &Path) -> Result<Verdict, ClamavError> {
        protocol::scan_path(&self.inner.addr, path, self.inner.file_timeout).await
    }
}
