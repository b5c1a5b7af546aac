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

use std::{
    fmt,
    path::{Path, PathBuf},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::{
    Code, Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus as PbServingStatus,
    health_client::HealthClient,
};

use crate::v1::{
    GetMetadataRequest, GetMetadataResponse, Progress, ScanImageStreamResponse, ScanRequest,
    ScanResponse, scan_client::ScanClient, scan_image_stream_response::Event,
};

/// The request metadata key carrying a caller-chosen request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The connect timeout used when [`ClientOptions::connect_timeout`] is left at its default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
fn error_chain(err: &dyn std::error::Error) -> String {
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

/// TLS settings for `https://` plugin URLs.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// PEM of the CA certificate(s) that signed the plugin's certificate. Required for https:
    /// the client trusts no system roots.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// PEM of the client certificate, for mutual TLS (needs `client_key_pem`).
    pub client_cert_pem: Option<Vec<u8>>,
    /// PEM of the client certificate's private key, for mutual TLS.
    pub client_key_pem: Option<Vec<u8>>,
    /// Server name to verify instead of the URL's host (e.g. when connecting by IP address).
    pub domain: Option<String>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_cert_pem", &self.ca_cert_pem.as_ref().map(|b| b.len()))
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(|b| b.len()),
            )
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("domain", &self.domain)
            .finish()
    }
}

impl TlsOptions {
    /// Reads the CA certificate and, optionally, the client certificate and key from PEM files.
    pub fn from_files(
        ca_cert: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let read = |what: &'static str, path: Option<&Path>| {
            path.map(|path| {
                std::fs::read(path).map_err(|source| ClientError::ReadFile {
                    what,
                    path: path.to_path_buf(),
                    source,
                })
            })
            .transpose()
        };
        Ok(TlsOptions {
            ca_cert_pem: read("CA certificate", ca_cert)?,
            client_cert_pem: read("client certificate", client_cert)?,
            client_key_pem: read("client key", client_key)?,
            domain: None,
        })
    }

    /// Sets the server name to verify.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.ca_cert_pem.is_none()
            && self.client_cert_pem.is_none()
            && self.client_key_pem.is_none()
            && self.domain.is_none()
    }

    fn to_tonic(&self, url: &str) -> Result<ClientTlsConfig, ClientError> {
        let tls_err = |reason: &str| ClientError::Tls {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let ca = self.ca_cert_pem.as_ref().ok_or_else(|| {
            tls_err("no CA certificate given: an https plugin URL needs the CA that signed the plugin's certificate")
        })?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(cert), Some(key)) => config = config.identity(Identity::from_pem(cert, key)),
            (None, None) => {}
            (Some(_), None) => return Err(tls_err("a client certificate needs its key")),
            (None, Some(_)) => return Err(tls_err("a client key needs its certificate")),
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }
}

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
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: None,
            tls: None,
            request_id: None,
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
}

/// A parsed plugin address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Tcp { uri: Uri, tls: bool },
    Unix(PathBuf),
}

