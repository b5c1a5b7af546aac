//! The ClamAV adapter as an operator deploys it: a real `docker-registry`, a real clamd (test
//! signatures), and the real `sidescan-clamav` binary, called over gRPC. Verdicts on fixture
//! images, size limits, non-image artifacts, platforms, the per-layer result cache and its
//! invalidation by a signature change, and clamd failing under a scan.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sidescan_proto::v1 as pb;
use sidescan_testkit::clamd::{ClamdOptions, ClamdProcess, EICAR_SIGNATURE};
use sidescan_testkit::fixtures::{self, EICAR, EICAR_PATH, Entry, Image, Layer, PseudoRandom};
use sidescan_testkit::oci::{Artifact, Blob, OCI_EMPTY, OCI_MANIFEST};
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, malware_request, workspace_binary};
use sidescan_testkit::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// Starts `sidescan-clamav` talking to clamd at `clamd` (`unix:/...` or `tcp://...`) with
/// `extra` flags, and waits until its health says SERVING (it refuses scans before).
pub(super) async fn start_plugin(clamd: &str, extra: &[&str]) -> PluginProcess {
    let plugin = PluginProcess::start(
        &workspace_binary("sidescan-clamav"),
        &[&["--clamd", clamd][..], extra].concat(),
    );
    plugin.wait_for_health(ServingStatus::Serving).await;
    plugin
}

/// A request for `repo:tag` on `registry` asking for the malware report.
fn request(registry: &Registry, repo: &str, tag: &str) -> pb::ScanRequest {
    malware_request(&registry.url(), &format!("{repo}:{tag}"))
}

/// `ScanImage` with a 60 s deadline.
async fn try_scan(
    plugin: &PluginProcess,
    req: pb::ScanRequest,
) -> Result<pb::ScanResponse, tonic::Status> {
    let mut req = tonic::Request::new(req);
    req.set_timeout(Duration::from_secs(60));
    plugin
        .scan_client()
        .await
        .scan_image(req)
        .await
        .map(tonic::Response::into_inner)
}

/// Pushes `image` as `repo:1` and scans it; panics with the plugin's log on error.
async fn push_and_scan(
    registry: &Registry,
    plugin: &PluginProcess,
    image: &Artifact,
    repo: &str,
) -> pb::ScanResponse {
    registry.push(image, repo, "1").await;
    scan(registry, plugin, repo).await
}

/// Starts a registry, a clamd with the test signatures and the plugin on clamd's Unix socket,
/// pushes `image` as `repo:1` and scans it; everything is stopped on return.
async fn scan_fixture(image: &Artifact, repo: &str) -> pb::ScanResponse {
    let registry = Registry::anonymous();
    let clamd = ClamdProcess::start();
    let plugin = start_plugin(&clamd.unix_addr(), &[]).await;
    push_and_scan(&registry, &plugin, image, repo).await
}

/// Scans `repo:1`; panics with the plugin's log on error.
async fn scan(registry: &Registry, plugin: &PluginProcess, repo: &str) -> pb::ScanResponse {
    try_scan(plugin, request(registry, repo, "1"))
        .await
        .unwrap_or_else(|e| panic!("scan {repo}: {e:?}\nplugin log:\n{}", plugin.logs()))
}

fn report(response: &pb::ScanResponse) -> &pb::ScanReport {
    response.report.as_ref().expect("primary report")
}

/// The malware report document (JSON), which must have succeeded.
fn malware_report(response: &pb::ScanResponse) -> Value {
    let typed = response
        .reports
        .iter()
        .find(|r| r.mime_type == sidescan_proto::mime::MALWARE_REPORT)
        .expect("malware report in the response");
    assert_eq!(
        typed.status,
        pb::ReportStatus::Succeeded as i32,
        "{typed:?}"
    );
    serde_json::from_slice(&typed.document).expect("malware report is JSON")
}

