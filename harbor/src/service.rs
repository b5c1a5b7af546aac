//! [`HarborService`]: the Harbor API's behaviour, independent of HTTP: metadata (cached), job
//! submission (validated at once, scanned in the background, bounded by a number of plugin
//! slots) and report lookup.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sidescan_proto::v1::{GetMetadataResponse, Severity};
use tokio::sync::{Mutex, Semaphore};
use tracing::Instrument;

use crate::backend::ScanBackend;
use crate::error::ApiError;
use crate::jobs::{Failure, Job, JobState, JobStore, ScanOutcome};
use crate::metadata::{self, Metadata};
use crate::mime::{self, Accepted, ReportType};
use crate::report;
use crate::request::{self, Validated};

/// Which credentials Harbor should send (`harbor.scanner-adapter/registry-authorization-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthorizationType {
    /// A robot account as `Basic base64(robot:secret)` (the plugin exchanges it for a token).
    #[default]
    Basic,
    /// A pull token Harbor fetches for the repository.
    Bearer,
}

impl AuthorizationType {
    /// The property value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationType::Basic => "Basic",
            AuthorizationType::Bearer => "Bearer",
        }
    }
}

/// How the Harbor API behaves.
#[derive(Clone, Debug)]
pub struct HarborOptions {
    /// `Refresh-After` of a 302, clamped to 1..=127 s (Harbor parses it as an 8-bit integer).
    pub refresh_after: Duration,
    /// Bound on one job (all its plugin calls); past it the job fails with DEADLINE_EXCEEDED.
    pub scan_timeout: Duration,
    /// Plugin calls in flight at once; further jobs wait (as 302) for a slot.
    pub max_in_flight: usize,
    /// Severity of the `SIDESCAN-INCOMPLETE-<code>` items of an incomplete scan.
    pub incomplete_severity: Severity,
    /// How long plugin metadata is reused before it is asked for again.
    pub metadata_ttl: Duration,
    /// Bound on one metadata call (below Harbor's 5 s HTTP timeout).
    pub metadata_timeout: Duration,
    /// The credentials Harbor is told to send.
    pub authorization_type: AuthorizationType,
}

impl Default for HarborOptions {
    fn default() -> Self {
        HarborOptions {
            refresh_after: Duration::from_secs(2),
            scan_timeout: Duration::from_secs(25 * 60),
            max_in_flight: 4,
            incomplete_severity: Severity::Critical,
            metadata_ttl: Duration::from_secs(30),
            metadata_timeout: Duration::from_secs(4),
            authorization_type: AuthorizationType::Basic,
        }
    }
}

impl HarborOptions {
    /// The `Refresh-After` value in seconds, within 1..=127.
    pub fn refresh_after_secs(&self) -> u64 {
        self.refresh_after.as_secs().clamp(1, 127)
    }
}

/// What the report endpoint answers.
#[derive(Debug)]
pub enum ReportAnswer {
    /// The document, as the report type's media type.
    Ready(ReportType, serde_json::Value),
    /// Not finished: ask again after this many seconds.
    NotReady(u64),
}

/// How long a stale metadata copy is served after the plugin failed to answer before it is
/// asked again.
const METADATA_RETRY: Duration = Duration::from_secs(5);

/// The Harbor API over one [`ScanBackend`] and one [`JobStore`].
pub struct HarborService {
    backend: Arc<dyn ScanBackend>,
    jobs: Arc<dyn JobStore>,
    options: HarborOptions,
    /// The plugin's metadata and until when it is used without asking again.
    metadata: Mutex<Option<(Instant, Arc<GetMetadataResponse>)>>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for HarborService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HarborService")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl HarborService {
    /// A service scanning with `backend` and keeping jobs in `jobs`.
    pub fn new(
        backend: Arc<dyn ScanBackend>,
        jobs: Arc<dyn JobStore>,
        options: HarborOptions,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
        HarborService {
            backend,
            jobs,
            options,
            metadata: Mutex::new(None),
            slots,
        }
    }

    /// The options in force.
    pub fn options(&self) -> &HarborOptions {
        &self.options
    }

    /// The plugin's metadata: cached for `metadata_ttl`; a stale copy is used when the plugin
    /// cannot answer. One call at a time.
    async fn plugin_metadata(&self) -> Result<Arc<GetMetadataResponse>, ApiError> {
        let mut cached = self.metadata.lock().await;
        if let Some((fresh_until, md)) = cached.as_ref()
            && Instant::now() < *fresh_until
        {
            return Ok(md.clone());
        }
        let fetched =
            tokio::time::timeout(self.options.metadata_timeout, self.backend.metadata()).await;
        match fetched {
            Ok(Ok(md)) => {
                let md = Arc::new(md);
                let now = Instant::now();
                let fresh_until = now.checked_add(self.options.metadata_ttl).unwrap_or(now);
                *cached = Some((fresh_until, md.clone()));
                Ok(md)
            }
            Ok(Err(status)) => stale_or(self.retry_later(&mut cached), || {
                format!(
                    "{}: {}",
                    sidescan_proto::client::code_name(status.code()),
                    status.message()
                )
            }),
            Err(_) => stale_or(self.retry_later(&mut cached), || {
                format!(
                    "no metadata within {}",
                    humantime::format_duration(self.options.metadata_timeout)
                )
            }),
        }
    }

