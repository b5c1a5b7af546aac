//! The concurrency limit with a bounded queue; it keeps the `sidescan_scans_in_flight` and
//! `sidescan_scans_queued` gauges, and tells a caller it refuses when to come back.
//!
//! **Pushback.** A scan refused because the queue is full carries gRPC's
//! `grpc-retry-pushback-ms` metadata ([`PUSHBACK_HEADER`]) on its `RESOURCE_EXHAUSTED` status:
//! the time until a queue seat is expected to free, that is the mean time a scan holds its slot
//! (a moving average over recent scans, [`INITIAL_MEAN_HOLD`] before the first one) divided by
//! the slots (`--max-concurrent-scans`), times one more than the scans already refused while
//! the queue stayed full (so that a burst of refused callers is spread out rather than sent back
//! together), bounded to [`PUSHBACK_MIN`]..=[`PUSHBACK_MAX`]. Other `RESOURCE_EXHAUSTED` errors
//! (an image over a limit) never carry it: they are final.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;
use crate::metrics::Metrics;

/// The metadata key of gRPC's retry pushback (milliseconds, decimal), as gRPC's retry design
/// (A6) names it.
pub(crate) const PUSHBACK_HEADER: &str = "grpc-retry-pushback-ms";

/// The smallest pushback sent.
pub(crate) const PUSHBACK_MIN: Duration = Duration::from_millis(20);
/// The largest pushback sent.
pub(crate) const PUSHBACK_MAX: Duration = Duration::from_secs(30);
/// The mean slot hold time assumed before any scan has finished.
pub(crate) const INITIAL_MEAN_HOLD: Duration = Duration::from_millis(500);

/// At most `max_running` scans run at once; at most `max_queued` wait for a slot; one more is
/// refused with RESOURCE_EXHAUSTED and a pushback at once rather than waiting.
#[derive(Debug)]
pub(crate) struct ScanLimiter {
    slots: Arc<Semaphore>,
    max_running: u32,
    max_queued: u32,
    queued: AtomicU32,
    /// Refusals since the queue last had room (spreads the pushback of a burst).
    refused_while_full: AtomicU32,
    /// Moving average of how long a scan holds its slot, in microseconds.
    mean_hold_us: AtomicU64,
    in_flight_gauge: Gauge,
    queued_gauge: Gauge,
}

/// A refusal because the queue is full: the error and when to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueFull {
    /// The `RESOURCE_EXHAUSTED` error.
    pub(crate) error: Error,
    /// The `grpc-retry-pushback-ms` value.
    pub(crate) pushback: Duration,
}

/// A scan slot: held while the scan runs, released (and no longer counted in flight) on drop,
/// when its hold time joins the mean.
#[derive(Debug)]
pub(crate) struct ScanSlot {
    _permit: OwnedSemaphorePermit,
    limiter: Arc<ScanLimiter>,
    taken: Instant,
}

impl Drop for ScanSlot {
    fn drop(&mut self) {
        self.limiter.in_flight_gauge.dec();
        self.limiter.record_hold(self.taken.elapsed());
    }
}

/// A scan let in: either it has a slot already or it holds a queue seat until one frees.
#[derive(Debug)]
pub(crate) enum Admission {
    /// A slot was free.
    Slot(ScanSlot),
    /// Waiting in the queue.
    Queued(QueueSeat),
}

/// A seat in the queue; leaving it (admitted, timed out or cancelled) frees it and its gauge.
#[derive(Debug)]
pub(crate) struct QueueSeat {
    limiter: Arc<ScanLimiter>,
}

impl Drop for QueueSeat {
    fn drop(&mut self) {
        self.limiter.queued.fetch_sub(1, Ordering::SeqCst);
        self.limiter.queued_gauge.dec();
    }
}

