//! Prometheus metrics of the watcher (OpenMetrics text on `GET /metrics`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The watcher's metrics.
pub struct Metrics {
    registry: Registry,
    events: Family<Labels, Counter>,
    scans: Family<Labels, Counter>,
    skipped: Family<Labels, Counter>,
    attached: Family<Labels, Counter>,
    emitted: Family<Labels, Counter>,
    queue_depth: Gauge,
    latency: Histogram,
    jetstream: Family<Labels, Counter>,
    consumer_pending: Family<Labels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sidescan_watch");
        let events = Family::<Labels, Counter>::default();
        registry.register(
            "events",
            "Registry events received, by kind (distribution, cloudevent-binary, cloudevent-structured, nats, reconcile) and outcome (queued, duplicate, ignored, refused)",
            events.clone(),
        );
        let scans = Family::<Labels, Counter>::default();
        registry.register(
            "scans",
            "Scans by scanner and outcome (reported, current: a report by the same scanner and engine version exists, refused: the plugin refused the image, failed)",
            scans.clone(),
        );
        let skipped = Family::<Labels, Counter>::default();
        registry.register(
            "skipped",
            "Pushed manifests not scanned, by reason (not-an-image, gone)",
            skipped.clone(),
        );
        let attached = Family::<Labels, Counter>::default();
        registry.register(
            "reports_attached",
            "Report documents attached as referrers, by artifact type and path (api, tag-schema)",
            attached.clone(),
        );
        let emitted = Family::<Labels, Counter>::default();
        registry.register(
            "emitted",
            "CloudEvents posted to --emit, by outcome (ok, failed)",
            emitted.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Images waiting to be scanned",
            queue_depth.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.05, 2.0, 16));
        registry.register(
            "event_to_report_seconds",
            "From receiving an event to the last report of the image attached",
            latency.clone(),
        );
        let jetstream = Family::<Labels, Counter>::default();
        registry.register(
            "jetstream_jobs",
            "Jobs of the JetStream queue by outcome (published; delivered to this watcher, of which redelivered; acked, nacked, dead-lettered)",
            jetstream.clone(),
        );
        let consumer_pending = Family::<Labels, Gauge>::default();
        registry.register(
            "jetstream_consumer_pending",
            "Consumer lag of the JetStream queue, by state: waiting (published, not yet delivered \
             to any watcher) and unacked (delivered, being scanned or awaiting redelivery); \
             the whole consumer's, the same on every watcher (aggregate with max); refreshed \
             every 5 s",
            consumer_pending.clone(),
        );
        Self {
            jetstream,
            consumer_pending,
            registry,
            events,
            scans,
            skipped,
            attached,
            emitted,
            queue_depth,
            latency,
        }
    }

    /// Counts `n` events of `kind` with `outcome`.
    pub fn event(&self, kind: &str, outcome: &str, n: u64) {
        if n > 0 {
            self.events
                .get_or_create(&vec![("kind", kind.into()), ("outcome", outcome.into())])
                .inc_by(n);
        }
    }

    /// Counts one scan by `scanner` with `outcome`.
    pub fn scan(&self, scanner: &str, outcome: &str) {
        self.scans
            .get_or_create(&vec![
                ("scanner", scanner.into()),
                ("outcome", outcome.into()),
            ])
            .inc();
    }

    /// Counts a manifest not scanned for `reason`.
    pub fn skipped(&self, reason: &str) {
        self.skipped
            .get_or_create(&vec![("reason", reason.into())])
            .inc();
    }

    /// Counts an attached document.
    pub fn attached(&self, artifact_type: &str, via: &str) {
        self.attached
            .get_or_create(&vec![
                ("artifact_type", artifact_type.into()),
                ("via", via.into()),
            ])
            .inc();
    }

    /// Counts a CloudEvent posted.
    pub fn emitted(&self, outcome: &str) {
        self.emitted
            .get_or_create(&vec![("outcome", outcome.into())])
            .inc();
    }

    /// Counts a JetStream job outcome.
    pub fn jetstream(&self, outcome: &str) {
        self.jetstream
            .get_or_create(&vec![("outcome", outcome.into())])
            .inc();
    }

    /// Sets the JetStream consumer lag: jobs `waiting` for delivery and `unacked` ones.
    pub fn consumer_pending(&self, waiting: u64, unacked: u64) {
        for (state, n) in [("waiting", waiting), ("unacked", unacked)] {
            self.consumer_pending
                .get_or_create(&vec![("state", state.into())])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Sets the queue depth.
    pub fn queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as i64);
    }

    /// Records an event-to-report latency.
    pub fn latency(&self, seconds: f64) {
        self.latency.observe(seconds);
    }

    /// The OpenMetrics text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
