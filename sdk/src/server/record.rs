//! How a scan request ends: [`Failure`] (an error, and for a full queue its pushback, as the
//! caller's status) and [`ScanRecord`] (its final log line and its count in the metrics).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sidescan_proto::v1 as pb;
use tonic::Status;
use tonic::metadata::MetadataValue;

use super::limiter::{PUSHBACK_HEADER, QueueFull};
use crate::error::Error;
use crate::metrics::{Metrics, Rpc, code_name};

/// Why a scan request got no answer: its error and, for a refusal because the queue is full,
/// when to come back (sent as `grpc-retry-pushback-ms`; see `limiter.rs`).
#[derive(Debug)]
pub(crate) struct Failure {
    /// The error, with its one status code.
    pub(crate) error: Error,
    /// When to come back, for a full queue.
    pub(crate) pushback: Option<Duration>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            pushback: None,
        }
    }
}

impl From<QueueFull> for Failure {
    fn from(full: QueueFull) -> Self {
        Failure {
            error: full.error,
            pushback: Some(full.pushback),
        }
    }
}

/// The error's status (its one code mapping, `From<Error> for Status`), plus the pushback
/// metadata when there is one.
impl From<Failure> for Status {
    fn from(failure: Failure) -> Self {
        let mut status = Status::from(failure.error);
        if let Some(pushback) = failure.pushback {
            let millis = pushback.as_millis().to_string();
            if let Ok(value) = MetadataValue::try_from(millis.as_str()) {
                status.metadata_mut().insert(PUSHBACK_HEADER, value);
            }
        }
        status
    }
}

/// Logs and counts how one admitted scan ended: once, from [`ScanRecord::finish`], or on drop
/// as CANCELLED when the scan's future was dropped first (the caller went away, or the server
/// gave up draining).
pub(crate) struct ScanRecord {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) rpc: Rpc,
    pub(crate) span: tracing::Span,
    pub(crate) started: Instant,
    pub(crate) finished: bool,
}

impl ScanRecord {
    /// Logs the final line ("scan finished" or "scan failed", with `code` and `elapsed_ms`)
    /// and counts the scan.
    pub(crate) fn finish(mut self, result: Result<&pb::ScanResponse, &Error>) {
        self.finished = true;
        let elapsed = self.started.elapsed();
        let elapsed_ms = elapsed_ms(elapsed);
        let _entered = self.span.enter();
        let code = match result {
            Ok(resp) => {
                let summary = resp.report.as_ref().and_then(|r| r.summary.as_ref());
                tracing::info!(
                    code = code_name(tonic::Code::Ok),
                    elapsed_ms,
                    findings = summary.map_or(0, |s| s.total),
                    notices = resp.report.as_ref().map_or(0, |r| r.notices.len()),
                    "scan finished"
                );
                tonic::Code::Ok
            }
            Err(err) => {
                tracing::warn!(
                    code = code_name(err.code()),
                    elapsed_ms,
                    error = %err.message(),
                    "scan failed"
                );
                err.code()
            }
        };
        self.metrics.scan_finished(self.rpc, code, Some(elapsed));
    }
}

impl Drop for ScanRecord {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let elapsed = self.started.elapsed();
        let _entered = self.span.enter();
        tracing::info!(
            code = code_name(tonic::Code::Cancelled),
            elapsed_ms = elapsed_ms(elapsed),
            error = "the scan was dropped before its answer: the caller went away or the server stopped",
            "scan failed"
        );
        self.metrics
            .scan_finished(self.rpc, tonic::Code::Cancelled, Some(elapsed));
    }
}

fn elapsed_ms(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}
