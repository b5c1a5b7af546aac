//! What the pipeline tests share: the test kit's registry with oci-client pushes, images
//! built from entries, the recording scanner and pipeline/job helpers.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use sidescan_sdk::pipeline::{Pipeline, PipelineOptions, ScanJob};
use sidescan_sdk::prelude::*;
use sidescan_sdk::{Limits, async_trait};
use sidescan_testkit::digest::sha256_digest;
use sidescan_testkit::fixtures;
use sidescan_testkit::registry::{Auth, Registry};
use tokio::io::AsyncReadExt as _;
// ------------------------------------------------------------------------------------------
// registry process (the test kit's docker-registry) and oci-client pushes
// ------------------------------------------------------------------------------------------

/// An anonymous registry, or one with htpasswd Basic auth for `user`.
pub(crate) fn start_registry(user: Option<(&str, &str)>) -> Registry {
    match user {
        None => Registry::anonymous(),
        Some((user, password)) => Registry::start(Auth::Htpasswd {
            user: user.into(),
            password: password.into(),
        }),
    }
}

/// oci-client's credentials for `reg`.
pub(crate) fn oci_auth(reg: &Registry) -> RegistryAuth {
    match reg.credentials() {
        Some((u, p)) => RegistryAuth::Basic(u.into(), p.into()),
        None => RegistryAuth::Anonymous,
    }
}

/// An oci-client speaking plain HTTP to `reg`.
pub(crate) fn oci(reg: &Registry) -> oci_client::Client {
    oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![reg.host()]),
        ..Default::default()
    })
}

/// Path of a blob's data file in the registry's storage (to tamper with it).
pub(crate) fn blob_file(reg: &Registry, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    reg.dir()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

// ------------------------------------------------------------------------------------------
// image building
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
pub(crate) enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

/// The tar of `entries`, written by the test kit.
pub(crate) fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    fixtures::Layer::new(entries.iter().map(|e| match *e {
        E::File(p, d) => fixtures::Entry::file(p, d.to_vec()),
        E::Dir(p) => fixtures::Entry::dir(p),
        E::Symlink(p, t) => fixtures::Entry::symlink(p, t),
    }))
    .tar_bytes()
}

pub(crate) fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub(crate) struct Pushed {
    pub manifest_digest: String,
    pub manifest_size: usize,
    pub layer_digests: Vec<String>,
}

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub(crate) async fn push_blob(
    reg: &Registry,
    client: &oci_client::Client,
    repo: &str,
    data: &[u8],
) -> String {
    let r = Reference::with_tag(reg.host(), repo.into(), "x".into());
    client
        .auth(&r, &oci_auth(reg), RegistryOperation::Push)
        .await
        .unwrap();
    let d = sha256_digest(data);
    client.push_blob(&r, data.to_vec(), &d).await.unwrap();
    d
}

pub(crate) async fn push_manifest(
    reg: &Registry,
    repo: &str,
    tag: &str,
    body: &[u8],
    media_type: &str,
) -> String {
    let client = oci(reg);
    let r = Reference::with_tag(reg.host(), repo.into(), tag.into());
    client
        .auth(&r, &oci_auth(reg), RegistryOperation::Push)
        .await
        .unwrap();
    client
        .push_manifest_raw(
            &r,
            body.to_vec(),
            http::HeaderValue::from_str(media_type).unwrap(),
        )
        .await
        .unwrap();
    sha256_digest(body)
}

/// Pushes an image of gzip layers (each a list of entries) and returns its digests.
pub(crate) async fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    layers: &[Vec<E<'_>>],
    arch: &str,
) -> Pushed {
    let layers: Vec<(Vec<u8>, String)> = layers
        .iter()
        .map(|entries| {
            let t = tar_of(entries);
            (gz(&t), sha256_digest(&t))
        })
        .collect();
    push_gzip_layers(reg, repo, tag, &layers, arch).await
}

/// Pushes an image of gzip layer blobs with the diff_ids given for them, true or not.
pub(crate) async fn push_gzip_layers(
    reg: &Registry,
    repo: &str,
    tag: &str,
    layers: &[(Vec<u8>, String)],
    arch: &str,
) -> Pushed {
    let client = oci(reg);
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    for (blob, diff_id) in layers {
        diff_ids.push(diff_id.clone());
        let d = push_blob(reg, &client, repo, blob).await;
        descs.push(serde_json::json!({"mediaType": GZIP_LAYER, "digest": d, "size": blob.len()}));
        layer_digests.push(d);
    }
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {}
    })
    .to_string();
    let config_digest = push_blob(reg, &client, repo, config.as_bytes()).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descs,
    })
    .to_string();
    let manifest_digest = push_manifest(reg, repo, tag, manifest.as_bytes(), OCI_MANIFEST).await;
    Pushed {
        manifest_digest,
        manifest_size: manifest.len(),
        layer_digests,
    }
}

