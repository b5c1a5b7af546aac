//! A small typed client for hosts: connect to a plugin, then call `GetMetadata`, `ScanImage`,
//! `ScanImageStream` and the gRPC health check.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sidescan_proto::client::ClientError> {
//! use std::time::Duration;
//! use sidescan_proto::client::{ClientOptions, PluginClient};
//! use sidescan_proto::v1::{Registry, ScanRequest};
//!
//! let options = ClientOptions::default().timeout(Duration::from_secs(300));
//! let client = PluginClient::connect("http://127.0.0.1:9100", options).await?;
//! let response = client
//!     .scan(ScanRequest {
//!         image: "library/alpine:3.20".into(),
//!         registry: Some(Registry { url: "http://127.0.0.1:5000".into(), ..Default::default() }),
//!         ..Default::default()
//!     })
//!     .await?;
//! println!("{} findings", response.report.map_or(0, |r| r.vulnerabilities.len()));
//! # Ok(()) }
//! ```
//!
//! Plugin URLs: `http://host:port`, `https://host:port` (needs [`TlsOptions`]) or
//! `unix:/path/to.sock` (also `unix:///path/to.sock`).
//!
//! Deadlines: the per-call timeout ([`ClientOptions::timeout`], [`PluginClient::with_timeout`]) is
//! sent to the plugin as the gRPC deadline (`grpc-timeout`) and also enforced locally, for a
//! stream over the whole stream.
//!
//! Retries ([`ClientOptions::retry`], [`RetryPolicy`]; on by default): `GetMetadata`,
//! `ScanImage` and the opening of `ScanImageStream` are tried again after `UNAVAILABLE`, and
//! after `RESOURCE_EXHAUSTED` that carries the server's `grpc-retry-pushback-ms` (a full scan
//! queue), with exponential backoff and full jitter on top of the pushback, all within the one
//! per-call deadline. A stream that has started is not retried, nor is the health check.

use std::{fmt, time::Duration};

use tokio::time::Instant;
use tonic::{
    Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    transport::Channel,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus as PbServingStatus,
    health_client::HealthClient,
};

use crate::v1::{
    GetMetadataRequest, GetMetadataResponse, ScanRequest, ScanResponse, scan_client::ScanClient,
};

mod error;
mod retry;
mod stream;
mod target;
mod tls;

pub use error::{ClientError, code_name};
pub use retry::{DEFAULT_MAX_ATTEMPTS, PUSHBACK_HEADER, RetryPolicy};
pub use stream::{ScanEvent, ScanStream};
pub use tls::TlsOptions;

use error::{deadline_status, error_chain, humanize, normalize};
use retry::with_retries;
use target::prepare;

/// The request metadata key carrying a caller-chosen request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The connect timeout used when [`ClientOptions::connect_timeout`] is left at its default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to connect to a plugin and the defaults for each call.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Bound on establishing the connection (TCP/Unix connect and TLS handshake).
    /// Default: [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Default per-call timeout, sent as the gRPC deadline. `None`: no deadline (the plugin
    /// applies its own default).
    pub timeout: Option<Duration>,
    /// TLS settings; required for `https://` URLs, refused for the others.
    pub tls: Option<TlsOptions>,
    /// `x-request-id` sent with every call.
    pub request_id: Option<String>,
    /// Which failed calls are tried again, and when (see [`RetryPolicy`]). Default: 5 attempts.
    pub retry: RetryPolicy,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: None,
            tls: None,
            request_id: None,
            retry: RetryPolicy::default(),
        }
    }
}

impl ClientOptions {
    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the default per-call timeout (the gRPC deadline).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the TLS options.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the `x-request-id` sent with every call.
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Sets the retry policy ([`RetryPolicy::disabled`]: no retries).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// The `x-request-id` value: non-empty visible ASCII (spaces allowed), else
/// [`ClientError::InvalidRequestId`].
fn parse_request_id(id: &str) -> Result<AsciiMetadataValue, ClientError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(ClientError::InvalidRequestId(id.to_string()));
    }
    MetadataValue::try_from(id).map_err(|_| ClientError::InvalidRequestId(id.to_string()))
}

