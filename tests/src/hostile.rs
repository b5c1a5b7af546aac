//! The hostile corpus: layers and manifests a safe SDK must survive, each with a name,
//! what it does, and what a safe SDK must answer ([`Expected`]).
//!
//! Escapes are aimed at canary files named `sidescan-canary-*` (mostly in `/tmp`, via
//! enough `..` to reach `/` from any depth), never at real system files, so that a
//! buggy extractor running as root in CI cannot damage the machine; [`find_canaries`]
//! tells whether one escaped. Cases that a real registry refuses (lying digests, a
//! manifest over 4 MiB) have `real_registry == false`: serve them with
//! [`crate::fake_registry::FakeRegistry::add`].
//!
//! Sizes of the bombs are set by [`HostileSizes`]; SDK tests configure limits below them.

use crate::fixtures::{
    Entry, Image, Index, Layer, MediaStyle, PseudoRandom, base_layer, config_json, image_manifest,
    index_manifest, zeros_gzip_layer,
};
use crate::oci::{Artifact, Blob, OCI_CONFIG, OCI_INDEX, Platform, sha256_digest};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tonic::Code;

/// Prefix of every canary file name an escaping entry would create.
pub const CANARY_PREFIX: &str = "sidescan-canary-";

/// File the `whiteout-traversal` case tries to delete: create it before the scan and
/// check it still exists after.
pub const WHITEOUT_VICTIM: &str = "/tmp/sidescan-canary-whiteout-victim";

/// Content of `etc/passwd` inside the hardlink cases (a confined link must show this,
/// never the host's `/etc/passwd`).
pub const FIXTURE_PASSWD: &str = "root:x:0:0:sidescan fixture:/root:/bin/sh\n";

/// Enough `..` to reach `/` from any scratch directory.
const UP: &str = "../../../../../../../../../../../../../../../..";

/// What a safe SDK must do with a hostile case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The scan fails with one of these gRPC codes (the first is the preferred one).
    Fails(&'static [Code]),
    /// The scan succeeds; the offending entries are not materialised (nothing is
    /// created, changed, deleted or linked outside the scan root) and the report has a
    /// notice saying what was skipped: nothing unscanned may pass as clean.
    SkippedWithNotice,
    /// The scan succeeds and the entry is confined to the scan root (`/x` is
    /// extracted as `<root>/x`, a link to `/etc/passwd` means the image's
    /// `etc/passwd`), as `tar` and `umoci` do; skipping it with a notice is also
    /// acceptable.
    Confined,
    /// The scan succeeds normally (see the case description for what it must find).
    Succeeds,
}

impl Expected {
    /// Whether a failed scan with `code` meets this expectation.
    pub fn accepts_code(&self, code: Code) -> bool {
        matches!(self, Expected::Fails(codes) if codes.contains(&code))
    }

    /// Whether the scan is expected to succeed.
    pub fn succeeds(&self) -> bool {
        !matches!(self, Expected::Fails(_))
    }
}

/// One hostile case.
#[derive(Clone, Debug)]
pub struct HostileCase {
    /// Stable kebab-case name (use it as repository name and in test names).
    pub name: &'static str,
    /// What the case does and what a safe SDK must do.
    pub description: &'static str,
    /// Required outcome.
    pub expected: Expected,
    /// The artifact (tag it with any tag).
    pub artifact: Artifact,
    /// Whether a real registry (distribution 2.8) accepts the push; if not, serve it
    /// with the fake registry.
    pub real_registry: bool,
}

/// Sizes of the resource-exhaustion cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostileSizes {
    /// Uncompressed size of the gzip bomb (zeros; the blob is ~1/1000 of it).
    pub gzip_bomb_bytes: u64,
    /// Number of entries in the tar bomb.
    pub tar_bomb_entries: usize,
    /// Size of the single huge (incompressible) file; held in memory once.
    pub huge_file_bytes: u64,
    /// Size of the huge manifest (over distribution's 4 MiB limit by default).
    pub huge_manifest_bytes: usize,
    /// Nesting depth of the deep index (indexes above the image).
    pub index_depth: usize,
}

