//! The image layer's errors, named by cause, and the one place they become the SDK's
//! [`crate::Error`] (and so a gRPC status code).
//!
//! | cause | [`crate::Error`] / gRPC code | why that code |
//! |---|---|---|
//! | [`Error::DigestMismatch`] | `DataLoss` | content does not hash to its digest |
//! | [`Error::DiffIdMismatch`] | `DataLoss` | a layer's uncompressed content is not the config's diff_id |
//! | [`Error::ChangedOnDisk`] | `DataLoss` | a verified blob in the cache changed under the SDK |
//! | [`Error::SizeMismatch`] | `DataLoss` | content is not the size its descriptor declares |
//! | [`Error::Refused`] | `DataLoss` | a layer a runtime would read differently, or not at all |
//! | [`Error::Unreadable`] | `DataLoss` | a layer that does not decode (gzip, zstd, tar) |
//! | [`Error::Malformed`] | `FailedPrecondition` | a manifest, index, config or descriptor the SDK does not accept |
//! | [`Error::NotJson`] | `FailedPrecondition` | a manifest, index or config that is not the JSON it should be |
//! | [`Error::CacheDir`] | `FailedPrecondition` | the blob cache directory is unusable: misconfiguration |
//! | [`Error::Limit`] | `ResourceExhausted` | over a configured limit |
//! | [`Error::DiskFull`] | `ResourceExhausted` | no space left on the scratch or cache disk |
//! | [`Error::Storage`] | `ResourceExhausted` | a download cannot be written to the scratch or cache disk |
//! | [`Error::NotAllowed`] | `PermissionDenied` | a registry, redirect or token realm outside `--allow-registry` |
//! | [`Error::Cancelled`] | `Cancelled` | the scan was cancelled (caller gone, or another part of the scan failed) |
//! | [`Error::Io`] | `Internal` | any other local I/O failure: a bug or a broken host, never bad input |
//!
//! Errors the registry answers with (status codes, authentication) are mapped by
//! `registry::map_oci_error`, which builds [`crate::Error`] directly from oci-client's error.
//!
//! The SDK error's message is this error's `Display` followed by its source chain
//! (`context: io error: ...`), so the cause survives into the status message and the log line.

use std::path::PathBuf;

