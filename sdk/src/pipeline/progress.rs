//! Progress events from real byte and layer counts.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::context::{Phase, ProgressEvent, ProgressSink};

/// Report at most about once per this many downloaded bytes.
const STEP: u64 = 1 << 20;

/// Counters of one image's download and scan.
#[derive(Debug)]
pub(super) struct Progress {
    sink: ProgressSink,
    bytes_total: u64,
    bytes_done: AtomicU64,
    last_reported: AtomicU64,
    layers_total: u32,
    layers_done: AtomicU32,
}

impl Progress {
    /// Counters for `bytes_total` bytes to download over `layers_total` layers.
    pub(super) fn new(sink: ProgressSink, bytes_total: u64, layers_total: usize) -> Self {
        Self {
            sink,
            bytes_total,
            bytes_done: AtomicU64::new(0),
            last_reported: AtomicU64::new(0),
            layers_total: u32::try_from(layers_total).unwrap_or(u32::MAX),
            layers_done: AtomicU32::new(0),
        }
    }

    fn event(&self, phase: Phase, message: String) -> ProgressEvent {
        ProgressEvent {
            phase,
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_total: self.bytes_total,
            layers_done: self.layers_done.load(Ordering::Relaxed),
            layers_total: self.layers_total,
            message,
        }
    }

    /// Counts downloaded bytes.
    pub(super) fn downloaded(&self, n: u64) {
        let done = self.bytes_done.fetch_add(n, Ordering::Relaxed) + n;
        let last = self.last_reported.load(Ordering::Relaxed);
        if done >= last + STEP || done == self.bytes_total {
            self.last_reported.store(done, Ordering::Relaxed);
            self.sink
                .report(self.event(Phase::Downloading, String::new()));
        }
    }

    /// A blob finished downloading (or was in the cache).
    pub(super) fn blob_ready(&self, digest: &str, from_cache: bool) {
        let what = if from_cache { "cached" } else { "pulled" };
        self.sink
            .report(self.event(Phase::Downloading, format!("{what} {digest}")));
    }

    /// The plugin starts on layer `index`.
    pub(super) fn scanning(&self, message: String) {
        self.sink.report(self.event(Phase::Scanning, message));
    }

    /// A layer is done.
    pub(super) fn layer_done(&self) {
        self.layers_done.fetch_add(1, Ordering::Relaxed);
    }
}
