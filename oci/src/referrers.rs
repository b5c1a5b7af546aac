//! OCI referrers (distribution-spec 1.1): attaching an artifact to a manifest, and listing what
//! is attached, through the referrers API where the registry has one and through the
//! referrers tag schema (`sha256-<hex>` holding an image index) where it has not.
//!
//! Attaching keeps one current document per (scanner, artifact type): older ones by the same
//! scanner are dropped from the index and deleted where the registry allows deletes.
//! Updates of the tag are conditional (`If-Match`) where the registry sends an `ETag`, and
//! verified by reading the tag back everywhere, so two writers racing do not lose an entry
//! silently: the loser tries again.

use std::collections::BTreeMap;

use bytes::Bytes;
use oci_client::manifest::{ImageIndexEntry, OciDescriptor, OciImageIndex};

use crate::Error;
use crate::media;
use crate::registry::{Registry, annotations_of};
use crate::report::{Attachment, SCANNER_NAME};

/// Attempts at updating the referrers tag when another writer got there first.
const TAG_ATTEMPTS: usize = 6;

/// The referrers-tag-schema tag of `digest`: `sha256:ab…` → `sha256-ab…`.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Whether `tag` is a referrers-tag-schema tag (`<alg>-<64 hex>`).
pub fn is_fallback_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// How referrers were read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The registry's referrers API.
    Api,
    /// The referrers tag schema.
    TagSchema,
}

/// The referrers of one manifest.
#[derive(Clone, Debug)]
pub struct Referrers {
    /// The index entries.
    pub entries: Vec<ImageIndexEntry>,
    /// Where they came from.
    pub via: Via,
}

/// Lists the referrers of `subject` in `repo`.
pub async fn list(registry: &Registry, repo: &str, subject: &str) -> Result<Referrers, Error> {
    if let Some(index) = registry.referrers_api(repo, subject).await? {
        return Ok(Referrers {
            entries: index.manifests,
            via: Via::Api,
        });
    }
    let tagged = registry.tagged_index(repo, &fallback_tag(subject)).await?;
    Ok(Referrers {
        entries: tagged.index,
        via: Via::TagSchema,
    })
}

/// What [`attach`] did.
#[derive(Clone, Debug)]
pub struct Attached {
    /// Digest of the pushed artifact manifest.
    pub digest: String,
    /// How it was made discoverable.
    pub via: Via,
    /// Older documents by the same scanner of the same type that it replaced.
    pub replaced: Vec<String>,
    /// How many of those the registry deleted.
    pub deleted: usize,
}

fn same_kind(entry: &ImageIndexEntry, artifact_type: &str, scanner: &str) -> bool {
    entry.artifact_type.as_deref() == Some(artifact_type)
        && annotations_of(&entry.annotations)
            .get(SCANNER_NAME)
            .map(String::as_str)
            == Some(scanner)
}

/// Pushes `attachment` as a referrer of `subject` (the scanned manifest's descriptor) in `repo`
/// and makes it the current one of its scanner and type.
pub async fn attach(
    registry: &Registry,
    repo: &str,
    subject: &OciDescriptor,
    attachment: &Attachment,
) -> Result<Attached, Error> {
    let artifact_type = attachment.artifact_type();
    let config = registry
        .push_blob(
            repo,
            Bytes::from_static(media::EMPTY_JSON_BYTES),
            media::EMPTY_JSON,
        )
        .await?;
    let mut layer = registry
        .push_blob(
            repo,
            Bytes::from(attachment.document.clone()),
            artifact_type,
        )
        .await?;
    layer.annotations = Some(BTreeMap::from([(
        crate::report::TITLE.to_string(),
        attachment.file_name().to_string(),
    )]));
    let subject = OciDescriptor {
        annotations: None,
        urls: None,
        ..subject.clone()
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config,
        "layers": [layer],
        "subject": subject,
        "annotations": attachment.annotations,
    });
    let body = serde_json::to_vec(&manifest).map_err(|e| Error::Malformed(e.to_string()))?;
    let size = body.len() as i64;
    let digest = crate::registry::sha256_digest(&body);
    registry
        .push_manifest(repo, &digest, Bytes::from(body), media::OCI_MANIFEST)
        .await?;
    let scanner = attachment
        .annotations
        .get(SCANNER_NAME)
        .cloned()
        .unwrap_or_default();
    let entry = ImageIndexEntry {
        media_type: media::OCI_MANIFEST.into(),
        digest: digest.clone(),
        size,
        platform: None,
        annotations: Some(attachment.annotations.clone()),
        artifact_type: Some(artifact_type.into()),
    };

    let (via, replaced) = match registry.referrers_api(repo, &subject.digest).await? {
        Some(index) => {
            let replaced = index
                .manifests
                .iter()
                .filter(|e| e.digest != digest && same_kind(e, artifact_type, &scanner))
                .map(|e| e.digest.clone())
                .collect();
            (Via::Api, replaced)
        }
        None => (
            Via::TagSchema,
            update_tag(
                registry,
                repo,
                &subject.digest,
                entry,
                artifact_type,
                &scanner,
            )
            .await?,
        ),
    };
    let mut deleted = 0;
    for old in &replaced {
        match registry.delete_manifest(repo, old).await {
            Ok(true) => deleted += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(%repo, digest = %old, error = %e, "could not delete a replaced report")
            }
        }
    }
    Ok(Attached {
        digest,
        via,
        replaced,
        deleted,
    })
}