impl Default for HostileSizes {
    fn default() -> Self {
        Self {
            gzip_bomb_bytes: 1 << 30,
            tar_bomb_entries: 100_000,
            huge_file_bytes: 8 << 20,
            huge_manifest_bytes: (4 << 20) + (1 << 20),
            index_depth: 6,
        }
    }
}

fn img_with(layer: Layer) -> Artifact {
    Image::new().layer(base_layer()).layer(layer).build()
}

fn case(
    name: &'static str,
    description: &'static str,
    expected: Expected,
    real_registry: bool,
    artifact: Artifact,
) -> HostileCase {
    HostileCase {
        name,
        description,
        expected,
        artifact,
        real_registry,
    }
}

/// `../` paths: one deep enough to land in `/tmp/sidescan-canary-traversal`, one two
/// levels above the layer root, next to a normal file.
pub fn path_traversal() -> HostileCase {
    case(
        "path-traversal",
        "Entries '<many ../>/tmp/sidescan-canary-traversal' and '../../sidescan-canary-traversal-up2' \
         next to a normal file. They must not be written outside the root: skipped with a notice; \
         the rest of the layer is scanned.",
        Expected::SkippedWithNotice,
        true,
        img_with(Layer::new([
            Entry::file("app/ok.txt", "ok\n"),
            Entry::file(format!("{UP}/tmp/sidescan-canary-traversal"), "escaped\n"),
            Entry::file("../../sidescan-canary-traversal-up2", "escaped\n"),
        ])),
    )
}

/// An absolute path `/tmp/sidescan-canary-absolute`.
pub fn absolute_path() -> HostileCase {
    case(
        "absolute-path",
        "Entry '/tmp/sidescan-canary-absolute'. Must stay inside the root (extracted as \
         '<root>/tmp/sidescan-canary-absolute', or skipped with a notice), never written to the \
         host's /tmp.",
        Expected::Confined,
        true,
        img_with(Layer::new([Entry::file(
            "/tmp/sidescan-canary-absolute",
            "abs\n",
        )])),
    )
}

/// `escape -> /` then a file written through it.
pub fn symlink_escape_write_through() -> HostileCase {
    case(
        "symlink-escape-write-through",
        "Symlink 'escape -> /' then file 'escape/tmp/sidescan-canary-symlink-write' (the classic \
         'link/etc/passwd' attack, aimed at a canary). The symlink may exist inside the root; the \
         write through it must not happen outside. Resolved against the image root (as umoci does), so it lands inside the root; skipping it \
         with a notice is also acceptable.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::symlink("escape", "/"),
            Entry::file("escape/tmp/sidescan-canary-symlink-write", "escaped\n"),
        ])),
    )
}

/// `up -> ../../..` then a file written through it.
pub fn symlink_dotdot_write_through() -> HostileCase {
    case(
        "symlink-dotdot-write-through",
        "Symlink 'up -> <many ../>' then file 'up/tmp/sidescan-canary-symlink-dotdot'. Nothing is \
         written outside the root. Resolved against the image root (as umoci does), so it lands inside the root; skipping it \
         with a notice is also acceptable.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::symlink("up", UP),
            Entry::file("up/tmp/sidescan-canary-symlink-dotdot", "escaped\n"),
        ])),
    )
}

/// `a -> b`, `b -> ../..`, then a write through `a`.
pub fn symlink_chain_escape() -> HostileCase {
    case(
        "symlink-chain-escape",
        "Symlinks 'a -> b' and 'b -> <many ../>' then file 'a/tmp/sidescan-canary-symlink-chain': \
         the escape only shows after resolving two links. Resolved against the image root (as umoci does), so it lands inside the root; skipping it \
         with a notice is also acceptable.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::symlink("a", "b"),
            Entry::symlink("b", UP),
            Entry::file("a/tmp/sidescan-canary-symlink-chain", "escaped\n"),
        ])),
    )
}

/// Symlink escape split across two layers.
pub fn symlink_escape_across_layers() -> HostileCase {
    case(
        "symlink-escape-across-layers",
        "Layer 2 has symlink 'app/cache -> /tmp'; layer 3 writes \
         'app/cache/sidescan-canary-cross-layer'. Per-layer checks miss it unless the extractor \
         resolves paths against the rootfs built so far. Resolved against the image root (as umoci does), so it lands inside the root; skipping it \
         with a notice is also acceptable.",
        Expected::Confined,
        true,
        Image::new()
            .layer(base_layer())
            .layer(Layer::new([Entry::symlink("app/cache", "/tmp")]))
            .layer(Layer::new([Entry::file(
                "app/cache/sidescan-canary-cross-layer",
                "escaped\n",
            )]))
            .build(),
    )
}

