//! The plugin server: one entry point ([`serve`]) that owns flags and environment, logging, TLS,
//! health, reflection, the concurrency limit, deadlines, graceful shutdown and exit codes.
//!
//! Exit codes of a plugin process: 0 after a clean shutdown, 1 when the server cannot start or
//! fails while serving, 2 for invalid flags, 3 when in-flight scans outlived the shutdown grace
//! period.

mod config;
mod exporter;
mod flight;
mod harbor;
mod health;
mod limiter;
mod logging;
mod record;
mod service;
mod tls;
mod zot;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, server::TcpIncoming};

pub use config::{ListenAddr, LogFormat, ServerConfig, parse_args};

use crate::image::cache::SharedResults;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::plugin::{Readiness, Scanner};
use service::{ScanGrpc, ScanService};

/// Why a server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting could not be used (unreadable TLS files, cache directory, ...).
    #[error("configuration error: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The gRPC transport failed.
    #[error("server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Scans were still running when the shutdown grace period ended.
    #[error("shutdown grace period expired with scans still in flight")]
    GraceExpired,
}

impl ServeError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::GraceExpired => 3,
            _ => 1,
        }
    }
}

/// Runs `scanner` as a plugin process: parses the SDK's flags and environment (exit 2 on invalid
/// ones), serves until SIGTERM or SIGINT, drains, and returns the exit code. A plugin's `main` is
/// `fn main() -> ExitCode { sidescan_sdk::serve(MyScanner) }`.
pub fn serve<S: Scanner>(scanner: S) -> ExitCode {
    let info = scanner.info();
    let command = <ServerConfig as clap::Args>::augment_args(
        clap::Command::new(info.name.clone())
            .version(info.version.clone())
            .about(format!("{} — a sidescan.v1 scanner plugin", info.name)),
    );
    let matches = command.get_matches();
    let config = match <ServerConfig as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(config) => config,
        Err(err) => err.exit(),
    };
    serve_with(scanner, config)
}

/// Runs `scanner` with an already parsed `config` (for plugins that add flags of their own by
/// flattening [`ServerConfig`] into their parser). Serves until SIGTERM or SIGINT.
pub fn serve_with<S: Scanner>(scanner: S, config: ServerConfig) -> ExitCode {
    logging::init(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(Arc::new(scanner), config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "plugin server stopped");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the plugin with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received: draining"),
        _ = int.recv() => tracing::info!("SIGINT received: draining"),
    }
}

