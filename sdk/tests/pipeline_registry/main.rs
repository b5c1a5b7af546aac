//! The image pipeline against a real registry process (CNCF distribution, `docker-registry`,
//! started by the test kit on 127.0.0.1 with a temp dir and stopped by PID). Needs
//! `apt-get install -y docker-registry apache2-utils` (htpasswd).

mod errors;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sidescan_sdk::async_trait;
use sidescan_sdk::prelude::*;
use support::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_layer_scan_streams_entries_caches_results_and_fills_layers() {
    let reg = start_registry(None);
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
            &format!("{}/app@{}", reg.host(), pushed.manifest_digest),
        ),
        &ctx(),
    )
    .await
    .unwrap();
    assert_eq!(rec.layer_calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_image_gets_layout_and_rootfs_with_whiteouts() {
    let reg = start_registry(None);
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
    let reg = start_registry(None);
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

    // containerd chooses per level and follows only the best entry: a nested index without a
    // platform ranks after the top level's own amd64 entry, so `arm` inside it is never reached;
    // and inside the nested index only its first amd64 entry counts.
    let nested = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": arm.manifest_digest, "size": arm.manifest_size,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": amd.manifest_digest, "size": amd.manifest_size,
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    })
    .to_string();
    let nested_digest = push_manifest(&reg, "multi", "nested", nested.as_bytes(), OCI_INDEX).await;
    let top = |first_is_nested: bool| {
        let nested_entry = serde_json::json!({"mediaType": OCI_INDEX, "digest": nested_digest,
            "size": nested.len()});
        let amd_entry = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": amd.manifest_digest,
            "size": amd.manifest_size, "platform": {"os": "linux", "architecture": "amd64"}});
        let manifests = if first_is_nested {
            vec![nested_entry]
        } else {
            vec![nested_entry, amd_entry]
        };
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
            .to_string()
    };
    push_manifest(&reg, "multi", "top", top(false).as_bytes(), OCI_INDEX).await;
    let mut j = job(&reg, "multi:top");
    j.platform = Some("linux/amd64".parse().unwrap());
    let out = p.scan(&scanner, &j, &ctx()).await.unwrap();
    assert_eq!(
        out.image.manifest_digests,
        vec![amd.manifest_digest.clone()]
    );
    push_manifest(&reg, "multi", "top-nested", top(true).as_bytes(), OCI_INDEX).await;
    let mut j = job(&reg, "multi:top-nested");
    j.platform = Some("linux/amd64".parse().unwrap());
    let out = p.scan(&scanner, &j, &ctx()).await.unwrap();
    assert_eq!(
        out.image.manifest_digests,
        vec![arm.manifest_digest.clone()],
        "the first amd64 entry of the only (nested) index"
    );

    // A descriptor that says "index" but points at an image manifest is refused, as runtimes
    // refuse it, rather than followed where a runtime would not go.
    let lying = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_INDEX, "digest": arm.manifest_digest, "size": arm.manifest_size},
            {"mediaType": OCI_MANIFEST, "digest": amd.manifest_digest, "size": amd.manifest_size,
             "platform": {"os": "linux", "architecture": "amd64"}},
        ]
    })
    .to_string();
    push_manifest(&reg, "multi", "lying", lying.as_bytes(), OCI_INDEX).await;
    let err = p
        .scan(&scanner, &job(&reg, "multi:lying"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err}");
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
    let reg = start_registry(None);
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
    let reg = start_registry(None);
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

/// A layout-only scanner's layers are read to their end once per process: a layer shared by a
/// later image is not read again, but its totals still count against that image's limits, and a
/// cached blob changed on disk is still caught and downloaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_verified_before_still_count_against_each_images_limits() {
    let reg = start_registry(None);
    let names: Vec<String> = (0..6).map(|i| format!("base/f{i}")).collect();
    let base: Vec<E<'_>> = names.iter().map(|n| E::File(n, b"base")).collect();
    let a = push_image(
        &reg,
        "a",
        "1",
        &[base.clone(), vec![E::File("a", b"a")]],
        "amd64",
    )
    .await;
    let four = vec![
        E::File("b1", b"b"),
        E::File("b2", b"b"),
        E::File("b3", b"b"),
        E::File("b4", b"b"),
    ];
    push_image(&reg, "b", "1", &[base.clone(), four], "amd64").await;
    push_image(&reg, "c", "1", &[base, vec![E::File("c", b"c")]], "amd64").await;
    let dir = tempfile::tempdir().unwrap();
    // image a: 7 entries, b: 10, c: 7
    let p = pipeline_with(dir.path(), |o| o.limits.max_entries = 9);
    let scanner: Arc<dyn Scanner> = Recorder::new(Input::WholeImage { rootfs: false });
    p.scan(&scanner, &job(&reg, "a:1"), &ctx()).await.unwrap();
    // b's own layer has 4 entries: only the replayed 6 of the shared layer take it past 9
    let err = p
        .scan(&scanner, &job(&reg, "b:1"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("entries"), "{err}");
    // the shared blob changed on disk: its stamp no longer matches, so it is hashed, found
    // corrupt and downloaded again before the scanner sees it
    let hex = a.layer_digests[0].trim_start_matches("sha256:");
    let cached = dir.path().join("cache/blobs/sha256").join(hex);
    let good = std::fs::read(&cached).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&cached, &bad).unwrap();
    p.scan(&scanner, &job(&reg, "c:1"), &ctx()).await.unwrap();
    assert_eq!(std::fs::read(&cached).unwrap(), good, "corrupt blob kept");
    // Damage that keeps the stamp (size, inode, mtime): the layer is not decoded again, but its
    // bytes are still hashed, so the scan is refused and the blob forgotten, never handed over.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&cached)
        .unwrap();
    let mtime = file.metadata().unwrap().modified().unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[bad[mid]], mid as u64).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    // another engine version: not answered from the whole-image result cache
    let recorder = Recorder::new(Input::WholeImage { rootfs: false });
    *recorder.engine.lock().unwrap() = "engine-2".into();
    let scanner_c: Arc<dyn Scanner> = recorder;
    let err = p
        .scan(&scanner_c, &job(&reg, "c:1"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err}");
    // forgotten: the next scan downloads it again and succeeds
    p.scan(&scanner_c, &job(&reg, "c:1"), &ctx()).await.unwrap();
    assert_eq!(std::fs::read(&cached).unwrap(), good);
    assert!(scratch_is_empty(dir.path()));
}

