//! CNCF distribution notifications (Debian's `docker-registry`, `notifications.endpoints` in
//! its config): `{"events": [{action, target{mediaType, digest, repository, tag, url}, ...}]}`.
//! Only manifest pushes count; blob pushes, pulls, mounts and deletes are ignored.

use serde::Deserialize;
use sidescan_oci::media;

use super::{EventError, ImagePushed, Parsed};

#[derive(Deserialize)]
struct Envelope {
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    action: String,
    #[serde(default)]
    target: Target,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    tag: String,
}

/// Parses a notification envelope.
pub fn parse(body: &[u8]) -> Result<Parsed, EventError> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;
    let mut parsed = Parsed::default();
    for event in envelope.events {
        let t = event.target;
        let manifest = media::is_manifest(&t.media_type) || media::is_index(&t.media_type);
        if event.action != "push" || !manifest {
            parsed.ignored += 1;
            continue;
        }
        if t.repository.is_empty() || (t.digest.is_empty() && t.tag.is_empty()) {
            return Err(EventError::Malformed(
                "a manifest push without repository, digest or tag".into(),
            ));
        }
        parsed.pushes.push(ImagePushed {
            repository: t.repository,
            tag: Some(t.tag).filter(|t| !t.is_empty()),
            digest: Some(t.digest).filter(|d| !d.is_empty()),
            media_type: Some(t.media_type),
            not_an_image: None,
        });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_pushes_only() {
        let body = serde_json::json!({"events": [
            {"id": "1", "action": "push", "target": {"mediaType": media::OCI_MANIFEST,
                "digest": "sha256:aa", "repository": "app", "tag": "1.0",
                "url": "http://127.0.0.1:5000/v2/app/manifests/sha256:aa"},
             "request": {"host": "127.0.0.1:5000"}},
            {"action": "push", "target": {"mediaType": "application/octet-stream",
                "digest": "sha256:bb", "repository": "app"}},
            {"action": "pull", "target": {"mediaType": media::OCI_MANIFEST,
                "digest": "sha256:aa", "repository": "app"}},
            {"action": "push", "target": {"mediaType": media::OCI_INDEX,
                "digest": "sha256:cc", "repository": "multi"}},
        ]});
        let parsed = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.ignored, 2);
        assert_eq!(parsed.pushes.len(), 2);
        assert_eq!(parsed.pushes[0].tag.as_deref(), Some("1.0"));
        assert_eq!(parsed.pushes[1].tag, None);
        assert_eq!(parsed.pushes[1].digest.as_deref(), Some("sha256:cc"));
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        assert!(parse(b"{").is_err());
        assert!(parse(b"{\"events\": 3}").is_err());
        let no_repo = serde_json::json!({"events": [{"action": "push",
            "target": {"mediaType": media::OCI_MANIFEST, "digest": "sha256:aa"}}]});
        assert!(parse(no_repo.to_string().as_bytes()).is_err());
    }
}
