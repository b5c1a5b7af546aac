//! Writing a verified OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) for
//! whole-image scanners: what `trivy image --input DIR:REF` and `skopeo copy oci:DIR:REF` read.
//! Blobs are hard-linked from the blob cache (copied when the cache is on another filesystem).

use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::error::Error;
use super::manifest::{Descriptor, OCI_INDEX, PlatformSpec};
use super::reference::digest_hex;

/// The annotation naming an image in a layout.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn fail(action: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io("writing the OCI layout", action, path, e)
}

/// A manifest to put in the layout.
pub(crate) struct LayoutImage<'a> {
    /// The exact manifest bytes.
    pub manifest: &'a [u8],
    /// Their digest.
    pub digest: &'a str,
    /// Manifest media type.
    pub media_type: &'a str,
    /// Platform, when known.
    pub platform: Option<PlatformSpec>,
    /// `org.opencontainers.image.ref.name`.
    pub ref_name: &'a str,
    /// Config and layer blobs: digest and cached file.
    pub blobs: Vec<(&'a str, &'a Path)>,
}

/// Writes the layout into `dir` (created).
pub(crate) fn write_layout(dir: &Path, image: &LayoutImage<'_>) -> Result<(), Error> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| fail("create", &blobs, e))?;
    let layout = dir.join("oci-layout");
    std::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| fail("write", &layout, e))?;
    let manifest_path = blobs.join(digest_hex(image.digest));
    std::fs::write(&manifest_path, image.manifest).map_err(|e| fail("write", &manifest_path, e))?;
    for (digest, src) in &image.blobs {
        let dst = blobs.join(digest_hex(digest));
        if dst.exists() {
            continue;
        }
        if std::fs::hard_link(src, &dst).is_err() {
            std::fs::copy(src, &dst).map_err(|e| fail("copy", &dst, e))?;
        }
    }
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert(REF_NAME.to_string(), image.ref_name.to_string());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [Descriptor {
            media_type: image.media_type.to_string(),
            digest: image.digest.to_string(),
            size: image.manifest.len() as i64,
            platform: image.platform.clone(),
            annotations: Some(annotations),
        }],
    });
    let index_path = dir.join("index.json");
    std::fs::write(&index_path, index.to_string()).map_err(|e| fail("write", &index_path, e))?;
    Ok(())
}

/// The manifest `manifest` with the layers at the given indexes replaced by their uncompressed
/// tar streams: `(index, diff_id, uncompressed size)`. Each keeps its other fields; its media
/// type becomes the uncompressed one of the same family (Docker's for a Docker layer, OCI's
/// otherwise) and its digest the diff_id. Returns the new manifest bytes and their digest.
pub(crate) fn uncompressed_manifest(
    manifest: &[u8],
    replaced: &[(usize, String, u64)],
) -> Result<(Vec<u8>, String), crate::error::Error> {
    let bad = |why: &str| crate::error::Error::internal(format!("rewriting the manifest: {why}"));
    let mut doc: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| bad(&e.to_string()))?;
    let layers = doc
        .get_mut("layers")
        .and_then(|l| l.as_array_mut())
        .ok_or_else(|| bad("no layers"))?;
    for (i, diff_id, size) in replaced {
        let layer = layers
            .get_mut(*i)
            .and_then(|l| l.as_object_mut())
            .ok_or_else(|| bad("no such layer"))?;
        let docker = layer
            .get("mediaType")
            .and_then(|m| m.as_str())
            .is_some_and(|m| {
                m.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/vnd.docker.")
            });
        let media_type = if docker {
            DOCKER_UNCOMPRESSED_LAYER
        } else {
            OCI_UNCOMPRESSED_LAYER
        };
        layer.insert("mediaType".into(), media_type.into());
        layer.insert("digest".into(), diff_id.as_str().into());
        layer.insert("size".into(), (*size).into());
    }
    let bytes = serde_json::to_vec(&doc).map_err(|e| bad(&e.to_string()))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    Ok((bytes, digest))
}

/// An uncompressed OCI layer.
const OCI_UNCOMPRESSED_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// An uncompressed Docker layer.
const DOCKER_UNCOMPRESSED_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_layout_with_links() {
        let cache = tempfile::tempdir().unwrap();
        let blob = cache.path().join("b");
        std::fs::write(&blob, b"layer").unwrap();
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("layout");
        let d = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let m = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        write_layout(
            &dir,
            &LayoutImage {
                manifest: b"{}",
                digest: m,
                media_type: "application/vnd.oci.image.manifest.v1+json",
                platform: None,
                ref_name: "1.0",
                blobs: vec![(d, &blob), (d, &blob)],
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::read(dir.join("blobs/sha256").join(digest_hex(d))).unwrap(),
            b"layer"
        );
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "1.0");
        assert_eq!(index["manifests"][0]["size"], 2);
        assert!(dir.join("oci-layout").exists());
    }

    #[test]
    fn rewrites_only_the_named_layers() {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:c", "size": 3},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": "sha256:a", "size": 10},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": "sha256:b", "size": 11,
                 "annotations": {"k": "v"}},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:e", "size": 12},
            ],
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let (out, digest) = uncompressed_manifest(
            &bytes,
            &[(0, "sha256:d0".into(), 100), (1, "sha256:d1".into(), 200)],
        )
        .unwrap();
        assert_eq!(
            digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&out)))
        );
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let l = &doc["layers"];
        assert_eq!(l[0]["mediaType"], DOCKER_UNCOMPRESSED_LAYER);
        assert_eq!(l[0]["digest"], "sha256:d0");
        assert_eq!(l[0]["size"], 100);
        assert_eq!(l[1]["mediaType"], OCI_UNCOMPRESSED_LAYER);
        assert_eq!(l[1]["annotations"]["k"], "v");
        assert_eq!(l[2], manifest["layers"][2]);
        assert_eq!(doc["config"], manifest["config"]);
        assert!(uncompressed_manifest(&bytes, &[(3, "sha256:x".into(), 1)]).is_err());
    }
}
