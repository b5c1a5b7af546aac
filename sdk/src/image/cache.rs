//! The content-addressed blob cache on disk ([`blob`]), and the per-layer result cache.
//!
//! The result cache stores a per-layer scanner's [`CachedLayerResult`] (its [`ScanFindings`] and
//! the diff_id the layer was verified against, compared again on a hit) as JSON under
//! `<cache_dir>/results/<sha256 of (parser generation, scanner, version, engine version, layer
//! digest, size, media type, diff_id)>.json`, and a whole-image scanner's [`CachedImageResult`]
//! under `<sha256 of (parser generation, scanner, version, engine version, manifest digest,
//! report types, input kind)>.json`. The parser generation
//! ([`crate::archive::PARSER_GENERATION`]) drops every result read under older layer-reading
//! rules.
//! A new engine version (signature set, vulnerability DB) changes every key, so no result from an
//! older engine state is served.
//!
//! [`ResultCache`] reads this disk tier first and, with `--nats`, a cluster-wide tier
//! ([`shared`]) under the same keys.

mod blob;
mod shared;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::image::layer::PARSER_GENERATION;
use crate::model::ScanFindings;

pub(crate) use blob::{BlobCache, BlobHandle, sha256_file};
pub(crate) use shared::SharedResults;

use crate::metrics::{CacheKind, Metrics};

/// The result caches of one server: this machine's disk first, then (with `--nats`) the
/// cluster's bucket, whose hits are copied to disk.
#[derive(Debug, Clone)]
pub(crate) struct ResultCache {
    dir: PathBuf,
    shared: Option<Arc<SharedResults>>,
    metrics: Arc<Metrics>,
}

impl ResultCache {
    /// Tiers over `dir` and, when given, `shared`; shared lookups are counted in `metrics`.
    pub(crate) fn new(
        dir: PathBuf,
        shared: Option<Arc<SharedResults>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            dir,
            shared,
            metrics,
        }
    }

    /// The result under `key` from the first tier that has a readable one that `accept`s. A
    /// result from the shared tier is counted, and copied to disk, only once it is accepted.
    pub(crate) async fn load<T: serde::de::DeserializeOwned>(
        &self,
        kind: CacheKind,
        key: &str,
        accept: impl Fn(&T) -> bool,
    ) -> Option<T> {
        if let Some(found) = load_result::<T>(&self.dir, key).await.filter(&accept) {
            return Some(found);
        }
        let shared = self.shared.as_ref()?;
        let found = match shared.get(key).await {
            Some(json) => match serde_json::from_slice::<T>(&json) {
                Ok(found) if accept(&found) => Some((found, json)),
                Ok(_) => {
                    tracing::warn!(%key, "shared cached result made for other content; scanning again");
                    None
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "unreadable shared cached result; scanning again");
                    None
                }
            },
            None => None,
        };
        self.metrics.shared_cache_lookup(kind, found.is_some());
        let (found, json) = found?;
        store_json(&self.dir, key, json).await;
        Some(found)
    }

    /// Stores `result` under `key` in every tier.
    pub(crate) async fn store<T: serde::Serialize>(&self, key: &str, result: &T) {
        let Ok(json) = serde_json::to_vec(result) else {
            return;
        };
        if let Some(shared) = &self.shared {
            shared.put(key, &json);
        }
        store_json(&self.dir, key, json).await;
    }
}

/// What identifies one layer's content as the scanner sees it: the blob, how it is decoded
/// (media type), and the uncompressed stream it must decode to (diff_id).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerIdentity<'a> {
    /// Blob digest.
    pub digest: &'a str,
    /// Blob size.
    pub size: u64,
    /// Media type as the manifest declares it (chooses the decoder).
    pub media_type: &'a str,
    /// The config's diff_id for this layer.
    pub diff_id: &'a str,
}

/// Key of a per-layer result: everything that changes the answer. The scanner, its version and
/// engine state; the blob digest and size; the media type (the same blob read as plain tar or as
/// gzip is two different layers: a polyglot blob must not hit a result made under the other
/// decoder); the diff_id; and [`PARSER_GENERATION`], so that results read under older parsing
/// rules are never served.
pub(crate) fn result_key(
    scanner: &str,
    version: &str,
    engine: &str,
    layer: LayerIdentity<'_>,
) -> String {
    let key = serde_json::json!([
        "sidescan-layer-result-v2",
        PARSER_GENERATION,
        scanner,
        version,
        engine,
        layer.digest,
        layer.size,
        layer.media_type.trim().to_ascii_lowercase(),
        layer.diff_id
    ]);
    hex::encode(Sha256::digest(key.to_string().as_bytes()))
}

/// A cached per-layer result with the diff_id its layer was verified against, compared again on
/// every hit ([`CachedLayerResult::matches`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct CachedLayerResult {
    /// The diff_id the layer's uncompressed stream was verified to have when it was scanned.
    pub(crate) verified_diff_id: String,
    /// The media type it was decoded as.
    pub(crate) media_type: String,
    /// What the scanner found.
    pub(crate) findings: ScanFindings,
}

