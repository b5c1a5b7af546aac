//! zot's NATS sink: a core NATS subscription to the structured CloudEvents zot publishes on
//! subject = its sink's `channel`. Core NATS keeps nothing for a subscriber that is away, so
//! the reconcile loop is the safety net (durable JetStream queues are a separate mode).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt as _;

use crate::event::{Kind, cloudevent};
use crate::watcher::Watcher;

/// How to reach NATS.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Server URL(s), comma-separated: `nats://host:4222`, `tls://host:4222`.
    pub url: String,
    /// Subject to subscribe to.
    pub subject: String,
    /// A `.creds` file.
    pub creds: Option<PathBuf>,
    /// A token.
    pub token: Option<String>,
    /// User and password.
    pub user_password: Option<(String, String)>,
    /// A CA certificate for TLS.
    pub ca: Option<PathBuf>,
}

/// Connects (retrying until the server answers) and feeds events into the queue, forever.
pub async fn run(watcher: Arc<Watcher>, options: NatsOptions) -> Result<(), String> {
    let mut connect = async_nats::ConnectOptions::new()
        .name("sidescan-watch")
        .retry_on_initial_connect();
    if let Some(file) = &options.creds {
        connect = connect
            .credentials_file(file)
            .await
            .map_err(|e| format!("NATS credentials {}: {e}", file.display()))?;
    }
    if let Some(token) = &options.token {
        connect = connect.token(token.clone());
    }
    if let Some((user, password)) = &options.user_password {
        connect = connect.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &options.ca {
        connect = connect.add_root_certificates(ca.clone()).require_tls(true);
    }
    let state = watcher.clone();
    connect = connect.event_callback(move |event| {
        let state = state.clone();
        async move {
            let up = matches!(event, async_nats::Event::Connected);
            let down = matches!(event, async_nats::Event::Disconnected);
            if let Some(flag) = &state.nats_connected {
                if up {
                    flag.store(true, Ordering::Relaxed);
                } else if down {
                    flag.store(false, Ordering::Relaxed);
                }
            }
            tracing::info!(?event, "NATS");
        }
    });
    let client = connect
        .connect(options.url.as_str())
        .await
        .map_err(|e| format!("NATS {}: {e}", options.url))?;
    let mut subscription = client
        .subscribe(options.subject.clone())
        .await
        .map_err(|e| format!("NATS subscribe {}: {e}", options.subject))?;
    if let Some(flag) = &watcher.nats_connected {
        flag.store(
            client.connection_state() == async_nats::connection::State::Connected,
            Ordering::Relaxed,
        );
    }
    tracing::info!(subject = %options.subject, "subscribed to NATS");
    while let Some(message) = subscription.next().await {
        let kind = Kind::Nats;
        match cloudevent::parse_structured(&message.payload) {
            Ok(parsed) => {
                watcher
                    .metrics
                    .event(kind.label(), "ignored", parsed.ignored as u64);
                if watcher.accept(kind, parsed.pushes).is_err() {
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
