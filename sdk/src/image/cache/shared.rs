//! The shared tier of the result caches (`--nats`): one JetStream key-value bucket per cluster,
//! so a layer (or an image) one replica scanned is a hit on every other.
//!
//! Keys are the on-disk keys (scanner, version, engine version, parser generation and the
//! content's identity), values the same JSON gzip-compressed. A value larger than the server's
//! `max_payload` (1 MiB by default) stays local. Whoever can write to the bucket can plant a
//! result: the bucket belongs to the plugins of one cluster, as the disk cache belongs to one
//! plugin (restrict the `$KV.sidescan-results.>` subjects to them).
//!
//! The tier never fails or stalls a scan: while the client is not connected every lookup is a
//! miss at once and nothing is stored; a lookup that errs or takes longer than [`LOOKUP_TIMEOUT`]
//! is a miss; stores run in the background (at most [`STORES_IN_FLIGHT`] at once, further ones
//! are dropped) and a failing one is logged.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use std::sync::Arc;

use async_nats::connection::State;
use async_nats::jetstream::{self, kv};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use tokio::sync::Semaphore;

/// The key-value bucket of scan results.
pub(crate) const RESULTS_BUCKET: &str = "sidescan-results";
/// A lookup slower than this is a miss (the scan goes on rather than wait on NATS; a lookup on a
/// healthy NATS takes about a millisecond).
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);
/// Background stores at once; more are dropped (the result stays on disk).
const STORES_IN_FLIGHT: usize = 16;
/// A store slower than this is given up.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a value may decompress to (results are findings, not blobs).
const MAX_RESULT_BYTES: u64 = 64 << 20;

/// The cluster-wide result tier in NATS JetStream.
pub(crate) struct SharedResults {
    client: async_nats::Client,
    store: kv::Store,
    max_value: usize,
    stores: Arc<Semaphore>,
}

impl std::fmt::Debug for SharedResults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedResults")
            .field("bucket", &RESULTS_BUCKET)
            .field("max_value", &self.max_value)
            .finish_non_exhaustive()
    }
}

impl SharedResults {
    /// Opens the bucket on `client` (creating it when missing): entries expire `ttl` after
    /// their write, the oldest are dropped past `max_bytes`.
    pub(crate) async fn open(
        client: async_nats::Client,
        ttl: Duration,
        max_bytes: u64,
        replicas: usize,
    ) -> Result<Self, String> {
        // Room for the headers and subject of a KV put.
        let max_value = client.server_info().max_payload.saturating_sub(1024);
        let js = jetstream::new(client.clone());
        let store = sidescan_nats::bucket::key_value(
            &js,
            &sidescan_nats::bucket::KeyValueConfig {
                name: RESULTS_BUCKET.into(),
                max_age: ttl,
                max_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
                replicas,
                discard_oldest: true,
            },
        )
        .await?;
        Ok(Self {
            client,
            store,
            max_value,
            stores: Arc::new(Semaphore::new(STORES_IN_FLIGHT)),
        })
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// The JSON stored under `key`, if any.
    pub(crate) async fn get(&self, key: &str) -> Option<Vec<u8>> {
        if !self.connected() {
            return None;
        }
        let value = match tokio::time::timeout(LOOKUP_TIMEOUT, self.store.get(key)).await {
            Ok(Ok(value)) => value?,
            Ok(Err(e)) => {
                tracing::warn!(%key, error = %e, "shared result cache lookup failed");
                return None;
            }
            Err(_) => {
                tracing::warn!(%key, "shared result cache lookup timed out");
                return None;
            }
        };
        let mut json = Vec::new();
        match GzDecoder::new(&value[..])
            .take(MAX_RESULT_BYTES)
            .read_to_end(&mut json)
        {
            Ok(_) => Some(json),
            Err(e) => {
                tracing::warn!(%key, error = %e, "unreadable shared cached result");
                None
            }
        }
    }

    /// Stores `json` under `key` (compressed) in the background; too large, failing, or too
    /// many stores at once is logged, not fatal.
    pub(crate) fn put(&self, key: &str, json: &[u8]) {
        if !self.connected() {
            return;
        }
        let Ok(permit) = self.stores.clone().try_acquire_owned() else {
            tracing::debug!(%key, "shared result cache busy; result kept local");
            return;
        };
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        let Ok(value) = encoder.write_all(json).and_then(|()| encoder.finish()) else {
            return;
        };
        if value.len() > self.max_value {
            tracing::debug!(%key, bytes = value.len(), "result too large for the shared cache; kept local");
            return;
        }
        let (store, key) = (self.store.clone(), key.to_owned());
        tokio::spawn(async move {
            match tokio::time::timeout(STORE_TIMEOUT, store.put(&key, value.into())).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(%key, error = %e, "cannot store in the shared result cache")
                }
                Err(_) => tracing::warn!(%key, "storing in the shared result cache timed out"),
            }
            drop(permit);
        });
    }
}
