//! Wiring: flags → the watcher, its workers, health checks, NATS, the reconcile loop and the
//! HTTP endpoint; runs until SIGTERM or SIGINT.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sidescan_oci::{CredentialSources, Registry};

use crate::args::Args;
use crate::emit::Emitter;
use crate::http::{self, EventLimits};
use crate::jetstream::{JetStreamOptions, JetStreamQueue};
use crate::metrics::Metrics;
use crate::nats;
use crate::plugins::Plugin;
use crate::queue::Queue;
use crate::watcher::Watcher;

/// How often readiness is re-checked.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Builds the watcher from `args` (errors are configuration mistakes, for exit code 2).
pub fn build(args: &Args) -> Result<Watcher, String> {
    let registry_url = args
        .registry
        .as_deref()
        .ok_or("--registry (SIDESCAN_WATCH_REGISTRY) is required")?;
    let registry_host = registry_url
        .split_once("://")
        .map_or(registry_url, |(_, rest)| rest)
        .trim_end_matches('/');
    let creds = CredentialSources {
        username: args.username.clone(),
        password: args.password.clone(),
        token: args.token.clone(),
        auth_file: args.authfile.clone(),
        no_standard_files: false,
    }
    .resolve(registry_host, None)
    .map_err(|e| e.to_string())?;
    let registry =
        Registry::new(registry_url, creds, args.insecure_registry).map_err(|e| e.to_string())?;
    let ca = match &args.plugin_ca {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| format!("--plugin-ca {}: {e}", path.display()))?)
        }
        None => None,
    };
    let plugins = args
        .plugins
        .iter()
        .map(|url| Plugin::new(url, ca.clone()).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let emitter = args.emit.as_deref().map(Emitter::new).transpose()?;
    Ok(Watcher {
        registry,
        plugins,
        queue: Queue::new(args.queue_size),
        metrics: Metrics::new(),
        emitter,
        formats: args.attach_formats.iter().map(|f| f.format()).collect(),
        scan_timeout: args.scan_timeout,
        attempts: args.attempts.max(1),
        ready: AtomicBool::new(false),
        not_ready_because: std::sync::Mutex::new("starting".into()),
        nats_connected: args
            .nats
            .url
            .as_ref()
            .map(|_| Arc::new(AtomicBool::new(false))),
        jetstream: None,
        image_locks: Default::default(),
    })
}

/// Runs until a termination signal. Errors: the listener cannot be bound.
pub async fn run(args: Args) -> Result<(), String> {
    let mut watcher = build(&args)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;

    // The client connects in the background; `nats_connected` follows it.
    let nats_client = match &args.nats.url {
        Some(_) => Some(
            sidescan_nats::connect(
                "sidescan-watch",
                &args.nats,
                true,
                watcher.nats_connected.clone(),
            )
            .await?,
        ),
        None => None,
    };
    if let (Some(client), Some(stream)) = (&nats_client, &args.nats_stream) {
        watcher.jetstream = Some(Arc::new(JetStreamQueue::new(
            client.clone(),
            JetStreamOptions {
                stream: stream.clone(),
                subject: args.nats_subject.clone(),
                consumer: args.nats_consumer.clone(),
                replicas: args.nats_replicas,
                file_storage: !args.nats_memory_storage,
                max_deliver: args.nats_max_deliver.max(1),
                ack_wait: args.nats_ack_wait,
                dead_letter: args.nats_dead_letter.clone(),
                duplicate_window: args.nats_duplicate_window,
            },
        )));
    }
    let watcher = Arc::new(watcher);
    if let Some(file) = &args.listen_addr_file {
        std::fs::write(file, local.to_string())
            .map_err(|e| format!("--listen-addr-file {}: {e}", file.display()))?;
    }
    tracing::info!(listen = %local, registry = %watcher.registry.url(), plugins = watcher.plugins.len(),
        queue = if watcher.jetstream.is_some() { "jetstream" } else { "in-process" }, "sidescan-watch started");

    match &watcher.jetstream {
        Some(js) => {
            tokio::spawn(js.clone().run(watcher.clone(), args.concurrency));
        }
        None => {
            for _ in 0..args.concurrency {
                tokio::spawn(crate::worker::run(watcher.clone()));
            }
        }
    }
    tokio::spawn(watcher.clone().check_health(HEALTH_INTERVAL));
    if let Some(client) = nats_client
        && watcher.jetstream.is_none()
    {
        let watcher = watcher.clone();
        let subject = args.nats_subject.clone();
        tokio::spawn(async move {
            if let Err(e) = nats::run(watcher, client, subject).await {
                tracing::error!(error = %e, "NATS subscription stopped");
            }
        });
    }
    if let Some(interval) = args.reconcile_interval {
        tokio::spawn(crate::reconcile::run(watcher.clone(), interval));
    }
    let limits = EventLimits {
        max_bytes: usize::try_from(args.max_event_bytes.as_u64()).unwrap_or(usize::MAX),
        timeout: args.event_timeout,
        allowed: args.allow_event_sources.clone(),
    };
    let app =
        http::router(watcher, limits).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}
