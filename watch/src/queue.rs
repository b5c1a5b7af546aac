//! The in-process job queue: bounded (a full queue refuses, so the registry retries the
//! event), deduplicating (an image already waiting is not queued twice), and one job per image
//! at a time (a job for an image being scanned waits until that scan is done, so two workers
//! never write the same image's referrers at once; registries mostly offer no conditional
//! writes to make that safe).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

use crate::event::{ImagePushed, Kind};

/// One image to look at.
#[derive(Clone, Debug)]
pub struct Job {
    /// What was pushed.
    pub push: ImagePushed,
    /// Where the event came from.
    pub kind: Kind,
    /// When the event arrived (for the event-to-report latency).
    pub received: Instant,
    /// Attempts made so far.
    pub attempt: u32,
}

impl Job {
    /// A first attempt at `push`, received now.
    pub fn new(push: ImagePushed, kind: Kind) -> Self {
        Self {
            push,
            kind,
            received: Instant::now(),
            attempt: 0,
        }
    }

    /// Repository and digest (or tag): equal keys are the same work.
    pub fn key(&self) -> (String, String) {
        let reference = self
            .push
            .digest
            .clone()
            .or_else(|| self.push.tag.clone())
            .unwrap_or_default();
        (self.push.repository.clone(), reference)
    }
}

/// What [`Queue::push`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// The same image is already waiting.
    Duplicate,
}

/// The queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the scan queue is full")]
pub struct Full;

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Keys of the jobs waiting.
    keys: HashSet<(String, String)>,
    /// Keys of the jobs being worked on.
    running: HashSet<(String, String)>,
}

/// A bounded FIFO of [`Job`]s.
pub struct Queue {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Queue {
    /// An empty queue holding at most `capacity` jobs.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            notify: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `job` unless the same image is waiting.
    pub fn push(&self, job: Job) -> Result<Pushed, Full> {
        let mut state = self.lock();
        let key = job.key();
        if state.keys.contains(&key) {
            return Ok(Pushed::Duplicate);
        }
        if state.jobs.len() >= self.capacity {
            return Err(Full);
        }
        state.keys.insert(key);
        state.jobs.push_back(job);
        drop(state);
        self.notify.notify_one();
        Ok(Pushed::Queued)
    }

    /// Whether `n` more jobs would fit now.
    pub fn has_room(&self, n: usize) -> bool {
        self.lock().jobs.len() + n <= self.capacity
    }

    /// Waits for the next job whose image is not being worked on, and marks it running; call
    /// [`Queue::done`] with it when finished.
    pub async fn pop(&self) -> Job {
        loop {
            let notified = self.notify.notified();
            if let Some(job) = self.try_pop() {
                return job;
            }
            notified.await;
        }
    }

    fn try_pop(&self) -> Option<Job> {
        let mut state = self.lock();
        let at = {
            let state = &*state;
            state
                .jobs
                .iter()
                .position(|job| !state.running.contains(&job.key()))?
        };
        let job = state.jobs.remove(at)?;
        let key = job.key();
        state.keys.remove(&key);
        state.running.insert(key);
        let more = !state.jobs.is_empty();
        drop(state);
        if more {
            self.notify.notify_one();
        }
        Some(job)
    }

    /// Marks `job`'s image as no longer worked on (a job for it waiting may now run).
    pub fn done(&self, job: &Job) {
        self.lock().running.remove(&job.key());
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Whether no job is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(repo: &str, digest: &str) -> Job {
        Job::new(
            ImagePushed {
                repository: repo.into(),
                tag: None,
                digest: Some(digest.into()),
                media_type: None,
                not_an_image: None,
            },
            Kind::Distribution,
        )
    }

    #[tokio::test]
    async fn bounded_deduplicating_fifo() {
        let q = Queue::new(2);
        assert_eq!(q.push(job("a", "1")), Ok(Pushed::Queued));
        assert_eq!(q.push(job("a", "1")), Ok(Pushed::Duplicate));
        assert_eq!(q.push(job("b", "1")), Ok(Pushed::Queued));
        assert_eq!(q.push(job("c", "1")), Err(Full));
        let a = q.pop().await;
        assert_eq!(a.push.repository, "a");
        assert_eq!(
            q.push(job("a", "1")),
            Ok(Pushed::Queued),
            "no longer waiting"
        );
        // The second "a" waits while the first runs; "b" goes first.
        let b = q.pop().await;
        assert_eq!(b.push.repository, "b");
        assert!(q.try_pop().is_none(), "a is still running");
        q.done(&a);
        assert_eq!(q.pop().await.push.repository, "a");
        q.done(&b);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let q = std::sync::Arc::new(Queue::new(4));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await.push.repository }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        q.push(job("late", "1")).unwrap();
        assert_eq!(waiter.await.unwrap(), "late");
    }
}
