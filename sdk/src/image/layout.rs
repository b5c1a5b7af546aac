//! Writing a verified OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) for
//! whole-image scanners: what `trivy image --input DIR:REF` and `skopeo copy oci:DIR:REF` read.
//! Blobs are hard-linked from the blob cache (copied when the cache is on another filesystem).

use std::path::Path;

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
}
