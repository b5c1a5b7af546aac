//! The SDK's one error type and the one place that maps it to gRPC status codes.

use tonic::Code;

/// Every error the SDK or a plugin returns from a scan.
///
/// Each variant is one row of the status-code table in `proto/sidescan/v1/scan.proto`; the
/// [`From<Error> for tonic::Status`](#impl-From<Error>-for-Status) impl is the only place where
/// errors become status codes. Plugins build these with the constructor functions
/// ([`Error::unavailable`], ...; one per variant) or the variants directly.
///
/// Inside the SDK, the image layer (pulls, verification, layers, caches) raises its own errors
/// named by cause; their one mapping to this enum is `From<image::Error> for Error`, documented
/// with a table in `sdk/src/image/error.rs`. Messages carry the cause's source chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Malformed reference, digest, platform, unknown report type or bad option.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Repository, tag or digest does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The registry refused the credentials, or needs some and none were given.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The credentials are valid but may not pull this artifact; or the registry, a redirect it
    /// sends or the token realm it names is outside the plugin's allowed registries.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Registry unreachable or failing; scanner engine not ready.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Content does not match its digest.
    #[error("data loss: {0}")]
    DataLoss(String),
    /// The artifact cannot be scanned by this plugin, or the engine is misconfigured.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// Over a limit: image size, files, queue, disk.
    #[error("resource exhausted: {0}")]
    ResourceExhausted(String),
    /// The caller's deadline (or the server's maximum scan time) passed.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(String),
    /// The caller cancelled the scan.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// A bug. Never used for bad input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An [`Error::InvalidArgument`].
    pub fn invalid_argument(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
    /// An [`Error::NotFound`].
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    /// An [`Error::Unauthenticated`].
    pub fn unauthenticated(msg: impl Into<String>) -> Self {
        Self::Unauthenticated(msg.into())
    }
    /// An [`Error::PermissionDenied`].
    pub fn permission_denied(msg: impl Into<String>) -> Self {
        Self::PermissionDenied(msg.into())
    }
    /// An [`Error::Unavailable`].
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Self::Unavailable(msg.into())
    }
    /// An [`Error::DataLoss`].
    pub fn data_loss(msg: impl Into<String>) -> Self {
        Self::DataLoss(msg.into())
    }
    /// An [`Error::FailedPrecondition`].
    pub fn failed_precondition(msg: impl Into<String>) -> Self {
        Self::FailedPrecondition(msg.into())
    }
    /// An [`Error::ResourceExhausted`].
    pub fn resource_exhausted(msg: impl Into<String>) -> Self {
        Self::ResourceExhausted(msg.into())
    }
    /// An [`Error::DeadlineExceeded`].
    pub fn deadline_exceeded(msg: impl Into<String>) -> Self {
        Self::DeadlineExceeded(msg.into())
    }
    /// An [`Error::Cancelled`].
    pub fn cancelled(msg: impl Into<String>) -> Self {
        Self::Cancelled(msg.into())
    }
    /// An [`Error::Internal`].
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }

    /// The gRPC status code of this error (the status-code table of `sidescan.v1`).
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Unavailable(_) => Code::Unavailable,
            Self::DataLoss(_) => Code::DataLoss,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::Cancelled(_) => Code::Cancelled,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The message without the code prefix.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidArgument(m)
            | Self::NotFound(m)
            | Self::Unauthenticated(m)
            | Self::PermissionDenied(m)
            | Self::Unavailable(m)
            | Self::DataLoss(m)
            | Self::FailedPrecondition(m)
            | Self::ResourceExhausted(m)
            | Self::DeadlineExceeded(m)
            | Self::Cancelled(m)
            | Self::Internal(m) => m,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        tonic::Status::new(err.code(), err.message().to_owned())
    }
}

/// Reading an [`crate::Entry`] or [`crate::ArtifactBlob`] fails with an `io::Error` that carries
/// the SDK's [`Error`] (a limit, a digest mismatch, cancellation); this recovers it, so `?` on a
/// read keeps the right status code. Any other I/O error is INTERNAL.
impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        match err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Error>())
        {
            Some(carried) => carried.clone(),
            None => Error::internal(format!("I/O error: {err}")),
        }
    }
}

/// A `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_carrying_an_sdk_error_keep_its_code() {
        let carried = std::io::Error::other(Error::data_loss("diff_id mismatch"));
        assert_eq!(Error::from(carried), Error::data_loss("diff_id mismatch"));
        let plain = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
        assert_eq!(Error::from(plain).code(), Code::Internal);
    }

    #[test]
    fn every_variant_maps_to_its_documented_code() {
        let cases = [
            (Error::invalid_argument("x"), Code::InvalidArgument),
            (Error::not_found("x"), Code::NotFound),
            (Error::Unauthenticated("x".into()), Code::Unauthenticated),
            (Error::PermissionDenied("x".into()), Code::PermissionDenied),
            (Error::unavailable("x"), Code::Unavailable),
            (Error::data_loss("x"), Code::DataLoss),
            (Error::failed_precondition("x"), Code::FailedPrecondition),
            (Error::resource_exhausted("x"), Code::ResourceExhausted),
            (Error::DeadlineExceeded("x".into()), Code::DeadlineExceeded),
            (Error::Cancelled("x".into()), Code::Cancelled),
            (Error::internal("x"), Code::Internal),
        ];
        for (err, code) in cases {
            let status = tonic::Status::from(err.clone());
            assert_eq!(status.code(), code, "{err:?}");
            assert_eq!(status.message(), "x");
        }
    }
}
