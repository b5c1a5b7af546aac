//! The clamd wire protocol, implemented directly on tokio sockets.
//!
//! clamd's protocol is tiny: a command is `z<NAME>\0` (the `z` form: NUL-terminated commands and
//! replies), clamd answers one NUL-terminated reply and, outside an `IDSESSION`, closes the
//! connection. The commands used here:
//!
//! | command | reply |
//! |---|---|
//! | `zPING\0` | `PONG` |
//! | `zVERSION\0` | `ClamAV 1.4.6/27000/Mon Jan  5 09:25:02 2026` (engine / signature version / signature date; only `ClamAV 1.4.6` with no official database) |
//! | `zINSTREAM\0` + chunks (4-byte big-endian length, then the bytes) + a zero-length chunk | `stream: OK`, `stream: <SIG> FOUND`, `INSTREAM size limit exceeded. ERROR`, `... ERROR` |
//! | `zSCAN /abs/path\0` | `/abs/path: OK`, `/abs/path: <SIG> FOUND`, `/abs/path: <message> ERROR` |
//! | `zRELOAD\0` | `RELOADING` |
//! | `zFILDES\0`, then one NUL byte carrying a descriptor (`SCM_RIGHTS`; Unix socket only) | `fd[7]: OK`, `fd[7]: <SIG> FOUND`, `fd[7]: <message> ERROR`; refused: `FILDES: didn't receive file descriptor. ERROR` or `UNKNOWN COMMAND` |
//!
//! Why not the `clamav-client` crate: it has no path commands (`SCAN`), and it writes a whole
//! stream before reading the reply, so when clamd stops a stream over `StreamMaxLength` (it
//! answers `INSTREAM size limit exceeded` and closes) the client sees `BrokenPipe` and the reply
//! is lost. [`instream`] writes and reads at the same time, so that reply is never lost; its
//! default 4 KiB chunks are also about half as fast as the 1 MiB chunks used here. Replies are
//! parsed in [`crate::reply`].

use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::mpsc;

use crate::error::ClamavError;
pub use crate::reply::{
    ENCRYPTED_PREFIX, LIMITS_EXCEEDED_PREFIX, Verdict, VersionInfo, parse_fildes_reply,
    parse_scan_reply,
};

/// Longest reply accepted from clamd; anything longer is not clamd.
const MAX_REPLY: usize = 64 * 1024;

/// Where clamd listens: `unix:/path` or `tcp://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddr {
    /// A Unix socket (`LocalSocket`); clamd shares our filesystem.
    Unix(PathBuf),
    /// A TCP `host:port` (`TCPSocket` + `TCPAddr`).
    Tcp(String),
}

impl FromStr for ClamdAddr {
    type Err = String;

    /// Parses `unix:/path`, `unix:///path`, `tcp://host:port` or a bare `host:port`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if !path.starts_with('/') {
                return Err(format!(
                    "invalid clamd address {s:?}: unix: needs an absolute socket path, e.g. unix:/run/clamav/clamd.ctl"
                ));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let hostport = s.strip_prefix("tcp://").unwrap_or(s);
        match hostport.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok() =>
            {
                Ok(Self::Tcp(hostport.to_owned()))
            }
            _ => Err(format!(
                "invalid clamd address {s:?}: expected unix:/path/to/clamd.sock or tcp://host:port"
            )),
        }
    }
}

impl fmt::Display for ClamdAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(hostport) => write!(f, "tcp://{hostport}"),
        }
    }
}

/// A socket to clamd, Unix or TCP.
pub trait Socket: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Socket for T {}

/// Opens a new connection to `addr` (no timeout: callers add theirs).
pub async fn connect(addr: &ClamdAddr) -> Result<Pin<Box<dyn Socket>>, ClamavError> {
    let result: std::io::Result<Pin<Box<dyn Socket>>> = match addr {
        ClamdAddr::Unix(path) => UnixStream::connect(path)
            .await
            .map(|s| Box::pin(s) as Pin<Box<dyn Socket>>),
        ClamdAddr::Tcp(hostport) => TcpStream::connect(hostport.as_str()).await.map(|s| {
            let _ = s.set_nodelay(true);
            Box::pin(s) as Pin<Box<dyn Socket>>
        }),
    };
    result.map_err(|source| ClamavError::Connect {
        addr: addr.to_string(),
        source,
    })
}

