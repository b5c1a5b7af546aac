//! [`ScanContext`]: what the SDK tells a plugin about the scan in progress.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::model::Platform;

/// Per-scan facts and services handed to every scan method.
#[derive(Debug, Clone)]
pub struct ScanContext {
    /// The request id (from `x-request-id`, or generated); it is in every log line of the scan.
    pub request_id: String,
    /// Report types requested, keyed by normalised MIME type, with their parameters. Empty: only
    /// the primary report.
    pub report_types: BTreeMap<String, BTreeMap<String, String>>,
    /// The platform being scanned, when the artifact is an image of a known platform.
    pub platform: Option<Platform>,
    /// Cancelled when the caller cancels or the deadline passes; long-running work should stop.
    pub cancel: CancellationToken,
    /// Reports progress to a streaming caller.
    pub progress: ProgressSink,
    scratch_dir: PathBuf,
}

impl ScanContext {
    /// A context; `scratch_dir` is the scan's private scratch directory, removed after the scan.
    pub fn new(request_id: impl Into<String>, scratch_dir: impl Into<PathBuf>) -> Self {
        Self {
            request_id: request_id.into(),
            report_types: BTreeMap::new(),
            platform: None,
            cancel: CancellationToken::new(),
            progress: ProgressSink::disabled(),
            scratch_dir: scratch_dir.into(),
        }
    }

    /// A directory private to this scan, removed by the SDK after the scan whatever its outcome.
    /// Plugins write temporary files here and nowhere else.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch_dir
    }

    /// A copy of this context whose scratch directory is `dir` (the pipeline's per-scan
    /// directory).
    pub(crate) fn with_scratch_dir(&self, dir: impl Into<PathBuf>) -> Self {
        Self {
            scratch_dir: dir.into(),
            ..self.clone()
        }
    }

    /// Whether the report type `mime` (any spelling) was requested.
    pub fn wants_report(&self, mime: &str) -> bool {
        self.report_types
            .contains_key(&sidescan_proto::mime::normalize(mime))
    }
}

/// The stage a scan is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a free scan slot.
    Queued,
    /// Fetching and checking manifests.
    Resolving,
    /// Pulling and verifying blobs.
    Downloading,
    /// The engine is scanning.
    Scanning,
    /// Building the report.
    Reporting,
}

/// One progress event, from real byte and layer counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    /// Current phase.
    pub phase: Phase,
    /// Bytes done in this phase.
    pub bytes_done: u64,
    /// Bytes expected in this phase; 0 when unknown.
    pub bytes_total: u64,
    /// Layers finished.
    pub layers_done: u32,
    /// Layers in total.
    pub layers_total: u32,
    /// Short note, e.g. the layer being pulled.
    pub message: String,
}

impl ProgressEvent {
    /// An event for `phase` with a message and no counts.
    pub fn phase(phase: Phase, message: impl Into<String>) -> Self {
        Self {
            phase,
            bytes_done: 0,
            bytes_total: 0,
            layers_done: 0,
            layers_total: 0,
            message: message.into(),
        }
    }
}

/// Where progress events go. Sending never blocks a scan: when the caller is slow, intermediate
/// events are dropped (the final response never is; it does not travel through here).
#[derive(Debug, Clone)]
pub struct ProgressSink {
    sender: Option<mpsc::Sender<ProgressEvent>>,
}

impl ProgressSink {
    /// A sink that discards events (unary calls).
    pub fn disabled() -> Self {
        Self { sender: None }
    }

    /// A sink feeding `sender`.
    pub fn new(sender: mpsc::Sender<ProgressEvent>) -> Self {
        Self {
            sender: Some(sender),
        }
    }

    /// Sends `event` if there is room; drops it otherwise.
    pub fn report(&self, event: ProgressEvent) {
        if let Some(sender) = &self.sender {
            let _ = sender.try_send(event);
        }
    }
}
