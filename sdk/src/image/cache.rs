//! The content-addressed blob cache on disk ([`blob`]), and the per-layer result cache.
//!
//! The result cache stores a per-layer scanner's [`ScanFindings`] as JSON under
//! `<cache_dir>/results/<sha256 of (scanner, version, engine version, layer digest)>.json`, and a
//! whole-image scanner's [`CachedImageResult`] under
//! `<sha256 of (scanner, version, engine version, manifest digest, report types, rootfs)>.json`.
//! A new engine version (signature set, vulnerability DB) changes every key, so no result from an
//! older engine state is served.

mod blob;

use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::model::ScanFindings;

pub(crate) use blob::{BlobCache, BlobHandle};

/// Key of a per-layer result.
pub(crate) fn result_key(scanner: &str, version: &str, engine: &str, layer_digest: &str) -> String {
    let key = serde_json::json!([
        "sidescan-layer-result-v1",
        scanner,
        version,
        engine,
        layer_digest
    ]);
    hex::encode(Sha256::digest(key.to_string().as_bytes()))
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
        "sidescan-image-result-v1",
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
pub(crate) async fn load_result<T: serde::de::DeserializeOwned>(
    dir: &Path,
    key: &str,
) -> Option<T> {
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
pub(crate) async fn store_result<T: serde::Serialize>(dir: &Path, key: &str, findings: &T) {
    let Ok(json) = serde_json::to_vec(findings) else {
        return;
    };
    let tmp = dir.join(format!(".{key}.{}", uuid::Uuid::new_v4().simple()));
    let path = dir.join(format!("{key}.json"));
    let result = async {
        tokio::fs::write(&tmp, &json).await?;
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
        let key = result_key("s", "1", "db-1", "sha256:aa");
        assert_ne!(key, result_key("s", "1", "db-2", "sha256:aa"));
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