impl Admission {
    /// Waits (in the queue, if queued) for the scan's slot.
    pub(crate) async fn slot(self) -> Result<ScanSlot, Error> {
        match self {
            Admission::Slot(slot) => Ok(slot),
            Admission::Queued(seat) => {
                let limiter = seat.limiter.clone();
                let permit = limiter
                    .slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Error::unavailable("server is shutting down"))?;
                drop(seat);
                Ok(limiter.slot(permit))
            }
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
            refused_while_full: AtomicU32::new(0),
            mean_hold_us: AtomicU64::new(duration_us(INITIAL_MEAN_HOLD)),
            in_flight_gauge: metrics.in_flight_gauge(),
            queued_gauge: metrics.queued_gauge(),
        }
    }

    /// Lets a scan in without waiting: a free slot, else a queue seat, else (the queue is full)
    /// a refusal with its pushback.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Admission, QueueFull> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            self.refused_while_full.store(0, Ordering::SeqCst);
            return Ok(Admission::Slot(self.slot(permit)));
        }
        let before = self.queued.fetch_add(1, Ordering::SeqCst);
        if before >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            let refused = self.refused_while_full.fetch_add(1, Ordering::SeqCst);
            let pushback = self.pushback(refused);
            return Err(QueueFull {
                error: Error::resource_exhausted(format!(
                    "scan queue full: {} scans running and {} waiting (limits --max-concurrent-scans {} --max-queued-scans {}); retry in {} ms",
                    self.max_running,
                    before,
                    self.max_running,
                    self.max_queued,
                    pushback.as_millis()
                )),
                pushback,
            });
        }
        self.refused_while_full.store(0, Ordering::SeqCst);
        self.queued_gauge.inc();
        Ok(Admission::Queued(QueueSeat {
            limiter: self.clone(),
        }))
    }

    /// Waits for a scan slot, or fails at once when the queue is full.
    #[cfg(test)]
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<ScanSlot, Error> {
        self.admit().map_err(|full| full.error)?.slot().await
    }

    /// The pushback of the `refused`-th refusal (0-based) since the queue was last open: the
    /// expected time until one slot frees (mean hold / slots), times `refused + 1`, bounded.
    fn pushback(&self, refused: u32) -> Duration {
        let mean = Duration::from_micros(self.mean_hold_us.load(Ordering::Relaxed));
        let per_slot = mean / self.max_running.max(1);
        per_slot
            .saturating_mul(refused.saturating_add(1))
            .clamp(PUSHBACK_MIN, PUSHBACK_MAX)
    }

    /// Adds one slot hold time to the moving average (weight 1/8).
    fn record_hold(&self, held: Duration) {
        let sample = duration_us(held);
        let _ = self
            .mean_hold_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
                Some(mean - mean / 8 + sample / 8)
            });
    }

    fn slot(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> ScanSlot {
        self.in_flight_gauge.inc();
        ScanSlot {
            _permit: permit,
            limiter: self.clone(),
            taken: Instant::now(),
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

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn pushback_follows_the_mean_hold_time_and_spreads_a_burst() {
        let metrics = Metrics::new();
        let limiter = Arc::new(ScanLimiter::new(2, 0, &metrics));
        let refuse = || match limiter.admit() {
            Err(full) => full,
            Ok(_) => panic!("admitted past a full queue"),
        };
        let a = limiter.admit().unwrap();
        let b = limiter.admit().unwrap();
        // Before any scan finished: the initial mean over 2 slots.
        assert_eq!(refuse().pushback, INITIAL_MEAN_HOLD / 2);
        assert_eq!(
            refuse().pushback,
            INITIAL_MEAN_HOLD,
            "second refusal waits longer"
        );
        // Slots held ~0 s pull the mean down, towards the lower bound.
        drop((a, b));
        for _ in 0..64 {
            drop(limiter.acquire().await.unwrap());
        }
        let _held = (limiter.admit().unwrap(), limiter.admit().unwrap());
        let full = refuse();
        assert!(full.pushback < INITIAL_MEAN_HOLD / 2, "{full:?}");
        assert!(full.pushback >= PUSHBACK_MIN);
        assert!(full.error.message().contains("retry in"), "{full:?}");
        assert_eq!(full.error.code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn a_seat_freed_resets_the_burst_and_pushback_is_bounded() {
        let metrics = Metrics::new();
        let limiter = Arc::new(ScanLimiter::new(1, 1, &metrics));
        let _running = limiter.admit().unwrap();
        let seat = limiter.admit().unwrap();
        for _ in 0..200 {
            assert!(limiter.admit().unwrap_err().pushback <= PUSHBACK_MAX);
        }
        assert_eq!(limiter.admit().unwrap_err().pushback, PUSHBACK_MAX);
        drop(seat);
        let _seat = limiter.admit().unwrap();
        assert_eq!(
            limiter.admit().unwrap_err().pushback,
            INITIAL_MEAN_HOLD,
            "the burst count restarts once the queue had room"
        );
    }
}
