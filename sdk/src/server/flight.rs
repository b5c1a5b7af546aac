//! Single flight: identical scans in flight at the same time run once and answer every caller.
//!
//! A flight is a [`Shared`] future kept in a map by a weak handle, so the map never keeps a scan
//! alive. Each caller holds a strong handle and polls it; a caller that goes away (cancels, or
//! its deadline passes) drops only its handle, and the scan goes on for the others. When the last
//! caller has gone, the scan's future is dropped, which cancels its work. The flight leaves the
//! map just before it completes, so a later identical request starts a new scan rather than
//! being handed a finished answer. Errors are shared like answers.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};
use sha2::{Digest, Sha256};

use crate::model::Platform;
use crate::pipeline::ScanJob;
use crate::report::RequestedReports;

/// What makes two scan requests identical, so that one scan answers both: everything in the
/// request that can change the answer. The credentials are kept only as their SHA-256.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ScanKey {
    image: String,
    registry_url: String,
    insecure: bool,
    platform: Option<Platform>,
    requested: RequestedReports,
    credentials: [u8; 32],
}

impl ScanKey {
    pub(crate) fn new(job: &ScanJob, requested: &RequestedReports) -> Self {
        ScanKey {
            image: job.image.clone(),
            registry_url: job.registry_url.clone(),
            insecure: job.insecure,
            platform: job.platform.clone(),
            requested: requested.clone(),
            credentials: Sha256::digest(job.authorization.as_bytes()).into(),
        }
    }
}

/// One scan's shared future.
pub(crate) type Flight<T> = Shared<BoxFuture<'static, T>>;

/// A flight in the map: its id and a handle that does not keep it alive.
type Entry<T> = (u64, WeakShared<BoxFuture<'static, T>>);

/// The scans in flight, by key.
pub(crate) struct Flights<K, T> {
    map: Mutex<HashMap<K, Entry<T>>>,
    next_id: AtomicU64,
}

/// How a caller got its flight.
pub(crate) enum Joined<T> {
    /// It started the scan.
    Started(Flight<T>),
    /// An identical scan was already in flight; it waits for that one's answer.
    Followed(Flight<T>),
}

impl<K, T> Flights<K, T>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Clone + Send + Sync + 'static,
{
    /// No flights.
    pub(crate) fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Follows the flight in the air for `key`, or starts one with `start` (called with the map
    /// locked, so it must not block; when it refuses, no flight starts and its error is returned).
    pub(crate) fn join<E>(
        self: &Arc<Self>,
        key: K,
        start: impl FnOnce() -> Result<BoxFuture<'static, T>, E>,
    ) -> Result<Joined<T>, E> {
        let mut map = self.lock();
        if let Some(flight) = map.get(&key).and_then(|(_, weak)| weak.upgrade()) {
            return Ok(Joined::Followed(flight));
        }
        let work = start()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let flights = Arc::downgrade(self);
        let landing_key = key.clone();
        let flight = async move {
            let answer = work.await;
            if let Some(flights) = flights.upgrade() {
                flights.land(&landing_key, id);
            }
            answer
        }
        .boxed()
        .shared();
        // Flights whose callers all went away are dead; drop them with this insert.
        map.retain(|_, (_, weak)| weak.upgrade().is_some());
        map.insert(
            key,
            (id, flight.downgrade().expect("a new flight is alive")),
        );
        Ok(Joined::Started(flight))
    }

    /// Flights with callers left (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock()
            .values()
            .filter(|(_, weak)| weak.upgrade().is_some())
            .count()
    }

    fn land(&self, key: &K, id: u64) {
        let mut map = self.lock();
        if map.get(key).is_some_and(|(current, _)| *current == id) {
            map.remove(key);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry<T>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    type Runs = Arc<AtomicU32>;

    fn slow(runs: &Runs, answer: u32) -> Result<BoxFuture<'static, u32>, ()> {
        let runs = runs.clone();
        Ok(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer
        }
        .boxed())
    }

    fn flight(joined: Joined<u32>) -> (Flight<u32>, bool) {
        match joined {
            Joined::Started(f) => (f, true),
            Joined::Followed(f) => (f, false),
        }
    }

    #[tokio::test]
    async fn identical_calls_run_once_and_all_get_the_answer() {
        let flights = Arc::new(Flights::<&str, u32>::new());
        let runs = Runs::default();
        let (a, started_a) = flight(flights.join("k", || slow(&runs, 7)).unwrap());
        let (b, started_b) = flight(flights.join("k", || slow(&runs, 8)).unwrap());
        let (c, started_c) = flight(flights.join("other", || slow(&runs, 9)).unwrap());
        assert_eq!((started_a, started_b, started_c), (true, false, true));
        assert_eq!(futures::join!(a, b, c), (7, 7, 9));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(flights.len(), 0, "landed flights leave the map");
        let (d, started_d) = flight(flights.join("k", || slow(&runs, 10)).unwrap());
        assert!(started_d, "a finished flight is never joined");
        assert_eq!(d.await, 10);
    }

    #[tokio::test]
    async fn one_caller_leaving_does_not_stop_the_others_but_the_last_one_does() {
        let flights = Arc::new(Flights::<&str, u32>::new());
        let runs = Runs::default();
        let (a, _) = flight(flights.join("k", || slow(&runs, 1)).unwrap());
        let (b, _) = flight(flights.join("k", || slow(&runs, 2)).unwrap());
        // `a` polls the scan for a while, then goes away; `b` still gets the answer.
        assert!(
            tokio::time::timeout(Duration::from_millis(30), a.clone())
                .await
                .is_err()
        );
        drop(a);
        assert_eq!(b.await, 1);
        assert_eq!(runs.load(Ordering::SeqCst), 1);

        let (e, _) = flight(flights.join("k", || slow(&runs, 3)).unwrap());
        assert!(
            tokio::time::timeout(Duration::from_millis(30), e.clone())
                .await
                .is_err()
        );
        drop(e);
        assert_eq!(flights.len(), 0, "a flight everyone left is dead");
        let (f, started) = flight(flights.join("k", || slow(&runs, 4)).unwrap());
        assert!(started, "a dead flight is replaced");
        assert_eq!(f.await, 4);
    }

    #[test]
    fn a_refused_start_leaves_no_flight() {
        let flights = Arc::new(Flights::<&str, u32>::new());
        assert!(matches!(
            flights.join("k", || Err::<BoxFuture<'static, u32>, _>("full")),
            Err("full")
        ));
        assert_eq!(flights.len(), 0);
    }
}
