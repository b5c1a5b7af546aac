//! A hostile registry against the SDK's registry access: endless manifests, error bodies and
//! token responses are never buffered whole, registry text never reaches the caller's error, and
//! redirects and token realms outside `--allow-registry` are refused without being contacted.

use sidescan_sdk::Limits;
use sidescan_sdk::pipeline::{Pipeline, PipelineOptions, PipelineOutcome, ScanJob};
use sidescan_sdk::prelude::*;
use sidescan_testkit::fake_registry::{FakeRegistry, Fault, Match};
use sidescan_testkit::fixtures::{self, Entry, Image, Layer};
use sidescan_testkit::oci::Artifact;
use tonic::Code;

use crate::support;

/// 256 MiB: what a client that buffers would read whole.
const FLOOD: u64 = 256 << 20;
/// What the fake may have produced when the client stops early (the cap plus socket buffers,
/// a few attempts).
const READ_AT_MOST: u64 = 48 << 20;

fn image() -> Artifact {
    Image::new()
        .layer(fixtures::base_layer())
        .layer(Layer::new([Entry::file("top", b"top\n".to_vec())]))
        .build()
}

fn pipeline(dir: &std::path::Path, allowed: &[String]) -> Pipeline {
    std::fs::create_dir_all(dir.join("scratch")).expect("scratch dir");
    Pipeline::new(PipelineOptions {
        cache_dir: dir.join("cache"),
        cache_max_bytes: 1 << 30,
        scratch_root: dir.join("scratch"),
        limits: Limits::default(),
        allowed_registries: allowed.to_vec(),
    })
    .expect("pipeline")
}

async fn scan(p: &Pipeline, dir: &std::path::Path, image: &str) -> Result<PipelineOutcome, Error> {
    let job = ScanJob {
        image: image.into(),
        insecure: true,
        ..ScanJob::default()
    };
    p.scan(
        &support::reader(Input::PerLayer),
        &job,
        &support::context(dir),
    )
    .await
}

fn code<T>(r: &Result<T, Error>) -> Option<Code> {
    r.as_ref().err().map(Error::code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_manifests_error_bodies_and_tokens_are_not_buffered() {
    let fake = FakeRegistry::start();
    let img = image();
    fake.add("r/app", "1", &img);
    let reference = fake.image_ref("r/app", "1");
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &[]);

    // A manifest over max_manifest_bytes: refused from Content-Length, and while streaming
    // when there is none.
    for announce in [true, false] {
        fake.clear_faults();
        fake.inject(
            Match::PathContains("/manifests/".into()),
            Fault::Flood {
                status: 200,
                bytes: FLOOD,
                announce,
            },
        );
        let r = scan(&p, dir.path(), &reference).await;
        assert_eq!(code(&r), Some(Code::ResourceExhausted), "{:?}", r.err());
    }
    assert!(
        fake.flood_bytes_sent() < READ_AT_MOST,
        "{}",
        fake.flood_bytes_sent()
    );

    // Endless error bodies (a 404, and a 500 that is retried): the status decides.
    let layer = img.layers[1].blob.digest.clone();
    for (status, want) in [(404, Code::NotFound), (500, Code::Unavailable)] {
        fake.clear_faults();
        let before = fake.flood_bytes_sent();
        fake.inject(
            Match::Digest(layer.clone()),
            Fault::Flood {
                status,
                bytes: FLOOD,
                announce: false,
            },
        );
        let r = scan(&p, dir.path(), &reference).await;
        assert_eq!(code(&r), Some(want), "{:?}", r.err());
        let sent = fake.flood_bytes_sent() - before;
        assert!(sent < READ_AT_MOST, "HTTP {status}: {sent} bytes");
        assert!(!r.unwrap_err().message().contains("xxxx"));
    }

    // Registry text never reaches the caller.
    fake.clear_faults();
    let planted = r#"{"errors":[{"code":"DENIED","message":"planted-registry-text"}]}"#;
    fake.inject(
        Match::PathContains("/manifests/".into()),
        Fault::Respond {
            status: 403,
            body: planted.into(),
        },
    );
    let err = scan(&p, dir.path(), &reference).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert!(!err.message().contains("planted"), "{err}");
    assert!(err.message().contains(&fake.host()), "{err}");

    // An endless token response.
    fake.clear_faults();
    let before = fake.flood_bytes_sent();
    fake.inject(
        Match::PathContains("/manifests/".into()),
        Fault::Challenge(format!(
            r#"Bearer realm="{}/token",service="fake""#,
            fake.url()
        )),
    );
    fake.inject(
        Match::Path("/token".into()),
        Fault::Flood {
            status: 200,
            bytes: FLOOD,
            announce: false,
        },
    );
    let r = scan(&p, dir.path(), &reference).await;
    assert_eq!(code(&r), Some(Code::Unavailable), "{:?}", r.err());
    assert!(fake.requests("/token") >= 1);
    let sent = fake.flood_bytes_sent() - before;
    assert!(sent < READ_AT_MOST, "token: {sent} bytes");
    assert!(support::scratch_is_empty(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_token_realms_outside_the_allowlist_are_refused() {
    let fake = FakeRegistry::start();
    let elsewhere = FakeRegistry::start();
    let img = image();
    fake.add("r/app", "1", &img);
    elsewhere.add("r/app", "1", &img);
    let reference = fake.image_ref("r/app", "1");
    let only_fake = [fake.host()];
    let both = [fake.host(), elsewhere.host()];
    let layer = img.layers[1].blob.digest.clone();

    let cases = [
        (
            "manifest redirect",
            Match::PathContains("/manifests/".into()),
            Fault::Redirect {
                status: 307,
                location: format!("{}/v2/r/app/manifests/1", elsewhere.url()),
            },
        ),
        (
            "blob redirect",
            Match::Digest(layer.clone()),
            Fault::Redirect {
                status: 302,
                location: format!("{}/v2/r/app/blobs/{layer}", elsewhere.url()),
            },
        ),
        (
            "token realm",
            Match::PathContains("/manifests/".into()),
            Fault::Challenge(format!(
                r#"Bearer realm="{}/token",service="fake""#,
                elsewhere.url()
            )),
        ),
    ];
    for (what, matcher, fault) in cases {
        fake.clear_faults();
        fake.inject(matcher, fault);
        elsewhere.reset_counters();
        let dir = tempfile::tempdir().unwrap();
        let err = scan(&pipeline(dir.path(), &only_fake), dir.path(), &reference)
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::PermissionDenied, "{what}: {err}");
        assert!(err.message().contains(&elsewhere.host()), "{what}: {err}");
        assert_eq!(elsewhere.total_requests(), 0, "{what}: contacted");
        if what == "token realm" {
            continue;
        }
        // Allowed hosts, or no allowlist at all: followed as before.
        for allowed in [&both[..], &[]] {
            let dir = tempfile::tempdir().unwrap();
            let ok = scan(&pipeline(dir.path(), allowed), dir.path(), &reference).await;
            assert!(ok.is_ok(), "{what} with {allowed:?}: {:?}", ok.err());
        }
        assert!(elsewhere.total_requests() > 0, "{what}: followed");
    }
}