    /// After a failed metadata call, keeps the stale copy (if any) fresh for
    /// [`METADATA_RETRY`], so that requests arriving while the plugin is down are answered from
    /// it at once instead of each waiting for another call to time out.
    fn retry_later<'a>(
        &self,
        cached: &'a mut Option<(Instant, Arc<GetMetadataResponse>)>,
    ) -> Option<&'a (Instant, Arc<GetMetadataResponse>)> {
        if let Some((fresh_until, _)) = cached.as_mut() {
            *fresh_until = Instant::now() + METADATA_RETRY;
        }
        cached.as_ref()
    }

    /// `GET /metadata`.
    pub async fn metadata(&self) -> Result<Metadata, ApiError> {
        let plugin = self.plugin_metadata().await?;
        Ok(metadata::translate(
            &plugin,
            self.options.authorization_type.as_str(),
        ))
    }

    /// `POST /scan`: validates `body`, stores a queued job and starts it; returns its id.
    pub async fn submit(self: &Arc<Self>, body: &[u8]) -> Result<String, ApiError> {
        let validated = request::parse(body)?;
        let plugin = self.plugin_metadata().await?;
        metadata::check_capabilities(&plugin, &validated)?;
        let id = uuid::Uuid::new_v4().to_string();
        let job = Job {
            accepted_at: SystemTime::now(),
            artifact: validated.artifact.clone(),
            sbom_formats: validated.sbom_formats(),
            state: JobState::Queued,
        };
        self.jobs
            .insert(&id, job)
            .await
            .map_err(|e| ApiError::Store(e.to_string()))?;
        let span = tracing::info_span!(
            "harbor_scan",
            job = %id,
            repository = %validated.artifact.repository,
            digest = %validated.artifact.digest,
        );
        tracing::info!(parent: &span, "scan accepted");
        let service = self.clone();
        let job_id = id.clone();
        tokio::spawn(
            async move {
                let runner = service.clone();
                let run_id = job_id.clone();
                let handle = tokio::spawn(
                    async move { runner.run(&run_id, validated).await }.in_current_span(),
                );
                if let Err(e) = handle.await {
                    let failure = Failure {
                        code: "INTERNAL".into(),
                        message: format!("the scan task ended abnormally: {e}"),
                    };
                    tracing::error!(error = %failure.message, "scan task failed");
                    let _ = service
                        .jobs
                        .set_state(&job_id, JobState::Failed(failure))
                        .await;
                }
            }
            .instrument(span),
        );
        Ok(id)
    }

    /// Runs one job: waits for a slot, calls the plugin, stores the outcome.
    async fn run(&self, id: &str, validated: Validated) {
        let Ok(_slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        if let Err(e) = self.jobs.set_state(id, JobState::Running).await {
            tracing::warn!(error = %e, "cannot mark the job running");
        }
        let started = Instant::now();
        let state =
            match tokio::time::timeout(self.options.scan_timeout, self.execute(&validated)).await {
                Ok(Ok(outcome)) => JobState::Succeeded(Arc::new(outcome)),
                Ok(Err(failure)) => JobState::Failed(failure),
                Err(_) => JobState::Failed(Failure {
                    code: "DEADLINE_EXCEEDED".into(),
                    message: format!(
                        "the scan took longer than {}",
                        humantime::format_duration(self.options.scan_timeout)
                    ),
                }),
            };
        match &state {
            JobState::Failed(f) => {
                tracing::warn!(code = %f.code, error = %f.message, elapsed_ms = started.elapsed().as_millis() as u64, "scan failed");
            }
            _ => tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "scan finished"
            ),
        }
        if let Err(e) = self.jobs.set_state(id, state).await {
            tracing::warn!(error = %e, "cannot store the scan result");
        }
    }

    /// The plugin calls of one job: the primary report (with the first SBOM format, if any),
    /// then one more call per further SBOM format (cheap: the plugin's caches hold the blobs).
    async fn execute(&self, validated: &Validated) -> Result<ScanOutcome, Failure> {
        let formats = validated.sbom_formats();
        let first = match formats.first() {
            Some(f) => request::with_sbom(&validated.request, f),
            None => validated.request.clone(),
        };
        let response = self.backend.scan(first).await.map_err(failure_of)?;
        let mut sboms = std::collections::BTreeMap::new();
        for (i, format) in formats.iter().enumerate() {
            let document = if i == 0 {
                report::sbom_from_response(&response)
            } else {
                match self
                    .backend
                    .scan(request::with_sbom(&validated.request, format))
                    .await
                {
                    Ok(r) => report::sbom_from_response(&r),
                    Err(status) => Err(failure_of(status)),
                }
            };
            sboms.insert(format.clone(), document);
        }
        Ok(ScanOutcome { response, sboms })
    }

    /// `GET /scan/{id}/report` with `accept` and the `sbom_media_type` query value.
    pub async fn report(
        &self,
        id: &str,
        accept: Option<&str>,
        sbom_media_type: Option<&str>,
    ) -> Result<ReportAnswer, ApiError> {
        let kind = match mime::accepted(accept) {
            Accepted::Report(kind) => kind,
            Accepted::Default => ReportType::Generic,
            Accepted::Unsupported => {
                return Err(ApiError::Unsupported(format!(
                    "no report type of Accept {:?} is produced here; ask for {}, {} or {}",
                    accept.unwrap_or_default(),
                    mime::NATIVE_REPORT,
                    mime::GENERIC_REPORT,
                    mime::SBOM_REPORT
                )));
            }
        };
        let format = if kind == ReportType::Sbom {
            let value = sbom_media_type
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    ApiError::BadReportQuery(
                        "an SBOM report needs the query parameter sbom_media_type".into(),
                    )
                })?;
            let format = mime::sbom_format(value).ok_or_else(|| {
                ApiError::BadReportQuery(format!(
                    "sbom_media_type {value:?} is neither {} nor {}",
                    mime::SBOM_FORMATS[0],
                    mime::SBOM_FORMATS[1]
                ))
            })?;
            // The plugin's capability decides 501; when it cannot be asked, the job decides.
            if let Ok(plugin) = self.plugin_metadata().await
                && !metadata::produces_sbom(&plugin)
            {
                return Err(ApiError::Unsupported(
                    "the scanner has no sbom capability".into(),
                ));
            }
            Some(format)
        } else {
            None
        };
        let job = self
            .jobs
            .get(id)
            .await
            .map_err(|e| ApiError::Store(e.to_string()))?
            .ok_or_else(|| ApiError::UnknownJob(id.to_owned()))?;
        let outcome = match &job.state {
            JobState::Queued | JobState::Running => {
                return Ok(ReportAnswer::NotReady(self.options.refresh_after_secs()));
            }
            JobState::Failed(f) => return Err(scan_failed(f)),
            JobState::Succeeded(outcome) => outcome.clone(),
        };
        let scanner = match self.plugin_metadata().await {
            Ok(plugin) => metadata::scanner(&plugin),
            Err(_) => metadata::scanner(&GetMetadataResponse::default()),
        };
        let document = match format {
            None => report::vulnerability_report(
                &outcome,
                &job.artifact,
                &scanner,
                self.options.incomplete_severity,
                kind == ReportType::Generic,
            ),
            Some(format) => match outcome.sboms.get(format) {
                None => {
                    return Err(ApiError::BadReportQuery(format!(
                        "scan {id} did not ask for an SBOM as {format} (enabled_capabilities \
                         sbom with sbom_media_types)"
                    )));
                }
                Some(Err(f)) => return Err(scan_failed(f)),
                Some(Ok(doc)) => {
                    report::sbom_report(&outcome, &job.artifact, &scanner, format, doc)
                }
            },
        };
        Ok(ReportAnswer::Ready(kind, document))
    }
}

