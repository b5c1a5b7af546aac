//! The plugin's Prometheus metrics.
//!
//! One [`Metrics`] per server, shared as `Arc<Metrics>` by the gRPC service, the limiter, the
//! readiness watcher and the image pipeline, and encoded by the `--metrics-listen` endpoint
//! (`server/exporter.rs`). It owns its own `prometheus_client` registry: nothing is global, so
//! servers and tests in one process never share counters.
//!
//! Every metric is named `sidescan_*`, with its unit in the name:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sidescan_scans_total` | counter | `rpc` (`unary`, `stream`), `code` (gRPC code, e.g. `OK`, `INVALID_ARGUMENT`) |
//! | `sidescan_scan_duration_seconds` | histogram | `outcome` (`ok`, `error`, `cancelled`) |
//! | `sidescan_registry_pulled_bytes_total` | counter | `kind` (`blob`, `manifest`) |
//! | `sidescan_cache_hits_total`, `sidescan_cache_misses_total` | counter | `cache` (`blob`, `layer`, `image`) |
//! | `sidescan_shared_cache_hits_total`, `sidescan_shared_cache_misses_total` | counter | `cache` (`layer`, `image`) |
//! | `sidescan_scans_shared_total` | counter | — |
//! | `sidescan_scans_in_flight`, `sidescan_scans_queued` | gauge | — |
//! | `sidescan_engine_ready` | gauge | — |
//! | `sidescan_build_info` | gauge (always 1) | `plugin`, `version`, `sdk_version`, `engine_version` |

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tonic::Code;

use crate::error::Error;

/// Upper bounds (seconds) of the scan-duration buckets: a cached answer (tens of ms) up to the
/// default `--max-timeout` range (10 min); slower scans land in `+Inf`.
const DURATION_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
];

/// The RPC a scan came in on (`rpc` label and log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    /// `ScanImage`.
    Unary,
    /// `ScanImageStream`.
    Stream,
}

impl Rpc {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::Stream => "stream",
        }
    }
}

/// What was pulled from a registry (`kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pulled {
    /// Layer, config and artifact blobs.
    Blob,
    /// Manifests and indexes.
    Manifest,
}

impl Pulled {
    fn as_str(self) -> &'static str {
        match self {
            Self::Blob => "blob",
            Self::Manifest => "manifest",
        }
    }
}

/// Which cache a lookup went to (`cache` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheKind {
    /// The content-addressed blob cache (configs, layers, artifact blobs).
    Blob,
    /// The per-layer result cache of per-layer scanners.
    Layer,
    /// The whole-image result cache of whole-image scanners.
    Image,
}