/// What went wrong in the image layer, by cause. See the module doc for the status code of each.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Content does not hash to the digest it was fetched by (or the registry announced).
    #[error("{what}: content hash {actual} does not match {expected}")]
    DigestMismatch {
        /// The content, e.g. `blob sha256:... of registry/repo`.
        what: String,
        /// The digest it should have, or where that digest came from.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// A layer's uncompressed content does not hash to the config's diff_id.
    #[error(
        "layer {layer}: uncompressed content hash {actual} does not match the config's diff_id \
         {expected}"
    )]
    DiffIdMismatch {
        /// The layer's digest.
        layer: String,
        /// The config's diff_id.
        expected: String,
        /// The diff_id the content has.
        actual: String,
    },
    /// A blob verified when it entered the cache no longer matches its digest or size.
    #[error("cached blob {digest} changed on disk ({actual}, {bytes} bytes)")]
    ChangedOnDisk {
        /// The blob's digest.
        digest: String,
        /// The digest of what is on disk now.
        actual: String,
        /// Its size now.
        bytes: u64,
    },
    /// Content is not the size its descriptor declares.
    #[error("{what}: received {actual} bytes but the descriptor says {expected}")]
    SizeMismatch {
        /// The content.
        what: String,
        /// The descriptor's size.
        expected: u64,
        /// The bytes received.
        actual: u64,
    },
    /// A layer a runtime would read differently from the SDK, or refuse: the SDK refuses it.
    #[error("{what} is refused: {why}")]
    Refused {
        /// The layer (digest and format).
        what: String,
        /// What the reader found.
        why: String,
    },
    /// A layer whose compression or archive does not decode.
    #[error("{what} cannot be read as a tar archive")]
    Unreadable {
        /// The layer (digest and format).
        what: String,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest, index, config or descriptor the SDK does not accept.
    #[error("{what}: {why}")]
    Malformed {
        /// The document, e.g. `manifest sha256:...`.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// A manifest, index or config that does not parse as the JSON it should be.
    #[error("{what}: not a valid {expected}")]
    NotJson {
        /// The document.
        what: String,
        /// What it should have been (`manifest or index`, `image config`).
        expected: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The blob cache directory cannot be created or read: the plugin is misconfigured.
    #[error("{context}")]
    CacheDir {
        /// What the SDK tried, with the path.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Over a configured limit.
    #[error("{what}, over the limit of {max}")]
    Limit {
        /// What is over the limit, with its size or count.
        what: String,
        /// The limit.
        max: u64,
    },
    /// No space left on the disk the SDK writes to (ENOSPC).
    #[error("{context}: disk full at {}", path.display())]
    DiskFull {
        /// What the SDK was doing.
        context: String,
        /// Where.
        path: PathBuf,
    },
    /// A download cannot be written to the SDK's disk.
    #[error("{context}")]
    Storage {
        /// What the SDK tried, with the path.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A registry, a redirect it sends or a token realm it names is outside the plugin's allowed
    /// registries.
    #[error("{0}")]
    NotAllowed(String),
    /// The scan was cancelled.
    #[error("scan cancelled")]
    Cancelled,
    /// Any other local I/O failure.
    #[error("{context}")]
    Io {
        /// What the SDK tried, with the path.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A failed local file operation in `area` (`unpacking`, ...): [`Error::DiskFull`] on ENOSPC,
    /// else [`Error::Io`] saying `{area}: cannot {action} {path}`.
    pub(crate) fn io(
        area: &str,
        action: &str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(ENOSPC) {
            Self::DiskFull {
                context: area.to_string(),
                path,
            }
        } else {
            Self::Io {
                context: format!("{area}: cannot {action} {}", path.display()),
                source,
            }
        }
    }
}

/// `ENOSPC` on Linux.
const ENOSPC: i32 = 28;

/// `e`'s message followed by its source chain, `: `-separated.
pub(crate) fn with_sources(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// The one mapping of the image layer's causes to the SDK's errors (the table in the module doc).
impl From<Error> for crate::Error {
    fn from(e: Error) -> Self {
        let message = with_sources(&e);
        match e {
            Error::DigestMismatch { .. }
            | Error::DiffIdMismatch { .. }
            | Error::ChangedOnDisk { .. }
            | Error::SizeMismatch { .. }
            | Error::Refused { .. }
            | Error::Unreadable { .. } => Self::DataLoss(message),
            Error::Malformed { .. } | Error::NotJson { .. } | Error::CacheDir { .. } => {
                Self::FailedPrecondition(message)
            }
            Error::Limit { .. } | Error::DiskFull { .. } | Error::Storage { .. } => {
                Self::ResourceExhausted(message)
            }
            Error::NotAllowed(_) => Self::PermissionDenied(message),
            Error::Cancelled => Self::Cancelled(message),
            Error::Io { .. } => Self::Internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "underlying")
    }

    #[test]
    fn every_cause_maps_to_its_documented_code() {
        let s = String::new;
        let json = || serde_json::from_slice::<u8>(b"{").unwrap_err();
        let cases = [
            (
                Error::DigestMismatch {
                    what: s(),
                    expected: s(),
                    actual: s(),
                },
                Code::DataLoss,
            ),
            (
                Error::DiffIdMismatch {
                    layer: s(),
                    expected: s(),
                    actual: s(),
                },
                Code::DataLoss,
            ),
            (
                Error::ChangedOnDisk {
                    digest: s(),
                    actual: s(),
                    bytes: 0,
                },
                Code::DataLoss,
            ),
            (
                Error::SizeMismatch {
                    what: s(),
                    expected: 1,
                    actual: 2,
                },
                Code::DataLoss,
            ),
            (
                Error::Refused {
                    what: s(),
                    why: s(),
                },
                Code::DataLoss,
            ),
            (
                Error::Unreadable {
                    what: s(),
                    source: io(std::io::ErrorKind::InvalidData),
                },
                Code::DataLoss,
            ),
            (
                Error::Malformed {
                    what: s(),
                    why: s(),
                },
                Code::FailedPrecondition,
            ),
            (
                Error::NotJson {
                    what: s(),
                    expected: "image config",
                    source: json(),
                },
                Code::FailedPrecondition,
            ),
            (
                Error::CacheDir {
                    context: s(),
                    source: io(std::io::ErrorKind::PermissionDenied),
                },
                Code::FailedPrecondition,
            ),
            (Error::Limit { what: s(), max: 1 }, Code::ResourceExhausted),
            (
                Error::DiskFull {
                    context: s(),
                    path: PathBuf::new(),
                },
                Code::ResourceExhausted,
            ),
            (
                Error::Storage {
                    context: s(),
                    source: io(std::io::ErrorKind::Other),
                },
                Code::ResourceExhausted,
            ),
            (Error::NotAllowed(s()), Code::PermissionDenied),
            (Error::Cancelled, Code::Cancelled),
            (
                Error::Io {
                    context: s(),
                    source: io(std::io::ErrorKind::Other),
                },
                Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let what = format!("{err:?}");
            assert_eq!(crate::Error::from(err).code(), code, "{what}");
        }
    }

    #[test]
    fn the_source_chain_survives_into_the_message() {
        let err = Error::Unreadable {
            what: "layer sha256:ab (Gzip)".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "corrupt deflate stream"),
        };
        assert_eq!(
            crate::Error::from(err),
            crate::Error::data_loss(
                "layer sha256:ab (Gzip) cannot be read as a tar archive: corrupt deflate stream"
            )
        );
        let full = std::io::Error::from_raw_os_error(ENOSPC);
        assert_eq!(
            crate::Error::from(Error::io("unpacking", "create", "/scratch/x", full)).code(),
            Code::ResourceExhausted
        );
    }
}
