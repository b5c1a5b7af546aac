//! [`Clamd`]: a clamd client with a bounded connection pool and timeouts on every step.
//!
//! clamd closes a connection after each command (outside `IDSESSION`), so the pool is a bound on
//! concurrent connections rather than a set of kept-open sockets: each scan takes a slot
//! ([`Clamd::acquire`]), opens a fresh connection, and gives the slot back when clamd has
//! answered. Fresh connections are also what makes recovery automatic after clamd restarts.
//! Health checks (`PING`, `VERSION`) do not take a slot, so they answer promptly under load.

use std::path::Path;
use std::sync::Arc;
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
        let addr = &self.inner.addr;
        let sock = tokio::time::timeout(timeout, protocol::connect(addr))
            .await
            .map_err(|_| ClamavError::Timeout {
                addr: addr.to_string(),
                what: "accept the connection",
                after: timeout,
            })??;
        protocol::instream(addr, sock, chunks, timeout).await
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

    /// `SCAN /path`: clamd reads the file itself, so it must share this filesystem and be
    /// allowed to read the file. The caller holds a pool slot. The whole exchange is bounded by
    /// the file timeout.
    pub async fn scan_path(&self, path: &Path) -> Result<Verdict, ClamavError> {
        protocol::scan_path(&self.inner.addr, path, self.inner.file_timeout).await
    }
}