/// Pull → replace → push of the referrers tag, retried when another writer interfered.
/// Returns the digests of the entries it replaced.
async fn update_tag(
    registry: &Registry,
    repo: &str,
    subject: &str,
    entry: ImageIndexEntry,
    artifact_type: &str,
    scanner: &str,
) -> Result<Vec<String>, Error> {
    let tag = fallback_tag(subject);
    let mut last = None;
    for attempt in 0..TAG_ATTEMPTS {
        if attempt > 0 {
            let jitter = u64::from(rand_u16() % 100);
            tokio::time::sleep(std::time::Duration::from_millis(
                50 * attempt as u64 + jitter,
            ))
            .await;
        }
        let current = registry.tagged_index(repo, &tag).await?;
        let (replaced, mut kept): (Vec<_>, Vec<_>) = current
            .index
            .into_iter()
            .filter(|e| e.digest != entry.digest)
            .partition(|e| same_kind(e, artifact_type, scanner));
        kept.push(entry.clone());
        let index = OciImageIndex {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            manifests: kept,
            artifact_type: None,
            annotations: None,
        };
        match registry
            .put_tagged_index(repo, &tag, &index, current.etag.as_deref())
            .await
        {
            Ok(_) => {}
            Err(e @ Error::Conflict(_)) => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        }
        // Read back: a writer without ETag support may have overwritten us in between.
        let after = registry.tagged_index(repo, &tag).await?;
        if after.index.iter().any(|e| e.digest == entry.digest) {
            return Ok(replaced.into_iter().map(|e| e.digest).collect());
        }
        last = Some(Error::Conflict(format!(
            "{repo}:{tag} was overwritten by another writer"
        )));
    }
    Err(last.unwrap_or_else(|| Error::Conflict(format!("{repo}:{tag}"))))
}

/// A little jitter without a PRNG dependency: the sub-second clock.
fn rand_u16() -> u16 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.subsec_nanos() >> 7) as u16)
        .unwrap_or(0)
}

/// Reads the document of report `digest` in `repo` (the one layer of its manifest), at most
/// `max` bytes.
pub async fn document(
    registry: &Registry,
    repo: &str,
    digest: &str,
    max: u64,
) -> Result<Vec<u8>, Error> {
    let manifest = registry
        .manifest(repo, digest)
        .await?
        .ok_or_else(|| Error::Malformed(format!("report {repo}@{digest} is gone")))?;
    let layer = &manifest.json["layers"][0];
    let layer_digest = layer["digest"]
        .as_str()
        .ok_or_else(|| Error::Malformed(format!("report {repo}@{digest} has no layer")))?;
    registry.blob(repo, layer_digest, max).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_tags() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let t = fallback_tag(&d);
        assert_eq!(t, format!("sha256-{}", "ab".repeat(32)));
        assert!(is_fallback_tag(&t));
        assert!(!is_fallback_tag("sha256-abc"));
        assert!(!is_fallback_tag(&format!("{t}.sig")));
        assert!(!is_fallback_tag("latest"));
    }
}
