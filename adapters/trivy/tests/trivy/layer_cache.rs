//! Trivy's per-layer cache kept across scans (`--layer-cache-max-size`): a second image on the
//! same base reports the same findings, attributed to its own blobs (even when the base was
//! compressed differently), and the cache lives in one directory per process slot beside the
//! shared DB; with the cap at 0 nothing is kept.

use sidescan_sdk::prelude::*;
use sidescan_testkit::fixtures::{Compression, Entry, Image, Layer};

use crate::common::fixture_db::*;
use crate::common::{World, images};
use crate::{UPDATED_AT, key, vulns};

/// The fixture's Alpine base with another app layer on top, the base compressed with `base`.
fn alpine_app(base: Compression, file: &str) -> sidescan_testkit::oci::Artifact {
    Image::new()
        .layer(images::alpine_base_layer().compression(base))
        .layer(Layer::new([
            Entry::dir("app"),
            Entry::file(file, "other\n"),
        ]))
        .build()
}

fn expected() -> Vec<(String, String)> {
    vec![
        key(CVE_ALPINE_OPENSSL, "libcrypto3"),
        key(CVE_ALPINE_OPENSSL, "libssl3"),
        key(CVE_ALPINE_ZLIB, "zlib"),
    ]
}

#[tokio::test]
async fn a_second_image_on_a_cached_base_reports_the_same_findings_on_its_own_blobs() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&[]);
    let first = images::alpine_image();
    let out = adapter
        .scan_image(&w.layout("first", &first), &w.ctx("first"))
        .await
        .expect("first scan");
    assert_eq!(
        vulns(&out.findings).keys().cloned().collect::<Vec<_>>(),
        expected()
    );
    let slot = w.cache_dir().join("layer-cache/0");
    assert!(
        slot.join("fanal/fanal.db").is_file(),
        "Trivy's cache is in the slot"
    );
    assert!(
        std::fs::read_link(slot.join("db")).is_ok(),
        "the slot's db is a link to the shared DB"
    );

    // The same base, gzip at another level: another blob digest, the same diff_id, so Trivy
    // serves the base from its cache; the findings must name this image's blob.
    for (name, base) in [
        ("same-blob", Compression::Gzip),
        ("recompressed", Compression::GzipLevel(1)),
    ] {
        let image = alpine_app(base, &format!("app/{name}"));
        let out = adapter
            .scan_image(&w.layout(name, &image), &w.ctx(name))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let v = vulns(&out.findings);
        assert_eq!(v.keys().cloned().collect::<Vec<_>>(), expected(), "{name}");
        let ssl = &v[&key(CVE_ALPINE_OPENSSL, "libssl3")];
        assert_eq!(ssl.layer_diff_id, image.layers[0].diff_id, "{name}");
        assert_eq!(ssl.layer_digest, image.layers[0].blob.digest, "{name}");
    }
    assert_ne!(
        alpine_app(Compression::GzipLevel(1), "x").layers[0]
            .blob
            .digest,
        first.layers[0].blob.digest,
        "the recompressed base really is another blob"
    );
}

#[tokio::test]
async fn with_the_cap_at_zero_nothing_is_kept_between_scans() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&["--layer-cache-max-size", "0"]);
    let out = adapter
        .scan_image(&w.layout("a", &images::alpine_image()), &w.ctx("a"))
        .await
        .expect("scan");
    assert_eq!(
        vulns(&out.findings).keys().cloned().collect::<Vec<_>>(),
        expected()
    );
    assert!(!w.cache_dir().join("layer-cache").exists());
    assert!(
        !w.cache_dir().join("fanal").exists(),
        "Trivy's in-memory cache"
    );
}
