//! Scan jobs and where they are kept: the [`JobStore`] trait and [`MemoryJobStore`], an
//! in-process map whose finished jobs expire after a TTL, and [`NatsJobStore`], the same on NATS
//! JetStream (a key-value bucket and an object store) so that several adapters share jobs.
//!
//! Lifecycle: `POST /scan` inserts a job as [`JobState::Queued`]; it becomes
//! [`JobState::Running`] when it gets one of the adapter's plugin slots, then
//! [`JobState::Succeeded`] or [`JobState::Failed`]. Queued and running jobs never expire; a
//! finished job is kept for the TTL counted from when it finished, then its id is unknown (404,
//! and Harbor submits the scan again).

mod nats;

pub use nats::{JOBS_BUCKET, NatsJobStore, REPORTS_BUCKET};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sidescan_proto::v1::ScanResponse;

/// How long [`MemoryJobStore`] keeps a finished job unless told otherwise: one hour, far longer
/// than Harbor polls (it fetches each report within seconds of the scan finishing).
pub const DEFAULT_JOB_TTL: Duration = Duration::from_secs(3600);

/// The artifact a job scans, as Harbor named it (echoed in the report documents).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArtifactRef {
    /// Repository, e.g. `library/alpine`.
    pub repository: String,
    /// Manifest digest.
    pub digest: String,
    /// Tag, possibly empty.
    pub tag: String,
    /// Manifest media type.
    pub mime_type: String,
}

/// Why a scan, or one SBOM format of it, failed: the plugin's gRPC status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The gRPC code name, e.g. `NOT_FOUND`.
    pub code: String,
    /// The plugin's message.
    pub message: String,
}

/// An SBOM document as the plugin rendered it.
#[derive(Clone, Debug, PartialEq)]
pub struct SbomDocument {
    /// The plugin's `document_media_type`.
    pub media_type: String,
    /// The SBOM itself (JSON).
    pub document: serde_json::Value,
}

/// What a finished scan produced.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanOutcome {
    /// The plugin's answer (primary report and typed reports).
    pub response: ScanResponse,
    /// One entry per SBOM format the job asked for.
    pub sboms: BTreeMap<String, Result<SbomDocument, Failure>>,
}

/// Where a job is in its life.
#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    /// Waiting for a plugin slot.
    Queued,
    /// The plugin is scanning.
    Running,
    /// Finished; the reports can be served.
    Succeeded(Arc<ScanOutcome>),
    /// The plugin answered with an error.
    Failed(Failure),
}

impl JobState {
    /// Whether the job has finished (either way).
    pub fn is_finished(&self) -> bool {
        matches!(self, JobState::Succeeded(_) | JobState::Failed(_))
    }
}

/// One scan job.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// When `POST /scan` accepted it.
    pub accepted_at: SystemTime,
    /// The artifact.
    pub artifact: ArtifactRef,
    /// The SBOM formats asked for (empty: no SBOM).
    pub sbom_formats: Vec<String>,
    /// Its state.
    pub state: JobState,
}

/// The job store failed (a remote store; the in-memory one never does).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where jobs live, keyed by job id.
#[async_trait::async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Adds a new job.
    async fn insert(&self, id: &str, job: Job) -> Result<(), StoreError>;
    /// Moves a job to `state`; a job that expired meanwhile stays gone.
    async fn set_state(&self, id: &str, state: JobState) -> Result<(), StoreError>;
    /// The job, if it exists and has not expired.
    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError>;
}

/// An in-memory [`JobStore`]: finished jobs expire `ttl` after they finished; expired entries
/// are dropped whenever a job is inserted.
#[derive(Debug)]
pub struct MemoryJobStore {
    ttl: Duration,
    jobs: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    job: Job,
    finished: Option<Instant>,
}

impl Entry {
    fn expired(&self, ttl: Duration, now: Instant) -> bool {
        self.finished
            .is_some_and(|at| now.saturating_duration_since(at) >= ttl)
    }
}

impl MemoryJobStore {
    /// A store keeping finished jobs for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        MemoryJobStore {
            ttl,
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// Jobs held now (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no job is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave a map half-updated: every update is one
        // insert or field store.
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for MemoryJobStore {
    fn default() -> Self {
        MemoryJobStore::new(DEFAULT_JOB_TTL)
    }
}

#[async_trait::async_trait]
impl JobStore for MemoryJobStore {
    async fn insert(&self, id: &str, job: Job) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut jobs = self.lock();
        jobs.retain(|_, e| !e.expired(self.ttl, now));
        let finished = job.state.is_finished().then_some(now);
        jobs.insert(id.to_owned(), Entry { job, finished });
        Ok(())
    }

    async fn set_state(&self, id: &str, state: JobState) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut jobs = self.lock();
        if let Some(entry) = jobs.get_mut(id) {
            entry.finished = state.is_finished().then_some(now);
            entry.job.state = state;
        }
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let now = Instant::now();
        let jobs = self.lock();
        Ok(jobs
            .get(id)
            .filter(|e| !e.expired(self.ttl, now))
            .map(|e| e.job.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState) -> Job {
        Job {
            accepted_at: SystemTime::now(),
            artifact: ArtifactRef::default(),
            sbom_formats: Vec::new(),
            state,
        }
    }

    #[tokio::test]
    async fn finished_jobs_expire_after_the_ttl_running_ones_never() {
        let store = MemoryJobStore::new(Duration::from_millis(50));
        store.insert("a", job(JobState::Queued)).await.unwrap();
        store.insert("b", job(JobState::Running)).await.unwrap();
        store
            .set_state(
                "a",
                JobState::Failed(Failure {
                    code: "NOT_FOUND".into(),
                    message: "m".into(),
                }),
            )
            .await
            .unwrap();
        assert!(store.get("a").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(store.get("a").await.unwrap().is_none(), "expired");
        assert!(store.get("b").await.unwrap().is_some(), "running stays");
        store.insert("c", job(JobState::Queued)).await.unwrap();
        assert_eq!(store.len(), 2, "the expired job was dropped on insert");
        assert!(store.get("nope").await.unwrap().is_none());
    }
}