fn parse_target(url: &str) -> Result<Target, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if let Some(rest) = url.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(invalid("no socket path after \"unix:\""));
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err(invalid(&format!(
                "unsupported scheme {other:?}; expected http://host:port, https://host:port or unix:/path"
            )));
        }
        None => {
            return Err(invalid(
                "no scheme; expected http://host:port, https://host:port or unix:/path",
            ));
        }
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("a plugin URL has no path or query"));
    }
    Ok(Target::Tcp { uri, tls })
}

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
        let connecting = async {
            match &target {
                Target::Tcp { .. } => endpoint.connect().await,
                Target::Unix(path) => endpoint.connect_with_connector(unix_connector(path)).await,
            }
        };
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
        let channel = match &target {
            Target::Tcp { .. } => endpoint.connect_lazy(),
            Target::Unix(path) => endpoint.connect_with_connector_lazy(unix_connector(path)),
        };
        Ok(PluginClient {
            channel,
            url: url.to_string(),
            timeout: options.timeout,
            request_id,
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

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(timeout) = self.timeout {
            request.set_timeout(timeout);
        }
        if let Some(id) = &self.request_id {
            request.metadata_mut().insert(REQUEST_ID_HEADER, id.clone());
        }
        request
    }

    fn deadline(&self) -> Option<Instant> {
        self.timeout.map(|t| Instant::now() + t)
    }

    /// Calls `GetMetadata`.
    pub async fn metadata(&self) -> Result<GetMetadataResponse, ClientError> {
        let deadline = self.deadline();
        let mut client = self.raw();
        let call = client.get_metadata(self.request(GetMetadataRequest {}));
        Ok(with_deadline(deadline, self.timeout, call)
            .await?
            .into_inner())
    }

    /// Calls `ScanImage`.
    pub async fn scan(&self, request: ScanRequest) -> Result<ScanResponse, ClientError> {
        let deadline = self.deadline();
        let mut client = self.raw();
        let call = client.scan_image(self.request(request));
        Ok(with_deadline(deadline, self.timeout, call)
            .await?
            .into_inner())
    }

    /// Calls `ScanImageStream`; the returned stream yields progress events and then exactly one
    /// result, checking that contract. [`ScanStream::result`] drains it into the final response.
    pub async fn scan_stream(&self, request: ScanRequest) -> Result<ScanStream, ClientError> {
        let deadline = self.deadline();
        let mut client = self.raw();
        let call = client.scan_image_stream(self.request(request));
        let inner = with_deadline(deadline, self.timeout, call)
            .await?
            .into_inner();
        Ok(ScanStream {
            inner,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            deadline_at: deadline,
            timeout: self.timeout,
            got_result: false,
            done: false,
        })
    }

    /// Calls grpc.health.v1 `Check` for the `sidescan.v1.Scan` service.
    pub async fn health(&self) -> Result<ServingStatus, ClientError> {
        let deadline = self.deadline();
        let mut client = HealthClient::new(self.channel.clone());
        let call = client.check(self.request(HealthCheckRequest {
            service: crate::SCAN_SERVICE_NAME.to_string(),
        }));
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

fn prepare(
    url: &str,
    options: &ClientOptions,
) -> Result<(Endpoint, Target, Option<AsciiMetadataValue>), ClientError> {
    let target = parse_target(url)?;
    let request_id = options
        .request_id
        .as_deref()
        .map(parse_request_id)
        .transpose()?;
    let tls = options.tls.as_ref().filter(|t| !t.is_empty());
    let endpoint = match &target {
        Target::Tcp { uri, tls: true } => {
            let config = tls
                .ok_or_else(|| ClientError::Tls {
                    url: url.to_string(),
                    reason: "an https plugin URL needs TLS options (at least a CA certificate)"
                        .to_string(),
                })?
                .to_tonic(url)?;
            Endpoint::from(uri.clone())
                .tls_config(config)
                .map_err(|e| ClientError::Tls {
                    url: url.to_string(),
                    reason: error_chain(&e),
                })?
        }
        Target::Tcp { uri, tls: false } => {
            if tls.is_some() {
                return Err(ClientError::Tls {
                    url: url.to_string(),
                    reason: "TLS options given for a plain http URL; use https://".to_string(),
                });
            }
            Endpoint::from(uri.clone())
        }
        Target::Unix(_) => {
            if tls.is_some() {
                return Err(ClientError::Tls {
                    url: url.to_string(),
                    reason: "TLS options given for a unix socket".to_string(),
                });
            }
            // The authority is only used for the :authority pseudo-header.
            Endpoint::from(Uri::from_static("http://localhost"))
        }
    };
    Ok((
        endpoint.connect_timeout(options.connect_timeout),
        target,
        request_id,
    ))
}

type UnixConnector = tower::util::ServiceFn<
    Box<
        dyn FnMut(
                Uri,
            ) -> Pin<
                Box<dyn Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send>,
            > + Send,
    >,
>;

fn unix_connector(path: &Path) -> UnixConnector {
    let path = path.to_path_buf();
    tower::service_fn(Box::new(move |_: Uri| {
        let path = path.clone();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok(TokioIo::new(stream))
        })
    }))
}

