//! The write side and the referrers API of the fake registry, spoken to over raw HTTP.

use super::{FakeRegistry, Fault, Match};
use crate::digest::sha256_digest;
use reqwest::{Client, Method, StatusCode};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

async fn send(
    fake: &FakeRegistry,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> reqwest::Response {
    let url = if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("{}{path}", fake.url())
    };
    let mut req = Client::new().request(method, url).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn blob_uploads_monolithic_single_post_chunked_and_mounted_are_verified() {
    let fake = FakeRegistry::start();
    let data = b"hello, blob".as_slice();
    let digest = sha256_digest(data);
    let q = |loc: &str, d: &str| format!("{loc}?digest={}", d.replace(':', "%3A"));

    // POST then PUT; a wrong digest first (400 DIGEST_INVALID, nothing stored).
    let r = send(&fake, Method::POST, "/v2/a/blobs/uploads/", &[], b"").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = location(&r);
    assert!(loc.starts_with("/v2/a/blobs/uploads/"), "{loc}");
    let wrong = sha256_digest(b"other");
    let r = send(&fake, Method::PUT, &q(&loc, &wrong), &[], data).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    assert!(fake.blob("a", &wrong).is_none());
    let r = send(&fake, Method::POST, "/v2/a/blobs/uploads/", &[], b"").await;
    let r = send(&fake, Method::PUT, &q(&location(&r), &digest), &[], data).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/a/blobs/{digest}"));
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    let r = send(
        &fake,
        Method::HEAD,
        &format!("/v2/a/blobs/{digest}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-length"],
        data.len().to_string().as_str()
    );

    // A single POST.
    let d2 = sha256_digest(b"single");
    let r = send(
        &fake,
        Method::POST,
        &q("/v2/b/blobs/uploads/", &d2),
        &[],
        b"single",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(fake.blob("b", &d2).unwrap().data, b"single".as_slice());
    let r = send(
        &fake,
        Method::POST,
        &q("/v2/b/blobs/uploads/", &d2),
        &[],
        b"other",
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Chunks: in order, out of order (416), status, then the final chunk with the PUT.
    let r = send(&fake, Method::POST, "/v2/c/blobs/uploads/", &[], b"").await;
    let loc = location(&r);
    let r = send(
        &fake,
        Method::PATCH,
        &loc,
        &[("content-range", "0-4")],
        b"hello",
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-4");
    let loc = location(&r);
    let r = send(
        &fake,
        Method::PATCH,
        &loc,
        &[("content-range", "9-10")],
        b", ",
    )
    .await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = send(&fake, Method::GET, &loc, &[], b"").await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], "0-4");
    let r = send(
        &fake,
        Method::PATCH,
        &loc,
        &[("content-range", "5-6")],
        b", ",
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = send(
        &fake,
        Method::PUT,
        &q(&location(&r), &digest),
        &[("content-range", "7-10")],
        b"blob",
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(fake.blob("c", &digest).unwrap().data, data);
    assert_eq!(fake.open_uploads(), 0);

    // Cancel; then the session is unknown.
    let r = send(&fake, Method::POST, "/v2/c/blobs/uploads/", &[], b"").await;
    let loc = location(&r);
    assert_eq!(fake.open_uploads(), 1);
    assert_eq!(
        send(&fake, Method::DELETE, &loc, &[], b"").await.status(),
        StatusCode::NO_CONTENT
    );
    let r = send(&fake, Method::PATCH, &loc, &[], b"x").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");

    // Mount from another repository; an unknown blob opens a session instead.
    let mount = format!("/v2/d/blobs/uploads/?mount={digest}&from=a");
    assert_eq!(
        send(&fake, Method::POST, &mount, &[], b"").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(fake.blob("d", &digest).unwrap().data, data);
    let mount = format!("/v2/d/blobs/uploads/?mount={wrong}&from=a");
    assert_eq!(
        send(&fake, Method::POST, &mount, &[], b"").await.status(),
        StatusCode::ACCEPTED
    );
}

/// An artifact manifest with the empty config, one layer, and `subject` (all pushed to `repo`).
async fn push_artifact(
    fake: &FakeRegistry,
    repo: &str,
    subject: &str,
    t: &str,
) -> (Vec<u8>, String) {
    let mut blobs = Vec::new();
    for data in [b"{}".as_slice(), t.as_bytes()] {
        let d = sha256_digest(data);
        let path = format!("/v2/{repo}/blobs/uploads/?digest={d}");
        assert_eq!(
            send(fake, Method::POST, &path, &[], data).await.status(),
            201
        );
        blobs.push(
            serde_json::json!({"mediaType": "application/json", "digest": d, "size": data.len()}),
        );
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": t,
        "config": blobs[0], "layers": [blobs[1]],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
        "annotations": {"k": t},
    });
    let body = serde_json::to_vec_pretty(&manifest).unwrap();
    let digest = sha256_digest(&body);
    (body, digest)
}

#[tokio::test]
async fn manifests_are_verified_stored_exactly_conditional_and_deletable() {
    let fake = FakeRegistry::start();
    let subject = sha256_digest(b"the subject");
    let (body, digest) = push_artifact(&fake, "r", &subject, "application/x-a").await;
    let ct = [("content-type", OCI_MANIFEST)];

    // Content-Type must match mediaType; a digest reference must be the digest; blobs must exist.
    let r = send(
        &fake,
        Method::PUT,
        "/v2/r/manifests/v1",
        &[("content-type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = send(
        &fake,
        Method::PUT,
        &format!("/v2/r/manifests/{subject}"),
        &ct,
        &body,
    )
    .await;
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = send(&fake, Method::PUT, "/v2/elsewhere/manifests/v1", &ct, &body).await;
    assert_eq!(error_code(r).await, "MANIFEST_BLOB_UNKNOWN");

    let r = send(&fake, Method::PUT, "/v2/r/manifests/v1", &ct, &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(location(&r), format!("/v2/r/manifests/{digest}"));
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(r.headers()["oci-subject"], subject.as_str());
    let r = send(
        &fake,
        Method::GET,
        &format!("/v2/r/manifests/{digest}"),
        &[],
        b"",
    )
    .await;
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{digest}\""));
    assert_eq!(
        r.bytes().await.unwrap(),
        body.as_slice(),
        "stored byte for byte"
    );

    // If-Match: the current ETag passes, another one is 412 and changes nothing.
    let (body2, digest2) = push_artifact(&fake, "r", &subject, "application/x-b").await;
    let stale = format!("\"{}\"", sha256_digest(b"stale"));
    let r = send(
        &fake,
        Method::PUT,
        "/v2/r/manifests/v1",
        &[ct[0], ("if-match", &stale)],
        &body2,
    )
    .await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(fake.manifest("r", "v1").unwrap().digest, digest);
    let r = send(
        &fake,
        Method::PUT,
        "/v2/r/manifests/v2",
        &[ct[0], ("if-match", &etag)],
        &body2,
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::PRECONDITION_FAILED,
        "v2 does not exist yet"
    );
    let r = send(
        &fake,
        Method::PUT,
        "/v2/r/manifests/v1",
        &[ct[0], ("if-match", &etag)],
        &body2,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(fake.manifest("r", "v1").unwrap().digest, digest2);

    // A fault answers instead of the registry, and nothing is stored.
    fake.inject_times(
        Match::Method("PUT".into(), Box::new(Match::Any)),
        Fault::Status(503),
        1,
    );
    let r = send(&fake, Method::PUT, "/v2/r/manifests/v3", &ct, &body).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(fake.manifest("r", "v3").is_none());
    assert_eq!(
        send(&fake, Method::PUT, "/v2/r/manifests/v3", &ct, &body)
            .await
            .status(),
        201
    );

    // Delete a tag alone, then a digest with the tags on it.
    assert_eq!(
        send(&fake, Method::DELETE, "/v2/r/manifests/v3", &[], b"")
            .await
            .status(),
        202
    );
    assert!(fake.manifest("r", &digest).is_some());
    let path = format!("/v2/r/manifests/{digest2}");
    assert_eq!(
        send(&fake, Method::DELETE, &path, &[], b"").await.status(),
        202
    );
    assert!(fake.manifest("r", "v1").is_none());
    assert_eq!(
        send(&fake, Method::DELETE, &path, &[], b"").await.status(),
        404
    );
    let off = FakeRegistry::builder().deletes(false).start();
    assert_eq!(
        send(&off, Method::DELETE, &path, &[], b"").await.status(),
        405
    );
}

#[tokio::test]
async fn referrers_api_lists_filters_and_switches_off() {
    let fake = FakeRegistry::start();
    let subject = sha256_digest(b"the subject");
    let ct = [("content-type", OCI_MANIFEST)];
    let mut pushed = Vec::new();
    for t in ["application/x-a", "application/x+b"] {
        let (body, digest) = push_artifact(&fake, "r", &subject, t).await;
        let path = format!("/v2/r/manifests/{digest}");
        assert_eq!(
            send(&fake, Method::PUT, &path, &ct, &body).await.status(),
            201
        );
        pushed.push((digest, body.len(), t));
    }
    let (unrelated, d) =
        push_artifact(&fake, "r", &sha256_digest(b"other"), "application/x-a").await;
    send(
        &fake,
        Method::PUT,
        &format!("/v2/r/manifests/{d}"),
        &ct,
        &unrelated,
    )
    .await;

    let path = format!("/v2/r/referrers/{subject}");
    let r = send(&fake, Method::GET, &path, &[], b"").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("oci-filters-applied").is_none());
    let index: serde_json::Value = r.json().await.unwrap();
    let entry = |m: &serde_json::Value| {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        let size = m["size"].as_u64().unwrap() as usize;
        let (digest, t) = (text(&m["digest"]), text(&m["artifactType"]));
        (
            digest,
            size,
            t,
            text(&m["annotations"]["k"]),
            text(&m["mediaType"]),
        )
    };
    let mut got: Vec<_> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(entry)
        .collect();
    got.sort();
    let mut want: Vec<_> = pushed
        .iter()
        .map(|(d, s, t)| {
            (
                d.clone(),
                *s,
                t.to_string(),
                t.to_string(),
                OCI_MANIFEST.to_owned(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(got, want);

    // `+` must be sent as %2B: a literal `+` is a space, as in Go's query parsing.
    let r = send(
        &fake,
        Method::GET,
        &format!("{path}?artifactType=application%2Fx%2Bb"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let index: serde_json::Value = r.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["digest"], pushed[1].0.as_str());
    let r = send(
        &fake,
        Method::GET,
        &format!("{path}?artifactType=application/x+b"),
        &[],
        b"",
    )
    .await;
    let index: serde_json::Value = r.json().await.unwrap();
    assert_eq!(index["manifests"], serde_json::json!([]));

    assert_eq!(
        send(&fake, Method::GET, "/v2/r/referrers/nonsense", &[], b"")
            .await
            .status(),
        400
    );
    fake.set_referrers_api(false);
    let r = send(&fake, Method::GET, &path, &[], b"").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "404 page not found\n");
    let (body, digest) = push_artifact(&fake, "r", &subject, "application/x-c").await;
    let r = send(
        &fake,
        Method::PUT,
        &format!("/v2/r/manifests/{digest}"),
        &ct,
        &body,
    )
    .await;
    assert_eq!(r.status(), 201);
    assert!(
        r.headers().get("oci-subject").is_none(),
        "no API, no OCI-Subject"
    );
}
