//! Media types: manifests, image layers and configs, the empty config, and how sidescan tells
//! an image (something to scan) from an artifact (a signature, an SBOM, a report).

pub use sidescan_proto::mime::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// Every manifest type read, for `Accept`.
pub const MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// [`MANIFEST_TYPES`] as one `Accept` header value.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// The OCI 1.1 empty descriptor's media type (an artifact without a config).
pub const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";

/// The bytes of the empty JSON blob (`{}`).
pub const EMPTY_JSON_BYTES: &[u8] = b"{}";

/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Whether `media_type` is an image index or a Docker manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is an image manifest (OCI or Docker schema 2).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Whether `media_type` is a filesystem layer a container runtime would unpack.
pub fn is_image_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// Whether `media_type` is an image config.
pub fn is_image_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// Why a manifest or index is not an image to scan, or `None` when it is one.
///
/// An image manifest has no `artifactType` and at least one layer a runtime would unpack
/// (whatever its config type, as the SDK scans such manifests; layers of unknown types in it
/// are the plugin's to report as notices). An index is an image index when it has no
/// `artifactType` and no `subject`, and its entries are manifests without an `artifactType`.
/// Everything else (signatures, SBOMs, reports, Helm charts, referrers-tag indexes) is an
/// artifact.
pub fn not_an_image(media_type: &str, json: &serde_json::Value) -> Option<String> {
    let media_type = if media_type.is_empty() {
        json["mediaType"].as_str().unwrap_or_default()
    } else {
        media_type
    };
    if let Some(t) = json["artifactType"].as_str() {
        return Some(format!("artifact of type {t}"));
    }
    if json["manifests"].is_array() || is_index(media_type) {
        if !json["subject"].is_null() {
            return Some("index with a subject".into());
        }
        let entries = json["manifests"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if entries.is_empty() {
            return Some("empty index".into());
        }
        for entry in entries {
            if let Some(t) = entry["artifactType"].as_str() {
                return Some(format!("index of artifacts ({t})"));
            }
            let m = entry["mediaType"].as_str().unwrap_or_default();
            if !is_manifest(m) && !is_index(m) {
                return Some(format!("index entry of type {m:?}"));
            }
        }
        return None;
    }
    let layers = json["layers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let image_layers = layers
        .iter()
        .filter(|l| is_image_layer(l["mediaType"].as_str().unwrap_or_default()))
        .count();
    if image_layers == 0 {
        let config = json["config"]["mediaType"].as_str().unwrap_or_default();
        return Some(format!("no image layer (config {config:?})"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn images_and_artifacts_told_apart() {
        let image = json!({"mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}]});
        assert_eq!(not_an_image(OCI_MANIFEST, &image), None);
        let report = json!({"mediaType": OCI_MANIFEST, "artifactType": "application/vnd.sidescan.report.v1+json",
            "config": {"mediaType": EMPTY_JSON}, "layers": [{"mediaType": "application/json"}]});
        assert!(not_an_image(OCI_MANIFEST, &report).is_some());
        let cosign = json!({"config": {"mediaType": OCI_CONFIG},
            "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json"}]});
        assert!(not_an_image(OCI_MANIFEST, &cosign).is_some());
        let mixed = json!({"config": {"mediaType": OCI_CONFIG}, "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"},
            {"mediaType": "application/vnd.example.unknown"}]});
        assert_eq!(
            not_an_image(OCI_MANIFEST, &mixed),
            None,
            "scanned; the plugin notes the odd layer"
        );
        let helm = json!({"config": {"mediaType": "application/vnd.cncf.helm.config.v1+json"},
            "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip"}]});
        assert!(not_an_image(OCI_MANIFEST, &helm).is_some());
        let index = json!({"mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST}]});
        assert_eq!(not_an_image(OCI_INDEX, &index), None);
        let referrers = json!({"mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "artifactType": "application/sarif+json"}]});
        assert!(not_an_image(OCI_INDEX, &referrers).is_some());
        assert!(not_an_image(OCI_INDEX, &json!({"manifests": []})).is_some());
    }
}