/// What an `UncompressedLayout` scanner found in its layout: per manifest layer, its media type,
/// whether the blob's sha256 is its digest, and the files of its tar.
type LayoutLayers = Vec<(String, bool, Vec<String>)>;

/// Reads the layout it is handed: every layer through the layout's own manifest.
struct LayoutReader(std::sync::Mutex<Vec<LayoutLayers>>);

#[async_trait]
impl Scanner for LayoutReader {
    fn info(&self) -> ScannerInfo {
        ScannerInfo {
            name: "layout-reader".into(),
            vendor: "t".into(),
            version: "1".into(),
            capabilities: vec![],
        }
    }
    fn input(&self) -> Input {
        Input::UncompressedLayout
    }
    async fn scan_image(&self, image: &ImageInput, _: &ScanContext) -> Result<ScanFindings, Error> {
        let blob = |d: &str| image.layout_dir.join("blobs/sha256").join(&d[7..]);
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(image.layout_dir.join("index.json")).unwrap())
                .unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(blob(digest)).unwrap()).unwrap();
        let mut seen = Vec::new();
        for layer in manifest["layers"].as_array().unwrap() {
            let (media_type, digest) = (
                layer["mediaType"].as_str().unwrap(),
                layer["digest"].as_str().unwrap(),
            );
            let bytes = std::fs::read(blob(digest)).unwrap();
            let sound = sidescan_testkit::digest::sha256_digest(&bytes) == digest;
            let tar_bytes = if media_type.ends_with("+gzip") {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
                    .unwrap();
                out
            } else {
                bytes
            };
            let mut archive = tar::Archive::new(&tar_bytes[..]);
            let files = archive
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().display().to_string())
                .collect();
            seen.push((media_type.to_string(), sound, files));
        }
        self.0.lock().unwrap().push(seen);
        Ok(ScanFindings::default())
    }
}

/// `Input::UncompressedLayout`: a first image's layers arrive uncompressed and named by diff_id
/// (the scanner reads exactly the verified tar streams); a later image sharing the base gets the
/// base as pulled (verified before) and only its own layer uncompressed; a layer that fails
/// verification never reaches the scanner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompressed_layout_holds_verified_tar_streams() {
    let reg = start_registry(None);
    let base = vec![E::Dir("etc/"), E::File("etc/os-release", b"ID=test")];
    let a = push_image(
        &reg,
        "a",
        "1",
        &[base.clone(), vec![E::File("a", b"a")]],
        "amd64",
    )
    .await;
    let b = push_image(&reg, "b", "1", &[base, vec![E::File("b", b"b")]], "amd64").await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let reader = Arc::new(LayoutReader(Default::default()));
    let scanner: Arc<dyn Scanner> = reader.clone();
    p.scan(&scanner, &job(&reg, "a:1"), &ctx()).await.unwrap();
    p.scan(&scanner, &job(&reg, "b:1"), &ctx()).await.unwrap();
    const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    let seen = reader.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            vec![
                (
                    TAR.into(),
                    true,
                    vec!["etc/".into(), "etc/os-release".into()]
                ),
                (TAR.into(), true, vec!["a".into()]),
            ],
            vec![
                (
                    GZIP_LAYER.into(),
                    true,
                    vec!["etc/".into(), "etc/os-release".into()]
                ),
                (TAR.into(), true, vec!["b".into()]),
            ],
        ]
    );
    assert_ne!(a.layer_digests[1], b.layer_digests[1]);
    assert!(scratch_is_empty(dir.path()));

    // The same layer twice in one image: both entries uncompressed, one file.
    let twice = vec![E::File("twice", b"t")];
    push_image(&reg, "twice", "1", &[twice.clone(), twice], "amd64").await;
    p.scan(&scanner, &job(&reg, "twice:1"), &ctx())
        .await
        .unwrap();
    let seen = reader.0.lock().unwrap().last().cloned().unwrap();
    let layer = (TAR.to_string(), true, vec!["twice".to_string()]);
    assert_eq!(seen, vec![layer.clone(), layer]);

    // A layer whose diff_id is a lie: DATA_LOSS, and the scanner is never called.
    let blob = gz(&tar_of(&[E::File("x", b"x")]));
    let lie = sidescan_testkit::digest::sha256_digest(b"other");
    push_gzip_layers(&reg, "liar", "1", &[(blob, lie)], "amd64").await;
    let err = p
        .scan(&scanner, &job(&reg, "liar:1"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err}");
    assert_eq!(reader.0.lock().unwrap().len(), 3, "the scanner saw a lie");
    assert!(scratch_is_empty(dir.path()));
}
