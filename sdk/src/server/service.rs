//! The `sidescan.v1.Scan` gRPC service: request validation, deadlines, the concurrency limit, and
//! the one path from a request to a response that both `ScanImage` and `ScanImageStream` take.
//!
//! Every scan request runs inside one `scan` span (fields `request_id`, `rpc`, and once the
//! request is valid `image`, `registry`, `platform`; never the authorization value) and ends
//! with one line that carries its `code`: "scan request refused", or "scan finished" / "scan
//! failed" with `elapsed_ms` (written by `record.rs`'s `ScanRecord`, which also counts it).
//! Identical scans in flight share one run (`flight.rs`); a full queue's refusal carries the
//! limiter's pushback.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::{FutureExt, Stream};
use sidescan_proto::{mime, v1 as pb};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::config::ServerConfig;
use super::flight::{Flight, Flights, Joined, ScanKey};
use super::limiter::{Admission, ScanLimiter};
use super::record::{Failure, ScanRecord};
use crate::context::{Phase, ProgressEvent, ProgressSink, ScanContext};
use crate::convert::{platform_from_proto, progress_to_proto};
use crate::error::Error;
use crate::metrics::{Metrics, Rpc, code_name};
use crate::pipeline::{Pipeline, ScanJob};
use crate::plugin::{Input, Readiness, Scanner, ScannerInfo};
use crate::report::{self, RequestedReports};

/// Request metadata key carrying the request id.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// The SDK's own deadline fires this much before tonic's transport timer (which would answer
/// CANCELLED), so callers get DEADLINE_EXCEEDED as documented.
const DEADLINE_MARGIN_MIN: Duration = Duration::from_millis(50);
const DEADLINE_MARGIN_MAX: Duration = Duration::from_millis(250);

/// Everything the service shares between requests.
pub(crate) struct ScanService {
    scanner: Arc<dyn Scanner>,
    info: ScannerInfo,
    pipeline: Arc<Pipeline>,
    limiter: Arc<ScanLimiter>,
    /// Identical scans in flight, run once.
    flights: Arc<Flights<ScanKey, Result<pb::ScanResponse, Error>>>,
    readiness: watch::Receiver<Readiness>,
    config: ServerConfig,
    metrics: Arc<Metrics>,
}

/// A validated request, ready to run.
struct PreparedScan {
    request_id: String,
    job: ScanJob,
    requested: RequestedReports,
    /// When the scan must be over (the SDK's timer).
    deadline: Duration,
}

/// A scan started or joined: its shared future and this caller's deadline.
struct Begun {
    flight: Flight<Result<pb::ScanResponse, Error>>,
    deadline: Duration,
}

impl Begun {
    /// Waits for the shared answer within this caller's deadline, and has `record` log and
    /// count how it ended for this caller.
    async fn answer(self, record: ScanRecord) -> Result<pb::ScanResponse, Failure> {
        let result = match tokio::time::timeout(self.deadline, self.flight).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::DeadlineExceeded(format!(
                "scan did not finish within {}",
                humantime::format_duration(self.deadline)
            ))),
        };
        record.finish(result.as_ref());
        result.map_err(Failure::from)
    }
}

impl ScanService {
    pub(crate) fn new(
        scanner: Arc<dyn Scanner>,
        pipeline: Arc<Pipeline>,
        readiness: watch::Receiver<Readiness>,
        config: ServerConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let info = scanner.info();
        Self {
            scanner,
            info,
            pipeline,
            limiter: Arc::new(ScanLimiter::new(
                config.max_concurrent_scans,
                config.max_queued_scans,
                &metrics,
            )),
            flights: Arc::new(Flights::new()),
            readiness,
            config,
            metrics,
        }
    }

    /// Report MIME types this plugin produces, normalised.
    fn produced_types(&self) -> Vec<String> {
        self.info
            .capabilities
            .iter()
            .flat_map(|c| c.produces.iter().map(|m| mime::normalize(m)))
            .collect()
    }