fn stale_or(
    cached: Option<&(Instant, Arc<GetMetadataResponse>)>,
    why: impl FnOnce() -> String,
) -> Result<Arc<GetMetadataResponse>, ApiError> {
    match cached {
        Some((_, md)) => Ok(md.clone()),
        None => Err(ApiError::Backend(why())),
    }
}

fn failure_of(status: tonic::Status) -> Failure {
    Failure {
        code: sidescan_proto::client::code_name(status.code()).to_owned(),
        message: status.message().to_owned(),
    }
}

fn scan_failed(f: &Failure) -> ApiError {
    ApiError::ScanFailed {
        code: f.code.clone(),
        message: f.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Answers metadata once, then fails; counts the calls.
    struct FailsAfterOne(AtomicU32);

    #[async_trait::async_trait]
    impl ScanBackend for FailsAfterOne {
        async fn metadata(&self) -> Result<GetMetadataResponse, tonic::Status> {
            match self.0.fetch_add(1, Ordering::SeqCst) {
                0 => Ok(GetMetadataResponse::default()),
                _ => Err(tonic::Status::unavailable("plugin down")),
            }
        }

        async fn scan(
            &self,
            _: sidescan_proto::v1::ScanRequest,
        ) -> Result<sidescan_proto::v1::ScanResponse, tonic::Status> {
            Err(tonic::Status::unavailable("plugin down"))
        }
    }

    #[tokio::test]
    async fn a_down_plugin_is_asked_again_only_after_a_pause_and_the_stale_copy_serves() {
        let backend = Arc::new(FailsAfterOne(AtomicU32::new(0)));
        let service = HarborService::new(
            backend.clone(),
            Arc::new(crate::MemoryJobStore::default()),
            HarborOptions {
                metadata_ttl: Duration::ZERO,
                ..HarborOptions::default()
            },
        );
        assert!(service.plugin_metadata().await.is_ok()); // fetched
        assert!(service.plugin_metadata().await.is_ok()); // stale copy after a failed call
        for _ in 0..5 {
            assert!(service.plugin_metadata().await.is_ok());
        }
        assert_eq!(
            backend.0.load(Ordering::SeqCst),
            2,
            "requests while the plugin is down must not each call it again"
        );
    }
}
