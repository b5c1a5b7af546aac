//! Cases in manifests, configs and blobs as served: lying digests, broken or huge manifests,
//! index loops and depth, unknown media types.

use super::{Expected, HostileCase, assemble, case, img_with};
use crate::fixtures::{
    Entry, Image, Index, Layer, MediaStyle, PseudoRandom, base_layer, config_json, image_manifest,
};
use crate::oci::{Artifact, Blob, OCI_CONFIG, OCI_INDEX, Platform, sha256_digest};
use std::collections::BTreeMap;
use tonic::Code;

/// The manifest names a layer digest whose served bytes are something else.
pub fn wrong_layer_digest() -> HostileCase {
    let mut a = Image::new()
        .layer(base_layer())
        .layer(Layer::new([Entry::file("app/real.txt", "real\n")]))
        .build();
    let other = Layer::new([Entry::file("app/evil.txt", "substituted\n")]).build(MediaStyle::Oci);
    let l = &mut a.layers[1];
    l.blob = Blob::with_digest(
        l.blob.media_type.clone(),
        l.blob.digest.clone(),
        other.blob.data,
    );
    case(
        "wrong-layer-digest",
        "The registry serves different bytes for layer 2's digest (a valid gzip tar, so only the \
         digest check catches it). DATA_LOSS; nothing of it may be scanned or cached.",
        Expected::Fails(&[Code::DataLoss]),
        false,
        a,
    )
}

/// The config's `rootfs.diff_ids` do not match the layers.
pub fn wrong_diff_id() -> HostileCase {
    let layers = vec![
        base_layer().build(MediaStyle::Oci),
        Layer::new([Entry::file("app/x.txt", "x\n")]).build(MediaStyle::Oci),
    ];
    let mut diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    diff_ids[1] = sha256_digest(b"not the uncompressed layer");
    let config = Blob::new(
        OCI_CONFIG,
        serde_json::to_vec(&config_json(&Platform::linux_amd64(), &diff_ids, &[])).expect("json"),
    );
    case(
        "wrong-diff-id",
        "Blob digests are right but the config's rootfs.diff_ids[1] is not the sha256 of the \
         uncompressed layer 2. DATA_LOSS.",
        Expected::Fails(&[Code::DataLoss]),
        true,
        assemble(config, layers),
    )
}

/// A layer blob served truncated.
pub fn truncated_blob() -> HostileCase {
    let mut a = Image::new()
        .layer(base_layer())
        .layer(Layer::new([Entry::pseudo_random(
            "app/data.bin",
            64 * 1024,
            5,
        )]))
        .build();
    let l = &mut a.layers[1];
    let half = l.blob.data.slice(..l.blob.data.len() / 2);
    l.blob = Blob::with_digest(l.blob.media_type.clone(), l.blob.digest.clone(), half);
    case(
        "truncated-blob",
        "Layer 2 is served with only its first half (consistent Content-Length, shorter than the \
         descriptor size). DATA_LOSS (UNAVAILABLE acceptable if reported as a transfer failure \
         after retries).",
        Expected::Fails(&[Code::DataLoss, Code::Unavailable]),
        false,
        a,
    )
}

/// A manifest of `size` bytes (padding in an annotation).
pub fn huge_manifest(size: usize) -> HostileCase {
    let layers = vec![base_layer().build(MediaStyle::Oci)];
    let diff_ids = vec![layers[0].diff_id.clone()];
    let config = Blob::new(
        OCI_CONFIG,
        serde_json::to_vec(&config_json(&Platform::linux_amd64(), &diff_ids, &[])).expect("json"),
    );
    let mut ann = BTreeMap::new();
    ann.insert("org.sidescan.padding".to_owned(), "A".repeat(size));
    let blobs: Vec<Blob> = layers.iter().map(|l| l.blob.clone()).collect();
    let manifest = image_manifest(MediaStyle::Oci, &config, &blobs, &ann);
    let mut a = assemble(config, layers);
    a.manifest = manifest;
    case(
        "huge-manifest",
        "An image manifest over 4 MiB (a huge annotation). Must be refused before parsing it \
         whole: RESOURCE_EXHAUSTED. Real registries refuse the push (distribution limits \
         manifests to 4 MiB); serve it from the fake registry.",
        Expected::Fails(&[Code::ResourceExhausted]),
        false,
        a,
    )
}