    /// Validates a request and works out its deadline. All request validation happens here (and
    /// in [`Pipeline::validate`], which it calls), before a scan slot is taken.
    fn prepare(
        &self,
        request_id: String,
        metadata: &MetadataMap,
        request: &pb::ScanRequest,
    ) -> Result<PreparedScan, Error> {
        let produced = self.produced_types();
        let mut requested = RequestedReports::new();
        for (mime_type, params) in &request.report_types {
            let normalized = mime::normalize(mime_type);
            if !produced.contains(&normalized) {
                return Err(Error::invalid_argument(format!(
                    "unknown report type {mime_type:?}: this plugin produces {}",
                    produced.join(", ")
                )));
            }
            let params = params
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>();
            requested.insert(normalized, params);
        }
        let registry = request.registry.clone().unwrap_or_default();
        let job = ScanJob {
            image: request.image.trim().to_owned(),
            registry_url: registry.url.trim().to_owned(),
            authorization: registry.authorization,
            insecure: registry.insecure,
            platform: platform_from_proto(request.platform.as_ref())?,
        };
        self.pipeline.validate(&job)?;
        let deadline = self.deadline(metadata)?;
        Ok(PreparedScan {
            request_id,
            job,
            requested,
            deadline,
        })
    }

    /// The time this scan may take: the caller's deadline (less a margin) or the default timeout,
    /// capped by the maximum.
    fn deadline(&self, metadata: &MetadataMap) -> Result<Duration, Error> {
        let requested = match metadata.get("grpc-timeout").map(|v| v.to_str()) {
            None => None,
            Some(Ok(text)) => Some(parse_grpc_timeout(text).ok_or_else(|| {
                Error::invalid_argument(format!("malformed grpc-timeout {text:?}"))
            })?),
            Some(Err(_)) => return Err(Error::invalid_argument("malformed grpc-timeout")),
        };
        Ok(match requested {
            Some(caller) => {
                let margin = (caller / 20).clamp(DEADLINE_MARGIN_MIN, DEADLINE_MARGIN_MAX);
                caller.saturating_sub(margin).min(self.config.max_timeout)
            }
            None => self.config.default_timeout.min(self.config.max_timeout),
        })
    }

    /// Runs a prepared scan to its response, and has `record` log and count how it ended.
    /// Dropping the future cancels the caller's wait (and `record` counts it CANCELLED); the
    /// scan itself stops once every caller sharing it has gone.
    async fn execute(
        self: &Arc<Self>,
        scan: PreparedScan,
        progress: ProgressSink,
        record: ScanRecord,
    ) -> Result<pb::ScanResponse, Failure> {
        match self.begin(scan, &progress) {
            Ok(begun) => begun.answer(record).await,
            Err(failure) => {
                record.finish(Err(&failure.error));
                Err(failure)
            }
        }
    }

    /// Starts a prepared scan without waiting: refuses it when the engine is not ready, the
    /// deadline leaves no time or the queue is full (with a pushback); follows an identical scan
    /// already in flight (no slot taken); else takes a slot or a queue seat and starts the
    /// scan's shared future in the current span.
    fn begin(
        self: &Arc<Self>,
        scan: PreparedScan,
        progress: &ProgressSink,
    ) -> Result<Begun, Failure> {
        let PreparedScan {
            request_id,
            job,
            requested,
            deadline,
        } = scan;
        if deadline.is_zero() {
            return Err(Error::DeadlineExceeded(
                "the caller's deadline leaves no time to scan".into(),
            )
            .into());
        }
        if let Readiness::NotReady(reason) = &*self.readiness.borrow() {
            return Err(Error::unavailable(format!("scanner engine not ready: {reason}")).into());
        }
        tracing::debug!(
            running = self.limiter.running(),
            queued = self.limiter.queued(),
            "taking a scan slot"
        );
        let key = ScanKey::new(&job, &requested);
        let joined = self.flights.join(key, || {
            let admission = self.limiter.admit()?;
            let service = self.clone();
            let progress = progress.clone();
            Ok::<_, Failure>(
                async move {
                    service
                        .run(admission, request_id, job, requested, progress)
                        .await
                }
                .in_current_span()
                .boxed(),
            )
        })?;
        let flight = match joined {
            Joined::Started(flight) => {
                progress.report(ProgressEvent::phase(
                    Phase::Queued,
                    "waiting for a scan slot",
                ));
                flight
            }
            Joined::Followed(flight) => {
                self.metrics.scan_shared();
                tracing::debug!("an identical scan is in flight: sharing its answer");
                progress.report(ProgressEvent::phase(
                    Phase::Queued,
                    "an identical scan is in flight: waiting for its answer",
                ));
                flight
            }
        };
        Ok(Begun { flight, deadline })
    }

