//! `grpc.health.v1` driven by the plugin's readiness.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::metrics::Metrics;
use crate::plugin::{Readiness, Scanner};

/// The least time a readiness call gets before it counts as not ready: one slow answer on a
/// loaded machine (an engine's self-check, a busy socket) must not flap a serving plugin to
/// NOT_SERVING with a short `--health-interval`.
pub(crate) const MIN_PATIENCE: Duration = Duration::from_secs(2);

/// Polls [`Scanner::readiness`] every `interval` and mirrors it into the health service (for the
/// `sidescan.v1.Scan` service and the server as a whole, `""`), into `state` and into the
/// `sidescan_engine_ready` gauge, until `stop`. A readiness call that takes longer than
/// `interval` (and at least [`MIN_PATIENCE`]) counts as not ready. Each time the engine becomes ready its
/// [`Scanner::engine_version`] is read once for `sidescan_build_info` (scans keep it current).
pub(crate) async fn watch_readiness(
    scanner: Arc<dyn Scanner>,
    reporter: HealthReporter,
    state: watch::Sender<Readiness>,
    interval: Duration,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
) {
    let mut last: Option<Readiness> = None;
    let patience = interval.max(MIN_PATIENCE);
    loop {
        let now = match tokio::time::timeout(patience, scanner.readiness()).await {
            Ok(readiness) => readiness,
            Err(_) => Readiness::NotReady(format!(
                "readiness check took longer than {}",
                humantime::format_duration(patience)
            )),
        };
        if last.as_ref() != Some(&now) {
            match &now {
                Readiness::Ready => tracing::info!("scanner engine ready: serving"),
                Readiness::NotReady(reason) => {
                    tracing::warn!(%reason, "scanner engine not ready: not serving")
                }
            }
            metrics.set_engine_ready(now == Readiness::Ready);
            set_status(&reporter, &now).await;
            let _ = state.send(now.clone());
            if now == Readiness::Ready
                && let Ok(Ok(version)) =
                    tokio::time::timeout(patience, scanner.engine_version()).await
            {
                metrics.set_engine_version(&version);
            }
            last = Some(now);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Sets both health entries from `readiness`.
pub(crate) async fn set_status(reporter: &HealthReporter, readiness: &Readiness) {
    let status = match readiness {
        Readiness::Ready => ServingStatus::Serving,
        Readiness::NotReady(_) => ServingStatus::NotServing,
    };
    for service in [sidescan_proto::SCAN_SERVICE_NAME, ""] {
        reporter.set_service_status(service, status).await;
    }
}
