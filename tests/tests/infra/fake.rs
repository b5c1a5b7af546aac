//! The fault-injecting fake registry: serving and counting, each fault, Basic auth, drop.

use super::*;
use sidescan_testkit::fake_registry::{FakeRegistry, Fault, Match};
use sidescan_testkit::oci::sha256_digest;
use std::time::{Duration, Instant};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn setup() -> (FakeRegistry, Artifact, String) {
    let fake = FakeRegistry::start();
    let img = fixtures::clean_image();
    fake.add("lib/clean", "v1", &img);
    let blob_path = format!("/v2/lib/clean/blobs/{}", img.layers[0].blob.digest);
    (fake, img, blob_path)
}

#[tokio::test]
async fn serves_manifests_and_blobs_and_counts_requests() {
    let (fake, img, blob_path) = setup();
    assert!(fake.url().starts_with("http://127.0.0.1:"));
    let c = http();
    assert_eq!(
        c.get(format!("{}/v2/", fake.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = c
        .get(format!("{}/v2/lib/clean/manifests/v1", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        sidescan_testkit::oci::OCI_MANIFEST
    );
    assert_eq!(r.headers()["docker-content-digest"], img.digest());
    assert_eq!(r.bytes().await.unwrap(), img.manifest.data);
    let r = c
        .head(format!("{}{blob_path}", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        img.layers[0].blob.data.len().to_string()
    );
    let body = c
        .get(format!("{}{blob_path}", fake.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_digest(&body), img.layers[0].blob.digest);
    // Range requests resume.
    let r = c
        .get(format!("{}{blob_path}", fake.url()))
        .header("range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.bytes().await.unwrap(),
        img.layers[0].blob.data.slice(10..)
    );
    // Unknown things are 404 with OCI error codes.
    let r = c
        .get(format!("{}/v2/lib/clean/manifests/nope", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("MANIFEST_UNKNOWN"));
    assert_eq!(fake.requests(&blob_path), 3);
    assert_eq!(fake.blob_gets(&img.layers[0].blob.digest), 2);
    assert_eq!(fake.manifest_gets("lib/clean", "v1"), 1);
    assert_eq!(fake.total_requests(), 6);
    fake.reset_counters();
    assert_eq!(fake.total_requests(), 0);
    // The same digest in the client's eyes: the fake serves the whole artifact.
    let client = RegistryClient::new(&fake.url(), None);
    for b in img.all_blobs() {
        assert_eq!(
            client.get_blob("lib/clean", &b.digest).await.unwrap(),
            b.data
        );
    }
    assert_eq!(
        client.tags("lib/clean").await.unwrap(),
        vec!["v1".to_owned()]
    );
}

#[tokio::test]
async fn wrong_bytes_keep_length_but_break_digest() {
    let (fake, img, blob_path) = setup();
    let digest = img.layers[0].blob.digest.clone();
    fake.inject(Match::Digest(digest.clone()), Fault::WrongBytes);
    let body = http()
        .get(format!("{}{blob_path}", fake.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), img.layers[0].blob.data.len());
    assert_ne!(sha256_digest(&body), digest);
    // Manifests are untouched by a blob fault.
    let m = RegistryClient::new(&fake.url(), None)
        .get_manifest("lib/clean", "v1")
        .await
        .unwrap();
    assert_eq!(m.data, img.manifest.data);
}

#[tokio::test]
async fn truncate_cuts_the_connection_mid_body() {
    let (fake, img, blob_path) = setup();
    fake.inject(
        Match::Path(blob_path.clone()),
        Fault::Truncate { after: 100 },
    );
    let r = http()
        .get(format!("{}{blob_path}", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        img.layers[0].blob.data.len().to_string()
    );
    assert!(
        r.bytes().await.is_err(),
        "a truncated body must fail to read"
    );
}

#[tokio::test]
async fn replace_serves_short_consistent_body() {
    let (fake, _img, blob_path) = setup();
    fake.inject(
        Match::Path(blob_path.clone()),
        Fault::Replace(bytes::Bytes::from_static(b"short")),
    );
    let body = http()
        .get(format!("{}{blob_path}", fake.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], b"short");
}

#[tokio::test]
async fn status_n_times_then_ok() {
    let (fake, _img, blob_path) = setup();
    fake.inject_times(Match::Path(blob_path.clone()), Fault::Status(503), 2);
    let c = http();
    let url = format!("{}{blob_path}", fake.url());
    assert_eq!(c.get(&url).send().await.unwrap().status(), 503);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 503);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(fake.requests(&blob_path), 3);
    // Always-on statuses: 401 with a challenge, 403, 404, 500.
    for code in [401u16, 403, 404, 500] {
        fake.clear_faults();
        fake.inject(
            Match::PathContains("/manifests/".into()),
            Fault::Status(code),
        );
        let r = c
            .get(format!("{}/v2/lib/clean/manifests/v1", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code);
        assert_eq!(r.headers().contains_key("www-authenticate"), code == 401);
        let r2 = c
            .get(format!("{}/v2/lib/clean/manifests/v1", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r2.status().as_u16(), code, "always-on fault stays on");
    }
    fake.clear_faults();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn stall_never_answers() {
    let (fake, _img, blob_path) = setup();
    fake.inject(Match::Path(blob_path.clone()), Fault::Stall);
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let t = Instant::now();
    let err = c
        .get(format!("{}{blob_path}", fake.url()))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(450));
    // Other paths still answer while one request hangs.
    assert_eq!(
        c.get(format!("{}/v2/", fake.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn stall_after_sends_headers_then_hangs() {
    let (fake, _img, blob_path) = setup();
    fake.inject(
        Match::Path(blob_path.clone()),
        Fault::StallAfter { after: 10 },
    );
    let c = reqwest::Client::builder()
        .no_proxy()
        .read_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let r = c
        .get(format!("{}{blob_path}", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let err = r.bytes().await.unwrap_err();
    assert!(err.is_timeout() || err.is_body(), "{err}");
}

#[tokio::test]
async fn dribble_is_slow_but_complete() {
    let (fake, img, _) = setup();
    let cfg = img.config.clone().unwrap();
    fake.inject(
        Match::Digest(cfg.digest.clone()),
        Fault::Dribble {
            chunk: cfg.data.len().div_ceil(5),
            interval: Duration::from_millis(100),
        },
    );
    let t = Instant::now();
    let body = http()
        .get(format!("{}/v2/lib/clean/blobs/{}", fake.url(), cfg.digest))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body, cfg.data);
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn require_basic_auth() {
    let (fake, img, _) = setup();
    fake.require_basic("u", "p");
    let anon = RegistryClient::new(&fake.url(), None);
    assert_eq!(
        anon.get_manifest("lib/clean", "v1")
            .await
            .unwrap_err()
            .status,
        Some(401)
    );
    let wrong = RegistryClient::new(&fake.url(), Some(("u", "x")));
    assert_eq!(
        wrong
            .get_manifest("lib/clean", "v1")
            .await
            .unwrap_err()
            .status,
        Some(401)
    );
    let ok = RegistryClient::new(&fake.url(), Some(("u", "p")));
    assert_eq!(
        ok.get_manifest("lib/clean", "v1").await.unwrap().data,
        img.manifest.data
    );
    assert!(
        fake.request_log()
            .iter()
            .any(|r| r.authorization.as_deref() == Some(&basic_authorization("u", "p")))
    );
}

#[test]
fn stops_on_drop() {
    let fake = FakeRegistry::start();
    let addr = fake.addr();
    fake.inject(Match::Any, Fault::Stall);
    // A hanging connection must not keep the server alive.
    let _hung = std::net::TcpStream::connect(addr).unwrap();
    drop(fake);
    std::thread::sleep(Duration::from_millis(200));
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err());
}
