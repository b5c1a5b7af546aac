//! The durable scan queue on NATS JetStream (`--nats URL --nats-stream NAME`): any number of
//! watchers, on any machines, share one work-queue stream and one durable pull consumer.
//!
//! - **In:** every event (HTTP, the reconcile loop) becomes one message on `--nats-subject`, a
//!   structured CloudEvent `dev.sidescan.image.pushed` (data `{name, reference, digest,
//!   mediaType}`) with `Nats-Msg-Id` = repository and digest (or tag), so duplicates within the
//!   stream's duplicate window are dropped. zot's NATS sink may publish its own CloudEvents to
//!   the same subject: the stream captures those too. A publish JetStream does not acknowledge
//!   is an error, so the HTTP endpoint answers 503 and the registry retries.
//! - **Out:** workers pull from the durable consumer. A job is acked after its reports are
//!   attached; `in_progress` is sent every third of `--nats-ack-wait` while it runs; a transient
//!   failure is nak'ed with a growing delay; a job that fails permanently, or transiently for the
//!   `--nats-max-deliver`th time, is terminated and published to `--nats-dead-letter` with its
//!   last error. A worker that dies mid-scan leaves the message unacked: JetStream delivers it
//!   again after the ack wait, to whichever worker pulls next.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures::StreamExt as _;
use serde_json::json;

use crate::event::{ImagePushed, Kind, cloudevent};
use crate::queue::Job;
use crate::watcher::Watcher;
use crate::worker::{self, Failure};

/// The CloudEvent type of a job the watcher publishes.
pub const IMAGE_PUSHED: &str = "dev.sidescan.image.pushed";

/// How the stream and consumer are set up.
#[derive(Clone, Debug)]
pub struct JetStreamOptions {
    /// Stream name (created if missing).
    pub stream: String,
    /// The subject jobs are published on (and the stream captures).
    pub subject: String,
    /// Durable consumer name shared by every watcher.
    pub consumer: String,
    /// Stream replicas.
    pub replicas: usize,
    /// File (survives a server restart) or memory storage.
    pub file_storage: bool,
    /// Deliveries before a failing job is dead-lettered.
    pub max_deliver: i64,
    /// How long a delivered job may go without an ack or progress before redelivery.
    pub ack_wait: Duration,
    /// Where dead jobs are published.
    pub dead_letter: String,
    /// Window in which `Nats-Msg-Id` duplicates are dropped.
    pub duplicate_window: Duration,
}

/// A connected job queue.
pub struct JetStreamQueue {
    context: jetstream::Context,
    options: JetStreamOptions,
    ready: AtomicBool,
}

impl std::fmt::Debug for JetStreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamQueue")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The message id of a job: equal ids within the duplicate window are one job.
fn message_id(push: &ImagePushed) -> String {
    let reference = push
        .digest
        .as_deref()
        .or(push.tag.as_deref())
        .unwrap_or_default();
    format!("{}@{reference}", push.repository)
}

/// A job as the structured CloudEvent published on the subject.
pub fn job_event(push: &ImagePushed) -> serde_json::Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": "sidescan-watch",
        "type": IMAGE_PUSHED,
        "datacontenttype": "application/json",
        "data": {
            "name": push.repository,
            "reference": push.tag.clone().or_else(|| push.digest.clone()).unwrap_or_default(),
            "digest": push.digest.clone().unwrap_or_default(),
            "mediaType": push.media_type.clone().unwrap_or_default(),
        },
    })
}

impl JetStreamQueue {
    /// A queue on `client`; [`JetStreamQueue::run`] creates the stream and consumer.
    pub fn new(client: async_nats::Client, options: JetStreamOptions) -> Self {
        Self {
            context: jetstream::new(client),
            options,
            ready: AtomicBool::new(false),
        }
    }

