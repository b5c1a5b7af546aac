//! zot's NATS sink: a core NATS subscription to the structured CloudEvents zot publishes on
//! subject = its sink's `channel`. Core NATS keeps nothing for a subscriber that is away, so
//! the reconcile loop is the safety net (durable JetStream queues are a separate mode).

use std::sync::Arc;

use futures::StreamExt as _;

use crate::event::{Kind, cloudevent};
use crate::watcher::Watcher;

/// Subscribes to `subject` on `client` and feeds the events into the queue, forever.
pub async fn run(
    watcher: Arc<Watcher>,
    client: async_nats::Client,
    subject: String,
) -> Result<(), String> {
    let mut subscription = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| format!("NATS subscribe {}: {e}", subject))?;
    tracing::info!(subject = %subject, "subscribed to NATS");
    while let Some(message) = subscription.next().await {
        let kind = Kind::Nats;
        match cloudevent::parse_structured(&message.payload) {
            Ok(parsed) => {
                watcher
                    .metrics
                    .event(kind.label(), "ignored", parsed.ignored as u64);
                if watcher.accept(kind, parsed.pushes).await.is_err() {
                    tracing::error!(
                        "queue full: a NATS event was dropped (the reconcile loop will find the image)"
                    );
                }
            }
            Err(e) => {
                watcher.metrics.event(kind.label(), "refused", 1);
                tracing::warn!(subject = %message.subject, error = %e, "bad event on NATS");
            }
        }
    }
    Err("the NATS subscription ended".into())
}