impl CacheKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Blob => "blob",
            Self::Layer => "layer",
            Self::Image => "image",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScanLabels {
    rpc: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

#[derive(Debug, Clone, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    plugin: String,
    version: String,
    sdk_version: String,
    engine_version: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The metrics of one plugin server (see the module documentation for the list).
pub(crate) struct Metrics {
    registry: Registry,
    scans: Family<ScanLabels, Counter>,
    durations: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    pulled: Family<KindLabels, Counter>,
    cache_hits: Family<CacheLabels, Counter>,
    cache_misses: Family<CacheLabels, Counter>,
    shared_cache_hits: Family<CacheLabels, Counter>,
    shared_cache_misses: Family<CacheLabels, Counter>,
    shared: Counter,
    in_flight: Gauge,
    queued: Gauge,
    engine_ready: Gauge,
    build_info: Family<BuildLabels, Gauge>,
    /// The labels of the one `sidescan_build_info` series, once the plugin is known.
    build: Mutex<Option<BuildLabels>>,
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
    /// Every metric registered, all at zero; no `sidescan_build_info` series until
    /// [`set_plugin`](Self::set_plugin).
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let scans = Family::<ScanLabels, Counter>::default();
        registry.register(
            "sidescan_scans",
            "Scan requests answered (ScanImage and ScanImageStream), by RPC and gRPC status code; \
             requests refused before scanning (e.g. INVALID_ARGUMENT) included",
            scans.clone(),
        );
        let durations = Family::<OutcomeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        registry.register_with_unit(
            "sidescan_scan_duration",
            "Time from admission to answer of scans that passed validation (queue wait included), \
             by outcome: ok, error (any other code), cancelled (the caller went away)",
            Unit::Seconds,
            durations.clone(),
        );
        let pulled = Family::<KindLabels, Counter>::default();
        registry.register_with_unit(
            "sidescan_registry_pulled",
            "Bytes the SDK received from registries, by kind: blob (layers, configs, artifact \
             blobs, retried ranges included) or manifest; not what an engine that pulls images \
             itself (Input::Remote) fetches",
            Unit::Bytes,
            pulled.clone(),
        );
        let cache_hits = Family::<CacheLabels, Counter>::default();
        registry.register(
            "sidescan_cache_hits",
            "Cache lookups answered from the cache, by cache: blob (blob cache), layer (per-layer \
             result cache), image (whole-image result cache)",
            cache_hits.clone(),
        );
        let cache_misses = Family::<CacheLabels, Counter>::default();
        registry.register(
            "sidescan_cache_misses",
            "Cache lookups not answered from the cache (a download or a scan followed), by cache: \
             blob, layer, image",
            cache_misses.clone(),
        );
        let shared_cache_hits = Family::<CacheLabels, Counter>::default();
        registry.register(
            "sidescan_shared_cache_hits",
            "Result lookups the local disk missed and the cluster's shared cache (--nats) \
             answered, by cache: layer, image (also counted in sidescan_cache_hits)",
            shared_cache_hits.clone(),
        );
        let shared_cache_misses = Family::<CacheLabels, Counter>::default();
        registry.register(
            "sidescan_shared_cache_misses",
            "Result lookups neither the local disk nor the cluster's shared cache (--nats) \
             answered, by cache: layer, image",
            shared_cache_misses.clone(),
        );
        let shared = Counter::default();
        registry.register(
            "sidescan_scans_shared",
            "Scan requests answered by an identical scan already in flight (same image, registry, \
             credentials, platform and report types) instead of a scan of their own",
            shared.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "sidescan_scans_in_flight",
            "Scans holding a scan slot now (at most --max-concurrent-scans)",
            in_flight.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "sidescan_scans_queued",
            "Scans waiting for a scan slot now (at most --max-queued-scans)",
            queued.clone(),
        );
        let engine_ready = Gauge::default();
        registry.register(
            "sidescan_engine_ready",
            "1 while the scanner engine reports ready (grpc.health.v1 SERVING), else 0",
            engine_ready.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "sidescan_build_info",
            "Always 1; labels name the plugin, its version, the SDK version and the engine version \
             (empty until the engine first reports it)",
            build_info.clone(),
        );
        // Series that exist from the start (at 0), so every family is visible before the first
        // scan and rates are right from the first scrape.
        for rpc in [Rpc::Unary, Rpc::Stream] {
            drop(scans.get_or_create(&ScanLabels {
                rpc: rpc.as_str(),
                code: code_name(Code::Ok),
            }));
        }
        for outcome in ["ok", "error", "cancelled"] {
            drop(durations.get_or_create(&OutcomeLabels { outcome }));
        }
        for kind in [Pulled::Blob, Pulled::Manifest] {
            drop(pulled.get_or_create(&KindLabels {
                kind: kind.as_str(),
            }));
        }
        for cache in [CacheKind::Blob, CacheKind::Layer, CacheKind::Image] {
            let labels = CacheLabels {
                cache: cache.as_str(),
            };
            drop(cache_hits.get_or_create(&labels));
            drop(cache_misses.get_or_create(&labels));
            if cache != CacheKind::Blob {
                drop(shared_cache_hits.get_or_create(&labels));
                drop(shared_cache_misses.get_or_create(&labels));
            }
        }
        Self {
            registry,
            scans,
            durations,
            pulled,
            cache_hits,
            cache_misses,
            shared_cache_hits,
            shared_cache_misses,
            shared,
            in_flight,
            queued,
            engine_ready,
            build_info,
            build: Mutex::new(None),
        }
    }

    /// Records one answered scan request. `duration` is `None` for a request refused before it
    /// was admitted (it is counted, but not observed in the duration histogram).
    pub(crate) fn scan_finished(&self, rpc: Rpc, code: Code, duration: Option<Duration>) {
        self.scans
            .get_or_create(&ScanLabels {
                rpc: rpc.as_str(),
                code: code_name(code),
            })
            .inc();
        if let Some(duration) = duration {
            let outcome = match code {
                Code::Ok => "ok",
                Code::Cancelled => "cancelled",
                _ => "error",
            };
            self.durations
                .get_or_create(&OutcomeLabels { outcome })
                .observe(duration.as_secs_f64());
        }
    }

    /// Counts `bytes` received from a registry.
    pub(crate) fn pulled(&self, kind: Pulled, bytes: u64) {
        self.pulled
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc_by(bytes);
    }

    /// Counts one cache lookup.
    pub(crate) fn cache_lookup(&self, cache: CacheKind, hit: bool) {
        count_lookup(&self.cache_hits, &self.cache_misses, cache, hit);
    }

    /// Counts one lookup in the shared (cluster) result tier, made after the disk missed.
    pub(crate) fn shared_cache_lookup(&self, cache: CacheKind, hit: bool) {
        count_lookup(
            &self.shared_cache_hits,
            &self.shared_cache_misses,
            cache,
            hit,
        );
    }

    /// Counts a scan request answered by an identical scan already in flight.
    pub(crate) fn scan_shared(&self) {
        self.shared.inc();
    }

    /// The gauge of scans holding a slot (kept by the limiter).
    pub(crate) fn in_flight_gauge(&self) -> Gauge {
        self.in_flight.clone()
    }

    /// The gauge of scans waiting for a slot (kept by the limiter).
    pub(crate) fn queued_gauge(&self) -> Gauge {
        self.queued.clone()
    }

    /// Sets `sidescan_engine_ready`.
    pub(crate) fn set_engine_ready(&self, ready: bool) {
        self.engine_ready.set(i64::from(ready));
    }

    /// Names the plugin in `sidescan_build_info`.
    pub(crate) fn set_plugin(&self, name: &str, version: &str) {
        self.update_build(|labels| {
            labels.plugin = name.to_owned();
            labels.version = version.to_owned();
        });
    }

    /// Records the engine version last reported by the plugin (a new one replaces the old
    /// `sidescan_build_info` series). Ignored until [`set_plugin`](Self::set_plugin).
    pub(crate) fn set_engine_version(&self, engine_version: &str) {
        let known = self
            .lock_build()
            .as_ref()
            .map(|b| b.engine_version == engine_version);
        if known == Some(false) {
            self.update_build(|labels| engine_version.clone_into(&mut labels.engine_version));
        }
    }

    fn lock_build(&self) -> std::sync::MutexGuard<'_, Option<BuildLabels>> {
        self.build.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update_build(&self, change: impl FnOnce(&mut BuildLabels)) {
        let mut build = self.lock_build();
        let mut labels = build.clone().unwrap_or_else(|| BuildLabels {
            sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
            ..BuildLabels::default()
        });
        change(&mut labels);
        if let Some(old) = build.as_ref() {
            if *old == labels {
                return;
            }
            self.build_info.remove(old);
        }
        self.build_info.get_or_create(&labels).set(1);
        *build = Some(labels);
    }

    /// The metrics in the OpenMetrics text format (which Prometheus scrapes).
    pub(crate) fn encode(&self) -> Result<String, Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| Error::internal(format!("cannot encode metrics: {e}")))?;
        Ok(text)
    }
}

