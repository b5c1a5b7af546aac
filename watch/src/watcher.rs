//! The watcher's shared state: the registry, the plugins, the queue, metrics and readiness.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sidescan_oci::Registry;
use sidescan_oci::report::Format;

use crate::emit::Emitter;
use crate::event::{ImagePushed, Kind};
use crate::metrics::Metrics;
use crate::plugins::Plugin;
use crate::queue::{Full, Job, Pushed, Queue};

/// Everything the endpoints and workers share.
#[derive(Debug)]
pub struct Watcher {
    /// The registry events come from and reports go to.
    pub registry: Registry,
    /// Every image is scanned by each of these.
    pub plugins: Vec<Plugin>,
    /// Images waiting.
    pub queue: Queue,
    /// Metrics.
    pub metrics: Metrics,
    /// Where finished scans are announced, if anywhere.
    pub emitter: Option<Emitter>,
    /// Documents attached besides the sidescan report.
    pub formats: Vec<Format>,
    /// Deadline of one scan.
    pub scan_timeout: Duration,
    /// Attempts per image on transient failures.
    pub attempts: u32,
    /// Whether the registry and every plugin answered at the last check.
    pub ready: AtomicBool,
    /// Why not, when not ready.
    pub not_ready_because: std::sync::Mutex<String>,
    /// Set when a NATS subscription is configured: whether it is connected.
    pub nats_connected: Option<AtomicBool>,
    /// One lock per image being handled (repository, digest): jobs that reach the same image
    /// by different references (a tag from the reconcile loop, a digest from an event) take
    /// turns, so its referrers are never written by two workers at once.
    pub image_locks: ImageLocks,
}

/// The lock of one image, keyed by (repository, digest).
type LockMap = std::collections::HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

/// Per-image locks, dropped when no job holds or waits for them.
#[derive(Debug, Default)]
pub struct ImageLocks {
    locks: std::sync::Mutex<LockMap>,
}

impl ImageLocks {
    /// Waits for and takes the lock of `repo@digest`.
    pub async fn lock(&self, repo: &str, digest: &str) -> ImageGuard<'_> {
        let key = (repo.to_string(), digest.to_string());
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        ImageGuard {
            locks: self,
            key,
            lock,
            guard: Some(guard),
        }
    }
}

/// Holds one image's lock; releases it (and forgets it when unused) on drop.
pub struct ImageGuard<'a> {
    locks: &'a ImageLocks,
    key: (String, String),
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for ImageGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and ours. Nobody else holds or waits for it.
        if Arc::strong_count(&self.lock) == 2 {
            locks.remove(&self.key);
        }
    }
}

impl Watcher {
    /// Queues each of `pushes` from `kind`, counting outcomes. `Err(Full)` when they do not
    /// all fit (then none is queued, so the sender's retry repeats nothing).
    pub fn accept(&self, kind: Kind, pushes: Vec<ImagePushed>) -> Result<(), Full> {
        if !self.queue.has_room(pushes.len()) {
            self.metrics
                .event(kind.label(), "refused", pushes.len() as u64);
            return Err(Full);
        }
        for push in pushes {
            let outcome = match self.queue.push(Job::new(push, kind)) {
                Ok(Pushed::Queued) => "queued",
                Ok(Pushed::Duplicate) => "duplicate",
                Err(Full) => "refused",
            };
            self.metrics.event(kind.label(), outcome, 1);
        }
        self.metrics.queue_depth(self.queue.len());
        Ok(())
    }

    /// Whether ready, and if not, why.
    pub fn readiness(&self) -> (bool, String) {
        let ready = self.ready.load(Ordering::Relaxed);
        let why = self
            .not_ready_because
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        (ready, why)
    }

    /// Checks the registry, every plugin and NATS every `interval`, forever.
    pub async fn check_health(self: Arc<Self>, interval: Duration) {
        loop {
            let mut problems = Vec::new();
            if !self.registry.ping().await {
                problems.push(format!("registry {} does not answer", self.registry.url()));
            }
            for plugin in &self.plugins {
                if !plugin.serving().await {
                    problems.push(format!("plugin {} is not SERVING", plugin.url()));
                }
            }
            if let Some(nats) = &self.nats_connected
                && !nats.load(Ordering::Relaxed)
            {
                problems.push("NATS is not connected".into());
            }
            self.ready.store(problems.is_empty(), Ordering::Relaxed);
            if let Ok(mut why) = self.not_ready_because.lock() {
                *why = problems.join("; ");
            }
            tokio::time::sleep(interval).await;
        }
    }
}
