//! [`NatsJobStore`]: Harbor jobs in a NATS JetStream key-value bucket and their reports in a
//! JetStream object store, so that Harbor may submit a scan to one replica behind a Service and
//! poll another.
//!
//! The bucket (`sidescan-harbor-jobs`) holds one JSON value per job id: when it was accepted,
//! the artifact, the SBOM formats and the state (`queued`, `running`, `failed` with the
//! failure, or `succeeded`). A succeeded job's outcome (the plugin's `ScanResponse`, protobuf,
//! and the SBOM documents) can be larger than a NATS message, so it goes to the object store
//! (`sidescan-harbor-reports`) under the job id, before the state says `succeeded`. Both expire
//! `ttl` after their last write, as [`super::MemoryJobStore`] counts a finished job's TTL from
//! when it finished (a job still queued or running an hour after its last change is taken for
//! lost, and Harbor submits again).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_nats::jetstream::{self, kv, object_store};
use base64::Engine as _;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use sidescan_proto::v1::ScanResponse;
use tokio::io::AsyncReadExt as _;

use super::{ArtifactRef, Failure, Job, JobState, JobStore, SbomDocument, ScanOutcome, StoreError};

/// The key-value bucket of job states.
pub const JOBS_BUCKET: &str = "sidescan-harbor-jobs";
/// The object store of finished reports.
pub const REPORTS_BUCKET: &str = "sidescan-harbor-reports";

/// A [`JobStore`] on NATS JetStream, shared by every adapter replica connected to it.
pub struct NatsJobStore {
    jobs: kv::Store,
    reports: object_store::ObjectStore,
}

impl std::fmt::Debug for NatsJobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsJobStore").finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct StoredFailure {
    code: String,
    message: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum StoredState {
    Queued,
    Running,
    Succeeded,
    Failed(StoredFailure),
}

#[derive(Serialize, Deserialize)]
struct StoredJob {
    accepted_at_ms: u64,
    repository: String,
    digest: String,
    tag: String,
    mime_type: String,
    sbom_formats: Vec<String>,
    #[serde(flatten)]
    state: StoredState,
}

#[derive(Serialize, Deserialize)]
struct StoredOutcome {
    /// The `ScanResponse`, protobuf, base64.
    response: String,
    sboms: BTreeMap<String, Result<(String, serde_json::Value), StoredFailure>>,
}

fn err(what: &str) -> impl Fn(String) -> StoreError + '_ {
    move |e| StoreError(format!("NATS {what}: {e}"))
}

impl NatsJobStore {
    /// Opens (or creates) the bucket and the object store on `client` with `ttl` and
    /// `replicas`.
    pub async fn connect(
        client: async_nats::Client,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self, StoreError> {
        let js = jetstream::new(client);
        let jobs = sidescan_nats::bucket::key_value(
            &js,
            &sidescan_nats::bucket::KeyValueConfig {
                name: JOBS_BUCKET.into(),
                max_age: ttl,
                max_bytes: -1,
                replicas,
                discard_oldest: false,
            },
        )
        .await
        .map_err(err("job bucket"))?;
        let reports = sidescan_nats::bucket::object_store(&js, REPORTS_BUCKET, ttl, replicas)
            .await
            .map_err(err("report store"))?;
        Ok(Self { jobs, reports })
    }

    /// The store as the trait object `HarborService` takes.
    pub fn shared(self) -> Arc<dyn JobStore> {
        Arc::new(self)
    }

    async fn put(&self, id: &str, job: &Job) -> Result<(), StoreError> {
        let state = match &job.state {
            JobState::Queued => StoredState::Queued,
            JobState::Running => StoredState::Running,
            JobState::Failed(f) => StoredState::Failed(StoredFailure {
                code: f.code.clone(),
                message: f.message.clone(),
            }),
            JobState::Succeeded(outcome) => {
                self.put_outcome(id, outcome).await?;
                StoredState::Succeeded
            }
        };
        let stored = StoredJob {
            accepted_at_ms: job
                .accepted_at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            repository: job.artifact.repository.clone(),
            digest: job.artifact.digest.clone(),
            tag: job.artifact.tag.clone(),
            mime_type: job.artifact.mime_type.clone(),
            sbom_formats: job.sbom_formats.clone(),
            state,
        };
        let value = serde_json::to_vec(&stored).map_err(|e| err("job")(e.to_string()))?;
        self.jobs
            .put(id, value.into())
            .await
            .map_err(|e| err("put job")(e.to_string()))?;
        Ok(())
    }

    async fn put_outcome(&self, id: &str, outcome: &ScanOutcome) -> Result<(), StoreError> {
        let stored = StoredOutcome {
            response: base64::engine::general_purpose::STANDARD
                .encode(outcome.response.encode_to_vec()),
            sboms: outcome
                .sboms
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Ok(doc) => Ok((doc.media_type.clone(), doc.document.clone())),
                        Err(f) => Err(StoredFailure {
                            code: f.code.clone(),
                            message: f.message.clone(),
                        }),
                    };
                    (k.clone(), v)
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| err("report")(e.to_string()))?;
        let mut reader = bytes.as_slice();
        self.reports
            .put(id, &mut reader)
            .await
            .map_err(|e| err("put report")(e.to_string()))?;
        Ok(())
    }