/// `loop1 -> loop2 -> loop1`, then a write through them.
pub fn symlink_loop() -> HostileCase {
    case(
        "symlink-loop",
        "Symlinks 'loop1 -> loop2', 'loop2 -> loop1', then file 'loop1/x'. Resolving must stop \
         (no hang, no stack overflow); nothing lands outside the root, and skipping the file with \
         a notice is acceptable.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::symlink("loop1", "loop2"),
            Entry::symlink("loop2", "loop1"),
            Entry::file("loop1/x", "x\n"),
        ])),
    )
}

/// A hard link whose target climbs out with `..`.
pub fn hardlink_traversal() -> HostileCase {
    case(
        "hardlink-traversal",
        "Hard link 'app/passwd-link' -> '<many ../>/etc/passwd'. Must not link a host file into \
         the root (no file in the root may share an inode with the host's /etc/passwd): skipped \
         with a notice.",
        Expected::SkippedWithNotice,
        true,
        img_with(Layer::new([Entry::hardlink(
            "app/passwd-link",
            format!("{UP}/etc/passwd"),
        )])),
    )
}

/// A hard link to an absolute path, which in tar means "that path in this archive".
pub fn hardlink_absolute() -> HostileCase {
    case(
        "hardlink-absolute",
        "The layer has 'etc/passwd' (fixture content) and hard link 'app/passwd-link' -> \
         '/etc/passwd'. Confined: the link resolves to the image's etc/passwd (its content is \
         FIXTURE_PASSWD), never the host's; skipping with a notice is acceptable.",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::file("etc/passwd", FIXTURE_PASSWD),
            Entry::hardlink("app/passwd-link", "/etc/passwd"),
        ])),
    )
}

/// A hard link through a symlink that points out of the root.
pub fn hardlink_through_symlink() -> HostileCase {
    case(
        "hardlink-through-symlink",
        "Symlink 'esc -> /' then hard link 'app/shadow-link' -> 'esc/etc/passwd': following the \
         symlink while resolving the link target would link the host's /etc/passwd. The target must \
         resolve inside the root (or the link be skipped with a notice).",
        Expected::Confined,
        true,
        img_with(Layer::new([
            Entry::symlink("esc", "/"),
            Entry::hardlink("app/shadow-link", "esc/etc/passwd"),
        ])),
    )
}

/// Character device, block device and FIFO entries.
pub fn devices_and_fifo() -> HostileCase {
    case(
        "devices-and-fifo",
        "Char device 'dev/sidescan-null' (1,3), block device 'dev/sidescan-sda' (8,0), FIFO \
         'run/sidescan-fifo', plus a normal file. Devices and FIFOs are never created nor read \
         (a FIFO read would hang): skipped with a notice, the normal file is scanned.",
        Expected::SkippedWithNotice,
        true,
        img_with(Layer::new([
            Entry::dir("dev"),
            Entry::char_device("dev/sidescan-null", 1, 3),
            Entry::block_device("dev/sidescan-sda", 8, 0),
            Entry::dir("run"),
            Entry::fifo("run/sidescan-fifo"),
            Entry::file("app/normal.txt", "normal\n"),
        ])),
    )
}

/// One file of `uncompressed` zeros, gzip ratio ~1000:1.
pub fn gzip_bomb(uncompressed: u64) -> HostileCase {
    let layer = zeros_gzip_layer("bomb/zeros", uncompressed, MediaStyle::Oci);
    case(
        "gzip-bomb",
        "A ~1 MiB gzip layer (per GiB) that inflates to `gzip_bomb_bytes` of zeros (ratio ~1000:1). \
         Must stop at the decompression-ratio or total-size limit without writing it all: \
         RESOURCE_EXHAUSTED.",
        Expected::Fails(&[Code::ResourceExhausted]),
        true,
        image_from_layer_blobs(vec![base_layer().build(MediaStyle::Oci), layer]),
    )
}