/// The canonical name of a gRPC status code (`OK`, `INVALID_ARGUMENT`, ...): the one the typed
/// client and the CLI print too.
pub(crate) use sidescan_proto::client::code_name;

/// Counts a lookup in `cache` as a hit or a miss.
fn count_lookup(
    hits: &Family<CacheLabels, Counter>,
    misses: &Family<CacheLabels, Counter>,
    cache: CacheKind,
    hit: bool,
) {
    let labels = CacheLabels {
        cache: cache.as_str(),
    };
    if hit { hits } else { misses }.get_or_create(&labels).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `series` (name and labels exactly as encoded), if present.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    }

    #[test]
    fn every_metric_is_exposed_with_help_and_type_before_any_scan() {
        let metrics = Metrics::new();
        metrics.set_plugin("demo", "1.0.0");
        let text = metrics.encode().unwrap();
        for (name, kind) in [
            ("sidescan_scans", "counter"),
            ("sidescan_scan_duration_seconds", "histogram"),
            ("sidescan_registry_pulled_bytes", "counter"),
            ("sidescan_cache_hits", "counter"),
            ("sidescan_cache_misses", "counter"),
            ("sidescan_shared_cache_hits", "counter"),
            ("sidescan_shared_cache_misses", "counter"),
            ("sidescan_scans_shared", "counter"),
            ("sidescan_scans_in_flight", "gauge"),
            ("sidescan_scans_queued", "gauge"),
            ("sidescan_engine_ready", "gauge"),
            ("sidescan_build_info", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind} missing:\n{text}"
            );
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name}: no help:\n{text}"
            );
        }
        assert_eq!(sample(&text, "sidescan_scans_in_flight"), Some(0.0));
        assert_eq!(sample(&text, "sidescan_scans_shared_total"), Some(0.0));
        assert_eq!(sample(&text, "sidescan_engine_ready"), Some(0.0));
        assert_eq!(
            sample(&text, r#"sidescan_scans_total{rpc="stream",code="OK"}"#),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, r#"sidescan_cache_misses_total{cache="image"}"#),
            Some(0.0)
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn scans_are_counted_by_rpc_and_code_and_timed_by_outcome() {
        let metrics = Metrics::new();
        metrics.scan_finished(Rpc::Unary, Code::Ok, Some(Duration::from_millis(30)));
        metrics.scan_finished(Rpc::Unary, Code::Ok, Some(Duration::from_secs(7)));
        metrics.scan_finished(Rpc::Stream, Code::InvalidArgument, None);
        metrics.scan_finished(Rpc::Stream, Code::Cancelled, Some(Duration::from_secs(1)));
        let text = metrics.encode().unwrap();
        let s = |series: &str| sample(&text, series);
        assert_eq!(
            s(r#"sidescan_scans_total{rpc="unary",code="OK"}"#),
            Some(2.0)
        );
        assert_eq!(
            s(r#"sidescan_scans_total{rpc="stream",code="INVALID_ARGUMENT"}"#),
            Some(1.0)
        );
        assert_eq!(
            s(r#"sidescan_scan_duration_seconds_count{outcome="ok"}"#),
            Some(2.0)
        );
        assert_eq!(
            s(r#"sidescan_scan_duration_seconds_bucket{le="0.05",outcome="ok"}"#),
            Some(1.0)
        );
        assert_eq!(
            s(r#"sidescan_scan_duration_seconds_bucket{le="10.0",outcome="ok"}"#),
            Some(2.0)
        );
        assert_eq!(
            s(r#"sidescan_scan_duration_seconds_count{outcome="cancelled"}"#),
            Some(1.0)
        );
        assert_eq!(
            s(r#"sidescan_scan_duration_seconds_count{outcome="error"}"#),
            Some(0.0),
            "a refused request is not timed"
        );
    }

    #[test]
    fn bytes_and_cache_lookups_are_counted_by_label() {
        let metrics = Metrics::new();
        metrics.pulled(Pulled::Blob, 1000);
        metrics.pulled(Pulled::Blob, 24);
        metrics.pulled(Pulled::Manifest, 500);
        metrics.cache_lookup(CacheKind::Layer, false);
        metrics.cache_lookup(CacheKind::Layer, true);
        metrics.cache_lookup(CacheKind::Layer, true);
        metrics.cache_lookup(CacheKind::Image, false);
        let text = metrics.encode().unwrap();
        let s = |series: &str| sample(&text, series);
        assert_eq!(
            s(r#"sidescan_registry_pulled_bytes_total{kind="blob"}"#),
            Some(1024.0)
        );
        assert_eq!(
            s(r#"sidescan_registry_pulled_bytes_total{kind="manifest"}"#),
            Some(500.0)
        );
        assert_eq!(s(r#"sidescan_cache_hits_total{cache="layer"}"#), Some(2.0));
        assert_eq!(
            s(r#"sidescan_cache_misses_total{cache="layer"}"#),
            Some(1.0)
        );
        assert_eq!(
            s(r#"sidescan_cache_misses_total{cache="image"}"#),
            Some(1.0)
        );
        assert_eq!(s(r#"sidescan_cache_hits_total{cache="image"}"#), Some(0.0));
    }

    #[test]
    fn build_info_keeps_one_series_and_follows_the_engine_version() {
        let metrics = Metrics::new();
        metrics.set_engine_version("ignored before the plugin is known");
        assert!(!metrics.encode().unwrap().contains("sidescan_build_info{"));
        metrics.set_plugin("demo", "1.2.3");
        metrics.set_engine_version("db-1");
        metrics.set_engine_version("db-2");
        metrics.set_engine_version("db-2");
        let text = metrics.encode().unwrap();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("sidescan_build_info{"))
            .collect();
        let sdk = env!("CARGO_PKG_VERSION");
        assert_eq!(
            series,
            [format!(
                r#"sidescan_build_info{{plugin="demo",version="1.2.3",sdk_version="{sdk}",engine_version="db-2"}} 1"#
            )],
            "{text}"
        );
    }

    #[test]
    fn readiness_and_slot_gauges() {
        let metrics = Metrics::new();
        metrics.set_engine_ready(true);
        metrics.in_flight_gauge().inc();
        metrics.queued_gauge().inc();
        metrics.queued_gauge().dec();
        let text = metrics.encode().unwrap();
        assert_eq!(sample(&text, "sidescan_engine_ready"), Some(1.0));
        assert_eq!(sample(&text, "sidescan_scans_in_flight"), Some(1.0));
        assert_eq!(sample(&text, "sidescan_scans_queued"), Some(0.0));
    }

    #[test]
    fn code_names_are_the_grpc_spellings() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::ResourceExhausted), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
    }
}