    /// One scan, shared by every identical request in flight: waits for its slot, runs the
    /// pipeline and builds the response. Dropped when its last caller has gone, which cancels
    /// the scan's work.
    async fn run(
        self: Arc<Self>,
        admission: Admission,
        request_id: String,
        job: ScanJob,
        requested: RequestedReports,
        progress: ProgressSink,
    ) -> Result<pb::ScanResponse, Error> {
        let cancel = CancellationToken::new();
        let _cancel_on_drop = cancel.clone().drop_guard();
        let _slot = admission.slot().await?;
        let mut ctx = ScanContext::new(request_id, &self.config.scratch_dir);
        ctx.report_types = requested.clone();
        ctx.platform = job.platform.clone();
        ctx.cancel = cancel.clone();
        ctx.progress = progress.clone();
        let outcome = self.pipeline.scan(&self.scanner, &job, &ctx).await?;
        progress.report(ProgressEvent::phase(
            Phase::Reporting,
            "building the report",
        ));
        Ok(report::build_response(
            &self.info,
            outcome,
            &requested,
            SystemTime::now(),
        ))
    }

    /// Opens the request's `scan` span and validates the request in it, for either RPC. A
    /// refusal is logged and counted, and becomes the status the caller gets; an admitted
    /// scan gets the [`ScanRecord`] that logs and counts its end.
    fn admit(
        &self,
        request: &Request<pb::ScanRequest>,
        rpc: Rpc,
    ) -> Result<(PreparedScan, tracing::Span, ScanRecord), Status> {
        let request_id = request_id(request.metadata());
        // The authorization value is deliberately not a field: it must never be logged. Image
        // and registry are recorded only once validated (a refused URL may carry a password).
        let span = tracing::info_span!(
            "scan",
            request_id = %request_id,
            rpc = rpc.as_str(),
            image = tracing::field::Empty,
            registry = tracing::field::Empty,
            platform = tracing::field::Empty,
        );
        let prepared =
            span.in_scope(|| self.prepare(request_id, request.metadata(), request.get_ref()));
        match prepared {
            Ok(prepared) => {
                let job = &prepared.job;
                span.record("image", job.image.as_str());
                span.record("registry", job.registry_url.as_str());
                if let Some(platform) = &job.platform {
                    span.record("platform", platform.to_string());
                }
                let record = ScanRecord {
                    metrics: self.metrics.clone(),
                    rpc,
                    span: span.clone(),
                    started: Instant::now(),
                    finished: false,
                };
                Ok((prepared, span, record))
            }
            Err(err) => {
                span.in_scope(|| {
                    tracing::info!(
                        code = code_name(err.code()),
                        error = %err.message(),
                        "scan request refused"
                    );
                });
                self.metrics.scan_finished(rpc, err.code(), None);
                Err(err.into())
            }
        }
    }

    fn metadata(&self, properties: BTreeMap<String, String>) -> pb::GetMetadataResponse {
        let image_types = [
            mime::OCI_MANIFEST,
            mime::OCI_INDEX,
            mime::DOCKER_MANIFEST,
            mime::DOCKER_MANIFEST_LIST,
        ];
        let capabilities: Vec<pb::Capability> = self
            .info
            .capabilities
            .iter()
            .map(|c| pb::Capability {
                r#type: c.kind.clone(),
                consumes_mime_types: if c.consumes.is_empty() {
                    image_types.iter().map(|s| (*s).to_owned()).collect()
                } else {
                    c.consumes.clone()
                },
                produces_mime_types: c.produces.clone(),
            })
            .collect();
        let artifact_blobs = self
            .info
            .capabilities
            .iter()
            .flat_map(|c| &c.consumes)
            .any(|m| !image_types.contains(&m.as_str()));
        let limits = self.config.limits();
        pb::GetMetadataResponse {
            scanner: Some(report::scanner_to_proto(&self.info)),
            api_version: sidescan_proto::API_VERSION.to_owned(),
            capabilities,
            properties: properties.into_iter().collect(),
            features: Some(pb::Features {
                streaming: true,
                platform_selection: true,
                multi_platform: true,
                layer_result_cache: self.scanner.input() == Input::PerLayer,
                artifact_blobs,
            }),
            limits: Some(pb::Limits {
                max_concurrent_scans: self.config.max_concurrent_scans,
                max_queued_scans: self.config.max_queued_scans,
                max_image_bytes: limits.max_image_bytes,
                max_uncompressed_bytes: limits.max_uncompressed_bytes,
                max_entries: limits.max_entries,
                max_file_bytes: limits.max_file_bytes,
                max_compression_ratio: limits.max_compression_ratio,
                default_timeout: prost_types::Duration::try_from(self.config.default_timeout).ok(),
                max_timeout: prost_types::Duration::try_from(self.config.max_timeout).ok(),
                max_manifest_bytes: limits.max_manifest_bytes,
            }),
        }
    }
}

