//! `grpc.health.v1` driven by the plugin's readiness.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::plugin::{Readiness, Scanner};

/// Polls [`Scanner::readiness`] every `interval` and mirrors it into the health service (for the
/// `sidescan.v1.Scan` service and the server as a whole, `""`) and into `state`, until `stop`.
/// A readiness call that takes longer than `interval` counts as not ready.
pub(crate) async fn watch_readiness(
    scanner: Arc<dyn Scanner>,
    reporter: HealthReporter,
    state: watch::Sender<Readiness>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut last: Option<Readiness> = None;
    loop {
        let now = match tokio::time::timeout(
            interval.max(Duration::from_millis(100)),
            scanner.readiness(),
        )
        .await
        {
            Ok(readiness) => readiness,
            Err(_) => Readiness::NotReady(format!(
                "readiness check took longer than {}",
                humantime::format_duration(interval)
            )),
        };
        if last.as_ref() != Some(&now) {
            match &now {
                Readiness::Ready => tracing::info!("scanner engine ready: serving"),
                Readiness::NotReady(reason) => {
                    tracing::warn!(%reason, "scanner engine not ready: not serving")
                }
            }
            set_status(&reporter, &now).await;
            let _ = state.send(now.clone());
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