/// `entries` empty files.
pub fn tar_bomb(entries: usize) -> HostileCase {
    let layer = Layer::new((0..entries).map(|i| Entry::file(format!("bomb/{i:08}"), Bytes::new())))
        .compression(crate::fixtures::Compression::GzipLevel(1));
    case(
        "tar-bomb",
        "`tar_bomb_entries` tiny files in one layer. Must stop at the file-count limit: \
         RESOURCE_EXHAUSTED.",
        Expected::Fails(&[Code::ResourceExhausted]),
        true,
        img_with(layer),
    )
}

/// One incompressible file of `size` bytes (for a single-file size limit).
pub fn huge_file(size: u64) -> HostileCase {
    case(
        "huge-file",
        "One incompressible file 'data/huge.bin' of `huge_file_bytes` plus a normal file. Over the \
         single-file limit the scan fails with RESOURCE_EXHAUSTED (never a clean report).",
        Expected::Fails(&[Code::ResourceExhausted]),
        true,
        img_with(Layer::new([
            Entry::file("app/normal.txt", "normal\n"),
            Entry::pseudo_random("data/huge.bin", size, 99),
        ])),
    )
}

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

/// A gzip layer whose content is random bytes, not a tar.
pub fn not_a_tar() -> HostileCase {
    case(
        "not-a-tar",
        "Layer 2 is valid gzip (digest and diff_id right) of 64 KiB of random bytes, not a tar. \
         DATA_LOSS (FAILED_PRECONDITION acceptable); never INTERNAL, never 'clean'.",
        Expected::Fails(&[Code::DataLoss, Code::FailedPrecondition]),
        true,
        img_with(Layer::raw(PseudoRandom::new(11).bytes(64 * 1024))),
    )
}

/// A layer declared `+gzip` that is not gzip.
pub fn not_gzip() -> HostileCase {
    let l = Layer::raw(PseudoRandom::new(12).bytes(4096))
        .compression(crate::fixtures::Compression::None)
        .media_type(crate::oci::OCI_LAYER_GZIP);
    case(
        "not-gzip",
        "Layer 2 claims '+gzip' but is random bytes. DATA_LOSS (FAILED_PRECONDITION acceptable).",
        Expected::Fails(&[Code::DataLoss, Code::FailedPrecondition]),
        true,
        img_with(l),
    )
}

/// The same path twice in one layer, EICAR last.
pub fn duplicate_entries() -> HostileCase {
    case(
        "duplicate-entries",
        "'app/dup.txt' appears twice in one layer: first clean text, then EICAR (and 'app/d' first \
         as a dir, then as a file). Last entry wins, as in tar; EICAR must be reported. Succeeds.",
        Expected::Succeeds,
        true,
        img_with(Layer::new([
            Entry::file("app/dup.txt", "clean\n"),
            Entry::dir("app/d"),
            Entry::file("app/dup.txt", crate::fixtures::EICAR),
            Entry::file("app/d", "now a file\n"),
        ])),
    )
}

/// A benign ustar name overridden by a PAX `path` that escapes.
pub fn pax_path_traversal() -> HostileCase {
    case(
        "pax-path-traversal",
        "ustar name 'app/innocent.txt' overridden by a PAX 'path' record \
         '<many ../>/tmp/sidescan-canary-pax'. Extractors that check the ustar name but write the \
         PAX path escape. Skipped with a notice.",
        Expected::SkippedWithNotice,
        true,
        img_with(Layer::new([Entry::file("app/innocent.txt", "pax\n")
            .pax("path", format!("{UP}/tmp/sidescan-canary-pax"))])),
    )
}

/// A whiteout whose path climbs out of the root.
pub fn whiteout_traversal() -> HostileCase {
    case(
        "whiteout-traversal",
        "Whiteout '<many ../>/tmp/.wh.sidescan-canary-whiteout-victim': an unsafe whiteout handler \
         deletes the host file WHITEOUT_VICTIM (create it before the scan, check it after). \
         Skipped with a notice.",
        Expected::SkippedWithNotice,
        true,
        img_with(Layer::new([Entry::file(
            format!("{UP}/tmp/.wh.sidescan-canary-whiteout-victim"),
            Bytes::new(),
        )])),
    )
}