/// The request id from metadata when it is sane (printable ASCII, at most 128 bytes), else a new
/// UUID.
fn request_id(metadata: &MetadataMap) -> String {
    metadata
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Parses a `grpc-timeout` header value: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.checked_mul(3600)?),
        "M" => Duration::from_secs(value.checked_mul(60)?),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

fn with_request_id<T>(message: T, request_id: &str) -> Response<T> {
    let mut response = Response::new(message);
    if let Ok(value) = MetadataValue::try_from(request_id) {
        response.metadata_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The tonic-facing wrapper (cheap to clone).
#[derive(Clone)]
pub(crate) struct ScanGrpc(pub(crate) Arc<ScanService>);

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ScanImageStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::scan_server::Scan for ScanGrpc {
    async fn get_metadata(
        &self,
        _request: Request<pb::GetMetadataRequest>,
    ) -> Result<Response<pb::GetMetadataResponse>, Status> {
        let mut properties =
            tokio::time::timeout(Duration::from_secs(5), self.0.scanner.properties())
                .await
                .unwrap_or_default();
        // The engine version results are keyed by, for hosts that keep results (sidescan-watch
        // rescans when it changes); absent while the engine is not ready.
        if let Ok(Ok(engine)) =
            tokio::time::timeout(Duration::from_secs(5), self.0.scanner.engine_version()).await
        {
            properties.insert(sidescan_proto::ENGINE_VERSION_PROPERTY.to_string(), engine);
        }
        Ok(Response::new(self.0.metadata(properties)))
    }

    async fn scan_image(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let service = &self.0;
        let (prepared, span, record) = service.admit(&request, Rpc::Unary)?;
        let request_id = prepared.request_id.clone();
        let response = service
            .execute(prepared, ProgressSink::disabled(), record)
            .instrument(span)
            .await?;
        Ok(with_request_id(response, &request_id))
    }

    type ScanImageStreamStream = EventStream;

    /// A refusal (engine not ready, queue full) is the call's status, before any event, so a
    /// caller can retry it like a unary call; once started, the scan's events follow.
    async fn scan_image_stream(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<Self::ScanImageStreamStream>, Status> {
        let service = self.0.clone();
        let (prepared, span, record) = service.admit(&request, Rpc::Stream)?;
        let request_id = prepared.request_id.clone();
        let (events_tx, events_rx) =
            mpsc::channel::<Result<pb::ScanImageStreamResponse, Status>>(32);
        let (progress_tx, mut progress_rx) = mpsc::channel::<ProgressEvent>(64);
        let progress = ProgressSink::new(progress_tx);
        let begun = match span.in_scope(|| service.begin(prepared, &progress)) {
            Ok(begun) => begun,
            Err(failure) => {
                record.finish(Err(&failure.error));
                return Err(failure.into());
            }
        };
        drop(progress);
        tokio::spawn(
            async move {
                let scan = begun.answer(record);
                tokio::pin!(scan);
                let progress_event = |p: &ProgressEvent| pb::ScanImageStreamResponse {
                    event: Some(pb::scan_image_stream_response::Event::Progress(
                        progress_to_proto(p),
                    )),
                };
                let result = loop {
                    tokio::select! {
                        result = &mut scan => break result,
                        // A caller that hung up stops waiting: dropping `scan` logs and counts
                        // it CANCELLED (and stops the scan unless another caller shares it).
                        Some(event) = progress_rx.recv() => {
                            if events_tx.send(Ok(progress_event(&event))).await.is_err() {
                                return;
                            }
                        }
                        () = events_tx.closed() => return,
                    }
                };
                while let Ok(event) = progress_rx.try_recv() {
                    let _ = events_tx.send(Ok(progress_event(&event))).await;
                }
                let last = result
                    .map(|response| pb::ScanImageStreamResponse {
                        event: Some(pb::scan_image_stream_response::Event::Result(response)),
                    })
                    .map_err(Status::from);
                let _ = events_tx.send(last).await;
            }
            .instrument(span),
        );
        let stream: EventStream = Box::pin(ReceiverStream::new(events_rx));
        Ok(with_request_id(stream, &request_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_parse() {
        assert_eq!(parse_grpc_timeout("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse_grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("999999999S"), None, "more than 8 digits");
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let mut md = MetadataMap::new();
        md.insert(REQUEST_ID_HEADER, "abc-123".parse().unwrap());
        assert_eq!(request_id(&md), "abc-123");
        md.insert(REQUEST_ID_HEADER, "has space".parse().unwrap());
        assert_ne!(request_id(&md), "has space");
        assert_eq!(request_id(&MetadataMap::new()).len(), 36);
    }
}
