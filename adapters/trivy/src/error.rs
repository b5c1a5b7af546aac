//! The adapter's one error type, [`TrivyError`], and the one place it becomes a
//! [`sidescan_sdk::Error`] (and so a gRPC status code).

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while running Trivy.
#[derive(Debug, thiserror::Error)]
pub enum TrivyError {
    /// The trivy executable could not be found or started.
    #[error("trivy executable {path:?} cannot be run: {reason}")]
    BinaryMissing {
        /// The configured executable.
        path: PathBuf,
        /// Why it cannot be run.
        reason: String,
    },
    /// The vulnerability DB is missing, unparseable or rejected by Trivy.
    #[error("trivy vulnerability DB is not usable: {0}")]
    DbUnusable(String),
    /// A Trivy run took longer than `--trivy-timeout`; its process group was killed.
    #[error("trivy did not finish within {0:?} (process group killed)")]
    Timeout(Duration),
    /// The scan was cancelled (caller cancel or deadline); the process group was killed.
    #[error("scan cancelled; trivy process group killed")]
    Cancelled,
    /// Trivy exited unsuccessfully.
    #[error("trivy exited with {status}: {stderr_tail}")]
    Failed {
        /// Exit status as text.
        status: String,
        /// The last bytes of its stderr.
        stderr_tail: String,
    },
    /// Trivy's output could not be understood.
    #[error("cannot parse trivy output: {0}")]
    BadOutput(String),
    /// A request parameter is not acceptable (e.g. an unknown SBOM media type).
    #[error("{0}")]
    InvalidArgument(String),
    /// Local I/O failed (scratch files, cache directory).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl TrivyError {
    /// An [`TrivyError::Io`] with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Words in Trivy's stderr that mean its DB (not the image) is the problem.
const DB_TROUBLE: [&str; 6] = [
    "invalid database",
    "db corrupted",
    "failed to open db",
    "db initialize error",
    "metadata.json",
    "--skip-db-update cannot be specified on the first run",
];

/// Whether Trivy's stderr blames its vulnerability DB.
pub fn stderr_blames_db(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    DB_TROUBLE.iter().any(|w| lower.contains(w)) || lower.contains("db error")
}

/// What Trivy (go-containerregistry underneath) says when it pulled a layer itself
/// (`--image-source registry`) and the content was wrong: a digest or size that does not match,
/// a transfer cut short, or bytes that are not a (compressed) tar. With the SDK's layout these
/// never reach Trivy: the SDK finds them first.
const LAYER_CONTENT_TROUBLE: [&str; 5] = [
    "error verifying sha256 checksum",
    "does not match expected size",
    "failed to get the layer content",
    "unable to get uncompressed layer",
    "failed to extract the archive",
];

/// What Trivy says when the registry could not be reached while it pulled.
const REGISTRY_UNREACHABLE: [&str; 4] = [
    "connection refused",
    "connection reset",
    "i/o timeout",
    "no such host",
];

/// Whether a failed run's stderr says the registry was unreachable during Trivy's own pull.
pub fn stderr_blames_registry(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    REGISTRY_UNREACHABLE.iter().any(|w| lower.contains(w))
}

/// Whether a failed run's stderr says a layer Trivy pulled itself was corrupt.
pub fn stderr_blames_layer_content(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    LAYER_CONTENT_TROUBLE.iter().any(|w| lower.contains(w))
}

impl From<TrivyError> for sidescan_sdk::Error {
    fn from(err: TrivyError) -> Self {
        use sidescan_sdk::Error as E;
        let msg = err.to_string();
        match err {
            TrivyError::BinaryMissing { .. } | TrivyError::DbUnusable(_) => {
                E::FailedPrecondition(msg)
            }
            TrivyError::Timeout(_) => E::DeadlineExceeded(msg),
            TrivyError::Cancelled => E::Cancelled(msg),
            TrivyError::Failed {
                ref stderr_tail, ..
            } if stderr_blames_db(stderr_tail) => E::FailedPrecondition(msg),
            TrivyError::Failed {
                ref stderr_tail, ..
            } if stderr_blames_registry(stderr_tail) => E::Unavailable(msg),
            TrivyError::Failed {
                ref stderr_tail, ..
            } if stderr_blames_layer_content(stderr_tail) => E::DataLoss(msg),
            TrivyError::InvalidArgument(_) => E::InvalidArgument(msg),
            TrivyError::Failed { .. } | TrivyError::BadOutput(_) | TrivyError::Io { .. } => {
                E::Internal(msg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidescan_sdk::Error as E;

    fn failed(stderr: &str) -> TrivyError {
        TrivyError::Failed {
            status: "exit status: 1".into(),
            stderr_tail: stderr.into(),
        }
    }

    #[test]
    fn errors_map_to_documented_codes() {
        let missing = TrivyError::BinaryMissing {
            path: "x".into(),
            reason: "not found".into(),
        };
        assert!(matches!(E::from(missing), E::FailedPrecondition(_)));
        assert!(matches!(
            E::from(TrivyError::DbUnusable("x".into())),
            E::FailedPrecondition(_)
        ));
        assert!(matches!(
            E::from(TrivyError::Timeout(Duration::from_secs(1))),
            E::DeadlineExceeded(_)
        ));
        assert!(matches!(E::from(TrivyError::Cancelled), E::Cancelled(_)));
        assert!(matches!(
            E::from(failed(
                "FATAL init error: DB error: failed to open db: invalid database"
            )),
            E::FailedPrecondition(_)
        ));
        assert!(matches!(
            E::from(failed("FATAL something else broke")),
            E::Internal(_)
        ));
        // Trivy's own pull (--image-source registry), as Trivy 0.76 words it.
        for corrupt in [
            "failed to analyze layer (sha256:d3): walk error: failed to extract the archive: \
             error verifying sha256 checksum after reading 146 bytes",
            "unable to get uncompressed layer sha256:18: failed to get the layer content \
             (sha256:18): unexpected EOF",
            "GET http://127.0.0.1:1/v2/r/blobs/sha256:fa: Content-Length header 116 does not \
             match expected size 109",
            "walk error: failed to extract the archive: archive/tar: invalid tar header",
        ] {
            assert!(
                matches!(E::from(failed(corrupt)), E::DataLoss(_)),
                "{corrupt}"
            );
        }
        assert!(matches!(
            E::from(failed(
                "failed to get the layer content (sha256:18): dial tcp 127.0.0.1:1: connect: \
                 connection refused"
            )),
            E::Unavailable(_)
        ));
        assert!(matches!(
            E::from(TrivyError::InvalidArgument("x".into())),
            E::InvalidArgument(_)
        ));
    }
}