/// `(kind, signature, path, layer digest)` of every finding, sorted by path.
fn findings(response: &pb::ScanResponse) -> Vec<(pb::FindingKind, String, String, String)> {
    let mut out: Vec<_> = report(response)
        .vulnerabilities
        .iter()
        .map(|f| {
            (
                f.kind(),
                f.id.clone(),
                f.path.clone(),
                f.layer_digest.clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.2.cmp(&b.2));
    out
}

fn eicar_finding(path: &str, layer: &str) -> (pb::FindingKind, String, String, String) {
    (
        pb::FindingKind::Malware,
        EICAR_SIGNATURE.to_owned(),
        path.to_owned(),
        layer.to_owned(),
    )
}

#[tokio::test]
async fn clean_image_has_no_findings_and_a_clean_malware_report() {
    let image = fixtures::clean_image();
    let response = scan_fixture(&image, "clam/clean").await;
    let report = report(&response);
    assert!(report.vulnerabilities.is_empty(), "{report:?}");
    assert!(report.notices.is_empty(), "{report:?}");
    assert_eq!(
        report.image.as_ref().map(|i| i.digest.as_str()),
        Some(image.digest())
    );
    assert_eq!(
        report.scanner.as_ref().map(|s| s.name.as_str()),
        Some("sidescan-clamav")
    );
    let doc = malware_report(&response);
    assert_eq!(doc["status"], "clean", "{doc}");
    assert_eq!(doc["malware"], json!([]));
}

#[tokio::test]
async fn eicar_in_the_top_layer_is_malware_with_signature_path_and_layer() {
    let image = fixtures::eicar_top_layer();
    let top = &image.layers[1];
    let response = scan_fixture(&image, "clam/eicar").await;
    let path = format!("/{EICAR_PATH}");
    assert_eq!(
        findings(&response),
        [eicar_finding(&path, &top.blob.digest)]
    );
    let finding = &report(&response).vulnerabilities[0];
    assert_eq!(finding.layer_diff_id, top.diff_id);
    assert_eq!(finding.severity(), pb::Severity::Critical);
    let summary = report(&response).summary.expect("summary");
    assert_eq!((summary.total, summary.critical), (1, 1), "{summary:?}");
    let doc = malware_report(&response);
    assert_eq!(doc["status"], "infected", "{doc}");
    assert_eq!(doc["malware"][0]["signature"], EICAR_SIGNATURE);
    assert_eq!(doc["malware"][0]["path"], path);
    assert_eq!(doc["malware"][0]["layer"]["digest"], top.blob.digest);
}

#[tokio::test]
async fn eicar_in_a_lower_layer_deleted_by_a_whiteout_is_still_reported() {
    // Every client still pulls the layer blob that carries it.
    let image = fixtures::eicar_lower_layer_whited_out();
    let response = scan_fixture(&image, "clam/whiteout").await;
    assert_eq!(
        findings(&response),
        [eicar_finding(
            &format!("/{EICAR_PATH}"),
            &image.layers[1].blob.digest
        )]
    );
    assert_eq!(malware_report(&response)["status"], "infected");
}

#[tokio::test]
async fn eicar_inside_a_zip_inside_the_image_is_found() {
    let image = fixtures::eicar_zip_image();
    let response = scan_fixture(&image, "clam/zip").await;
    assert_eq!(
        findings(&response),
        [eicar_finding(
            &format!("/{}", fixtures::EICAR_ZIP_PATH),
            &image.layers[1].blob.digest
        )]
    );
}

#[tokio::test]
async fn a_file_over_the_stream_limit_is_a_notice_and_the_report_is_incomplete_never_clean() {
    // Over TCP clamd does not share our filesystem: no SCAN fallback, so the file is not scanned.
    let registry = Registry::anonymous();
    let clamd = ClamdProcess::start_with(&ClamdOptions {
        stream_max_length: "1M".into(),
        ..ClamdOptions::default()
    });
    let plugin = start_plugin(&clamd.tcp_addr(), &["--stream-max-length", "1MiB"]).await;
    let image = fixtures::large_file_image(3 << 20);
    let response = push_and_scan(&registry, &plugin, &image, "clam/large").await;
    let report = report(&response);
    assert!(report.vulnerabilities.is_empty(), "{report:?}");
    let notices: Vec<_> = report
        .notices
        .iter()
        .map(|n| (n.code.as_str(), n.path.as_str(), n.layer_digest.as_str()))
        .collect();
    assert_eq!(
        notices,
        [(
            sidescan_sdk::model::notice_codes::FILE_TOO_LARGE,
            format!("/{}", fixtures::LARGE_FILE_PATH).as_str(),
            image.layers[0].blob.digest.as_str()
        )]
    );
    let doc = malware_report(&response);
    assert_eq!(doc["status"], "incomplete", "{doc}");
    assert_eq!(doc["notices"][0]["code"], "file-too-large");
}

/// A non-image OCI artifact (empty config, `artifactType` set) whose one blob is EICAR, titled
/// `payload.bin`.
fn infected_artifact() -> Artifact {
    let config = Blob::new(OCI_EMPTY, &b"{}"[..]);
    let payload = Blob::new("application/octet-stream", EICAR);
    let mut layer = payload.descriptor();
    layer["annotations"] = json!({"org.opencontainers.image.title": "payload.bin"});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.tool.v1",
        "config": config.descriptor(),
        "layers": [layer],
    });
    let mut artifact = Artifact::from_manifest(Blob::new(
        OCI_MANIFEST,
        serde_json::to_vec(&manifest).expect("json"),
    ));
    artifact.config = Some(config);
    artifact.extra_blobs = vec![payload];
    artifact
}