    async fn outcome(&self, id: &str) -> Result<Option<ScanOutcome>, StoreError> {
        let mut object = match self.reports.get(id).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err("get report")(e.to_string())),
        };
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| err("read report")(e.to_string()))?;
        let stored: StoredOutcome =
            serde_json::from_slice(&bytes).map_err(|e| err("report")(e.to_string()))?;
        let response = base64::engine::general_purpose::STANDARD
            .decode(stored.response)
            .map_err(|e| err("report")(e.to_string()))?;
        let response =
            ScanResponse::decode(response.as_slice()).map_err(|e| err("report")(e.to_string()))?;
        let sboms = stored
            .sboms
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Ok((media_type, document)) => Ok(SbomDocument {
                        media_type,
                        document,
                    }),
                    Err(f) => Err(Failure {
                        code: f.code,
                        message: f.message,
                    }),
                };
                (k, v)
            })
            .collect();
        Ok(Some(ScanOutcome { response, sboms }))
    }
}

#[async_trait::async_trait]
impl JobStore for NatsJobStore {
    async fn insert(&self, id: &str, job: Job) -> Result<(), StoreError> {
        self.put(id, &job).await
    }

    async fn set_state(&self, id: &str, state: JobState) -> Result<(), StoreError> {
        // A job that expired meanwhile stays gone.
        let Some(mut job) = self.get(id).await? else {
            return Ok(());
        };
        job.state = state;
        self.put(id, &job).await
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let Some(value) = self
            .jobs
            .get(id)
            .await
            .map_err(|e| err("get job")(e.to_string()))?
        else {
            return Ok(None);
        };
        let stored: StoredJob =
            serde_json::from_slice(&value).map_err(|e| err("job")(e.to_string()))?;
        let state = match stored.state {
            StoredState::Queued => JobState::Queued,
            StoredState::Running => JobState::Running,
            StoredState::Failed(f) => JobState::Failed(Failure {
                code: f.code,
                message: f.message,
            }),
            StoredState::Succeeded => match self.outcome(id).await? {
                Some(outcome) => JobState::Succeeded(Arc::new(outcome)),
                // The report expired first: the job is gone too.
                None => return Ok(None),
            },
        };
        Ok(Some(Job {
            accepted_at: UNIX_EPOCH + Duration::from_millis(stored.accepted_at_ms),
            artifact: ArtifactRef {
                repository: stored.repository,
                digest: stored.digest,
                tag: stored.tag,
                mime_type: stored.mime_type,
            },
            sbom_formats: stored.sbom_formats,
            state,
        }))
    }
}