/// Serves `scanner` until `shutdown` resolves, then stops accepting work, reports NOT_SERVING,
/// lets in-flight scans finish within the grace period, and returns. The metrics endpoint
/// (`--metrics-listen`) serves until then too.
pub async fn run(
    scanner: Arc<dyn Scanner>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let info = scanner.info();
    let metrics = Arc::new(Metrics::new());
    metrics.set_plugin(&info.name, &info.version);
    // One NATS connection for the shared result tier and the Harbor job store (`--nats`).
    let nats = match &config.nats.url {
        Some(_) => Some(
            sidescan_nats::connect(&info.name, &config.nats, false, None)
                .await
                .map_err(|e| ServeError::Config(format!("--nats: {e}")))?,
        ),
        None => None,
    };
    let shared_results = match &nats {
        Some(client) => Some(Arc::new(
            SharedResults::open(
                client.clone(),
                config.nats_cache_ttl,
                config.nats_cache_max_size.as_u64(),
                config.nats_replicas,
            )
            .await
            .map_err(|e| ServeError::Config(format!("--nats: {e}")))?,
        )),
        None => None,
    };
    let pipeline = Arc::new(
        Pipeline::with_metrics(config.pipeline_options(), metrics.clone(), shared_results)
            .map_err(|e| ServeError::Config(e.message().to_owned()))?,
    );
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let not_ready = Readiness::NotReady("starting".into());
    health::set_status(&health_reporter, &not_ready).await;
    let (readiness_tx, readiness_rx) = watch::channel(not_ready);
    let stop_watching = CancellationToken::new();
    let watcher = tokio::spawn(health::watch_readiness(
        scanner.clone(),
        health_reporter.clone(),
        readiness_tx,
        config.health_interval,
        stop_watching.clone(),
        metrics.clone(),
    ));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sidescan_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(sidescan_proto::ZOT_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Config(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sidescan_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(sidescan_proto::ZOT_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Config(format!("reflection: {e}")))?;

    let scan = ScanGrpc(Arc::new(ScanService::new(
        scanner.clone(),
        pipeline,
        readiness_rx,
        config.clone(),
        metrics.clone(),
    )));
    let harbor_scan = scan.clone();
    let mut builder = Server::builder();
    if let Some(tls) = tls::server_tls(&config)? {
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(sidescan_proto::zot::scan_server::ScanServer::new(
            zot::ZotScan::new(scan.clone(), config.insecure_registries.clone()),
        ))
        .add_service(sidescan_proto::v1::scan_server::ScanServer::new(scan));

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let drain = async {
        let _ = drain_rx.await;
    };
    // The metrics endpoint serves until this function returns, however it returns.
    let stop_metrics = CancellationToken::new();
    let _stop_metrics_on_return = stop_metrics.clone().drop_guard();
    let metrics_endpoint = match &config.metrics_listen {
        Some(addr) => {
            let listener = exporter::bind(addr).await?;
            let bound = listener
                .local_addr()
                .map_err(|source| ServeError::Bind {
                    addr: format!("{addr} (--metrics-listen)"),
                    source,
                })?
                .to_string();
            let endpoint = tokio::spawn(exporter::serve(
                listener,
                metrics.clone(),
                stop_metrics.clone(),
            ));
            Some((bound, endpoint))
        }
        None => None,
    };
    let metrics_addr = metrics_endpoint.as_ref().map(|(bound, _)| bound.as_str());
    // Harbor's API (`--harbor-listen`) likewise; its address file is written before --addr-file.
    let harbor_endpoint = match &config.harbor_listen {
        Some(addr) => {
            let tls = tls::rustls_config(&config)?;
            let listener = harbor::bind(addr).await?;
            let bound = listener
                .local_addr()
                .map_err(|source| ServeError::Bind {
                    addr: format!("{addr} (--harbor-listen)"),
                    source,
                })?
                .to_string();
            tracing::info!(addr = %bound, tls = config.tls_cert.is_some(), "serving the Harbor scanner API on /api/v1");
            if let Some(file) = &config.harbor_addr_file {
                write_atomically(file, &bound)?;
            }
            let config = config.clone();
            let stop = stop_metrics.clone();
            let nats = nats.clone();
            Some(tokio::spawn(async move {
                if let Err(e) = harbor::serve(listener, harbor_scan, &config, nats, tls, stop).await
                {
                    tracing::error!(error = %e, "the Harbor API stopped");
                }
            }))
        }
        None => None,
    };
    let served = match &config.listen {
        ListenAddr::Tcp(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: addr.clone(),
                    source,
                })?;
            let bound = listener
                .local_addr()
                .map_err(|source| ServeError::Bind {
                    addr: addr.clone(),
                    source,
                })?
                .to_string();
            announce(&config, &info.name, &bound, metrics_addr)?;
            tokio::spawn(
                // `serve_with_incoming` ignores the builder's TCP options: without TCP_NODELAY
                // Nagle's algorithm holds a response's trailers back for a delayed ACK (about
                // 40 ms on Linux), which is most of the deadline margin.
                router.serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    drain,
                ),
            )
        }
        ListenAddr::Unix(path) => {
            if path.exists() {
                std::fs::remove_file(path).map_err(|source| ServeError::Bind {
                    addr: config.listen.to_string(),
                    source,
                })?;
            }
            let listener = UnixListener::bind(path).map_err(|source| ServeError::Bind {
                addr: config.listen.to_string(),
                source,
            })?;
            announce(
                &config,
                &info.name,
                &config.listen.to_string(),
                metrics_addr,
            )?;
            tokio::spawn(
                router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), drain),
            )
        }
    };

    tokio::pin!(served);
    let result = tokio::select! {
        joined = &mut served => joined_result(joined),
        () = shutdown => {
            stop_watching.cancel();
            let _ = watcher.await;
            health::set_status(&health_reporter, &Readiness::NotReady("shutting down".into())).await;
            let _ = drain_tx.send(());
            match tokio::time::timeout(config.shutdown_grace, &mut served).await {
                Ok(joined) => joined_result(joined),
                Err(_) => {
                    served.abort();
                    Err(ServeError::GraceExpired)
                }
            }
        }
    };
    stop_watching.cancel();
    stop_metrics.cancel();
    if let Some((_, endpoint)) = metrics_endpoint {
        let _ = endpoint.await;
    }
    if let Some(endpoint) = harbor_endpoint {
        let _ = endpoint.await;
    }
    if let ListenAddr::Unix(path) = &config.listen {
        let _ = std::fs::remove_file(path);
    }
    if result.is_ok() {
        tracing::info!("drained: all scans finished");
    }
    result
}

fn joined_result(
    joined: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), ServeError> {
    match joined {
        Ok(served) => served.map_err(ServeError::from),
        Err(err) => Err(ServeError::Config(format!("server task failed: {err}"))),
    }
}

/// Logs the bound addresses and writes them to `--metrics-addr-file` and then `--addr-file` when
/// asked (so a reader that waits for the address file finds both).
fn announce(
    config: &ServerConfig,
    name: &str,
    addr: &str,
    metrics_addr: Option<&str>,
) -> Result<(), ServeError> {
    tracing::info!(
        plugin = name,
        addr,
        tls = config.tls_cert.is_some(),
        "listening"
    );
    if let Some(metrics_addr) = metrics_addr {
        tracing::info!(addr = metrics_addr, "serving metrics at /metrics");
        if let Some(file) = &config.metrics_addr_file {
            write_atomically(file, metrics_addr)?;
        }
    }
    if let Some(file) = &config.addr_file {
        write_atomically(file, addr)?;
    }
    Ok(())
}

/// Writes `text` to a temp file beside `file` and renames it into place.
fn write_atomically(file: &std::path::Path, text: &str) -> Result<(), ServeError> {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| ServeError::Config(format!("cannot write {}: {e}", file.display())))
}
