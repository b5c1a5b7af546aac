//! The write side of the fake registry: blob uploads (monolithic, single `POST`, chunked,
//! mounted), manifest pushes (verified, conditional with `If-Match`) and manifest deletes.

use super::serve::{Prepared, Req, etag, oci_error};
use super::{State, Upload};
use crate::digest::sha256_digest;
use crate::oci::Blob;
use bytes::Bytes;
use std::sync::atomic::Ordering;

/// Largest manifest accepted (the distribution spec asks registries to take at least 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;

/// `sha256:<64 lowercase hex>`: the only algorithm the fake accepts for pushes.
fn valid_sha256(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The tag grammar of the distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Checks `data` against the `digest` query parameter: the digest to store it under, or the
/// `400 DIGEST_INVALID` answer.
fn verify(digest: Option<&str>, data: &[u8]) -> Result<String, Prepared> {
    let Some(digest) = digest else {
        return Err(oci_error(400, "DIGEST_INVALID", "digest parameter missing"));
    };
    if !valid_sha256(digest) {
        return Err(oci_error(
            400,
            "DIGEST_INVALID",
            &format!("unsupported or malformed digest {digest:?}"),
        ));
    }
    let actual = sha256_digest(data);
    if actual != digest {
        return Err(oci_error(
            400,
            "DIGEST_INVALID",
            &format!("provided digest {digest} did not match uploaded content ({actual})"),
        ));
    }
    Ok(actual)
}

fn store_blob(state: &State, name: &str, digest: &str, data: Bytes) -> Prepared {
    state
        .repos
        .lock()
        .expect("lock")
        .entry(name.to_owned())
        .or_default()
        .blobs
        .insert(
            digest.to_owned(),
            Blob {
                media_type: "application/octet-stream".into(),
                digest: digest.to_owned(),
                data,
            },
        );
    Prepared::empty(
        201,
        vec![
            ("location", format!("/v2/{name}/blobs/{digest}")),
            ("docker-content-digest", digest.to_owned()),
        ],
    )
}

/// `Location`, `Range` and `Docker-Upload-UUID` of an open upload holding `len` bytes.
fn session_headers(name: &str, id: &str, len: usize) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("range", format!("0-{}", len.saturating_sub(1))),
        ("docker-upload-uuid", id.to_owned()),
    ]
}

/// Appends `req.body` to `upload`, checking `Content-Range` (`<start>-<end>`, inclusive) when
/// sent: a chunk that does not start where the upload ends is `416`.
fn append(upload: &mut Upload, req: &Req) -> Result<(), Prepared> {
    if let Some(range) = req.header("content-range") {
        let parsed = range
            .trim()
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
        let Some((start, end)) = parsed else {
            return Err(oci_error(
                400,
                "BLOB_UPLOAD_INVALID",
                &format!("Content-Range {range:?} is not <start>-<end>"),
            ));
        };
        if start != upload.data.len() {
            let mut p = oci_error(
                416,
                "BLOB_UPLOAD_INVALID",
                &format!(
                    "chunk starts at {start}, upload is at {}",
                    upload.data.len()
                ),
            );
            p.headers.push((
                "range",
                format!("0-{}", upload.data.len().saturating_sub(1)),
            ));
            return Err(p);
        }
        if end < start || end - start + 1 != req.body.len() {
            return Err(oci_error(
                400,
                "SIZE_INVALID",
                &format!(
                    "Content-Range {range:?} does not match a body of {} bytes",
                    req.body.len()
                ),
            ));
        }
    }
    upload.data.extend_from_slice(&req.body);
    Ok(())
}

/// `/v2/<name>/blobs/uploads/[<id>]`, every method.
pub(super) fn upload(state: &State, req: &Req, name: &str, id: Option<&str>) -> Prepared {
    let Some(id) = id else {
        if req.method != "POST" {
            return oci_error(405, "UNSUPPORTED", "method not allowed");
        }
        if let (Some(digest), Some(from)) = (req.param("mount"), req.param("from")) {
            let mounted = state
                .repos
                .lock()
                .expect("lock")
                .get(from)
                .and_then(|r| r.blobs.get(digest))
                .map(|b| b.data.clone());
            if let Some(data) = mounted {
                return store_blob(state, name, digest, data);
            }
            // Not mountable: a plain upload session, as the spec says (202).
        } else if req.param("digest").is_some() {
            return match verify(req.param("digest"), &req.body) {
                Ok(digest) => store_blob(state, name, &digest, req.body.clone()),
                Err(p) => p,
            };
        }
        let n = state.upload_seq.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:08x}-fa4e-4000-8000-{n:012x}", std::process::id());
        state.uploads.lock().expect("lock").insert(
            id.clone(),
            Upload {
                repo: name.to_owned(),
                data: Vec::new(),
            },
        );
        return Prepared::empty(202, session_headers(name, &id, 0));
    };
    let mut uploads = state.uploads.lock().expect("lock");
    let Some(upload) = uploads.get_mut(id).filter(|u| u.repo == name) else {
        return oci_error(
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        );
    };
    match req.method.as_str() {
        "GET" => Prepared::empty(204, session_headers(name, id, upload.data.len())),
        "PATCH" => match append(upload, req) {
            Ok(()) => Prepared::empty(202, session_headers(name, id, upload.data.len())),
            Err(p) => p,
        },
        "PUT" => {
            if let Err(p) = append(upload, req) {
                return p;
            }
            let data = Bytes::from(std::mem::take(&mut upload.data));
            uploads.remove(id);
            drop(uploads);
            match verify(req.param("digest"), &data) {
                Ok(digest) => store_blob(state, name, &digest, data),
                Err(p) => p,
            }
        }
        "DELETE" => {
            uploads.remove(id);
            Prepared::empty(204, Vec::new())
        }
        _ => oci_error(405, "UNSUPPORTED", "method not allowed"),
    }
}

