//! The concurrency limit with a bounded queue; it keeps the `sidescan_scans_in_flight` and
//! `sidescan_scans_queued` gauges.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;
use crate::metrics::Metrics;

/// At most `max_running` scans run at once; at most `max_queued` wait for a slot; one more is
/// refused with RESOURCE_EXHAUSTED at once rather than waiting.
#[derive(Debug)]
pub(crate) struct ScanLimiter {
    slots: Arc<Semaphore>,
    max_running: u32,
    max_queued: u32,
    queued: AtomicU32,
    in_flight_gauge: Gauge,
    queued_gauge: Gauge,
}

/// A scan slot: held while the scan runs, released (and no longer counted in flight) on drop.
#[derive(Debug)]
pub(crate) struct ScanSlot {
    _permit: OwnedSemaphorePermit,
    in_flight: Gauge,
}

impl Drop for ScanSlot {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

/// Decrements the queue count (and the gauge, once the scan was let into the queue) when a
/// waiting scan leaves the queue (admitted, timed out or cancelled).
struct QueueSeat<'a> {
    count: &'a AtomicU32,
    gauge: Option<&'a Gauge>,
}

impl Drop for QueueSeat<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        if let Some(gauge) = self.gauge {
            gauge.dec();
        }
    }
}

impl ScanLimiter {
    /// A limiter counting its scans in `metrics`' gauges.
    pub(crate) fn new(max_running: u32, max_queued: u32, metrics: &Metrics) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_running as usize)),
            max_running,
            max_queued,
            queued: AtomicU32::new(0),
            in_flight_gauge: metrics.in_flight_gauge(),
            queued_gauge: metrics.queued_gauge(),
        }
    }

    /// Waits for a scan slot, or fails at once when the queue is full.
    pub(crate) async fn acquire(&self) -> Result<ScanSlot, Error> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(self.slot(permit));
        }
        let before = self.queued.fetch_add(1, Ordering::SeqCst);
        let mut seat = QueueSeat {
            count: &self.queued,
            gauge: None,
        };
        if before >= self.max_queued {
            return Err(Error::resource_exhausted(format!(
                "scan queue full: {} scans running and {} waiting (limits --max-concurrent-scans {} --max-queued-scans {})",
                self.max_running, before, self.max_running, self.max_queued
            )));
        }
        self.queued_gauge.inc();
        seat.gauge = Some(&self.queued_gauge);
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::unavailable("server is shutting down"))?;
        drop(seat);
        Ok(self.slot(permit))
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> ScanSlot {
        self.in_flight_gauge.inc();
        ScanSlot {
            _permit: permit,
            in_flight: self.in_flight_gauge.clone(),
        }
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
        let metrics = Metrics::new();
        let limiter = Arc::new(ScanLimiter::new(1, 1, &metrics));
        let first = limiter.acquire().await.unwrap();
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire().await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!((limiter.running(), limiter.queued()), (1, 1));
        let gauges = || {
            (
                metrics.in_flight_gauge().get(),
                metrics.queued_gauge().get(),
            )
        };
        assert_eq!(gauges(), (1, 1));
        let refused = limiter.acquire().await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            gauges(),
            (1, 1),
            "a refused scan is never counted as queued"
        );
        drop(first);
        waiter.await.unwrap().unwrap();
        assert_eq!(limiter.queued(), 0);
        assert_eq!(gauges(), (0, 0));
    }
}
