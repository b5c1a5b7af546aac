//! [`ScanBackend`]: what the Harbor front door needs from a plugin, and [`GrpcBackend`], the
//! backend that calls any `sidescan.v1` plugin over gRPC with `sidescan_proto::client`.
//!
//! The SDK implements the same trait in process (`--harbor-listen`), so one HTTP layer serves
//! both the standalone `sidescan-harbor` and every SDK plugin.

use std::time::Duration;

use sidescan_proto::client::{ClientError, ClientOptions, PluginClient, RetryPolicy};
use sidescan_proto::v1::{GetMetadataResponse, ScanRequest, ScanResponse};
use tonic::{Code, Status};

/// A scanner the Harbor API can drive: its `sidescan.v1` metadata and one scan.
#[async_trait::async_trait]
pub trait ScanBackend: Send + Sync + 'static {
    /// The plugin's `GetMetadata` answer.
    async fn metadata(&self) -> Result<GetMetadataResponse, Status>;
    /// One `ScanImage` call. The caller bounds it in time; dropping the future cancels it.
    async fn scan(&self, request: ScanRequest) -> Result<ScanResponse, Status>;
}

/// A [`ScanBackend`] calling a `sidescan.v1` plugin over gRPC (TCP or Unix socket). The
/// connection is made lazily and re-made as needed, so the adapter starts before its plugin.
#[derive(Clone, Debug)]
pub struct GrpcBackend {
    client: PluginClient,
    metadata_timeout: Duration,
}

impl GrpcBackend {
    /// A backend for the plugin at `url` (`http://host:port` or `unix:/path`); scans get
    /// `scan_timeout` as their gRPC deadline, metadata calls `metadata_timeout`. Must be called
    /// inside a Tokio runtime.
    pub fn new(
        url: &str,
        scan_timeout: Duration,
        metadata_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let options = ClientOptions::default()
            .connect_timeout(metadata_timeout)
            .timeout(scan_timeout);
        Ok(GrpcBackend {
            client: PluginClient::connect_lazy(url, options)?,
            metadata_timeout,
        })
    }

    /// The plugin URL.
    pub fn url(&self) -> &str {
        self.client.url()
    }
}

/// The status a client error stands for (local errors become `UNAVAILABLE` or `INTERNAL`).
fn status_of(error: ClientError) -> Status {
    match error {
        ClientError::Status(status) => status,
        other => {
            let code = match other.code() {
                Some(code) => code,
                None => Code::Unavailable,
            };
            Status::new(code, other.to_string())
        }
    }
}

#[async_trait::async_trait]
impl ScanBackend for GrpcBackend {
    /// Not retried: Harbor's metadata call must answer within its own 5 s, and the service keeps
    /// a stale copy for when the plugin is down.
    async fn metadata(&self) -> Result<GetMetadataResponse, Status> {
        self.client
            .with_timeout(Some(self.metadata_timeout))
            .with_retry(RetryPolicy::disabled())
            .metadata()
            .await
            .map_err(status_of)
    }

    /// Retried as `RetryPolicy::default()` says (a full queue, a plugin restarting), within the
    /// scan timeout.
    async fn scan(&self, request: ScanRequest) -> Result<ScanResponse, Status> {
        self.client.scan(request).await.map_err(status_of)
    }
}
