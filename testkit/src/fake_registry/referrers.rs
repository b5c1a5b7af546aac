//! The referrers API of the fake registry (distribution-spec v1.1 "Listing Referrers"), or the
//! plain 404 of a registry without it.

use super::State;
use super::serve::{Prepared, Req, oci_error};
use crate::oci::Blob;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `<algorithm>:<encoded>` as the OCI digest grammar has it.
fn valid_digest(digest: &str) -> bool {
    digest.split_once(':').is_some_and(|(alg, enc)| {
        !alg.is_empty()
            && !enc.is_empty()
            && alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
            && enc
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
    })
}

/// The descriptor of `manifest` in a referrers index when its `subject` is `subject`:
/// mediaType, digest, size, artifactType (the manifest's, else its config's media type; none
/// for an index without one) and its annotations.
fn descriptor(manifest: &Blob, subject: &str) -> Option<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_slice(&manifest.data).ok()?;
    if json["subject"]["digest"].as_str() != Some(subject) {
        return None;
    }
    let media_type = json["mediaType"]
        .as_str()
        .unwrap_or(manifest.media_type.as_str())
        .to_owned();
    let mut d = serde_json::json!({
        "mediaType": media_type,
        "digest": manifest.digest,
        "size": manifest.data.len(),
    });
    let artifact_type = json["artifactType"]
        .as_str()
        .filter(|t| !t.is_empty())
        .or_else(|| json["config"]["mediaType"].as_str());
    if let Some(t) = artifact_type {
        d["artifactType"] = t.into();
    }
    if let Some(a) = json["annotations"].as_object().filter(|a| !a.is_empty()) {
        d["annotations"] = a.clone().into();
    }
    Some(d)
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=...]`.
pub(super) fn list(state: &State, req: &Req, name: &str, subject: &str) -> Prepared {
    if state.no_referrers_api.load(Ordering::Relaxed) {
        // What Debian's docker-registry 2.8 (no referrers API) answers: Go's plain 404.
        return Prepared::with_body(404, "text/plain; charset=utf-8", "404 page not found\n");
    }
    let head = req.method == "HEAD";
    if req.method != "GET" && !head {
        return oci_error(405, "UNSUPPORTED", "method not allowed");
    }
    if !valid_digest(subject) {
        return oci_error(
            400,
            "DIGEST_INVALID",
            &format!("invalid digest {subject:?}"),
        );
    }
    let repos = state.repos.lock().expect("lock");
    let Some(repo) = repos.get(name) else {
        return oci_error(404, "NAME_UNKNOWN", "repository name not known to registry");
    };
    let filters: Vec<&str> = req.params("artifactType").collect();
    // Each manifest once (tags and digests point at the same ones), in digest order.
    let unique: BTreeMap<&str, &Blob> = repo
        .manifests
        .values()
        .map(|m| (m.digest.as_str(), m))
        .collect();
    let manifests: Vec<serde_json::Value> = unique
        .values()
        .filter_map(|m| descriptor(m, subject))
        .filter(|d| {
            filters.is_empty()
                || d["artifactType"]
                    .as_str()
                    .is_some_and(|t| filters.contains(&t))
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let mut p = Prepared::with_body(200, OCI_INDEX, index.to_string());
    p.head = head;
    if !filters.is_empty() {
        p.headers
            .push(("oci-filters-applied", "artifactType".to_owned()));
    }
    p
}