impl CachedLayerResult {
    /// Whether this result was made for exactly this layer reading.
    pub(crate) fn matches(&self, layer: LayerIdentity<'_>) -> bool {
        self.verified_diff_id == layer.diff_id
            && self.media_type == layer.media_type.trim().to_ascii_lowercase()
    }
}

/// What a whole-image scan produced, as cached: findings, notices and the plugin's documents.
/// Results whose documents include a failure are not cached (the failure may be transient).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct CachedImageResult {
    pub(crate) findings: ScanFindings,
    pub(crate) documents: std::collections::BTreeMap<String, crate::model::ReportDocument>,
}

impl CachedImageResult {
    /// The cacheable form of `findings`, or `None` when a document failed.
    pub(crate) fn from_findings(findings: &ScanFindings) -> Option<Self> {
        let documents = findings
            .documents
            .iter()
            .map(|(k, v)| v.clone().ok().map(|doc| (k.clone(), doc)))
            .collect::<Option<_>>()?;
        Some(Self {
            findings: ScanFindings {
                findings: findings.findings.clone(),
                notices: findings.notices.clone(),
                documents: Default::default(),
            },
            documents,
        })
    }

    /// Back to the plugin's result form.
    pub(crate) fn into_findings(self) -> ScanFindings {
        let mut findings = self.findings;
        findings.documents = self
            .documents
            .into_iter()
            .map(|(k, doc)| (k, Ok(doc)))
            .collect();
        findings
    }
}

/// Key of a whole-image result: the image manifest digest, the report types asked for (with their
/// parameters) and how the image was fed (`layout`, `layout+rootfs` or `registry`), for one
/// scanner version and engine state.
pub(crate) fn image_result_key(
    scanner: &str,
    version: &str,
    engine: &str,
    manifest_digest: &str,
    report_types: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    input_kind: &str,
) -> String {
    let key = serde_json::json!([
        "sidescan-image-result-v2",
        PARSER_GENERATION,
        scanner,
        version,
        engine,
        manifest_digest,
        report_types,
        input_kind
    ]);
    hex::encode(Sha256::digest(key.to_string().as_bytes()))
}

/// A cached result (per layer or per image), if present and readable.
async fn load_result<T: serde::de::DeserializeOwned>(dir: &Path, key: &str) -> Option<T> {
    let bytes = tokio::fs::read(dir.join(format!("{key}.json")))
        .await
        .ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(%key, error = %e, "unreadable cached result; scanning again");
            None
        }
    }
}

/// Stores a result (write to temp, rename). Failures are logged, not fatal.
#[cfg(test)]
async fn store_result<T: serde::Serialize>(dir: &Path, key: &str, findings: &T) {
    if let Ok(json) = serde_json::to_vec(findings) {
        store_json(dir, key, json).await;
    }
}

/// Stores a result's JSON (write to temp, rename). Failures are logged, not fatal.
async fn store_json(dir: &Path, key: &str, json: Vec<u8>) {
    let tmp = dir.join(format!(".{key}.{}", uuid::Uuid::new_v4().simple()));
    let path = dir.join(format!("{key}.json"));
    let result = async {
        let file = tmp.clone();
        tokio::task::spawn_blocking(move || blob::write_private_file(&file, &json))
            .await
            .map_err(std::io::Error::other)??;
        tokio::fs::rename(&tmp, &path).await
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        tracing::warn!(%key, error = %e, "cannot store scan result");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let layer = LayerIdentity {
            digest: "sha256:aa",
            size: 10,
            media_type: "application/vnd.oci.image.layer.v1.tar",
            diff_id: "sha256:aa",
        };
        let key = result_key("s", "1", "db-1", layer);
        assert_ne!(key, result_key("s", "1", "db-2", layer));
        // the same blob decoded another way, or verified against another diff_id, is another
        // layer (a polyglot blob pushed as plain tar and as gzip)
        let gzip = LayerIdentity {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
            diff_id: "sha256:bb",
            ..layer
        };
        assert_ne!(key, result_key("s", "1", "db-1", gzip));
        assert_ne!(
            key,
            result_key("s", "1", "db-1", LayerIdentity { size: 11, ..layer })
        );
        let cached = CachedLayerResult {
            verified_diff_id: "sha256:aa".into(),
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            findings: ScanFindings::default(),
        };
        assert!(cached.matches(layer));
        assert!(!cached.matches(gzip));
        assert!(!cached.matches(LayerIdentity {
            diff_id: "sha256:cc",
            ..layer
        }));
        assert!(
            load_result::<ScanFindings>(dir.path(), &key)
                .await
                .is_none()
        );
        let mut f = ScanFindings::default();
        f.findings.push(crate::model::Finding::new(
            crate::model::FindingKind::Secret,
            "k",
            crate::model::Severity::High,
        ));
        store_result(dir.path(), &key, &f).await;
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(format!("{key}.json")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "result files are private");
        }
        assert_eq!(
            load_result::<ScanFindings>(dir.path(), &key).await.unwrap(),
            f
        );
        std::fs::write(dir.path().join(format!("{key}.json")), b"{broken").unwrap();
        assert!(
            load_result::<ScanFindings>(dir.path(), &key)
                .await
                .is_none()
        );
    }
}