/// Whether `If-Match` (absent, `*`, or a list of entity tags) admits `current`.
fn if_match(header: Option<&str>, current: Option<&Blob>) -> bool {
    let Some(header) = header else {
        return true;
    };
    let Some(current) = current else {
        return false;
    };
    let tag = etag(current);
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == tag)
}

/// `PUT /v2/<name>/manifests/<reference>`.
pub(super) fn put_manifest(state: &State, req: &Req, name: &str, reference: &str) -> Prepared {
    if req.body.len() > MAX_MANIFEST {
        return oci_error(413, "SIZE_INVALID", "manifest too large");
    }
    let invalid = |why: &str| oci_error(400, "MANIFEST_INVALID", why);
    let json: serde_json::Value = match serde_json::from_slice(&req.body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => return invalid("manifest is not a JSON object"),
    };
    let content_type = req
        .header("content-type")
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_owned())
        .unwrap_or_default();
    let media_type = match json["mediaType"].as_str() {
        Some(field) if !content_type.is_empty() && field != content_type => {
            return invalid(&format!(
                "Content-Type {content_type:?} differs from mediaType {field:?}"
            ));
        }
        Some(field) => field.to_owned(),
        None if content_type.is_empty() => return invalid("no Content-Type and no mediaType"),
        None => content_type,
    };
    let digest = sha256_digest(&req.body);
    let by_digest = reference.contains(':');
    if by_digest && reference != digest {
        return oci_error(
            400,
            "DIGEST_INVALID",
            &format!("manifest has digest {digest}, pushed as {reference}"),
        );
    }
    if !by_digest && !valid_tag(reference) {
        return oci_error(
            400,
            "MANIFEST_INVALID",
            &format!("invalid tag {reference:?}"),
        );
    }
    let mut repos = state.repos.lock().expect("lock");
    let repo = repos.entry(name.to_owned()).or_default();
    // What the manifest references must be in the repository (the subject need not be).
    let blobs = std::iter::once(&json["config"])
        .chain(json["layers"].as_array().into_iter().flatten())
        .filter_map(|d| d["digest"].as_str());
    let children = json["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["digest"].as_str());
    if let Some(missing) = blobs
        .filter(|d| !repo.blobs.contains_key(*d))
        .chain(children.filter(|d| !repo.manifests.contains_key(*d)))
        .next()
    {
        return oci_error(
            400,
            "MANIFEST_BLOB_UNKNOWN",
            &format!("manifest references {missing}, unknown to the repository"),
        );
    }
    if !if_match(req.header("if-match"), repo.manifests.get(reference)) {
        return Prepared::with_body(412, "text/plain", "precondition failed: If-Match\n");
    }
    let blob = Blob {
        media_type,
        digest: digest.clone(),
        data: req.body.clone(),
    };
    if !by_digest {
        repo.manifests.insert(reference.to_owned(), blob.clone());
    }
    repo.manifests.insert(digest.clone(), blob);
    let mut headers = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        ("docker-content-digest", digest),
    ];
    if let Some(subject) = json["subject"]["digest"].as_str()
        && !state.no_referrers_api.load(Ordering::Relaxed)
    {
        headers.push(("oci-subject", subject.to_owned()));
    }
    Prepared::empty(201, headers)
}

/// `DELETE /v2/<name>/manifests/<reference>`: a tag goes alone, a digest takes every tag
/// pointing at it.
pub(super) fn delete_manifest(state: &State, name: &str, reference: &str) -> Prepared {
    if state.no_deletes.load(Ordering::Relaxed) {
        return oci_error(405, "UNSUPPORTED", "deletes are disabled");
    }
    let mut repos = state.repos.lock().expect("lock");
    let Some(repo) = repos.get_mut(name) else {
        return oci_error(404, "NAME_UNKNOWN", "repository name not known to registry");
    };
    if !repo.manifests.contains_key(reference) {
        return oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown");
    }
    if reference.contains(':') {
        repo.manifests
            .retain(|k, m| k != reference && m.digest != reference);
    } else {
        repo.manifests.remove(reference);
    }
    Prepared::empty(202, Vec::new())
}
