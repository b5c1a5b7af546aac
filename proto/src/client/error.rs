//! [`ClientError`], the client's one error type, and how tonic's statuses become one: a status
//! message with its source chain, and an expired deadline reported as `DEADLINE_EXCEEDED`.

use std::{path::PathBuf, time::Duration};

use tokio::time::Instant;
use tonic::{Code, Status};

#[cfg(doc)]
use super::PluginClient;

/// The one error type of this crate: connection and configuration problems, RPC statuses, and
/// plugin-config loading errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The plugin URL is not `http://host:port`, `https://host:port` or `unix:/path`.
    #[error("invalid plugin URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS options are unusable or do not fit the URL.
    #[error("TLS configuration for {url}: {reason}")]
    Tls {
        /// The plugin URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A file (CA certificate, client certificate or key) could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    ReadFile {
        /// What the file was meant to be, e.g. "CA certificate".
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The request id cannot be sent as gRPC metadata (it must be visible ASCII).
    #[error("invalid request id {0:?}: must be non-empty visible ASCII")]
    InvalidRequestId(String),
    /// A lazy connection was requested outside a Tokio runtime.
    #[error("lazy plugin connections must be created inside a Tokio runtime")]
    NoRuntime,
    /// The plugin could not be reached (eager [`PluginClient::connect`] only; a lazy client
    /// reports an `UNAVAILABLE` [`ClientError::Status`] on its first call instead).
    #[error("cannot connect to {url}: {detail}")]
    Connect {
        /// The plugin URL.
        url: String,
        /// The cause, with its whole source chain.
        detail: String,
    },
    /// The RPC ended with a non-OK status (including the local deadline: `DEADLINE_EXCEEDED`).
    #[error("{}: {}", code_name(.0.code()), status_message(.0))]
    Status(#[from] Status),
    /// The plugin broke the stream contract (no result, an event after the result, an empty
    /// event).
    #[error("plugin broke the ScanImageStream contract: {0}")]
    Protocol(String),
    /// A plugin configuration file is missing, unreadable or malformed.
    #[error("plugin config {}: {message}", path.display())]
    Config {
        /// The file (or directory) concerned.
        path: PathBuf,
        /// What is wrong, naming the JSON location where possible.
        message: String,
    },
}

impl ClientError {
    /// The gRPC code this error stands for: the status code for [`ClientError::Status`],
    /// `UNAVAILABLE` for [`ClientError::Connect`], `None` for local configuration errors and
    /// protocol violations.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status(status) => Some(status.code()),
            ClientError::Connect { .. } => Some(Code::Unavailable),
            _ => None,
        }
    }

    /// The RPC status, when this error is one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            ClientError::Status(status) => Some(status),
            _ => None,
        }
    }
}

/// The canonical upper-case name of a gRPC code, e.g. `NOT_FOUND`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A status message with its source chain (transport errors keep the useful part there).
fn status_message(status: &Status) -> String {
    let mut message = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        let text = err.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        source = err.source();
    }
    if message.is_empty() {
        message.push_str("(no message)");
    }
    message
}

/// An error with its whole source chain, `a: b: c`.
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        let next = err.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = err.source();
    }
    text
}

/// The `DEADLINE_EXCEEDED` status of a call that ran past its deadline (`timeout`, if known).
pub(super) fn deadline_status(timeout: Option<Duration>) -> Status {
    Status::deadline_exceeded(match timeout {
        Some(t) => format!("deadline of {} exceeded", humanize(t)),
        None => "deadline exceeded".to_string(),
    })
}

/// A duration for messages: `10s`, or `1500ms` when it is not whole seconds.
pub(super) fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// tonic reports an expired `grpc-timeout` (its own client-side enforcement, and a tonic server's)
/// as `CANCELLED: Timeout expired`; the caller did not cancel anything, so report the deadline.
pub(super) fn normalize(
    status: Status,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> Status {
    if status.code() != Code::Cancelled {
        return status;
    }
    let mut source = std::error::Error::source(&status);
    let mut timed_out = status.message().contains("Timeout expired");
    while let Some(err) = source {
        timed_out |= err.is::<tonic::TimeoutExpired>();
        source = err.source();
    }
    let past_deadline = deadline.is_some_and(|d| Instant::now() >= d);
    if (timed_out && deadline.is_some()) || past_deadline {
        deadline_status(timeout)
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_code() {
        let err = ClientError::from(Status::not_found("no such tag"));
        assert_eq!(err.to_string(), "NOT_FOUND: no such tag");
        assert_eq!(err.code(), Some(Code::NotFound));
        let err = ClientError::Connect {
            url: "http://x:1".into(),
            detail: "refused".into(),
        };
        assert_eq!(err.code(), Some(Code::Unavailable));
    }
}
