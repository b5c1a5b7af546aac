//! zot's events extension: CloudEvents 1.0 of source `zotregistry.dev`. Over HTTP in binary mode
//! (`Ce-Type` and the other attributes as headers, the body is the data) or structured mode
//! (`application/cloudevents+json`, the data in `data`); over NATS always structured.
//!
//! `zotregistry.image.updated` data: `{name, reference, digest, mediaType, manifest}`, where
//! `manifest` is the raw manifest JSON as a string. zot emits it once per changed tag, and also
//! for referrers, signatures and pushes by digest; the manifest tells those apart from images.
//! zot's other types (`image.deleted`, `image.scanned`, `image.lint_failed`,
//! `repository.created`) are valid and ignored.

use serde::Deserialize;

use super::{EventError, ImagePushed, Parsed};

/// The type announcing a pushed manifest.
pub const IMAGE_UPDATED: &str = "zotregistry.image.updated";
/// zot's other event types (accepted, ignored).
pub const OTHER_ZOT_TYPES: &[&str] = &[
    "zotregistry.image.deleted",
    "zotregistry.image.scanned",
    "zotregistry.image.lint_failed",
    "zotregistry.repository.created",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageUpdated {
    name: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    manifest: String,
}

#[derive(Deserialize)]
struct Structured {
    specversion: String,
    #[serde(rename = "type")]
    ce_type: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    data_base64: Option<String>,
}

/// Binary mode: `ce_type` from the `Ce-Type` header, the body is the data.
pub fn parse_binary(ce_type: &str, body: &[u8]) -> Result<Parsed, EventError> {
    data_of(ce_type, || {
        serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))
    })
}

/// Structured mode: the whole event as JSON.
pub fn parse_structured(body: &[u8]) -> Result<Parsed, EventError> {
    let event: Structured =
        serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;
    if !event.specversion.starts_with("1.") {
        return Err(EventError::Malformed(format!(
            "CloudEvents specversion {:?} (want 1.0)",
            event.specversion
        )));
    }
    let data = event.data;
    if event.data_base64.is_some() {
        return Err(EventError::Malformed(
            "data_base64 is not supported: zot sends JSON data".into(),
        ));
    }
    data_of(&event.ce_type, move || {
        serde_json::from_value(data).map_err(|e| EventError::Malformed(e.to_string()))
    })
}

fn data_of(
    ce_type: &str,
    data: impl FnOnce() -> Result<ImageUpdated, EventError>,
) -> Result<Parsed, EventError> {
    if OTHER_ZOT_TYPES.contains(&ce_type) {
        return Ok(Parsed {
            pushes: vec![],
            ignored: 1,
        });
    }
    if ce_type != IMAGE_UPDATED {
        return Err(EventError::UnknownType(ce_type.into()));
    }
    let data = data()?;
    if data.name.is_empty() || (data.digest.is_empty() && data.reference.is_empty()) {
        return Err(EventError::Malformed(
            "image.updated without name, digest or reference".into(),
        ));
    }
    // The manifest string, when present, already tells an image from an artifact.
    let not_an_image = match data.manifest.as_str() {
        "" => None,
        text => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) => sidescan_oci::media::not_an_image(&data.media_type, &json),
            Err(e) => return Err(EventError::Malformed(format!("data.manifest: {e}"))),
        },
    };
    let is_digest = data.reference.contains(':');
    Ok(Parsed {
        pushes: vec![ImagePushed {
            repository: data.name,
            tag: Some(data.reference).filter(|r| !r.is_empty() && !is_digest),
            digest: Some(data.digest).filter(|d| !d.is_empty()),
            media_type: Some(data.media_type).filter(|m| !m.is_empty()),
            not_an_image,
        }],
        ignored: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> String {
        json!({"schemaVersion": 2, "mediaType": sidescan_oci::media::OCI_MANIFEST,
            "config": {"mediaType": sidescan_oci::media::OCI_CONFIG},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}]})
        .to_string()
    }

    #[test]
    fn binary_and_structured_image_updated() {
        let data = json!({"name": "app", "reference": "1.0", "digest": "sha256:aa",
            "mediaType": sidescan_oci::media::OCI_MANIFEST, "manifest": manifest()});
        let parsed = parse_binary(IMAGE_UPDATED, data.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.pushes[0].tag.as_deref(), Some("1.0"));
        assert_eq!(parsed.pushes[0].not_an_image, None);
        let structured = json!({"specversion": "1.0", "id": "x", "source": "zotregistry.dev",
            "type": IMAGE_UPDATED, "datacontenttype": "application/json", "data": data});
        let parsed = parse_structured(structured.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.pushes[0].digest.as_deref(), Some("sha256:aa"));
    }

    #[test]
    fn artifacts_other_types_and_garbage() {
        let sig = json!({"config": {"mediaType": "application/vnd.oci.empty.v1+json"},
            "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json", "layers": []});
        let data = json!({"name": "app", "reference": "sha256:aa", "digest": "sha256:aa",
            "mediaType": sidescan_oci::media::OCI_MANIFEST, "manifest": sig.to_string()});
        let parsed = parse_binary(IMAGE_UPDATED, data.to_string().as_bytes()).unwrap();
        assert!(parsed.pushes[0].not_an_image.is_some());
        assert_eq!(
            parsed.pushes[0].tag, None,
            "a digest reference is not a tag"
        );
        let deleted = parse_binary("zotregistry.image.deleted", b"{}").unwrap();
        assert_eq!((deleted.pushes.len(), deleted.ignored), (0, 1));
        assert!(matches!(
            parse_binary("com.example.other", b"{}"),
            Err(EventError::UnknownType(_))
        ));
        assert!(matches!(
            parse_binary(IMAGE_UPDATED, b"not json"),
            Err(EventError::Malformed(_))
        ));
        assert!(parse_structured(b"{\"specversion\": \"0.3\", \"type\": \"x\"}").is_err());
    }
}