#[tokio::test]
async fn an_infected_blob_of_a_non_image_artifact_is_found() {
    let artifact = infected_artifact();
    let blob = artifact.extra_blobs[0].digest.clone();
    let response = scan_fixture(&artifact, "clam/artifact").await;
    assert_eq!(findings(&response), [eicar_finding("payload.bin", &blob)]);
    assert_eq!(malware_report(&response)["status"], "infected");
}

/// `image` with its config's media type (and the manifest's descriptor of it) set to `media_type`,
/// and `artifactType` set when given.
fn with_config_type(image: Artifact, media_type: &str, artifact_type: Option<&str>) -> Artifact {
    let mut image = image;
    let config = image.config.take().expect("image config");
    let config = Blob::new(media_type, config.data.clone());
    let mut manifest: Value = serde_json::from_slice(&image.manifest.data).expect("manifest");
    manifest["config"] = config.descriptor();
    if let Some(t) = artifact_type {
        manifest["artifactType"] = json!(t);
    }
    image.manifest = Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).expect("json"));
    image.config = Some(config);
    image
}

#[tokio::test]
async fn a_manifest_with_image_layers_is_scanned_as_an_image_whatever_its_config_type() {
    // An artifact config type must not turn a runnable image into an "artifact" whose blobs
    // are only scanned raw: the finding is at the file's path inside the image.
    let image = with_config_type(
        fixtures::eicar_top_layer(),
        "application/vnd.example.config.v1+json",
        Some("application/vnd.example.tool.v1"),
    );
    let response = scan_fixture(&image, "clam/disguised").await;
    let found = findings(&response);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, EICAR_SIGNATURE, "{found:?}");
    assert_eq!(found[0].2, format!("/{EICAR_PATH}"), "{found:?}");
}

#[tokio::test]
async fn an_artifact_of_a_type_the_plugin_does_not_consume_is_failed_precondition() {
    let registry = Registry::anonymous();
    let clamd = ClamdProcess::start();
    let plugin = start_plugin(&clamd.unix_addr(), &[]).await;
    let artifact = infected_artifact();
    let mut manifest: Value = serde_json::from_slice(&artifact.manifest.data).expect("manifest");
    let config = Blob::new("application/vnd.example.config.v1+json", &b"{}"[..]);
    manifest["config"] = config.descriptor();
    let mut artifact = artifact;
    artifact.manifest = Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).expect("json"));
    artifact.config = Some(config);
    registry.push(&artifact, "clam/unconsumed", "1").await;
    let err = try_scan(&plugin, request(&registry, "clam/unconsumed", "1"))
        .await
        .expect_err("not consumed");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("application/vnd.example.tool.v1"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_multi_arch_index_without_platform_names_the_infected_platform() {
    let index = fixtures::multi_arch_index();
    let response = scan_fixture(&index, "clam/multi").await;
    let report = report(&response);
    assert_eq!(report.vulnerabilities.len(), 1, "{report:?}");
    let finding = &report.vulnerabilities[0];
    assert_eq!(finding.id, EICAR_SIGNATURE);
    let platforms: Vec<_> = finding
        .platforms
        .iter()
        .map(|p| format!("{}/{}/{}", p.os, p.architecture, p.variant))
        .collect();
    assert_eq!(platforms, ["linux/arm64/v8"]);
    assert_eq!(
        report.platforms.len(),
        2,
        "both platforms scanned: {report:?}"
    );
}

/// Lines clamd logged for scanned files, streamed (`instream(...)`) or passed as descriptors
/// (`/memfd:...`); with `LogClean yes` clean ones too. Not the adapter's self-check, which clamd
/// logs as a `Heuristics.Limits.Exceeded.MaxRecursion` alert on a stream.
fn instream_count(clamd: &ClamdProcess) -> usize {
    clamd
        .log()
        .lines()
        .filter(|l| l.contains("instream(") || l.contains("/memfd:"))
        .filter(|l| !l.contains("Heuristics.Limits.Exceeded.MaxRecursion"))
        .count()
}

/// Waits until clamd has logged `want` streamed files (its log may lag its reply), then checks
/// that no more came.
async fn assert_instream_count(clamd: &ClamdProcess, want: usize, what: &str) {
    let started = Instant::now();
    while instream_count(clamd) < want && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        instream_count(clamd),
        want,
        "{what}; clamd log:\n{}",
        clamd.log()
    );
}

