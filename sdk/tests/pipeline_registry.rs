//! The image pipeline against a real registry process (CNCF distribution, `docker-registry`),
//! started on 127.0.0.1 with a temp dir and stopped by PID. Needs
//! `apt-get install -y docker-registry apache2-utils` (htpasswd).

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use sha2::{Digest as _, Sha256};
use sidescan_sdk::pipeline::{Pipeline, PipelineOptions, ScanJob};
use sidescan_sdk::prelude::*;
use sidescan_sdk::{Limits, async_trait};
use tokio::io::AsyncReadExt as _;
use tonic::Code;

// ------------------------------------------------------------------------------------------
// registry process
// ------------------------------------------------------------------------------------------

struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    auth: RegistryAuth,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    fn start(user: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut auth_cfg = String::new();
        let mut auth = RegistryAuth::Anonymous;
        if let Some((u, p)) = user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("htpasswd missing: apt-get install -y apache2-utils");
            std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            auth_cfg = format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
            auth = RegistryAuth::Basic(u.into(), p.into());
        }
        let cfg = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n{auth_cfg}http:\n  addr: 127.0.0.1:{port}\nvalidation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), cfg).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry missing: apt-get install -y docker-registry");
        let registry = Self {
            child,
            port,
            dir,
            auth,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(registry);
        panic!("docker-registry did not start on port {port}");
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn client(&self) -> oci_client::Client {
        oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![self.host()]),
            ..Default::default()
        })
    }

    /// Path of a blob's data file in the registry's storage (to tamper with it).
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

// ------------------------------------------------------------------------------------------
// image building
// ------------------------------------------------------------------------------------------

enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        match e {
            E::File(p, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(d.len() as u64);
                h.set_cksum();
                b.append_data(&mut h, p, *d).unwrap();
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_cksum();
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Symlink(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

struct Pushed {
    manifest_digest: String,
    manifest_size: usize,
    layer_digests: Vec<String>,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

async fn push_blob(reg: &Registry, client: &oci_client::Client, repo: &str, data: &[u8]) -> String {
    let r = Reference::with_tag(reg.host(), repo.into(), "x".into());
    client
        .auth(&r, &reg.auth, RegistryOperation::Push)
        .await
        .unwrap();
    let d = sha(data);
    client.push_blob(&r, data.to_vec(), &d).await.unwrap();
    d
}

async fn push_manifest(
    reg: &Registry,
    repo: &str,
    tag: &str,
    body: &[u8],
    media_type: &str,
) -> String {
    let client = reg.client();
    let r = Reference::with_tag(reg.host(), repo.into(), tag.into());
    client
        .auth(&r, &reg.auth, RegistryOperation::Push)
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
    sha(body)
}

/// Pushes an image of gzip layers (each a list of entries) and returns its digests.
async fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    layers: &[Vec<E<'_>>],
    arch: &str,
) -> Pushed {
    let client = reg.client();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut layer_digests = Vec::new();
    for entries in layers {
        let t = tar_of(entries);
        let blob = gz(&t);
        diff_ids.push(sha(&t));
        let d = push_blob(reg, &client, repo, &blob).await;
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
type Seen = (PathBuf, String, Vec<String>, bool);

/// Reports every file containing `KEY` as a secret; records what it saw.
struct Recorder {
    input: Input,
    engine: Mutex<String>,
    layer_calls: AtomicU32,
    seen: Mutex<Vec<String>>,
    image_seen: Mutex<Option<Seen>>,
}

impl Recorder {
    fn new(input: Input) -> Arc<Self> {
        Arc::new(Self {
            input,
            engine: Mutex::new("sigs-1".into()),
            layer_calls: AtomicU32::new(0),
            seen: Mutex::new(Vec::new()),
            image_seen: Mutex::new(None),
        })
    }
}

fn list_tree(root: &Path) -> Vec<String> {
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

fn pipeline(dir: &Path) -> Pipeline {
    pipeline_with(dir, |_| {})
}

fn pipeline_with(dir: &Path, f: impl FnOnce(&mut PipelineOptions)) -> Pipeline {
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

fn job(reg: &Registry, image: &str) -> ScanJob {
    ScanJob {
        image: image.into(),
        registry_url: format!("http://{}", reg.host()),
        ..Default::default()
    }
}

fn ctx() -> ScanContext {
    ScanContext::new("test", "/nonexistent")
}

fn scratch_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("scratch")).unwrap().count() == 0
}

// ------------------------------------------------------------------------------------------
// tests
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_layer_scan_streams_entries_caches_results_and_fills_layers() {
    let reg = Registry::start(None);
    let pushed = push_image(
        &reg,
        "app",
        "1.0",
        &[
            vec![
                E::Dir("etc/"),
                E::File("etc/key.pem", b"-----BEGIN KEY-----"),
                E::File("etc/old", b"x"),
            ],
            vec![
                E::File("etc/.wh.old", b""),
                E::Symlink("etc/link", "/etc/key.pem"),
                E::File("app/KEYS", b"KEY two"),
            ],
        ],
        "amd64",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let rec = Recorder::new(Input::PerLayer);
    let scanner: Arc<dyn Scanner> = rec.clone();
    let out = p
        .scan(&scanner, &job(&reg, "app:1.0"), &ctx())
        .await
        .unwrap();
    assert_eq!(out.image.digest, pushed.manifest_digest);
    assert_eq!(out.image.tag, "1.0");
    assert_eq!(out.image.platforms, vec!["linux/amd64".parse().unwrap()]);
    let found: Vec<(&str, &str)> = out
        .findings
        .findings
        .iter()
        .map(|f| (f.path.as_str(), f.layer_digest.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("/etc/key.pem", pushed.layer_digests[0].as_str()),
            ("/app/KEYS", pushed.layer_digests[1].as_str()),
        ]
    );
    assert!(
        out.findings
            .findings
            .iter()
            .all(|f| f.layer_diff_id.starts_with("sha256:"))
    );
    assert_eq!(
        *rec.seen.lock().unwrap(),
        vec![
            "Directory /etc",
            "File /etc/key.pem",
            "File /etc/old",
            "Whiteout /etc/old",
            "Symlink /etc/link",
            "File /app/KEYS",
        ]
    );
    assert!(scratch_is_empty(dir.path()));
    // second scan: layer results come from the cache, the plugin is not called
    let out2 = p
        .scan(&scanner, &job(&reg, "app:1.0"), &ctx())
        .await
        .unwrap();
    assert_eq!(rec.layer_calls.load(Ordering::SeqCst), 2);
    assert_eq!(out2.findings.findings, out.findings.findings);
    // a new engine version changes the key: scanned again
    *rec.engine.lock().unwrap() = "sigs-2".into();
    p.scan(
        &scanner,
        &job(
            &reg,
            &format!("127.0.0.1:{}/app@{}", reg.port, pushed.manifest_digest),
        ),
        &ctx(),
    )
    .await
    .unwrap();
    assert_eq!(rec.layer_calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_image_gets_layout_and_rootfs_with_whiteouts() {
    let reg = Registry::start(None);
    push_image(
        &reg,
        "team/app",
        "v2",
        &[
            vec![
                E::Dir("etc/"),
                E::File("etc/a", b"a"),
                E::File("etc/gone", b"g"),
                E::Dir("var/"),
                E::File("var/x", b"x"),
            ],
            vec![
                E::File("etc/.wh.gone", b""),
                E::File("var/.wh..wh..opq", b""),
                E::File("var/y", b"KEY"),
            ],
        ],
        "arm64",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let rec = Recorder::new(Input::WholeImage { rootfs: true });
    let scanner: Arc<dyn Scanner> = rec.clone();
    let out = p
        .scan(&scanner, &job(&reg, "team/app:v2"), &ctx())
        .await
        .unwrap();
    let (layout, layout_ref, tree, has_index) = rec.image_seen.lock().unwrap().clone().unwrap();
    assert!(has_index);
    assert_eq!(layout_ref, "v2");
    assert_eq!(tree, vec!["/etc/", "/etc/a", "/var/", "/var/y"]);
    assert_eq!(out.findings.findings.len(), 1);
    assert!(!layout.exists(), "scratch dir not removed");
    assert!(scratch_is_empty(dir.path()));

    // Same image, same engine: answered from the image result cache, the scanner is not called.
    *rec.image_seen.lock().unwrap() = None;
    let again = p
        .scan(&scanner, &job(&reg, "team/app:v2"), &ctx())
        .await
        .unwrap();
    assert!(
        rec.image_seen.lock().unwrap().is_none(),
        "cache hit still scanned"
    );
    assert_eq!(again.findings.findings, out.findings.findings);
    // A new engine version (e.g. a DB update) is a new key: scanned again.
    *rec.engine.lock().unwrap() = "engine-2".into();
    p.scan(&scanner, &job(&reg, "team/app:v2"), &ctx())
        .await
        .unwrap();
    assert!(
        rec.image_seen.lock().unwrap().is_some(),
        "stale result served after an engine change"
    );
    // Other report types are another key as well.
    *rec.image_seen.lock().unwrap() = None;
    let mut sbom_ctx = ctx();
    sbom_ctx.report_types.insert(
        "application/vnd.security.sbom.report+json; version=1.0".into(),
        Default::default(),
    );
    p.scan(&scanner, &job(&reg, "team/app:v2"), &sbom_ctx)
        .await
        .unwrap();
    assert!(
        rec.image_seen.lock().unwrap().is_some(),
        "result for other report types reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_scans_every_platform_and_selects_one() {
    let reg = Registry::start(None);
    let amd = push_image(
        &reg,
        "multi",
        "amd",
        &[
            vec![E::File("base/KEY", b"KEY base")],
            vec![E::File("amd-only", b"KEY amd")],
        ],
        "amd64",
    )
    .await;
    let arm = push_image(
        &reg,
        "multi",
        "arm",
        &[vec![E::File("base/KEY", b"KEY base")]],
        "arm64",
    )
    .await;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd.manifest_digest, "size": amd.manifest_size,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.manifest_digest, "size": arm.manifest_size,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]
    })
    .to_string();
    push_manifest(&reg, "multi", "latest", index.as_bytes(), OCI_INDEX).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let scanner: Arc<dyn Scanner> = Recorder::new(Input::PerLayer);
    let out = p.scan(&scanner, &job(&reg, "multi"), &ctx()).await.unwrap();
    assert_eq!(out.image.platforms.len(), 2);
    assert_eq!(
        out.image.manifest_digests,
        vec![amd.manifest_digest.clone(), arm.manifest_digest.clone()]
    );
    let got: Vec<(String, Vec<String>)> = out
        .findings
        .findings
        .iter()
        .map(|f| {
            (
                f.path.clone(),
                f.platforms.iter().map(|p| p.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "/base/KEY".to_string(),
                vec!["linux/amd64".to_string(), "linux/arm64".to_string()]
            ),
            ("/amd-only".to_string(), vec!["linux/amd64".to_string()]),
        ]
    );
    // platform selection
    let mut j = job(&reg, "multi:latest");
    j.platform = Some("linux/arm64".parse().unwrap());
    let out = p.scan(&scanner, &j, &ctx()).await.unwrap();
    assert_eq!(
        out.image.manifest_digests,
        vec![arm.manifest_digest.clone()]
    );
    assert!(out.findings.findings.iter().all(|f| f.platforms.is_empty()));
    j.platform = Some("linux/s390x".parse().unwrap());
    let err = p.scan(&scanner, &j, &ctx()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("linux/amd64"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_map_to_status_codes() {
    let reg = Registry::start(None);
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
    j.registry_url = format!("http://127.0.0.1:{}", free_port());
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
    let client = reg.client();
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
    let f = reg.blob_file(&pushed.layer_digests[0]);
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
    let reg = Registry::start(Some(("alice", "wonderland")));
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
async fn dropping_the_scan_removes_scratch_and_limits_stop_bombs() {
    /// Blocks in scan_image until cancelled.
    struct Slow;
    #[async_trait]
    impl Scanner for Slow {
        fn info(&self) -> ScannerInfo {
            ScannerInfo {
                name: "slow".into(),
                vendor: "t".into(),
                version: "1".into(),
                capabilities: vec![],
            }
        }
        fn input(&self) -> Input {
            Input::WholeImage { rootfs: true }
        }
        async fn scan_image(
            &self,
            _: &ImageInput,
            ctx: &ScanContext,
        ) -> Result<ScanFindings, Error> {
            std::fs::write(ctx.scratch_dir().join("plugin-file"), b"x").unwrap();
            ctx.cancel.cancelled().await;
            Err(Error::Cancelled("stopped".into()))
        }
    }
    let reg = Registry::start(None);
    let zeros = vec![0u8; 64 << 20];
    push_image(
        &reg,
        "bomb",
        "1",
        &[vec![E::File("zeros", &zeros)]],
        "amd64",
    )
    .await;
    push_image(&reg, "small", "1", &[vec![E::File("a", b"a")]], "amd64").await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_with(dir.path(), |o| o.limits.max_uncompressed_bytes = 16 << 20);
    let slow: Arc<dyn Scanner> = Arc::new(Slow);
    let (small_job, small_ctx) = (job(&reg, "small:1"), ctx());
    let scan = p.scan(&slow, &small_job, &small_ctx);
    let r = tokio::time::timeout(Duration::from_secs(2), scan).await;
    assert!(r.is_err(), "scan should still be running");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        scratch_is_empty(dir.path()),
        "scratch not removed after drop"
    );
    let rec: Arc<dyn Scanner> = Recorder::new(Input::PerLayer);
    let err = p
        .scan(&rec, &job(&reg, "bomb:1"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    let whole: Arc<dyn Scanner> = Recorder::new(Input::WholeImage { rootfs: true });
    let err = p
        .scan(&whole, &job(&reg, "bomb:1"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(scratch_is_empty(dir.path()));
}

/// Listing with file contents, for comparing two root filesystems.
fn tree_with_content(root: &Path) -> Vec<String> {
    list_tree(root)
        .into_iter()
        .map(|p| {
            if p.contains(" -> ") || p.ends_with('/') {
                return p;
            }
            let f = root.join(p.trim_start_matches('/'));
            let m = std::fs::symlink_metadata(&f).unwrap();
            if m.is_file() {
                format!(
                    "{p}={}",
                    String::from_utf8_lossy(&std::fs::read(&f).unwrap())
                )
            } else {
                p
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rootfs_matches_umoci_unpack() {
    let reg = Registry::start(None);
    push_image(
        &reg,
        "wh",
        "1",
        &[
            vec![
                E::Dir("etc/"),
                E::File("etc/passwd", b"root"),
                E::File("etc/shadow", b"secret"),
                E::Dir("opt/"),
                E::Dir("opt/app/"),
                E::File("opt/app/old.txt", b"old"),
                E::Dir("opt/app/sub/"),
                E::File("opt/app/sub/deep", b"deep"),
                E::Dir("usr/"),
                E::Dir("usr/lib/"),
                E::File("usr/lib/libx.so", b"x1"),
                E::Symlink("lib", "usr/lib"),
                E::Dir("gone/"),
                E::File("gone/f", b"f"),
            ],
            vec![
                E::File("etc/.wh.shadow", b""),
                E::File("opt/app/.wh..wh..opq", b""),
                E::File("opt/app/new.txt", b"new"),
                E::File(".wh.gone", b""),
                E::File("etc/passwd", b"root2"),
                E::Symlink("etc/link", "../usr/lib/libx.so"),
            ],
            vec![
                E::File("usr/lib/liby.so", b"y"),
                E::Dir("gone/"),
                E::File("gone/again", b"a"),
            ],
        ],
        "amd64",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // the reference: skopeo copy to an OCI layout, then umoci unpack
    let layout = dir.path().join("layout");
    let status = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/wh:1", reg.host()))
        .arg(format!("oci:{}:1", layout.display()))
        .stdout(Stdio::null())
        .status()
        .expect("skopeo missing: apt-get install -y skopeo");
    assert!(status.success());
    let bundle = dir.path().join("bundle");
    let status = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:1", layout.display()))
        .arg(&bundle)
        .stdout(Stdio::null())
        .status()
        .expect("umoci missing: apt-get install -y umoci");
    assert!(status.success());
    let expected = tree_with_content(&bundle.join("rootfs"));
    // ours
    let p = pipeline(dir.path());
    let rec = Recorder::new(Input::WholeImage { rootfs: true });
    struct Keep(Arc<Recorder>, PathBuf);
    #[async_trait]
    impl Scanner for Keep {
        fn info(&self) -> ScannerInfo {
            self.0.info()
        }
        fn input(&self) -> Input {
            Input::WholeImage { rootfs: true }
        }
        async fn scan_image(
            &self,
            image: &ImageInput,
            _: &ScanContext,
        ) -> Result<ScanFindings, Error> {
            let root = image.rootfs.clone().unwrap();
            let status = Command::new("cp")
                .arg("-a")
                .arg(&root)
                .arg(&self.1)
                .status()
                .unwrap();
            assert!(status.success());
            Ok(ScanFindings::default())
        }
    }
    let copy = dir.path().join("ours");
    let scanner: Arc<dyn Scanner> = Arc::new(Keep(rec, copy.clone()));
    p.scan(&scanner, &job(&reg, "wh:1"), &ctx()).await.unwrap();
    let ours = tree_with_content(&copy);
    assert_eq!(ours, expected);
    assert!(ours.contains(&"/etc/passwd=root2".to_string()), "{ours:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_layers_get_notices_and_progress_is_reported() {
    let reg = Registry::start(None);
    let client = reg.client();
    let t = tar_of(&[E::File("etc/KEY", b"KEY docker")]);
    let blob = gz(&t);
    let layer = push_blob(&reg, &client, "mixed", &blob).await;
    let odd = push_blob(&reg, &client, "mixed", b"not a tar").await;
    let foreign = sha(b"foreign layer not in the registry");
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha(&t), sha(b"x"), sha(b"y")]},
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
