//! The SDK's registry access: a real registry with token auth (Basic credentials exchanged for a
//! bearer token, and bearer tokens passed through), and a fault-injecting fake registry for what a
//! real one won't do (5xx, wrong bytes, truncation, stalls, refusals).

use std::time::Duration;

use sidescan_sdk::Limits;
use sidescan_sdk::pipeline::{Pipeline, PipelineOutcome, ScanJob};
use sidescan_sdk::prelude::*;
use sidescan_testkit::fake_registry::{FakeRegistry, Fault, Match};
use sidescan_testkit::fixtures::{self, Entry, Image, Layer};
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::registry::Registry;
use tonic::Code;

use crate::support;

/// A base layer shared by every image here plus a top layer of its own.
fn image(top_file: &str) -> Artifact {
    Image::new()
        .layer(fixtures::base_layer())
        .layer(Layer::new([Entry::file(
            top_file,
            format!("{top_file}\n").into_bytes(),
        )]))
        .build()
}

async fn scan(
    pipeline: &Pipeline,
    dir: &std::path::Path,
    registry_url: &str,
    image: &str,
    authorization: &str,
) -> Result<PipelineOutcome, Error> {
    let job = ScanJob {
        image: image.into(),
        registry_url: registry_url.into(),
        authorization: authorization.into(),
        ..ScanJob::default()
    };
    pipeline
        .scan(
            &support::reader(Input::PerLayer),
            &job,
            &support::context(dir),
        )
        .await
}

