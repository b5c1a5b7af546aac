//! How the pipeline fails: status codes, per-request credentials, notices for unreadable
//! layers, retried server errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::support::*;
use sidescan_sdk::pipeline::ScanJob;
use sidescan_sdk::prelude::*;
use sidescan_testkit::digest::sha256_digest;
use tokio::io::AsyncReadExt as _;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_status_codes() {
    let reg = start_registry(None);
    let pushed = push_image(&reg, "app", "1", &[vec![E::File("a", b"aaaa")]], "amd64").await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let scanner: Arc<dyn Scanner> = Recorder::new(Input::PerLayer);
    let code = |r: Result<sidescan_sdk::pipeline::PipelineOutcome, Error>| {
        r.map(|_| ()).unwrap_err().code()
    };
    assert_eq!(
        code(p.scan(&scanner, &job(&reg, "app:nope"), &ctx()).await),
        Code::NotFound
    );
    assert_eq!(
        code(p.scan(&scanner, &job(&reg, "nothere:1"), &ctx()).await),
        Code::NotFound
    );
    assert_eq!(
        code(p.scan(&scanner, &job(&reg, "Bad/Name"), &ctx()).await),
        Code::InvalidArgument
    );
    let mut j = job(&reg, "127.0.0.1:1/app:1");
    assert_eq!(
        code(p.scan(&scanner, &j, &ctx()).await),
        Code::InvalidArgument
    );
    j.registry_url = format!(
        "http://127.0.0.1:{}",
        sidescan_testkit::process::free_port()
    );
    j.image = "app:1".into();
    assert_eq!(code(p.scan(&scanner, &j, &ctx()).await), Code::Unavailable);
    // https against a plain-http registry fails, not hangs
    let mut j = job(&reg, "app:1");
    j.registry_url = reg.host();
    assert_eq!(code(p.scan(&scanner, &j, &ctx()).await), Code::Unavailable);
    j.insecure = true;
    p.scan(&scanner, &j, &ctx()).await.unwrap();
    // allowlist
    let denied = pipeline_with(dir.path(), |o| {
        o.allowed_registries = vec!["registry.example.com".into()]
    });
    assert_eq!(
        denied.validate(&job(&reg, "app:1")).unwrap_err().code(),
        Code::PermissionDenied
    );
    // non-image artifact: the default plugin cannot scan it
    let client = oci(&reg);
    let cfg = push_blob(&reg, &client, "rules", b"{}").await;
    let rules = push_blob(&reg, &client, "rules", b"- rule: x").await;
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.cncf.falco.rulesfile.config.v1+json", "digest": cfg, "size": 2},
        "layers": [{"mediaType": "application/vnd.cncf.falco.rulesfile.layer.v1+tar.gz", "digest": rules, "size": 9}],
    })
    .to_string();
    push_manifest(&reg, "rules", "1", manifest.as_bytes(), OCI_MANIFEST).await;
    assert_eq!(
        code(p.scan(&scanner, &job(&reg, "rules:1"), &ctx()).await),
        Code::FailedPrecondition
    );
    // tampered layer in the registry: DATA_LOSS, nothing reported
    let fresh = tempfile::tempdir().unwrap();
    let p2 = pipeline(fresh.path());
    let f = blob_file(&reg, &pushed.layer_digests[0]);
    let mut bytes = std::fs::read(&f).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&f, &bytes).unwrap();
    let err = p2
        .scan(&scanner, &job(&reg, "app:1"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err}");
    assert!(err.message().contains(&pushed.layer_digests[0]), "{err}");
    assert!(scratch_is_empty(fresh.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_per_request() {
    let reg = start_registry(Some(("alice", "wonderland")));
    push_image(
        &reg,
        "private",
        "1",
        &[vec![E::File("KEY", b"KEY")]],
        "amd64",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let scanner: Arc<dyn Scanner> = Recorder::new(Input::PerLayer);
    let basic = |u: &str, pw: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
        )
    };
    let mut j = job(&reg, "private:1");
    j.authorization = basic("alice", "wonderland");
    assert_eq!(
        p.scan(&scanner, &j, &ctx())
            .await
            .unwrap()
            .findings
            .findings
            .len(),
        1
    );
    // the good credentials of the previous request must not leak into these
    for auth in [String::new(), basic("alice", "wrong")] {
        let mut j = job(&reg, "private:1");
        j.authorization = auth.clone();
        let err = p.scan(&scanner, &j, &ctx()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{auth:?}: {err}");
        assert!(!err.message().contains("wrong"));
    }
    j.authorization = "Token abc".into();
    assert_eq!(p.validate(&j).unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_layers_get_notices_and_progress_is_reported() {
    let reg = start_registry(None);
    let client = oci(&reg);
    let t = tar_of(&[E::File("etc/KEY", b"KEY docker")]);
    let blob = gz(&t);
    let layer = push_blob(&reg, &client, "mixed", &blob).await;
    let odd = push_blob(&reg, &client, "mixed", b"not a tar").await;
    let foreign = sha256_digest(b"foreign layer not in the registry");
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&t), sha256_digest(b"x"), sha256_digest(b"y")]},
    })
    .to_string();
    let config_digest = push_blob(&reg, &client, "mixed", config.as_bytes()).await;
    const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": blob.len()},
            {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": foreign, "size": 33,
             "urls": ["https://example.invalid/layer"]},
            {"mediaType": "application/x-odd-layer", "digest": odd, "size": 9},
        ],
    })
    .to_string();
    push_manifest(&reg, "mixed", "1", manifest.as_bytes(), DOCKER).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let scanner: Arc<dyn Scanner> = Recorder::new(Input::PerLayer);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let mut c = ctx();
    c.progress = sidescan_sdk::ProgressSink::new(tx);
    let out = p.scan(&scanner, &job(&reg, "mixed:1"), &c).await.unwrap();
    assert_eq!(out.image.media_type, DOCKER);
    assert_eq!(out.findings.findings.len(), 1);
    let notices: Vec<(&str, &str)> = out
        .findings
        .notices
        .iter()
        .map(|n| (n.code.as_str(), n.layer_digest.as_str()))
        .collect();
    assert_eq!(
        notices,
        vec![
            ("non-distributable-layer", foreign.as_str()),
            ("unsupported-media-type", odd.as_str())
        ]
    );
    drop(c);
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert!(
        events
            .iter()
            .any(|e| e.phase == sidescan_sdk::Phase::Resolving)
    );
    assert!(
        events
            .iter()
            .any(|e| e.phase == sidescan_sdk::Phase::Downloading
                && e.bytes_total == blob.len() as u64
                && e.bytes_done == e.bytes_total),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.phase == sidescan_sdk::Phase::Scanning && e.layers_total == 3)
    );
}

/// A registry that answers 503 to everything: the pipeline retries a bounded number of times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_unavailable() {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                if String::from_utf8_lossy(&buf[..n]).contains("/manifests/") {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let scanner: Arc<dyn Scanner> = Recorder::new(Input::PerLayer);
    let j = ScanJob {
        image: "app:1".into(),
        registry_url: format!("http://127.0.0.1:{port}"),
        ..Default::default()
    };
    let err = p.scan(&scanner, &j, &ctx()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("503"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 4, "1 try + 3 retries");
    assert!(scratch_is_empty(dir.path()));
}
