//! Shared pieces of the e2e tests: a scanner that reads everything and pipeline options in a
//! temp dir (the in-process pipeline tests), and scan requests against a test registry.

use std::path::Path;
use std::sync::Arc;

use sidescan_sdk::Limits;
use sidescan_sdk::pipeline::{Pipeline, PipelineOptions};
use sidescan_sdk::prelude::*;
use sidescan_testkit::fixtures::EICAR;
use sidescan_testkit::registry::Registry;
use tokio::io::AsyncReadExt;

/// A clean base layer plus a top layer with `text` and the test plugin's marker (one finding);
/// distinct texts make distinct images on the same base.
pub(crate) fn image_with(text: &str) -> sidescan_testkit::oci::Artifact {
    use sidescan_testkit::fixtures::{self, Entry, Image, Layer};
    Image::new()
        .layer(fixtures::base_layer())
        .layer(Layer::new([Entry::file(
            "app/note.txt",
            format!("{text} SIDESCAN-TEST-FINDING\n").into_bytes(),
        )]))
        .build()
}

/// A `ScanRequest` for `repo:tag` on the test `registry`, anonymous, primary report only.
pub(crate) fn scan_request(
    registry: &Registry,
    repo: &str,
    tag: &str,
) -> sidescan_proto::v1::ScanRequest {
    sidescan_proto::v1::ScanRequest {
        image: format!("{repo}:{tag}"),
        registry: Some(sidescan_proto::v1::Registry {
            url: registry.url(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Reads every entry of every layer (per-layer), or checks the unpacked rootfs (whole image);
/// reports a file whose content is exactly EICAR as a malware finding at its path, nothing
/// else. Asserts the SDK's promises about paths and scratch dirs.
pub(crate) struct Reader {
    /// How the SDK feeds it.
    pub input: Input,
}

#[sidescan_sdk::async_trait]
impl Scanner for Reader {
    fn info(&self) -> ScannerInfo {
        ScannerInfo {
            name: "e2e-reader".into(),
            version: "1".into(),
            ..ScannerInfo::default()
        }
    }

    fn input(&self) -> Input {
        self.input
    }

    async fn scan_layer(
        &self,
        layer: &mut Layer,
        _ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        let mut found = ScanFindings::default();
        while let Some(mut entry) = layer.next_entry().await? {
            assert!(
                entry.path.starts_with('/'),
                "entry path not absolute: {entry:?}"
            );
            assert!(
                !entry.path.split('/').any(|c| c == ".."),
                "entry path escapes: {entry:?}"
            );
            let mut sink = Vec::new();
            entry.read_to_end(&mut sink).await?;
            if sink == EICAR {
                found.findings.push(eicar(&entry.path));
            }
        }
        Ok(found)
    }

    async fn scan_image(
        &self,
        image: &ImageInput,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        if let Some(root) = &image.rootfs {
            assert!(
                root.starts_with(ctx.scratch_dir()),
                "rootfs outside the scratch dir"
            );
            return Ok(ScanFindings {
                findings: eicar_files(root, root),
                ..ScanFindings::default()
            });
        }
        // Layout only: the layout's own manifest names only blobs whose bytes hash to their
        // digest (an uncompressed layer's is its verified diff_id), so an engine reading it
        // sees exactly what the SDK verified.
        unsound_layout_blobs(&image.layout_dir).map(|()| ScanFindings::default())
    }
}

/// Checks every blob the layout's manifest names against its digest; INTERNAL if one differs.
fn unsound_layout_blobs(layout: &Path) -> Result<(), Error> {
    use sha2::{Digest as _, Sha256};
    let read_json = |path: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).expect("layout file")).expect("layout JSON")
    };
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let index = read_json(&layout.join("index.json"));
    let manifest = read_json(&blob(
        index["manifests"][0]["digest"].as_str().expect("digest"),
    ));
    let named = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain([&manifest["config"]]);
    for descriptor in named {
        let digest = descriptor["digest"].as_str().expect("digest");
        let media_type = descriptor["mediaType"].as_str().unwrap_or_default();
        let bytes = match std::fs::read(blob(digest)) {
            Ok(bytes) => bytes,
            // the SDK pulls no non-distributable (foreign) layer
            Err(_) if media_type.contains("nondistributable") || media_type.contains("foreign") => {
                continue;
            }
            Err(e) => {
                return Err(Error::internal(format!(
                    "the layout's manifest names blob {digest}, which it lacks: {e}"
                )));
            }
        };
        if format!("sha256:{}", hex::encode(Sha256::digest(&bytes))) != digest {
            return Err(Error::internal(format!(
                "layout blob {digest} does not match its digest"
            )));
        }
    }
    Ok(())
}

fn eicar(path: &str) -> Finding {
    Finding::new(FindingKind::Malware, "Eicar-Test-Signature", Severity::High).at_path(path)
}

/// EICAR findings for the regular files under `dir` (symlinks not followed).
fn eicar_files(root: &Path, dir: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(eicar_files(root, &path)),
            Ok(t) if t.is_file() && std::fs::read(&path).is_ok_and(|b| b == EICAR) => {
                let rel = path.strip_prefix(root).expect("under the root");
                out.push(eicar(&format!("/{}", rel.display())));
            }
            _ => {}
        }
    }
    out
}

/// A reader scanner behind the trait object the pipeline takes.
pub(crate) fn reader(input: Input) -> Arc<dyn Scanner> {
    Arc::new(Reader { input })
}

/// A pipeline with its cache and scratch dirs in `dir` and the given limits.
pub(crate) fn pipeline(dir: &Path, limits: Limits) -> Pipeline {
    std::fs::create_dir_all(dir.join("scratch")).expect("scratch dir");
    Pipeline::new(PipelineOptions {
        cache_dir: dir.join("cache"),
        cache_max_bytes: 1 << 30,
        scratch_root: dir.join("scratch"),
        limits,
        allowed_registries: Vec::new(),
    })
    .expect("pipeline")
}

/// A scan context whose scratch dir is `dir/scratch`.
pub(crate) fn context(dir: &Path) -> ScanContext {
    ScanContext::new("e2e", dir.join("scratch"))
}

/// Whether the scratch root under `dir` is empty (every scan removed its scratch dir).
pub(crate) fn scratch_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("scratch"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}