    /// Whether the stream and consumer exist (set up since start).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    async fn stream(&self) -> Result<stream::Stream, String> {
        let o = &self.options;
        self.context
            .get_or_create_stream(stream::Config {
                name: o.stream.clone(),
                subjects: vec![o.subject.clone()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: if o.file_storage {
                    stream::StorageType::File
                } else {
                    stream::StorageType::Memory
                },
                num_replicas: o.replicas.max(1),
                duplicate_window: o.duplicate_window,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("JetStream stream {}: {e}", o.stream))
    }

    async fn consumer(&self) -> Result<consumer::PullConsumer, String> {
        let o = &self.options;
        self.stream()
            .await?
            .get_or_create_consumer(
                &o.consumer,
                consumer::pull::Config {
                    durable_name: Some(o.consumer.clone()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: o.ack_wait,
                    // Terminated by the watcher after max_deliver; one more lets the last
                    // delivery run and be dead-lettered with its error.
                    max_deliver: o.max_deliver.saturating_add(1),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("JetStream consumer {}: {e}", o.consumer))
    }

    /// Publishes one job per push, each acknowledged by JetStream.
    pub async fn publish(&self, pushes: &[ImagePushed]) -> Result<(), String> {
        if !self.is_ready() {
            return Err("the JetStream queue is not set up yet (NATS unreachable?)".into());
        }
        for push in pushes {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                message_id(push).as_str(),
            );
            let ack = self
                .context
                .publish_with_headers(
                    self.options.subject.clone(),
                    headers,
                    job_event(push).to_string().into(),
                )
                .await
                .map_err(|e| format!("publish to {}: {e}", self.options.subject))?;
            tokio::time::timeout(Duration::from_secs(10), ack)
                .await
                .map_err(|_| "JetStream did not acknowledge the job in 10 s".to_string())?
                .map_err(|e| format!("JetStream refused the job: {e}"))?;
        }
        Ok(())
    }

    /// Sets up the stream and consumer (retrying until NATS answers), then runs `concurrency`
    /// jobs at a time from the consumer, forever.
    pub async fn run(self: Arc<Self>, watcher: Arc<Watcher>, concurrency: usize) {
        let consumer = loop {
            match self.consumer().await {
                Ok(consumer) => break consumer,
                Err(e) => {
                    tracing::warn!(error = %e, "JetStream not ready; retrying in 2 s");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        self.ready.store(true, Ordering::Relaxed);
        tracing::info!(stream = %self.options.stream, consumer = %self.options.consumer, "JetStream queue ready");
        tokio::spawn(report_lag(consumer.clone(), watcher.clone()));
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        loop {
            let mut messages = match consumer
                .stream()
                .max_messages_per_batch(concurrency.max(1))
                .messages()
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "JetStream pull failed; retrying in 2 s");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    continue;
                }
            };
            while let Some(message) = messages.next().await {
                let message = match message {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "JetStream message error");
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let queue = self.clone();
                let watcher = watcher.clone();
                tokio::spawn(async move {
                    queue.handle(&watcher, message).await;
                    drop(permit);
                });
            }
        }
    }

    async fn handle(&self, watcher: &Watcher, message: jetstream::Message) {
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        watcher.metrics.jetstream("delivered");
        if delivered > 1 {
            watcher.metrics.jetstream("redelivered");
        }
        let parsed = cloudevent::parse_structured(&message.payload);
        let pushes = match parsed {
            Ok(p) => p.pushes,
            Err(e) => {
                self.dead(watcher, &message, delivered, &format!("not a job: {e}"))
                    .await;
                return;
            }
        };
        // Progress keeps the job ours while it runs longer than the ack wait.
        let keepalive = async {
            loop {
                tokio::time::sleep(self.options.ack_wait / 3).await;
                if let Err(e) = message.ack_with(AckKind::Progress).await {
                    tracing::warn!(error = %e, "in-progress ack failed");
                }
            }
        };
        let work = async {
            let mut outcome = Ok(());
            for push in pushes {
                let job = Job::new(push, Kind::Nats);
                if let Err(e) = worker::process(watcher, &job).await {
                    outcome = Err(e);
                    break;
                }
            }
            outcome
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            () = keepalive => unreachable_keepalive(),
        };
        match outcome {
            Ok(()) => {
                if message.ack().await.is_ok() {
                    watcher.metrics.jetstream("acked");
                }
            }
            Err(Failure::Transient(e)) if delivered < self.options.max_deliver => {
                let delay = Duration::from_secs(1 << delivered.clamp(0, 6));
                tracing::warn!(delivered, retry_in = ?delay, error = %e, "job failed; nak");
                if message.ack_with(AckKind::Nak(Some(delay))).await.is_ok() {
                    watcher.metrics.jetstream("nacked");
                }
            }
            Err(e) => {
                self.dead(watcher, &message, delivered, &e.to_string())
                    .await
            }
        }
    }

    /// Terminates `message` and publishes it with `error` to the dead-letter subject.
    async fn dead(
        &self,
        watcher: &Watcher,
        message: &jetstream::Message,
        delivered: i64,
        error: &str,
    ) {
        tracing::error!(delivered, error, "job dead-lettered");
        let _ = message.ack_with(AckKind::Term).await;
        let body = json!({
            "error": error,
            "deliveries": delivered,
            "job": String::from_utf8_lossy(&message.payload),
        });
        if let Err(e) = self
            .context
            .publish(self.options.dead_letter.clone(), body.to_string().into())
            .await
        {
            tracing::error!(error = %e, "could not publish to the dead-letter subject");
        }
        watcher.metrics.jetstream("dead-lettered");
    }
}

/// Keeps the consumer-lag gauges current (what KEDA or an HPA on Prometheus scales on). Every
/// watcher reports the one consumer's lag: aggregate with `max`, not `sum`.
async fn report_lag(consumer: consumer::PullConsumer, watcher: Arc<Watcher>) {
    loop {
        match consumer.get_info().await {
            Ok(info) => watcher
                .metrics
                .consumer_pending(info.num_pending, info.num_ack_pending as u64),
            Err(e) => tracing::warn!(error = %e, "JetStream consumer info: lag gauges not updated"),
        }
        tokio::time::sleep(LAG_INTERVAL).await;
    }
}

/// How often the consumer lag is read.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// The keepalive loop never ends; this types the `select!` arm.
fn unreachable_keepalive() -> Result<(), Failure> {
    Err(Failure::Transient("keepalive ended".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_the_cloudevent_parser() {
        let push = ImagePushed {
            repository: "team/app".into(),
            tag: Some("1.0".into()),
            digest: Some("sha256:aa".into()),
            media_type: Some(sidescan_oci::media::OCI_MANIFEST.into()),
            not_an_image: None,
        };
        assert_eq!(message_id(&push), "team/app@sha256:aa");
        let text = job_event(&push).to_string();
        let parsed = cloudevent::parse_structured(text.as_bytes()).unwrap();
        assert_eq!(parsed.pushes, vec![push]);
    }
}