/// Index A -> index B -> index A, by digest (needs a lying registry).
pub fn index_loop() -> HostileCase {
    let fake_b_digest = sha256_digest(b"sidescan index loop: B");
    let a_json = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_INDEX, "digest": fake_b_digest, "size": 200,
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    });
    let a = Blob::new(OCI_INDEX, serde_json::to_vec(&a_json).expect("json"));
    let b_json = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_INDEX, "digest": a.digest, "size": a.size(),
                       "platform": {"os": "linux", "architecture": "amd64"}}],
    });
    let b = Blob::with_digest(
        OCI_INDEX,
        fake_b_digest,
        serde_json::to_vec(&b_json).expect("json"),
    );
    let mut art = Artifact::from_manifest(a);
    let mut child = Artifact::from_manifest(b);
    child.platform = Some(Platform::linux_amd64());
    art.children.push(child);
    case(
        "index-loop",
        "Index A lists index B by digest; B (served under that digest by a lying registry) lists A. \
         A verifying SDK stops at B's digest mismatch (DATA_LOSS); a loop or depth check must stop \
         it anyway (FAILED_PRECONDITION). Never loops.",
        Expected::Fails(&[Code::DataLoss, Code::FailedPrecondition]),
        false,
        art,
    )
}

/// `depth` nested indexes over an amd64 image.
pub fn index_too_deep(depth: usize) -> HostileCase {
    let mut a = Image::new()
        .layer(base_layer())
        .layer(Layer::new([Entry::file("app/deep.txt", "deep\n")]))
        .build();
    for _ in 0..depth {
        let mut idx = Index::new(MediaStyle::Oci).child(a).build();
        idx.platform = Some(Platform::linux_amd64());
        a = idx;
    }
    a.platform = None;
    case(
        "index-too-deep",
        "`index_depth` indexes nested in each other above a linux/amd64 image (deeper than the \
         4 levels an SDK should follow). FAILED_PRECONDITION (RESOURCE_EXHAUSTED acceptable).",
        Expected::Fails(&[Code::FailedPrecondition, Code::ResourceExhausted]),
        true,
        a,
    )
}

/// A layer with a media type nobody knows.
pub fn unknown_layer_media_type() -> HostileCase {
    case(
        "unknown-layer-media-type",
        "Layer 2 has media type 'application/vnd.sidescan.unknown.layer.v1+bin'. It cannot be \
         unpacked: skipped with a notice (never reported clean); layer 1 is scanned.",
        Expected::SkippedWithNotice,
        true,
        img_with(
            Layer::raw(PseudoRandom::new(3).bytes(4096))
                .compression(crate::fixtures::Compression::None)
                .media_type("application/vnd.sidescan.unknown.layer.v1+bin"),
        ),
    )
}

/// An image config that is not JSON.
pub fn config_not_json() -> HostileCase {
    let layers = vec![base_layer().build(MediaStyle::Oci)];
    let config = Blob::new(OCI_CONFIG, &b"this is not JSON {\"rootfs\": ["[..]);
    case(
        "config-not-json",
        "The config blob (media type OCI config) is not JSON. FAILED_PRECONDITION (DATA_LOSS \
         acceptable); never INTERNAL.",
        Expected::Fails(&[Code::FailedPrecondition, Code::DataLoss]),
        true,
        assemble(config, layers),
    )
}

/// An image manifest with `layers: []`.
pub fn zero_layers() -> HostileCase {
    let config = Blob::new(
        OCI_CONFIG,
        serde_json::to_vec(&config_json(&Platform::linux_amd64(), &[], &[])).expect("json"),
    );
    case(
        "zero-layers",
        "An image manifest with no layers and a config with empty diff_ids. The scan succeeds with \
         no findings (nothing to scan is not an error); no crash, no INTERNAL.",
        Expected::Succeeds,
        true,
        assemble(config, vec![]),
    )
}