#[tokio::test]
async fn the_shared_base_layer_is_served_from_cache_until_the_signatures_change() {
    let registry = Registry::anonymous();
    let clamd = ClamdProcess::start_with(&ClamdOptions {
        log_clean: true,
        ..ClamdOptions::default()
    });
    let db = clamd.database_dir();
    let plugin = start_plugin(
        &clamd.unix_addr(),
        &[
            "--clamd-database-dir",
            db.to_str().expect("utf-8 temp path"),
        ],
    )
    .await;
    // The base layer: 4 files of base_layer(), EICAR and a legacy tool (6 files to scan).
    const LEGACY_MARKER: &str = "LEGACY-TOOL-9f1c2e";
    let base = fixtures::base_layer()
        .push(Entry::file("opt/eicar.com", EICAR))
        .push(Entry::file(
            "opt/legacy.sh",
            format!("#!/bin/sh\n# {LEGACY_MARKER}\nexit 0\n").into_bytes(),
        ));
    let app = |version: &str| {
        Image::new()
            .layer(base.clone())
            .layer(Layer::new([
                Entry::file("app/version", format!("{version}\n").into_bytes()),
                Entry::file("app/main.py", format!("print('{version}')\n").into_bytes()),
            ]))
            .build()
    };
    let (v1, v2) = (app("1.0"), app("2.0"));
    let base_digest = v1.layers[0].blob.digest.clone();
    assert_eq!(base_digest, v2.layers[0].blob.digest);

    let first = push_and_scan(&registry, &plugin, &v1, "clam/app-v1").await;
    assert_eq!(
        findings(&first),
        [eicar_finding("/opt/eicar.com", &base_digest)]
    );
    assert_instream_count(&clamd, 8, "first scan: 6 base files + 2 app files").await;

    // Same base layer: only the 2 files of the new top layer go to clamd; the base layer's
    // finding comes from the cache.
    let second = push_and_scan(&registry, &plugin, &v2, "clam/app-v2").await;
    assert_eq!(
        findings(&second),
        [eicar_finding("/opt/eicar.com", &base_digest)]
    );
    assert_instream_count(&clamd, 10, "second scan: the base layer from cache").await;

    // A new signature (matching the legacy tool): the plugin sees the database change, RELOADs
    // clamd, and its engine version (part of the cache key) changes.
    std::fs::write(
        db.join("legacy.ndb"),
        format!("Sidescan-Legacy-Tool:0:*:{}\n", hex::encode(LEGACY_MARKER)),
    )
    .expect("write legacy.ndb");
    let started = Instant::now();
    while !clamd.log().contains("Database correctly reloaded") {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "clamd was not asked to RELOAD; plugin log:\n{}\nclamd log:\n{}",
            plugin.logs(),
            clamd.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let third = scan(&registry, &plugin, "clam/app-v2").await;
    assert_eq!(
        findings(&third),
        [
            eicar_finding("/opt/eicar.com", &base_digest),
            (
                pb::FindingKind::Malware,
                "Sidescan-Legacy-Tool.UNOFFICIAL".to_owned(),
                "/opt/legacy.sh".to_owned(),
                base_digest.clone()
            ),
        ]
    );
    assert_instream_count(
        &clamd,
        18,
        "after the signature change every layer is rescanned",
    )
    .await;
}

/// An image with many small files (so a scan lasts long enough to kill clamd under it) and
/// EICAR last.
fn many_files_image() -> Artifact {
    let mut rng = PseudoRandom::new(11);
    let mut layer = Layer::new([Entry::dir("data")]);
    for i in 0..300 {
        layer = layer.push(Entry::file(
            format!("data/f{i:03}.bin"),
            rng.bytes(16 << 10),
        ));
    }
    Image::new()
        .layer(layer.push(Entry::file("data/zz-eicar.com", EICAR)))
        .build()
}

#[tokio::test]
async fn clamd_killed_mid_scan_is_unavailable_and_the_next_scan_after_restart_succeeds() {
    let registry = Registry::anonymous();
    let mut clamd = ClamdProcess::start_with(&ClamdOptions {
        log_clean: true,
        ..ClamdOptions::default()
    });
    let plugin = start_plugin(&clamd.unix_addr(), &["--clamd-connections", "1"]).await;
    let image = many_files_image();
    registry.push(&image, "clam/many", "1").await;

    let scan_task = tokio::spawn({
        let req = request(&registry, "clam/many", "1");
        let client = plugin.scan_client().await;
        async move {
            let mut client = client;
            let mut req = tonic::Request::new(req);
            req.set_timeout(Duration::from_secs(60));
            client.scan_image(req).await
        }
    });
    // Kill clamd once it has scanned some files, well before it reaches the last of 301.
    let started = Instant::now();
    while instream_count(&clamd) < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the scan never reached clamd; plugin log:\n{}",
            plugin.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    clamd.kill();
    let killed_at = Instant::now();
    let err = scan_task
        .await
        .expect("join")
        .expect_err("no verdict without clamd");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(10),
        "took {:?}",
        killed_at.elapsed()
    );

    clamd.restart();
    plugin.wait_for_health(ServingStatus::Serving).await;
    let response = scan(&registry, &plugin, "clam/many").await;
    assert_eq!(
        findings(&response),
        [eicar_finding(
            "/data/zz-eicar.com",
            &image.layers[0].blob.digest
        )]
    );
}