/// Reads one NUL-terminated reply (or up to EOF), at most [`MAX_REPLY`] bytes.
async fn read_reply<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    addr: &ClamdAddr,
) -> Result<String, ClamavError> {
    let mut reply = Vec::with_capacity(128);
    let mut buf = [0u8; 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(n) => n,
            // A reset after a complete-looking reply still carries the reply.
            Err(_) if !reply.is_empty() => break,
            Err(source) => {
                return Err(ClamavError::Connection {
                    addr: addr.to_string(),
                    source,
                });
            }
        };
        if n == 0 {
            break;
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            reply.extend_from_slice(&buf[..end]);
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.len() > MAX_REPLY {
            return Err(protocol_error(addr, &reply));
        }
    }
    if reply.is_empty() {
        return Err(ClamavError::NoReply {
            addr: addr.to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

fn protocol_error(addr: &ClamdAddr, reply: &[u8]) -> ClamavError {
    let text = String::from_utf8_lossy(&reply[..reply.len().min(200)]).into_owned();
    ClamavError::Protocol {
        addr: addr.to_string(),
        reply: text,
    }
}

fn timeout_error(addr: &ClamdAddr, what: &'static str, after: Duration) -> ClamavError {
    ClamavError::Timeout {
        addr: addr.to_string(),
        what,
        after,
    }
}

/// Sends one simple command (`PING`, `VERSION`, `RELOAD`, `SCAN /path`) on a new connection and
/// returns the reply; connecting, sending and answering are each bounded by `timeout`.
pub async fn command(
    addr: &ClamdAddr,
    cmd: &str,
    timeout: Duration,
) -> Result<String, ClamavError> {
    let mut sock = tokio::time::timeout(timeout, connect(addr))
        .await
        .map_err(|_| timeout_error(addr, "accept the connection", timeout))??;
    let mut wire = Vec::with_capacity(cmd.len() + 2);
    wire.push(b'z');
    wire.extend_from_slice(cmd.as_bytes());
    wire.push(0);
    tokio::time::timeout(timeout, sock.write_all(&wire))
        .await
        .map_err(|_| timeout_error(addr, "accept the command", timeout))?
        .map_err(|source| ClamavError::Connection {
            addr: addr.to_string(),
            source,
        })?;
    tokio::time::timeout(timeout, read_reply(&mut sock, addr))
        .await
        .map_err(|_| timeout_error(addr, "answer", timeout))?
}

/// `PING`: `Ok` when clamd answers `PONG`.
pub async fn ping(addr: &ClamdAddr, timeout: Duration) -> Result<(), ClamavError> {
    let reply = command(addr, "PING", timeout).await?;
    if reply.trim() == "PONG" {
        Ok(())
    } else {
        Err(protocol_error(addr, reply.as_bytes()))
    }
}

/// `VERSION`, parsed.
pub async fn version(addr: &ClamdAddr, timeout: Duration) -> Result<VersionInfo, ClamavError> {
    let reply = command(addr, "VERSION", timeout).await?;
    VersionInfo::parse(&reply).ok_or_else(|| protocol_error(addr, reply.as_bytes()))
}

/// `SCAN /path`: clamd opens the file itself (it must share our filesystem and may read it).
pub async fn scan_path(
    addr: &ClamdAddr,
    path: &Path,
    timeout: Duration,
) -> Result<Verdict, ClamavError> {
    let path = path.to_str().ok_or_else(|| {
        ClamavError::Internal(format!("scratch path {} is not UTF-8", path.display()))
    })?;
    if path.contains(['\0', '\n']) {
        return Err(ClamavError::Internal(format!(
            "unusable scratch path {path:?}"
        )));
    }
    let reply = command(addr, &format!("SCAN {path}"), timeout).await?;
    parse_scan_reply(&reply).ok_or_else(|| protocol_error(addr, reply.as_bytes()))
}

/// `FILDES`: sends `zFILDES\0`, then one byte with `fd` attached as `SCM_RIGHTS`, on a new Unix
/// connection; clamd scans the file behind the descriptor itself (no copy into its temporary
/// directory, as `INSTREAM` makes). Connecting, sending and answering are each bounded by
/// `timeout`.
///
/// `Ok(None)` when clamd refused the descriptor (no fd passing, e.g. a TCP address, or a reply
/// that is not about `fd[N]`): the caller falls back to `INSTREAM`.
pub async fn fildes(
    addr: &ClamdAddr,
    fd: BorrowedFd<'_>,
    timeout: Duration,
) -> Result<Option<Verdict>, ClamavError> {
    let ClamdAddr::Unix(path) = addr else {
        return Ok(None);
    };
    let conn_err = |source| ClamavError::Connection {
        addr: addr.to_string(),
        source,
    };
    let mut sock = tokio::time::timeout(timeout, UnixStream::connect(path))
        .await
        .map_err(|_| timeout_error(addr, "accept the connection", timeout))?
        .map_err(|source| ClamavError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    // As clamdscan does: the command, then one NUL byte carrying the descriptor (clamd rejects
    // a descriptor that arrives with the command itself).
    tokio::time::timeout(timeout, sock.write_all(b"zFILDES\0"))
        .await
        .map_err(|_| timeout_error(addr, "accept the command", timeout))?
        .map_err(conn_err)?;
    tokio::time::timeout(
        timeout,
        sock.async_io(Interest::WRITABLE, || send_with_fd(&sock, b"\0", fd)),
    )
    .await
    .map_err(|_| timeout_error(addr, "accept the descriptor", timeout))?
    .map_err(conn_err)?;
    let reply = tokio::time::timeout(timeout, read_reply(&mut sock, addr))
        .await
        .map_err(|_| timeout_error(addr, "answer", timeout))??;
    parse_fildes_reply(&reply).ok_or_else(|| protocol_error(addr, reply.as_bytes()))
}

/// One `sendmsg` of `msg` with `fd` attached as `SCM_RIGHTS` (non-blocking; `WouldBlock` makes
/// tokio wait for writability and retry).
fn send_with_fd(sock: &UnixStream, msg: &[u8], fd: BorrowedFd<'_>) -> std::io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let fds = [fd];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("SCM_RIGHTS does not fit its buffer"));
    }
    rustix::net::sendmsg(
        sock,
        &[std::io::IoSlice::new(msg)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .map_err(std::io::Error::from)
}

/// Runs one write step, failing with `TimedOut` after `timeout`.
async fn step<F>(timeout: Duration, fut: F) -> std::io::Result<()>
where
    F: std::future::Future<Output = std::io::Result<()>>,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "clamd did not accept data",
        )),
    }
}

/// `INSTREAM` on the connected `sock`: sends every chunk received from `chunks` (as 4-byte
/// big-endian length + bytes), then the zero-length terminator, while reading the reply at the
/// same time, so that an early reply (`INSTREAM size limit exceeded`) is returned rather than a
/// broken pipe. Dropping `chunks` early (clamd answered first) is how the feeder learns to stop.
///
/// `timeout` bounds each clamd step: accepting one chunk, and answering after the last byte.
/// Waiting for the next chunk from `chunks` is not bounded here (that is the feeder's pace).
pub async fn instream(
    addr: &ClamdAddr,
    sock: Pin<Box<dyn Socket>>,
    mut chunks: mpsc::Receiver<Vec<u8>>,
    timeout: Duration,
) -> Result<Verdict, ClamavError> {
    let (mut rd, mut wr) = tokio::io::split(sock);
    let conn_err = |source| ClamavError::Connection {
        addr: addr.to_string(),
        source,
    };
    let writer = async {
        step(timeout, wr.write_all(b"zINSTREAM\0")).await?;
        while let Some(chunk) = chunks.recv().await {
            if chunk.is_empty() {
                continue;
            }
            let len = u32::try_from(chunk.len()).map_err(std::io::Error::other)?;
            step(timeout, wr.write_all(&len.to_be_bytes())).await?;
            step(timeout, wr.write_all(&chunk)).await?;
        }
        step(timeout, wr.write_all(&[0, 0, 0, 0])).await?;
        step(timeout, wr.flush()).await?;
        Ok::<(), std::io::Error>(())
    };
    let reader = read_reply(&mut rd, addr);
    tokio::pin!(writer, reader);
    let reply = tokio::select! {
        // clamd answered before we finished: a size-limit or other error reply.
        reply = &mut reader => reply?,
        written = &mut writer => match written {
            Ok(()) => tokio::time::timeout(timeout, &mut reader)
                .await
                .map_err(|_| timeout_error(addr, "answer", timeout))??,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(timeout_error(addr, "accept data", timeout));
            }
            // A broken pipe or reset: clamd may have answered and closed; its reply, if any,
            // is already in our receive buffer.
            Err(e) => match tokio::time::timeout(Duration::from_secs(1), &mut reader).await {
                Ok(Ok(reply)) => reply,
                _ => return Err(conn_err(e)),
            },
        },
    };
    parse_scan_reply(&reply).ok_or_else(|| protocol_error(addr, reply.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "unix:/run/clamav/clamd.ctl".parse::<ClamdAddr>(),
            Ok(ClamdAddr::Unix("/run/clamav/clamd.ctl".into()))
        );
        assert_eq!(
            "unix:///tmp/c.sock".parse::<ClamdAddr>(),
            Ok(ClamdAddr::Unix("/tmp/c.sock".into()))
        );
        assert_eq!(
            "tcp://127.0.0.1:3310".parse::<ClamdAddr>(),
            Ok(ClamdAddr::Tcp("127.0.0.1:3310".into()))
        );
        assert_eq!(
            "127.0.0.1:3310".parse::<ClamdAddr>(),
            Ok(ClamdAddr::Tcp("127.0.0.1:3310".into()))
        );
        for bad in [
            "",
            "unix:",
            "unix:rel.sock",
            "tcp://host",
            "tcp://:1",
            "x:y",
            "http://a/b:1",
        ] {
            assert!(bad.parse::<ClamdAddr>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            ClamdAddr::Tcp("127.0.0.1:1".into()).to_string(),
            "tcp://127.0.0.1:1"
        );
    }
}
