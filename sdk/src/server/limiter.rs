//! The concurrency limit with a bounded queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;

/// At most `max_running` scans run at once; at most `max_queued` wait for a slot; one more is
/// refused with RESOURCE_EXHAUSTED at once rather than waiting.
#[derive(Debug)]
pub(crate) struct ScanLimiter {
    slots: Arc<Semaphore>,
    max_running: u32,
    max_queued: u32,
    queued: AtomicU32,
}

/// Decrements the queue count when a waiting scan leaves the queue (admitted, timed out or
/// cancelled).
struct QueueSeat<'a>(&'a AtomicU32);

impl Drop for QueueSeat<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ScanLimiter {
    pub(crate) fn new(max_running: u32, max_queued: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_running as usize)),
            max_running,
            max_queued,
            queued: AtomicU32::new(0),
        }
    }

    /// Waits for a scan slot, or fails at once when the queue is full.
    pub(crate) async fn acquire(&self) -> Result<OwnedSemaphorePermit, Error> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let before = self.queued.fetch_add(1, Ordering::SeqCst);
        let _seat = QueueSeat(&self.queued);
        if before >= self.max_queued {
            return Err(Error::resource_exhausted(format!(
                "scan queue full: {} scans running and {} waiting (limits --max-concurrent-scans {} --max-queued-scans {})",
                self.max_running, before, self.max_running, self.max_queued
            )));
        }
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::unavailable("server is shutting down"))
    }

    /// Scans running now.
    pub(crate) fn running(&self) -> u32 {
        self.max_running - u32::try_from(self.slots.available_permits()).unwrap_or(0)
    }

    /// Scans waiting now.
    pub(crate) fn queued(&self) -> u32 {
        self.queued.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn refuses_past_the_queue_and_admits_in_turn() {
        let limiter = Arc::new(ScanLimiter::new(1, 1));
        let first = limiter.acquire().await.unwrap();
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire().await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!((limiter.running(), limiter.queued()), (1, 1));
        let refused = limiter.acquire().await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        drop(first);
        waiter.await.unwrap().unwrap();
        assert_eq!(limiter.queued(), 0);
    }
}
