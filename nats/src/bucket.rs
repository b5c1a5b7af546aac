//! JetStream key-value buckets and object stores, created as the streams they are.
//!
//! async-nats' `create_key_value` and `create_object_store` first query the account info, whose
//! answer from nats-server 2.9 (the Debian package) async-nats cannot parse. The streams are the
//! same ones those helpers create (`KV_<bucket>` on `$KV.<bucket>.>`, `OBJ_<store>` on
//! `$O.<store>.C.>` and `$O.<store>.M.>`), so any NATS client sees ordinary buckets.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};

/// How a key-value bucket is set up.
#[derive(Debug, Clone)]
pub struct KeyValueConfig {
    /// Bucket name.
    pub name: String,
    /// Entries expire this long after their last write (zero: never).
    pub max_age: Duration,
    /// Size cap of the bucket in bytes (`-1`: none).
    pub max_bytes: i64,
    /// Replicas in a NATS cluster.
    pub replicas: usize,
    /// When the bucket is full: drop the oldest entries (a cache) instead of refusing new ones
    /// (state that must not vanish).
    pub discard_oldest: bool,
}

/// Opens the bucket, creating it when missing.
pub async fn key_value(
    js: &jetstream::Context,
    config: &KeyValueConfig,
) -> Result<kv::Store, String> {
    let name = &config.name;
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age: config.max_age,
        max_bytes: config.max_bytes,
        num_replicas: config.replicas.max(1),
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: if config.discard_oldest {
            stream::DiscardPolicy::Old
        } else {
            stream::DiscardPolicy::New
        },
        duplicate_window: if config.max_age.is_zero() {
            Duration::from_secs(120)
        } else {
            config.max_age.min(Duration::from_secs(120))
        },
        ..Default::default()
    })
    .await
    .map_err(|e| format!("key-value bucket {name}: {e}"))?;
    js.get_key_value(name)
        .await
        .map_err(|e| format!("key-value bucket {name}: {e}"))
}

/// Opens the object store `name`, creating it when missing; objects expire `max_age` after
/// they are written (zero: never).
pub async fn object_store(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<object_store::ObjectStore, String> {
    js.get_or_create_stream(stream::Config {
        name: format!("OBJ_{name}"),
        subjects: vec![format!("$O.{name}.C.>"), format!("$O.{name}.M.>")],
        max_age,
        num_replicas: replicas.max(1),
        allow_rollup: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("object store {name}: {e}"))?;
    js.get_object_store(name)
        .await
        .map_err(|e| format!("object store {name}: {e}"))
}
