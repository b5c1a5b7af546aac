//! Shared helpers: a registry notifying a watcher, plugins, pushes with skopeo, and waiting
//! for report referrers to appear.

use std::time::{Duration, Instant};

use sidescan_oci::referrers;
use sidescan_oci::report::{self, ReportInfo};
use sidescan_oci::{Credentials, Registry as OciRegistry};
use sidescan_proto::v1::ScanResponse;
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::plugin::{PluginProcess, test_plugin_binary, workspace_binary};
use sidescan_testkit::process::free_port;
use sidescan_testkit::registry::Registry;
use sidescan_testkit::tool;
use sidescan_testkit::watch::WatchProcess;

/// A registry that notifies a watcher, and the watcher.
pub(crate) struct Setup {
    pub(crate) registry: Registry,
    pub(crate) watch: WatchProcess,
}

/// The `sidescan-watch` binary built with the tests.
pub(crate) fn watch_binary() -> std::path::PathBuf {
    workspace_binary("sidescan-watch")
}

/// Starts a test plugin (marker `SIDESCAN-TEST-FINDING` is a HIGH finding) reporting
/// `engine` as its engine version.
pub(crate) async fn test_plugin(engine: &str) -> PluginProcess {
    let plugin = PluginProcess::start(&test_plugin_binary(), &["--engine-version", engine]);
    plugin
        .wait_for_health(sidescan_testkit::plugin::ServingStatus::Serving)
        .await;
    plugin
}

/// Starts a watcher on `listen` for `registry_url` with `plugins` and `extra` flags.
pub(crate) fn start_watch(
    listen: &str,
    registry_url: &str,
    plugins: &[&PluginProcess],
    extra: &[&str],
) -> WatchProcess {
    let mut args = vec!["--registry".to_string(), registry_url.to_string()];
    for p in plugins {
        args.push("--plugin".into());
        args.push(p.url());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    WatchProcess::start(&watch_binary(), listen, &args)
}

/// A docker-registry whose notifications go to a watcher started with `plugins` and `extra`.
pub(crate) async fn setup(plugins: &[&PluginProcess], extra: &[&str]) -> Setup {
    let port = free_port();
    let registry = Registry::with_notifications(&format!("http://127.0.0.1:{port}/events"));
    let watch = start_watch(
        &format!("127.0.0.1:{port}"),
        &registry.url(),
        plugins,
        extra,
    );
    watch.wait_ready(Duration::from_secs(20)).await;
    Setup { registry, watch }
}

/// A client of `registry` (anonymous).
pub(crate) fn client(registry: &Registry) -> OciRegistry {
    OciRegistry::new(&registry.url(), Credentials::Anonymous, false).expect("registry client")
}

/// Pushes `image` as `repo:tag` with `skopeo copy` (what a user does); returns its digest.
pub(crate) fn skopeo_push(registry: &Registry, image: &Artifact, repo: &str, tag: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    image.write_oci_layout(dir.path(), tag).expect("OCI layout");
    let creds: Vec<String> = registry
        .credentials()
        .map(|(u, p)| vec!["--dest-creds".to_owned(), format!("{u}:{p}")])
        .unwrap_or_default();
    let out = std::process::Command::new(tool::skopeo())
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
        ])
        .args(&creds)
        .arg(format!("oci:{}:{tag}", dir.path().display()))
        .arg(registry.docker_ref(repo, tag))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    image.digest().to_string()
}

/// Waits up to `timeout` until `repo@digest` has a sidescan report by `scanner` (and, when
/// given, engine version `engine`); returns it.
pub(crate) async fn wait_for_report(
    registry: &OciRegistry,
    repo: &str,
    digest: &str,
    scanner: &str,
    engine: Option<&str>,
    timeout: Duration,
    logs: impl Fn() -> String,
) -> ReportInfo {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(found) = referrers::list(registry, repo, digest).await
            && let Some(report) = report::latest(&found.entries).into_iter().find(|r| {
                r.artifact_type == report::REPORT_ARTIFACT_TYPE
                    && r.scanner.name == scanner
                    && engine.is_none_or(|e| r.scanner.engine_version == e)
            })
        {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "no report by {scanner} on {repo}@{digest} after {timeout:?}; watcher log:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `ScanResponse` a report referrer holds.
pub(crate) async fn report_document(
    registry: &OciRegistry,
    repo: &str,
    digest: &str,
) -> ScanResponse {
    let doc = referrers::document(registry, repo, digest, 8 << 20)
        .await
        .expect("report document");
    sidescan_proto::json::from_slice(&doc, "sidescan.v1.ScanResponse").expect("report JSON")
}

/// The value of the first metric line starting with `prefix` (0 when absent).
pub(crate) fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// An image whose top layer holds the test plugin's marker at `app/finding.txt` (a HIGH
/// finding of the test plugin); `salt` makes distinct images.
pub(crate) fn marked_image(salt: &str) -> Artifact {
    use sidescan_testkit::fixtures::{Entry, Image, Layer, base_layer};
    Image::new()
        .layer(base_layer())
        .layer(Layer::new([Entry::file(
            "app/finding.txt",
            format!("{salt} SIDESCAN-TEST-FINDING\n"),
        )]))
        .build()
}

/// Waits until the metric line starting with `prefix` reaches `want`, then asserts it is
/// exactly `want` (not more).
pub(crate) async fn wait_metric(
    watch: &sidescan_testkit::watch::WatchProcess,
    prefix: &str,
    want: f64,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = watch.metrics_text().await;
        let value = metric(&text, prefix);
        if value >= want {
            assert_eq!(value, want, "{prefix}: {text}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{prefix} stayed {value} (want {want}); log:\n{}",
            watch.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An HTTP endpoint on 127.0.0.1 that answers 200 to every POST and hands over each body.
pub(crate) fn event_sink() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if tx
                .send(String::from_utf8_lossy(&body).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    (url, rx)
}
