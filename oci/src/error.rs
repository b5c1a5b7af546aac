//! Errors of the registry side, named by cause. [`Error::is_transient`] says which ones are
//! worth retrying (the registry or the network, not the request).

use oci_client::errors::OciDistributionError;

/// What went wrong talking to a registry or reading what it holds.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Credentials could not be read (a broken auth file, half a user/password pair).
    #[error("registry credentials: {0}")]
    Credentials(String),
    /// A registry URL or image reference that cannot be used.
    #[error("{0}")]
    BadReference(String),
    /// The registry refused or failed a request (oci-client's view of it).
    #[error("{what} at {registry}: {source}")]
    Registry {
        /// The registry host.
        registry: String,
        /// The request.
        what: String,
        /// What oci-client saw.
        #[source]
        source: OciDistributionError,
    },
    /// The registry answered a request with an unexpected HTTP status.
    #[error("{what}: HTTP {status}")]
    Status {
        /// The request.
        what: String,
        /// The status code.
        status: u16,
    },
    /// The registry could not be reached, or the connection broke.
    #[error("{0}")]
    Http(String),
    /// A document is not what it claims to be.
    #[error("{0}")]
    Malformed(String),
    /// A document or blob is larger than allowed.
    #[error("{what} is larger than {max} bytes")]
    TooLarge {
        /// What was read.
        what: String,
        /// The cap.
        max: u64,
    },
    /// Content does not match its digest.
    #[error("{what}: content has digest {actual}")]
    DigestMismatch {
        /// What was read.
        what: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A conditional write lost a race with another writer.
    #[error("conflict: {0}")]
    Conflict(String),
}

impl Error {
    pub(crate) fn from_oci(registry: &str, what: String, source: OciDistributionError) -> Self {
        Self::Registry {
            registry: registry.into(),
            what,
            source,
        }
    }

    /// Whether trying again later may succeed: the network, a 5xx or 429, a lost race.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http(_) | Self::Conflict(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::Registry { source, .. } => match source {
                OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => true,
                OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
                OciDistributionError::RegistryError { envelope, .. } => envelope
                    .errors
                    .iter()
                    .any(|e| matches!(e.code, oci_client::errors::OciErrorCode::Toomanyrequests)),
                _ => false,
            },
            _ => false,
        }
    }
}
