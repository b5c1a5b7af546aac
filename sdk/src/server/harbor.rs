//! `--harbor-listen`: Harbor's pluggable-scanner API (`/api/v1`, crate `sidescan-harbor`) served
//! by the plugin process itself, over the same TLS / mTLS settings as its gRPC port.
//!
//! The HTTP layer is `sidescan-harbor`'s, the one the standalone `sidescan-harbor` binary serves
//! in front of plugins in other languages; here its [`ScanBackend`] calls this process's own
//! `sidescan.v1` service in process, so a Harbor scan takes exactly the `ScanImage` path
//! (validation, queue, deadline, pipeline, logs, metrics). Jobs live in memory for
//! `--harbor-job-ttl`; Harbor scans again when a job id is unknown (after a restart, say), and
//! the result caches make that cheap.

use std::sync::Arc;

use sidescan_harbor::{
    AuthorizationType, HarborOptions, HarborService, MemoryJobStore, ScanBackend,
};
use sidescan_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};

use super::ServeError;
use super::config::ServerConfig;
use super::service::ScanGrpc;

/// Bound on a TLS handshake and on reading a request's headers: idle connections must not hold
/// file descriptors (Harbor itself gives every call 5 s).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// The plugin's own `sidescan.v1` service as a Harbor backend.
struct InProcess(ScanGrpc);

#[tonic::async_trait]
impl ScanBackend for InProcess {
    async fn metadata(&self) -> Result<pb::GetMetadataResponse, Status> {
        pb::scan_server::Scan::get_metadata(&self.0, Request::new(pb::GetMetadataRequest {}))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn scan(&self, request: pb::ScanRequest) -> Result<pb::ScanResponse, Status> {
        pb::scan_server::Scan::scan_image(&self.0, Request::new(request))
            .await
            .map(tonic::Response::into_inner)
    }
}

/// Binds `--harbor-listen`.
pub(crate) async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: format!("{addr} (--harbor-listen)"),
            source,
        })
}

/// Serves Harbor's API on `listener` through `scan` until `stop`, over TLS when `tls` is given
/// (the gRPC port's settings, [`super::tls::rustls_config`]).
pub(crate) async fn serve(
    listener: TcpListener,
    scan: ScanGrpc,
    config: &ServerConfig,
    nats: Option<async_nats::Client>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let options = HarborOptions {
        scan_timeout: config.max_timeout,
        authorization_type: if config.harbor_registry_authorization == "bearer" {
            AuthorizationType::Bearer
        } else {
            AuthorizationType::Basic
        },
        ..HarborOptions::default()
    };
    let jobs: Arc<dyn sidescan_harbor::JobStore> = match nats {
        Some(client) => sidescan_harbor::NatsJobStore::connect(
            client,
            config.harbor_job_ttl,
            config.nats_replicas,
        )
        .await
        .map_err(|e| ServeError::Config(format!("--nats: {e}")))?
        .shared(),
        None => Arc::new(MemoryJobStore::new(config.harbor_job_ttl)),
    };
    let service = Arc::new(HarborService::new(Arc::new(InProcess(scan)), jobs, options));
    let router = sidescan_harbor::router(service);
    match tls {
        None => axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .map_err(|e| ServeError::Config(format!("--harbor-listen: {e}"))),
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            loop {
                let (stream, peer) = tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // e.g. out of file descriptors: back off instead of spinning
                            tracing::warn!(error = %e, "--harbor-listen: accept failed");
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                            continue;
                        }
                    },
                };
                let acceptor = acceptor.clone();
                let router = router.clone();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "--harbor-listen: TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "--harbor-listen: TLS handshake timed out");
                            return;
                        }
                    };
                    let service = hyper_util::service::TowerToHyperService::new(router);
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HANDSHAKE_TIMEOUT)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(%peer, error = %e, "--harbor-listen: connection ended");
                    }
                });
            }
        }
    }
}