fn code<T>(result: &Result<T, Error>) -> Option<Code> {
    result.as_ref().err().map(Error::code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_exchanges_basic_credentials_and_passes_bearer_tokens() {
    let registry = Registry::token();
    let digest = registry.push(&image("app/a"), "team/app", "1").await;
    let dir = tempfile::tempdir().unwrap();
    let p = support::pipeline(dir.path(), Limits::default());
    let url = registry.url();
    let basic = registry.authorization().expect("credentials");

    let ok = scan(&p, dir.path(), &url, "team/app:1", &basic)
        .await
        .expect("Basic via token exchange");
    assert_eq!(ok.image.digest, digest);
    let wrong = sidescan_testkit::registry::basic_authorization("sidescan", "wrong-password");
    assert_eq!(
        code(&scan(&p, dir.path(), &url, "team/app:1", &wrong).await),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        code(&scan(&p, dir.path(), &url, "team/app:1", "").await),
        Some(Code::Unauthenticated)
    );

    let bearer = registry.bearer_authorization("team/app", &["pull"]);
    let ok = scan(&p, dir.path(), &url, "team/app:1", &bearer)
        .await
        .expect("Bearer passed through");
    assert_eq!(ok.image.digest, digest);
    let other_repo = registry.bearer_authorization("team/other", &["pull"]);
    let refused = code(&scan(&p, dir.path(), &url, "team/app:1", &other_repo).await);
    assert!(
        matches!(
            refused,
            Some(Code::Unauthenticated | Code::PermissionDenied)
        ),
        "token for another repository: {refused:?}"
    );
    assert!(support::scratch_is_empty(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_server_errors_are_retried_and_persistent_ones_are_unavailable() {
    let fake = FakeRegistry::start();
    let img = image("app/a");
    fake.add("r/app", "1", &img);
    let layer = img.layers[1].blob.digest.clone();
    let dir = tempfile::tempdir().unwrap();
    let p = support::pipeline(dir.path(), Limits::default());

    fake.inject_times(Match::Digest(layer.clone()), Fault::Status(503), 2);
    scan(&p, dir.path(), &fake.url(), "r/app:1", "")
        .await
        .expect("two 503s then success");
    assert_eq!(fake.blob_gets(&layer), 3, "exactly two retries");

    let fresh = tempfile::tempdir().unwrap();
    let p = support::pipeline(fresh.path(), Limits::default());
    fake.clear_faults();
    fake.inject(Match::Digest(layer), Fault::Status(500));
    let result = scan(&p, fresh.path(), &fake.url(), "r/app:1", "").await;
    assert_eq!(code(&result), Some(Code::Unavailable), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_that_does_not_match_its_digest_is_data_loss() {
    let fake = FakeRegistry::start();
    let img = image("app/a");
    fake.add("r/app", "1", &img);
    fake.inject(
        Match::Digest(img.layers[1].blob.digest.clone()),
        Fault::WrongBytes,
    );
    let dir = tempfile::tempdir().unwrap();
    let p = support::pipeline(dir.path(), Limits::default());
    let result = scan(&p, dir.path(), &fake.url(), "r/app:1", "").await;
    assert_eq!(code(&result), Some(Code::DataLoss), "{result:?}");
    assert!(support::scratch_is_empty(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_transfers_resume_and_verify_or_end_unavailable() {
    let img = image("app/a");
    let layer = img.layers[1].blob.digest.clone();

    // Cut once after 64 bytes: the download resumes (Range) and the whole blob is verified.
    let fake = FakeRegistry::start();
    fake.add("r/app", "1", &img);
    fake.inject_times(
        Match::Digest(layer.clone()),
        Fault::Truncate { after: 64 },
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let p = support::pipeline(dir.path(), Limits::default());
    let ok = scan(&p, dir.path(), &fake.url(), "r/app:1", "")
        .await
        .expect("resumed download");
    assert_eq!(ok.image.digest, img.digest());
    assert_eq!(fake.blob_gets(&layer), 2, "one cut transfer, one resumed");

    // Cut before any byte, every time: no progress is possible, the registry is unavailable.
    let fake = FakeRegistry::start();
    fake.add("r/app", "1", &img);
    fake.inject(Match::Digest(layer), Fault::Truncate { after: 0 });
    let dir = tempfile::tempdir().unwrap();
    let p = support::pipeline(dir.path(), Limits::default());
    let result = scan(&p, dir.path(), &fake.url(), "r/app:1", "").await;
    assert_eq!(code(&result), Some(Code::Unavailable), "{result:?}");
    assert!(support::scratch_is_empty(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_refusals_map_to_their_status_codes() {
    for (status, want) in [
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (404, Code::NotFound),
    ] {
        let fake = FakeRegistry::start();
        fake.add("r/app", "1", &image("app/a"));
        fake.inject(
            Match::PathContains("/manifests/".into()),
            Fault::Status(status),
        );
        let dir = tempfile::tempdir().unwrap();
        let p = support::pipeline(dir.path(), Limits::default());
        let result = scan(&p, dir.path(), &fake.url(), "r/app:1", "").await;
        assert_eq!(code(&result), Some(want), "HTTP {status}: {result:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_blob_is_cut_by_the_caller_and_leaves_nothing_behind() {
    let fake = FakeRegistry::start();
    let img = image("app/a");
    fake.add("r/app", "1", &img);
    fake.inject(
        Match::Digest(img.layers[1].blob.digest.clone()),
        Fault::StallAfter { after: 16 },
    );
    let dir = tempfile::tempdir().unwrap();
    let p = support::pipeline(dir.path(), Limits::default());
    let cut = tokio::time::timeout(
        Duration::from_secs(2),
        scan(&p, dir.path(), &fake.url(), "r/app:1", ""),
    )
    .await;
    assert!(
        cut.is_err(),
        "a stalled blob did not stall the scan: {cut:?}"
    );
    // Dropping the scan removes its scratch dir (cleanup may finish on a blocking thread).
    let mut waited = Duration::ZERO;
    while !support::scratch_is_empty(dir.path()) && waited < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    assert!(
        support::scratch_is_empty(dir.path()),
        "scratch left behind after cancellation"
    );
    fake.clear_faults();
    scan(&p, dir.path(), &fake.url(), "r/app:1", "")
        .await
        .expect("next scan after a cancelled one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scans_sharing_a_base_layer_download_it_once() {
    let fake = FakeRegistry::start();
    let (one, two) = (image("app/one"), image("app/two"));
    assert_eq!(
        one.layers[0].blob.digest, two.layers[0].blob.digest,
        "fixtures share the base layer"
    );
    fake.add("r/one", "1", &one);
    fake.add("r/two", "1", &two);
    // Slow the shared blob down so both scans want it at the same time.
    let base = one.layers[0].blob.digest.clone();
    fake.inject(
        Match::Digest(base.clone()),
        Fault::Dribble {
            chunk: 4096,
            interval: Duration::from_millis(5),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let p = support::pipeline(dir.path(), Limits::default());
    let url = fake.url();
    let (a, b) = tokio::join!(
        scan(&p, dir.path(), &url, "r/one:1", ""),
        scan(&p, dir.path(), &url, "r/two:1", "")
    );
    a.expect("first scan");
    b.expect("second scan");
    assert_eq!(
        fake.blob_gets(&base),
        1,
        "the shared base layer was downloaded more than once"
    );
}