/// What [`PluginClient::health`] reports for the `sidescan.v1.Scan` service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServingStatus {
    /// The plugin does not know its own state.
    Unknown,
    /// Ready to scan.
    Serving,
    /// Up but not ready (e.g. the engine or its database is still loading).
    NotServing,
    /// The health service does not know `sidescan.v1.Scan` (only in Watch; Check answers
    /// `NOT_FOUND` instead).
    ServiceUnknown,
}

impl ServingStatus {
    /// The grpc.health.v1 name: `SERVING`, `NOT_SERVING`, `UNKNOWN` or `SERVICE_UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServingStatus::Unknown => "UNKNOWN",
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
        }
    }
}

impl fmt::Display for ServingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection to one plugin. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct PluginClient {
    channel: Channel,
    url: String,
    timeout: Option<Duration>,
    request_id: Option<AsciiMetadataValue>,
    retry: RetryPolicy,
}

impl PluginClient {
    /// Connects to a plugin now, within `options.connect_timeout`.
    ///
    /// Errors: [`ClientError::InvalidUrl`], [`ClientError::Tls`], [`ClientError::InvalidRequestId`]
    /// for bad input; [`ClientError::Connect`] when the plugin cannot be reached.
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let (endpoint, target, request_id) = prepare(url, &options)?;
        let connect_err = |detail: String| ClientError::Connect {
            url: url.to_string(),
            detail,
        };
        let connecting = target.dial(&endpoint);
        let channel = tokio::time::timeout(options.connect_timeout, connecting)
            .await
            .map_err(|_| {
                connect_err(format!(
                    "timed out after {}",
                    humanize(options.connect_timeout)
                ))
            })?
            .map_err(|e| connect_err(error_chain(&e)))?;
        Ok(PluginClient {
            channel,
            url: url.to_string(),
            timeout: options.timeout,
            request_id,
            retry: options.retry.clone(),
        })
    }

    /// Creates a client that connects on first use (and reconnects as needed). Must be called
    /// inside a Tokio runtime ([`ClientError::NoRuntime`] otherwise). Connection failures surface
    /// as `UNAVAILABLE` statuses from the calls.
    pub fn connect_lazy(url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ClientError::NoRuntime);
        }
        let (endpoint, target, request_id) = prepare(url, &options)?;
        let channel = target.dial_lazy(&endpoint);
        Ok(PluginClient {
            channel,
            url: url.to_string(),
            timeout: options.timeout,
            request_id,
            retry: options.retry.clone(),
        })
    }

    /// The plugin URL this client was made for.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The per-call timeout in force.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// A client on the same connection with another per-call timeout (`None`: no deadline).
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Self {
        PluginClient {
            timeout,
            ..self.clone()
        }
    }

    /// The retry policy in force.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// A client on the same connection with another retry policy.
    pub fn with_retry(&self, retry: RetryPolicy) -> Self {
        PluginClient {
            retry,
            ..self.clone()
        }
    }

    /// A client on the same connection sending another `x-request-id` (`None`: none).
    pub fn with_request_id(&self, request_id: Option<&str>) -> Result<Self, ClientError> {
        Ok(PluginClient {
            request_id: request_id.map(parse_request_id).transpose()?,
            ..self.clone()
        })
    }

    /// The underlying channel, for other services (e.g. reflection) or raw calls on the same
    /// connection. It carries no per-call timeout or request id.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The generated gRPC client on this connection, for anything this type does not wrap.
    pub fn raw(&self) -> ScanClient<Channel> {
        ScanClient::new(self.channel.clone())
    }

    /// A request with the request id and, when the call has a deadline, the time left until it
    /// as its gRPC deadline.
    fn request<T>(&self, message: T, deadline: Option<Instant>) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(deadline) = deadline {
            request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        if let Some(id) = &self.request_id {
            request.metadata_mut().insert(REQUEST_ID_HEADER, id.clone());
        }
        request
    }

    fn deadline(&self) -> Option<Instant> {
        self.timeout.map(|t| Instant::now() + t)
    }

    /// Calls `GetMetadata` (retried as [`RetryPolicy`] says).
    pub async fn metadata(&self) -> Result<GetMetadataResponse, ClientError> {
        let deadline = self.deadline();
        with_retries(&self.retry, deadline, || {
            let mut client = self.raw();
            async move {
                let call = client.get_metadata(self.request(GetMetadataRequest {}, deadline));
                with_deadline(deadline, self.timeout, call).await
            }
        })
        .await
        .map(tonic::Response::into_inner)
    }

    /// Calls `ScanImage` (retried as [`RetryPolicy`] says).
    pub async fn scan(&self, request: ScanRequest) -> Result<ScanResponse, ClientError> {
        let deadline = self.deadline();
        with_retries(&self.retry, deadline, || {
            let mut client = self.raw();
            let request = self.request(request.clone(), deadline);
            async move { with_deadline(deadline, self.timeout, client.scan_image(request)).await }
        })
        .await
        .map(tonic::Response::into_inner)
    }

    /// Calls `ScanImageStream`; the returned stream yields progress events and then exactly one
    /// result, checking that contract. [`ScanStream::result`] drains it into the final response.
    /// A call refused before its stream opens is retried as [`RetryPolicy`] says; a stream that
    /// has opened is not.
    pub async fn scan_stream(&self, request: ScanRequest) -> Result<ScanStream, ClientError> {
        let deadline = self.deadline();
        let inner =
            with_retries(&self.retry, deadline, || {
                let mut client = self.raw();
                let request = self.request(request.clone(), deadline);
                async move {
                    with_deadline(deadline, self.timeout, client.scan_image_stream(request)).await
                }
            })
            .await?
            .into_inner();
        Ok(ScanStream::new(inner, deadline, self.timeout))
    }

    /// Calls grpc.health.v1 `Check` for the `sidescan.v1.Scan` service.
    pub async fn health(&self) -> Result<ServingStatus, ClientError> {
        let deadline = self.deadline();
        let mut client = HealthClient::new(self.channel.clone());
        let call = client.check(self.request(
            HealthCheckRequest {
                service: crate::SCAN_SERVICE_NAME.to_string(),
            },
            deadline,
        ));
        let response = with_deadline(deadline, self.timeout, call)
            .await?
            .into_inner();
        Ok(
            match PbServingStatus::try_from(response.status).unwrap_or(PbServingStatus::Unknown) {
                PbServingStatus::Unknown => ServingStatus::Unknown,
                PbServingStatus::Serving => ServingStatus::Serving,
                PbServingStatus::NotServing => ServingStatus::NotServing,
                PbServingStatus::ServiceUnknown => ServingStatus::ServiceUnknown,
            },
        )
    }
}

/// Runs a unary call within the local deadline; its status, normalised, becomes a
/// [`ClientError::Status`].
async fn with_deadline<T>(
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, ClientError> {
    let result = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, call)
            .await
            .map_err(|_| deadline_status(timeout))?,
        None => call.await,
    };
    result.map_err(|status| ClientError::Status(normalize(status, deadline, timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_must_be_ascii() {
        assert!(parse_request_id("abc-123").is_ok());
        assert!(parse_request_id("").is_err());
        assert!(parse_request_id("é").is_err());
        assert!(parse_request_id("a\nb").is_err());
    }

    #[test]
    fn lazy_outside_runtime_is_an_error_not_a_panic() {
        assert!(matches!(
            PluginClient::connect_lazy("http://127.0.0.1:1", ClientOptions::default()),
            Err(ClientError::NoRuntime)
        ));
    }
}
