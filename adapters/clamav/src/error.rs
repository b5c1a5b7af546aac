//! The crate's one error type, [`ClamavError`], and the one place it becomes a
//! [`sidescan_sdk::Error`] (and so a gRPC status code).

use std::time::Duration;

/// Everything that can go wrong talking to clamd or feeding it content.
///
/// Per-file verdicts that only depend on the content and the configuration (a signature found,
/// a file over a size or recursion limit, encrypted content) are not here: they become findings
/// and notices. Per-file verdicts that may differ on the next try are ([`ClamavError::FileError`],
/// [`ClamavError::StreamLimit`]), so that no cached result carries them.
#[derive(Debug, thiserror::Error)]
pub enum ClamavError {
    /// clamd could not be reached.
    #[error("cannot connect to clamd at {addr}: {source}")]
    Connect {
        /// The clamd address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The connection broke while talking to clamd (clamd died or restarted mid-scan).
    #[error("connection to clamd at {addr} lost: {source}")]
    Connection {
        /// The clamd address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// clamd closed the connection without answering.
    #[error("clamd at {addr} closed the connection without a reply")]
    NoReply {
        /// The clamd address.
        addr: String,
    },
    /// clamd did not connect, accept data or answer within the timeout.
    #[error("clamd at {addr} did not {what} within {}", humantime::format_duration(*after))]
    Timeout {
        /// The clamd address.
        addr: String,
        /// What it failed to do.
        what: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// clamd answered something that is not the clamd protocol (wrong endpoint or version).
    #[error("unexpected reply from clamd at {addr}: {reply:?}")]
    Protocol {
        /// The clamd address.
        addr: String,
        /// The reply, truncated.
        reply: String,
    },
    /// clamd could not finish one file for a reason that may be gone next time: its `... ERROR`
    /// reply (out of memory, temporary files, unreadable input) or its `MaxScanTime` limit.
    #[error("clamd could not scan {path}: {message} (nothing was cached; retry the scan)")]
    FileError {
        /// Path of the file inside the image.
        path: String,
        /// clamd's message.
        message: String,
    },
    /// clamd refused a stream as longer than its `StreamMaxLength`, which is below
    /// `--stream-max-length`: the two are misconfigured.
    #[error(
        "clamd refused {path} ({size} bytes) as longer than its StreamMaxLength, which is below --stream-max-length ({limit} bytes): set clamd's StreamMaxLength to --stream-max-length"
    )]
    StreamLimit {
        /// Path of the file inside the image.
        path: String,
        /// Size of the file.
        size: u64,
        /// `--stream-max-length`.
        limit: u64,
    },
    /// Reading a file's content from the layer or blob failed.
    #[error("reading {path}: {source}")]
    Read {
        /// Path of the file inside the image.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing a large file to the scratch directory for a local `SCAN` failed.
    #[error("writing {path} to the scratch directory: {source}")]
    Scratch {
        /// Path of the file inside the image.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The scan's context was cancelled (the caller went away or its deadline passed).
    #[error("scan cancelled (caller cancelled or deadline passed)")]
    Cancelled,
    /// An error from the SDK (e.g. a corrupt layer), passed through unchanged.
    #[error(transparent)]
    Sdk(#[from] sidescan_sdk::Error),
    /// No signature set from `--signatures-from` is known to be loaded in clamd.
    #[error("signatures: {0}")]
    Signatures(String),
    /// A scan task failed unexpectedly (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ClamavError> for sidescan_sdk::Error {
    /// The one mapping from clamd trouble to `sidescan.v1` status codes: an unreachable, dead or
    /// hanging clamd, or a clamd that could not finish one file this time, is UNAVAILABLE;
    /// something that does not speak clamd's protocol, or a clamd whose `StreamMaxLength` is
    /// below ours, is FAILED_PRECONDITION (misconfigured engine); a cancelled scan is DEADLINE_EXCEEDED, a full
    /// scratch disk is RESOURCE_EXHAUSTED, and errors of the layer stream keep their own code.
    fn from(err: ClamavError) -> Self {
        use sidescan_sdk::Error as E;
        let msg = err.to_string();
        match err {
            ClamavError::Connect { .. }
            | ClamavError::Connection { .. }
            | ClamavError::NoReply { .. }
            | ClamavError::Timeout { .. }
            | ClamavError::FileError { .. }
            | ClamavError::Signatures(_) => E::Unavailable(msg),
            ClamavError::Protocol { .. } | ClamavError::StreamLimit { .. } => {
                E::FailedPrecondition(msg)
            }
            ClamavError::Read { source, .. } => {
                // The SDK's entry readers wrap its own errors (digest mismatch, limits) in
                // io::Error: keep their status code.
                match source
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<sidescan_sdk::Error>())
                {
                    Some(sdk) => sdk.clone(),
                    None => E::Unavailable(msg),
                }
            }
            ClamavError::Scratch { .. } => E::ResourceExhausted(msg),
            ClamavError::Cancelled => E::DeadlineExceeded(msg),
            ClamavError::Sdk(sdk) => sdk,
            ClamavError::Internal(_) => E::Internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Code {
        Unavailable,
        FailedPrecondition,
        DeadlineExceeded,
        ResourceExhausted,
        DataLoss,
        Internal,
    }

    #[test]
    fn errors_map_to_documented_codes() {
        let io = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let addr = || "unix:/x".to_owned();
        let cases = [
            (
                ClamavError::Connect {
                    addr: addr(),
                    source: io(),
                },
                Code::Unavailable,
            ),
            (
                ClamavError::Connection {
                    addr: addr(),
                    source: io(),
                },
                Code::Unavailable,
            ),
            (ClamavError::NoReply { addr: addr() }, Code::Unavailable),
            (
                ClamavError::Timeout {
                    addr: addr(),
                    what: "answer",
                    after: Duration::from_secs(1),
                },
                Code::Unavailable,
            ),
            (
                ClamavError::Protocol {
                    addr: addr(),
                    reply: "HTTP/1.1".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                ClamavError::FileError {
                    path: "/f".into(),
                    message: "Can't allocate memory".into(),
                },
                Code::Unavailable,
            ),
            (
                ClamavError::StreamLimit {
                    path: "/f".into(),
                    size: 3,
                    limit: 2,
                },
                Code::FailedPrecondition,
            ),
            (ClamavError::Cancelled, Code::DeadlineExceeded),
            (
                ClamavError::Scratch {
                    path: "/f".into(),
                    source: io(),
                },
                Code::ResourceExhausted,
            ),
            (
                ClamavError::Read {
                    path: "/f".into(),
                    source: std::io::Error::other(sidescan_sdk::Error::data_loss("digest")),
                },
                Code::DataLoss,
            ),
            (
                ClamavError::Read {
                    path: "/f".into(),
                    source: io(),
                },
                Code::Unavailable,
            ),
            (ClamavError::Internal("bug".into()), Code::Internal),
        ];
        for (err, want) in cases {
            let text = err.to_string();
            let sdk = sidescan_sdk::Error::from(err);
            assert_eq!(format!("{:?}", sdk.code()), format!("{want:?}"), "{text}");
        }
    }
}