fn assemble(config: Blob, layers: Vec<crate::oci::LayerBlob>) -> Artifact {
    let blobs: Vec<Blob> = layers.iter().map(|l| l.blob.clone()).collect();
    Artifact {
        manifest: image_manifest(MediaStyle::Oci, &config, &blobs, &BTreeMap::new()),
        config: Some(config),
        layers,
        children: vec![],
        platform: Some(Platform::linux_amd64()),
        extra_blobs: vec![],
    }
}

fn image_from_layer_blobs(layers: Vec<crate::oci::LayerBlob>) -> Artifact {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let config = Blob::new(
        OCI_CONFIG,
        serde_json::to_vec(&config_json(&Platform::linux_amd64(), &diff_ids, &[])).expect("json"),
    );
    assemble(config, layers)
}

/// Every case with `sizes`. Built fresh (the bombs take a few seconds).
pub fn corpus_with(sizes: &HostileSizes) -> Vec<HostileCase> {
    vec![
        path_traversal(),
        absolute_path(),
        symlink_escape_write_through(),
        symlink_dotdot_write_through(),
        symlink_chain_escape(),
        symlink_escape_across_layers(),
        symlink_loop(),
        hardlink_traversal(),
        hardlink_absolute(),
        hardlink_through_symlink(),
        devices_and_fifo(),
        gzip_bomb(sizes.gzip_bomb_bytes),
        tar_bomb(sizes.tar_bomb_entries),
        huge_file(sizes.huge_file_bytes),
        wrong_layer_digest(),
        wrong_diff_id(),
        truncated_blob(),
        huge_manifest(sizes.huge_manifest_bytes),
        index_loop(),
        index_too_deep(sizes.index_depth),
        unknown_layer_media_type(),
        config_not_json(),
        zero_layers(),
        not_a_tar(),
        not_gzip(),
        duplicate_entries(),
        pax_path_traversal(),
        whiteout_traversal(),
    ]
}

/// Every case with default [`HostileSizes`], built once per process.
pub fn corpus() -> &'static [HostileCase] {
    static C: OnceLock<Vec<HostileCase>> = OnceLock::new();
    C.get_or_init(|| corpus_with(&HostileSizes::default()))
}

/// The default-size case called `name` (panics if there is none).
pub fn by_name(name: &str) -> &'static HostileCase {
    corpus()
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no hostile case {name:?}"))
}

/// Canary files (`sidescan-canary-*`, except [`WHITEOUT_VICTIM`]) found in `/`, `/tmp`,
/// and the ancestors of each scan root in `roots` (not in the roots themselves: a
/// canary confined inside the root is fine): where escaping entries land. Empty means
/// no escape. Remove stale ones with [`remove_canaries`] before a test.
pub fn find_canaries(roots: &[&Path]) -> Vec<PathBuf> {
    let mut places: Vec<PathBuf> = vec!["/".into(), "/tmp".into()];
    for d in roots {
        places.extend(d.ancestors().skip(1).map(Path::to_path_buf));
    }
    places.sort();
    places.dedup();
    let mut found = vec![];
    for p in places {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.starts_with(CANARY_PREFIX) && path != Path::new(WHITEOUT_VICTIM) {
                found.push(path);
            }
        }
    }
    found
}

/// Deletes canaries [`find_canaries`] would report (left by an earlier failing run).
pub fn remove_canaries(roots: &[&Path]) {
    for p in find_canaries(roots) {
        let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
    }
}

/// Creates [`WHITEOUT_VICTIM`]; check it with [`whiteout_victim_survived`].
pub fn create_whiteout_victim() {
    std::fs::write(WHITEOUT_VICTIM, "must survive\n").expect("create whiteout victim");
}

/// Whether [`WHITEOUT_VICTIM`] still exists.
pub fn whiteout_victim_survived() -> bool {
    Path::new(WHITEOUT_VICTIM).exists()
}

/// Shortcut: index manifest over `children` (re-exported for ad-hoc hostile indexes).
pub fn oci_index_of(children: &[Artifact]) -> Blob {
    index_manifest(MediaStyle::Oci, children)
}