fn deadline_status(timeout: Option<Duration>) -> Status {
    Status::deadline_exceeded(match timeout {
        Some(t) => format!("deadline of {} exceeded", humanize(t)),
        None => "deadline exceeded".to_string(),
    })
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// tonic reports an expired `grpc-timeout` (its own client-side enforcement, and a tonic server's)
/// as `CANCELLED: Timeout expired`; the caller did not cancel anything, so report the deadline.
fn normalize(status: Status, deadline: Option<Instant>, timeout: Option<Duration>) -> Status {
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

/// One event of [`ScanStream`].
#[derive(Clone, Debug, PartialEq)]
pub enum ScanEvent {
    /// Work in progress.
    Progress(Progress),
    /// The final response (the same `ScanImage` would return).
    Result(Box<ScanResponse>),
}

/// The events of a `ScanImageStream` call, checked against the contract: zero or more progress
/// events, then exactly one result, then the end of the stream. A violation is a
/// [`ClientError::Protocol`]; the per-call deadline covers the whole stream. After the first
/// error the stream ends.
pub struct ScanStream {
    inner: tonic::Streaming<ScanImageStreamResponse>,
    deadline: Option<Pin<Box<Sleep>>>,
    deadline_at: Option<Instant>,
    timeout: Option<Duration>,
    got_result: bool,
    done: bool,
}

impl fmt::Debug for ScanStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScanStream")
            .field("timeout", &self.timeout)
            .field("got_result", &self.got_result)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ScanStream {
    /// Reads the stream to its end, calling `on_progress` for each progress event, and returns
    /// the result.
    pub async fn result(
        mut self,
        mut on_progress: impl FnMut(&Progress),
    ) -> Result<ScanResponse, ClientError> {
        use tokio_stream::StreamExt;
        let mut result = None;
        while let Some(event) = self.next().await {
            match event? {
                ScanEvent::Progress(progress) => on_progress(&progress),
                ScanEvent::Result(response) => result = Some(*response),
            }
        }
        // The stream only ends cleanly after exactly one result.
        result.ok_or_else(|| ClientError::Protocol("stream ended without a result".into()))
    }
}

impl Stream for ScanStream {
    type Item = Result<ScanEvent, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let fail = |this: &mut ScanStream, err: ClientError| {
            this.done = true;
            Poll::Ready(Some(Err(err)))
        };
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(message))) => match message.event {
                Some(Event::Progress(_)) | Some(Event::Result(_)) if this.got_result => fail(
                    this,
                    ClientError::Protocol("an event was sent after the result".into()),
                ),
                Some(Event::Progress(progress)) => {
                    Poll::Ready(Some(Ok(ScanEvent::Progress(progress))))
                }
                Some(Event::Result(response)) => {
                    this.got_result = true;
                    Poll::Ready(Some(Ok(ScanEvent::Result(Box::new(response)))))
                }
                None => fail(
                    this,
                    ClientError::Protocol("an event with neither progress nor result".into()),
                ),
            },
            Poll::Ready(Some(Err(status))) => {
                let status = normalize(status, this.deadline_at, this.timeout);
                fail(this, ClientError::Status(status))
            }
            Poll::Ready(None) => {
                this.done = true;
                if this.got_result {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(ClientError::Protocol(
                        "stream ended without a result".into(),
                    ))))
                }
            }
            Poll::Pending => {
                if let Some(sleep) = this.deadline.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    let status = deadline_status(this.timeout);
                    return fail(this, ClientError::Status(status));
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plugin_urls() {
        assert!(matches!(
            parse_target("http://127.0.0.1:9100"),
            Ok(Target::Tcp { tls: false, .. })
        ));
        assert!(matches!(
            parse_target("https://localhost:9100/"),
            Ok(Target::Tcp { tls: true, .. })
        ));
        assert_eq!(
            parse_target("unix:/run/p.sock").ok(),
            Some(Target::Unix("/run/p.sock".into()))
        );
        assert_eq!(
            parse_target("unix:///run/p.sock").ok(),
            Some(Target::Unix("/run/p.sock".into()))
        );
        for bad in [
            "",
            "127.0.0.1:9100",
            "ftp://x:1",
            "unix:",
            "http://h:1/path",
            "http://",
        ] {
            assert!(
                matches!(parse_target(bad), Err(ClientError::InvalidUrl { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn request_ids_must_be_ascii() {
        assert!(parse_request_id("abc-123").is_ok());
        assert!(parse_request_id("").is_err());
        assert!(parse_request_id("é").is_err());
        assert!(parse_request_id("a\nb").is_err());
    }

    #[test]
    fn tls_options_must_fit_the_url() {
        let tls = TlsOptions {
            ca_cert_pem: Some(b"x".to_vec()),
            ..Default::default()
        };
        let options = ClientOptions::default().tls(tls.clone());
        assert!(matches!(
            prepare("http://127.0.0.1:1", &options),
            Err(ClientError::Tls { .. })
        ));
        assert!(matches!(
            prepare("unix:/x.sock", &options),
            Err(ClientError::Tls { .. })
        ));
        assert!(matches!(
            prepare("https://127.0.0.1:1", &ClientOptions::default()),
            Err(ClientError::Tls { .. })
        ));
        let cert_only = TlsOptions {
            client_cert_pem: Some(b"x".to_vec()),
            ..tls
        };
        assert!(matches!(
            prepare(
                "https://127.0.0.1:1",
                &ClientOptions::default().tls(cert_only)
            ),
            Err(ClientError::Tls { .. })
        ));
    }

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

    #[test]
    fn lazy_outside_runtime_is_an_error_not_a_panic() {
        assert!(matches!(
            PluginClient::connect_lazy("http://127.0.0.1:1", ClientOptions::default()),
            Err(ClientError::NoRuntime)
        ));
    }

    #[test]
    fn tls_debug_redacts_the_key() {
        let tls = TlsOptions {
            client_key_pem: Some(b"SECRET".to_vec()),
            ..Default::default()
        };
        assert!(!format!("{tls:?}").contains("SECRET"));
    }
}