// ------------------------------------------------------------------------------------------
// test scanners
// ------------------------------------------------------------------------------------------

/// What `scan_image` saw: layout dir, layout ref, rootfs listing, whether index.json existed.
pub(crate) type Seen = (PathBuf, String, Vec<String>, bool);

/// Reports every file containing `KEY` as a secret; records what it saw.
pub(crate) struct Recorder {
    pub input: Input,
    pub engine: Mutex<String>,
    pub layer_calls: AtomicU32,
    pub seen: Mutex<Vec<String>>,
    pub image_seen: Mutex<Option<Seen>>,
}

impl Recorder {
    pub(crate) fn new(input: Input) -> Arc<Self> {
        Arc::new(Self {
            input,
            engine: Mutex::new("sigs-1".into()),
            layer_calls: AtomicU32::new(0),
            seen: Mutex::new(Vec::new()),
            image_seen: Mutex::new(None),
        })
    }
}

pub(crate) fn list_tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else if m.file_type().is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    std::fs::read_link(&p).unwrap().display()
                ));
            } else {
                out.push(rel);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

#[async_trait]
impl Scanner for Recorder {
    fn info(&self) -> ScannerInfo {
        ScannerInfo {
            name: "recorder".into(),
            vendor: "tests".into(),
            version: "1".into(),
            capabilities: vec![],
        }
    }
    fn input(&self) -> Input {
        self.input
    }
    async fn engine_version(&self) -> Result<String, Error> {
        Ok(self.engine.lock().unwrap().clone())
    }
    async fn scan_layer(
        &self,
        layer: &mut Layer,
        _ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        self.layer_calls.fetch_add(1, Ordering::SeqCst);
        let mut out = ScanFindings::default();
        while let Some(mut e) = layer.next_entry().await? {
            self.seen
                .lock()
                .unwrap()
                .push(format!("{:?} {}", e.kind, e.path));
            if e.kind == EntryKind::File {
                let mut body = Vec::new();
                e.read_to_end(&mut body)
                    .await
                    .map_err(|x| Error::internal(x.to_string()))?;
                if body.windows(3).any(|w| w == b"KEY") {
                    out.findings.push(
                        Finding::new(FindingKind::Secret, "key", Severity::High).at_path(&e.path),
                    );
                }
            }
        }
        Ok(out)
    }
    async fn scan_image(
        &self,
        image: &ImageInput,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        assert!(ctx.scratch_dir().exists());
        assert!(image.layout_dir.starts_with(ctx.scratch_dir()));
        let tree = image.rootfs.as_deref().map(list_tree).unwrap_or_default();
        let mut out = ScanFindings::default();
        if let Some(root) = &image.rootfs {
            for p in &tree {
                let f = root.join(p.trim_start_matches('/'));
                if f.is_file() && std::fs::read(&f).unwrap().windows(3).any(|w| w == b"KEY") {
                    out.findings
                        .push(Finding::new(FindingKind::Secret, "key", Severity::High).at_path(p));
                }
            }
        }
        *self.image_seen.lock().unwrap() = Some((
            image.layout_dir.clone(),
            image.layout_ref.clone(),
            tree,
            image.layout_dir.join("index.json").exists(),
        ));
        Ok(out)
    }
}

pub(crate) fn pipeline(dir: &Path) -> Pipeline {
    pipeline_with(dir, |_| {})
}

pub(crate) fn pipeline_with(dir: &Path, f: impl FnOnce(&mut PipelineOptions)) -> Pipeline {
    let mut options = PipelineOptions {
        cache_dir: dir.join("cache"),
        cache_max_bytes: 1 << 30,
        scratch_root: dir.join("scratch"),
        limits: Limits::default(),
        allowed_registries: vec![],
    };
    f(&mut options);
    Pipeline::new(options).unwrap()
}

pub(crate) fn job(reg: &Registry, image: &str) -> ScanJob {
    ScanJob {
        image: image.into(),
        registry_url: format!("http://{}", reg.host()),
        ..Default::default()
    }
}

pub(crate) fn ctx() -> ScanContext {
    ScanContext::new("test", "/nonexistent")
}

pub(crate) fn scratch_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("scratch")).unwrap().count() == 0
}
