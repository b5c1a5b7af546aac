//! `sidescan-harbor`: Harbor's pluggable-scanner API v1.2 in front of any `sidescan.v1` plugin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use sidescan_harbor::{
    AuthorizationType, GrpcBackend, HarborOptions, HarborService, MemoryJobStore, NatsJobStore,
    report,
};

/// Serves Harbor's scanner-adapter API (`/api/v1`) in front of a sidescan.v1 plugin.
#[derive(Parser, Debug)]
#[command(name = "sidescan-harbor", version)]
struct Cli {
    /// The plugin: `http://host:port` or `unix:/path/to.sock`.
    #[arg(long, env = "SIDESCAN_HARBOR_PLUGIN")]
    plugin: String,
    /// Where to serve the Harbor API (host:port; Harbor must reach it).
    #[arg(long, env = "SIDESCAN_HARBOR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Write the bound address to this file once listening (for scripts and tests).
    #[arg(long, env = "SIDESCAN_HARBOR_ADDR_FILE")]
    addr_file: Option<PathBuf>,
    /// How long a finished job's reports are kept (then its id answers 404 and Harbor scans
    /// again).
    #[arg(long, env = "SIDESCAN_HARBOR_JOB_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    job_ttl: Duration,
    /// With --nats: jobs and reports live in NATS JetStream (a key-value bucket and an object
    /// store, created if missing) instead of in this process, so that replicas behind one
    /// Service share them: Harbor may submit to one and poll another.
    #[command(flatten)]
    nats: sidescan_nats::ConnectArgs,
    /// With --nats, jobs and reports live in a JetStream bucket and object store that every
    /// replica shares (Harbor may submit to one and poll another): their replicas (in a NATS
    /// cluster).
    #[arg(long, env = "SIDESCAN_NATS_REPLICAS", default_value_t = 1)]
    nats_replicas: usize,
    /// Refresh-After of a 302 while a scan runs (1s..127s).
    #[arg(long, env = "SIDESCAN_HARBOR_REFRESH_AFTER", default_value = "2s", value_parser = humantime::parse_duration)]
    refresh_after: Duration,
    /// Bound on one scan (the plugin's gRPC deadline); Harbor gives up after 30 minutes.
    #[arg(long, env = "SIDESCAN_HARBOR_SCAN_TIMEOUT", default_value = "25m", value_parser = humantime::parse_duration)]
    scan_timeout: Duration,
    /// Plugin scans in flight at once; further jobs wait (their report answers 302).
    #[arg(long, env = "SIDESCAN_HARBOR_MAX_IN_FLIGHT", default_value_t = 4)]
    max_in_flight: usize,
    /// Severity of the SIDESCAN-INCOMPLETE-<code> items of an incomplete scan (Critical fails
    /// Harbor's vulnerability gate at every threshold).
    #[arg(long, env = "SIDESCAN_HARBOR_INCOMPLETE_SEVERITY", default_value = "critical", value_parser = parse_severity)]
    incomplete_severity: sidescan_proto::v1::Severity,
    /// Credentials Harbor is told to send: a robot account (basic) or a pull token (bearer).
    #[arg(long, env = "SIDESCAN_HARBOR_REGISTRY_AUTHORIZATION", value_enum, default_value_t = AuthType::Basic)]
    registry_authorization: AuthType,
    /// Log filter (tracing's EnvFilter syntax).
    #[arg(long, env = "SIDESCAN_HARBOR_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AuthType {
    Basic,
    Bearer,
}

fn parse_severity(value: &str) -> Result<sidescan_proto::v1::Severity, String> {
    report::parse_severity(value).ok_or_else(|| {
        format!("{value:?}: expected unknown, negligible, low, medium, high or critical")
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{},h2=warn,hyper=warn,tower=warn,tonic=warn",
        cli.log_level
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let options = HarborOptions {
        refresh_after: cli.refresh_after,
        scan_timeout: cli.scan_timeout,
        max_in_flight: cli.max_in_flight.max(1),
        incomplete_severity: cli.incomplete_severity,
        authorization_type: match cli.registry_authorization {
            AuthType::Basic => AuthorizationType::Basic,
            AuthType::Bearer => AuthorizationType::Bearer,
        },
        ..HarborOptions::default()
    };
    let backend = GrpcBackend::new(&cli.plugin, options.scan_timeout, options.metadata_timeout)
        .map_err(|e| format!("--plugin: {e}"))?;
    let jobs: Arc<dyn sidescan_harbor::JobStore> = match &cli.nats.url {
        Some(_) => {
            let client = sidescan_nats::connect("sidescan-harbor", &cli.nats, false, None).await?;
            NatsJobStore::connect(client, cli.job_ttl, cli.nats_replicas)
                .await
                .map_err(|e| format!("--nats: {e}"))?
                .shared()
        }
        None => Arc::new(MemoryJobStore::new(cli.job_ttl)),
    };
    let service = Arc::new(HarborService::new(Arc::new(backend), jobs, options));
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listening socket: {e}"))?;
    if let Some(path) = &cli.addr_file {
        std::fs::write(path, addr.to_string())
            .map_err(|e| format!("--addr-file {}: {e}", path.display()))?;
    }
    tracing::info!(%addr, plugin = %cli.plugin, "serving the Harbor scanner API on /api/v1");
    axum::serve(listener, sidescan_harbor::router(service))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| format!("server: {e}"))
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
