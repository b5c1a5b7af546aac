//! ClamAV signatures from a registry (`sidescan-clamav --signatures-from`), end to end: a real
//! `docker-registry` holding the signature artifact (pushed with `sidescan artifact push
//! clamav-db`), a second one holding the images, a real clamd and the plugin binary. The update
//! cycle without a restart, and the failures that must leave the old signatures serving: a
//! corrupt artifact, a database clamd refuses, a registry outage; then `--max-signature-age`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sidescan_oci::artifact::{TITLE, clamav, files_manifest, push_empty_config, visible_files};
use sidescan_proto::v1 as pb;
use sidescan_testkit::clamd::{ClamdProcess, EICAR_HDB, EICAR_SIGNATURE};
use sidescan_testkit::fixtures::{EICAR, Entry, Image, Layer};
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, malware_request, workspace_binary};
use sidescan_testkit::registry::Registry;

/// A string only the second signature version detects.
const CUSTOM: &[u8] = b"SIDESCAN-OCI-SIGNATURES-CUSTOM-STRING-7d1e";
/// The name clamd reports for [`CUSTOM`].
const CUSTOM_SIGNATURE: &str = "Sidescan-Custom-String.UNOFFICIAL";

/// Runs `sidescan artifact ARGS...`; panics with its output unless it succeeds; its stdout.
pub(super) fn sidescan_artifact(args: &[&str]) -> String {
    let out = Command::new(workspace_binary("sidescan"))
        .arg("artifact")
        .args(args)
        .output()
        .expect("run sidescan");
    assert!(
        out.status.success(),
        "sidescan artifact {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Writes signature files `(name, content)` into a new directory and pushes them to `reference`;
/// returns the manifest digest.
fn push_signatures(reference: &str, files: &[(&str, String)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = vec!["push".to_string(), "clamav-db".into(), reference.into()];
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write signature file");
        args.push(path.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sidescan_artifact(&args);
    out.trim()
        .rsplit_once('@')
        .expect("push prints REF@DIGEST")
        .1
        .to_string()
}

fn eicar_hdb() -> (&'static str, String) {
    ("eicar.hdb", format!("{EICAR_HDB}\n"))
}

fn custom_ndb() -> (&'static str, String) {
    (
        "custom.ndb",
        format!("Sidescan-Custom-String:0:*:{}\n", hex::encode(CUSTOM)),
    )
}

async fn metadata(plugin: &PluginProcess) -> pb::GetMetadataResponse {
    plugin
        .scan_client()
        .await
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("metadata")
        .into_inner()
}

async fn property(plugin: &PluginProcess, key: &str) -> Option<String> {
    metadata(plugin).await.properties.get(key).cloned()
}

/// Signature names found in `repo:1`.
async fn detections(images: &Registry, plugin: &PluginProcess, repo: &str) -> Vec<String> {
    let mut req = tonic::Request::new(malware_request(&images.url(), &format!("{repo}:1")));
    req.set_timeout(Duration::from_secs(60));
    let response = plugin
        .scan_client()
        .await
        .scan_image(req)
        .await
        .unwrap_or_else(|e| panic!("scan: {e:?}\nplugin log:\n{}", plugin.logs()))
        .into_inner();
    let mut ids: Vec<String> = response
        .report
        .expect("report")
        .vulnerabilities
        .into_iter()
        .map(|f| f.id)
        .collect();
    ids.sort();
    ids
}

/// Waits until `check` holds (at most `within`), polling every 200 ms.
async fn eventually<F, Fut>(within: Duration, what: &str, plugin: &PluginProcess, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}\nplugin log:\n{}",
            plugin.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the metadata's `clamav.signatures.last_error` mentions `needle`.
async fn await_error(plugin: &PluginProcess, needle: &str) {
    let what = format!("last_error mentions {needle:?}");
    eventually(Duration::from_secs(30), &what, plugin, || async {
        property(plugin, "clamav.signatures.last_error")
            .await
            .is_some_and(|e| e.contains(needle))
    })
    .await;
}

/// Starts `sidescan-clamav` on `clamd` taking its signatures from `reference`, with `extra`
/// flags, and waits until it serves (its first signature set loaded).
async fn start_plugin(clamd: &ClamdProcess, reference: &str, extra: &[&str]) -> PluginProcess {
    let db = clamd.database_dir();
    let base = [
        "--clamd",
        &clamd.unix_addr(),
        "--signatures-from",
        reference,
        "--signatures-dir",
        db.to_str().expect("utf-8 path"),
    ]
    .map(str::to_string);
    let args: Vec<&str> = base
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect();
    let plugin = PluginProcess::start(&workspace_binary("sidescan-clamav"), &args);
    plugin.wait_for_health(ServingStatus::Serving).await;
    plugin
}

fn db_files(dir: &Path) -> Vec<String> {
    visible_files(dir).expect("list the database directory")
}

/// Pushes a manifest of the ClamAV type by hand (what the CLI refuses to make): `layers` are
/// `(title, content, declared size)`.
async fn push_broken(registry: &Registry, repo: &str, tag: &str, layers: &[(&str, &[u8], i64)]) {
    let client =
        sidescan_oci::Registry::new(&registry.host(), sidescan_oci::Credentials::Anonymous, true)
            .expect("client");
    let config = push_empty_config(&client, repo).await.expect("config");
    let mut descriptors = Vec::new();
    for (title, content, size) in layers {
        let mut d = client
            .push_blob(repo, Bytes::copy_from_slice(content), clamav::LAYER_TYPE)
            .await
            .expect("push blob");
        d.size = *size;
        d.annotations = Some([(TITLE.to_string(), title.to_string())].into());
        descriptors.push(d);
    }
    let body = files_manifest(
        Some(clamav::ARTIFACT_TYPE),
        config,
        &descriptors,
        &Default::default(),
    )
    .expect("manifest");
    client
        .push_manifest(repo, tag, body, sidescan_oci::media::OCI_MANIFEST)
        .await
        .expect("push manifest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_updates_from_a_registry_without_restart() {
    let mut signatures = Registry::anonymous();
    let images = Registry::anonymous();
    let clamd = ClamdProcess::start();
    let db = clamd.database_dir();
    let reference = signatures.image_ref("mirror/clamav", "db");

    let v1 = push_signatures(&reference, &[eicar_hdb()]);
    let flags = [
        "--signatures-interval",
        "1s",
        "--signatures-reload-timeout",
        "8s",
    ];
    let plugin = start_plugin(&clamd, &reference, &flags).await;
    // The plugin owns the directory: the testkit's own files are gone, the probe is there.
    assert_eq!(db_files(&db), ["eicar.hdb", "sidescan-probe.ndb"]);
    assert_eq!(
        property(&plugin, "clamav.signatures.digest")
            .await
            .as_deref(),
        Some(v1.as_str())
    );

    let image = Image::new()
        .layer(Layer::new([
            Entry::file("app/eicar.com", EICAR),
            Entry::file("app/custom.txt", CUSTOM.to_vec()),
        ]))
        .build();
    images.push(&image, "app", "1").await;
    assert_eq!(detections(&images, &plugin, "app").await, [EICAR_SIGNATURE]);

    // v2 adds a signature for the custom string under the same tag: picked up, no restart.
    let pushed = Instant::now();
    let mut v2 = push_signatures(&reference, &[eicar_hdb(), custom_ndb()]);
    let want = [EICAR_SIGNATURE.to_string(), CUSTOM_SIGNATURE.to_string()];
    eventually(
        Duration::from_secs(30),
        "v2 detects the custom string",
        &plugin,
        || async { detections(&images, &plugin, "app").await == want },
    )
    .await;
    let took = pushed.elapsed();
    eprintln!("signature update: push to first scan with the new signatures took {took:?}");
    // Scans during the switch already see the new set (under a one-off, uncached key); the
    // engine version names v2 once clamd is confirmed serving it.
    eventually(Duration::from_secs(10), "v2 installed", &plugin, || async {
        property(&plugin, "clamav.signatures.digest")
            .await
            .as_deref()
            == Some(v2.as_str())
    })
    .await;
    let switched = pushed.elapsed();
    eprintln!("signature update: push to the engine version naming v2 took {switched:?}");

    // A corrupt artifact (a declared size that is not the blob's) and one with an unsafe file
    // name are refused; v2 keeps serving and its files stay.
    for (i, layers) in [
        vec![("custom.ndb", b"x".as_slice(), 5)],
        vec![("../escape.ndb", b"Evil:0:*:41414141\n".as_slice(), 18)],
    ]
    .into_iter()
    .enumerate()
    {
        push_broken(&signatures, "mirror/clamav", "db", &layers).await;
        await_error(&plugin, "refused").await;
        assert_eq!(detections(&images, &plugin, "app").await, want, "case {i}");
        assert_eq!(
            db_files(&db),
            ["custom.ndb", "eicar.hdb", "sidescan-probe.ndb"]
        );
        assert!(!db.parent().unwrap().join("escape.ndb").exists());
        // v2's files again (a new digest: the creation time differs) so the next case is a
        // change again.
        v2 = push_signatures(&reference, &[eicar_hdb(), custom_ndb()]);
        eventually(Duration::from_secs(15), "v2 again", &plugin, || async {
            property(&plugin, "clamav.signatures.digest")
                .await
                .as_deref()
                == Some(v2.as_str())
                && property(&plugin, "clamav.signatures.last_error")
                    .await
                    .is_none()
        })
        .await;
    }

    // A database clamd refuses (a malformed .ndb): clamd keeps its old set, the files are put
    // back, v2 keeps serving.
    push_signatures(
        &reference,
        &[eicar_hdb(), ("broken.ndb", "not a signature\n".into())],
    );
    await_error(&plugin, "did not load").await;
    // The refused artifact stays named while the tag points at it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let error = property(&plugin, "clamav.signatures.last_error").await;
    assert!(
        error.as_deref().is_some_and(|e| e.contains("did not load")),
        "{error:?}"
    );
    assert_eq!(
        db_files(&db),
        ["custom.ndb", "eicar.hdb", "sidescan-probe.ndb"]
    );
    assert_eq!(detections(&images, &plugin, "app").await, want);
    assert_eq!(
        property(&plugin, "clamav.signatures.digest")
            .await
            .as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(plugin.health().await, ServingStatus::Serving);

    // The signatures' registry goes away: nothing changes.
    signatures.stop();
    await_error(&plugin, "registry").await;
    assert_eq!(detections(&images, &plugin, "app").await, want);
    assert_eq!(plugin.health().await, ServingStatus::Serving);
    assert!(plugin.logs().contains("keeping the current signatures"));

    // A restart while the registry is down serves the installed set at once (the state file,
    // confirmed by the probe), with the same engine version.
    drop(plugin);
    let plugin = start_plugin(&clamd, &reference, &flags).await;
    assert_eq!(
        property(&plugin, "clamav.signatures.digest")
            .await
            .as_deref(),
        Some(v2.as_str())
    );
    assert_eq!(detections(&images, &plugin, "app").await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_signatures_stop_serving() {
    let signatures = Registry::anonymous();
    let clamd = ClamdProcess::start();
    let reference = signatures.image_ref("mirror/clamav", "db");
    push_signatures(&reference, &[eicar_hdb()]);
    let plugin = start_plugin(&clamd, &reference, &["--max-signature-age", "4s"]).await;
    eventually(
        Duration::from_secs(15),
        "NOT_SERVING when stale",
        &plugin,
        || async { plugin.health().await == ServingStatus::NotServing },
    )
    .await;
    let status = property(&plugin, "clamav.signatures.status").await;
    assert!(
        status
            .as_deref()
            .is_some_and(|s| s.contains("--max-signature-age")),
        "{status:?}"
    );
}