/// A fake clamd on 127.0.0.1 that answers `PING`, `VERSION` and the adapter's self-check (the
/// first `INSTREAM`, with the limits alert; so the plugin is ready) but never answers a scan: it
/// reads `INSTREAM` data forever.
async fn hanging_clamd() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    let self_checked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let self_checked = self_checked.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    if seen.len() < 64 {
                        seen.extend_from_slice(&buf[..n]);
                    }
                    let reply: &[u8] = if seen.starts_with(b"zPING\0") {
                        b"PONG\0"
                    } else if seen.starts_with(b"zVERSION\0") {
                        b"ClamAV 1.4.6\0"
                    } else if seen.starts_with(b"zINSTREAM\0")
                        && !self_checked.swap(true, std::sync::atomic::Ordering::SeqCst)
                    {
                        // Answer, then keep reading until the plugin hangs up (no reset).
                        let alert = b"stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND\0";
                        let _ = sock.write_all(alert).await;
                        continue;
                    } else {
                        continue; // INSTREAM (or anything else): swallow, never answer
                    };
                    let _ = sock.write_all(reply).await;
                    return;
                }
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_hanging_clamd_gives_a_timely_unavailable_not_a_stuck_request() {
    let registry = Registry::anonymous();
    let image = fixtures::eicar_top_layer();
    registry.push(&image, "clam/hang", "1").await;

    // A clamd that answers PING but never a scan: the file timeout ends the scan.
    let (port, fake) = hanging_clamd().await;
    let plugin = start_plugin(
        &format!("tcp://127.0.0.1:{port}"),
        &["--file-timeout", "1s"],
    )
    .await;
    let started = Instant::now();
    let err = try_scan(&plugin, request(&registry, "clam/hang", "1"))
        .await
        .expect_err("no verdict from a hanging clamd");
    let took = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    fake.abort();

    // A listener that accepts and never answers anything, PING included: not ready, refused at
    // once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    let plugin = PluginProcess::start(
        &workspace_binary("sidescan-clamav"),
        &[
            "--clamd",
            &format!("tcp://127.0.0.1:{port}"),
            "--file-timeout",
            "1s",
        ],
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(plugin.health().await, ServingStatus::NotServing);
    let started = Instant::now();
    let err = try_scan(&plugin, request(&registry, "clam/hang", "1"))
        .await
        .expect_err("clamd is not answering");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    drop(listener);
}
