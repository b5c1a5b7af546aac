//! The hostile corpus: layers and manifests a safe SDK must survive, each with a name,
//! what it does, and what a safe SDK must answer ([`Expected`]).
//!
//! The rule behind every expectation: **a finding or a documented refusal, never clean**
//! where content would go unscanned. Layers are read as container runtimes read them (Go's
//! `archive/tar`, containerd's path rules): an escaping path is confined (`../../evil` is
//! `/evil`) and scanned there; what a runtime would refuse or could read two ways is refused
//! with DATA_LOSS.
//!
//! Escapes are aimed at canary files named `sidescan-canary-*` (mostly in `/tmp`, via
//! enough `..` to reach `/` from any depth), never at real system files, so that a
//! buggy extractor running as root in CI cannot damage the machine; [`find_canaries`]
//! tells whether one escaped. Cases that a real registry refuses (lying digests, a
//! manifest over 4 MiB) have `real_registry == false`: serve them with
//! [`crate::fake_registry::FakeRegistry::add`].
//!
//! The fail-closed attacks ([`smuggling`], [`fail_closed`]) hide EICAR from a reader that
//! differs from the runtime's: a malware scanner must report it ([`Expected::FindsEicar`]).
//!
//! Sizes of the bombs are set by [`HostileSizes`]; SDK tests configure limits below them.

mod layers;
mod manifests;
pub mod smuggling;

pub use layers::*;
pub use manifests::*;
pub use smuggling::{
    attestation_annotated_entry, duplicate_pax_path, eicar_dotdot_path, header_only_type_smuggling,
    polyglot_layer,
};

use crate::fixtures::{
    Image, Layer, MediaStyle, base_layer, config_json, image_manifest, index_manifest,
};
use crate::oci::{Artifact, Blob, OCI_CONFIG, Platform};
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
    /// The scan succeeds and the entry is confined to the scan root, as containerd places it
    /// (`../../x` and `/x` are extracted, and scanned, as `<root>/x`; a link to
    /// `../../etc/passwd` means the image's `etc/passwd`); nothing lands outside the root.
    /// Skipping the entry with a notice is also acceptable (never silently).
    Confined,
    /// The scan succeeds normally (see the case description for what it must find).
    Succeeds,
    /// The image hides EICAR at `path` (where a container runtime extracts it) from readers
    /// that differ from the runtime's. A malware scanner must report EICAR at `path`, or
    /// refuse the image with one of `or_fails` (documented: DATA_LOSS for archives a runtime
    /// would refuse or could read two ways). A report without the finding is a miss: clean
    /// where it is not. Scanners that detect no malware must answer with a report or
    /// `or_fails`.
    FindsEicar {
        /// Absolute path of the EICAR file as a runtime extracts it.
        path: &'static str,
        /// Documented refusals.
        or_fails: &'static [Code],
    },
}

impl Expected {
    /// Whether a failed scan with `code` meets this expectation.
    pub fn accepts_code(&self, code: Code) -> bool {
        match self {
            Expected::Fails(codes)
            | Expected::FindsEicar {
                or_fails: codes, ..
            } => codes.contains(&code),
            _ => false,
        }
    }

    /// Whether the scan is expected to succeed.
    pub fn succeeds(&self) -> bool {
        !matches!(self, Expected::Fails(_))
    }

    /// Where a malware scanner must report EICAR, for [`Expected::FindsEicar`].
    pub fn eicar_path(&self) -> Option<&'static str> {
        match self {
            Expected::FindsEicar { path, .. } => Some(path),
            _ => None,
        }
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
    /// An artifact to scan first with the same plugin (same caches), whose answer must not
    /// be reused for `artifact` (the polyglot's other reading). Its own outcome is free,
    /// except that it must not be INTERNAL.
    pub primer: Option<Artifact>,
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
        primer: None,
    }
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
        header_only_type_smuggling(),
        duplicate_pax_path(),
        attestation_annotated_entry(),
        polyglot_layer(),
        eicar_dotdot_path(),
    ]
}

/// The fail-closed attacks: images that hide EICAR from a reader that differs from the
/// container runtime's ([`Expected::FindsEicar`]), in the order of the issue.
pub fn fail_closed() -> Vec<HostileCase> {
    vec![
        header_only_type_smuggling(),
        duplicate_pax_path(),
        attestation_annotated_entry(),
        polyglot_layer(),
        eicar_dotdot_path(),
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
