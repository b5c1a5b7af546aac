//! Starts plugin processes (any binary built on the SDK) on 127.0.0.1 or a Unix socket and
//! stops them by PID.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
use sidescan_proto::v1::scan_client::ScanClient;
use tonic::transport::{Channel, Endpoint};
pub use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::process::ChildGuard;

/// Calls `ScanImageStream` with `request` and checks the stream's shape: at least one progress
/// event, then exactly one result and nothing after it. Returns that result.
pub async fn scan_stream_result(
    client: &mut ScanClient<Channel>,
    request: sidescan_proto::v1::ScanRequest,
) -> sidescan_proto::v1::ScanResponse {
    use futures::StreamExt as _;
    use sidescan_proto::v1::scan_image_stream_response::Event;
    let mut events = client
        .scan_image_stream(request)
        .await
        .expect("ScanImageStream")
        .into_inner();
    let (mut progress, mut results) = (0, Vec::new());
    while let Some(event) = events.next().await {
        match event.expect("stream event").event.expect("event set") {
            Event::Progress(_) => {
                assert!(results.is_empty(), "progress after the result");
                progress += 1;
            }
            Event::Result(response) => results.push(response),
        }
    }
    assert!(progress > 0, "no progress events");
    assert_eq!(results.len(), 1, "exactly one result");
    results.remove(0)
}

/// An HTTP/2 client without tonic's client-side deadline timer; see
/// [`PluginProcess::scan_client_without_local_deadline`].
pub type RawHttp2Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    tonic::body::Body,
>;

/// A `ScanRequest` for `image` (`repo:tag`) on the registry at `registry_url`, asking for the
/// malware report.
pub fn malware_request(registry_url: &str, image: &str) -> sidescan_proto::v1::ScanRequest {
    use sidescan_proto::v1 as pb;
    let mut req = pb::ScanRequest {
        image: image.to_string(),
        registry: Some(pb::Registry {
            url: registry_url.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    req.report_types.insert(
        sidescan_proto::mime::MALWARE_REPORT.into(),
        pb::ReportParameters::default(),
    );
    req
}

/// A running plugin process with its own temp dir (cache, scratch, logs), killed on drop.
pub struct PluginProcess {
    child: ChildGuard,
    addr: String,
    metrics_addr: Option<String>,
    dir: tempfile::TempDir,
}

/// Path of a binary of this workspace built by the same cargo run, found next to the running
/// executable: test binaries live in `target/<profile>/deps/`, binaries (`sidescan-demo` among
/// them) in `target/<profile>/`, examples in `target/<profile>/examples/`. Panics with the build
/// command when it is missing.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running executable");
    let exe_dir = exe.parent().expect("executable lives in a directory");
    let profile_dirs = [Some(exe_dir), exe_dir.parent()];
    profile_dirs
        .into_iter()
        .flatten()
        .flat_map(|dir| [dir.join(name), dir.join("examples").join(name)])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found next to {}: build it first (`cargo build --workspace --all-targets --examples`)",
                exe.display()
            )
        })
}

/// Path of the `sidescan-test-plugin` binary built with these tests.
pub fn test_plugin_binary() -> PathBuf {
    workspace_binary("sidescan-test-plugin")
}

impl PluginProcess {
    /// Starts `binary` listening on 127.0.0.1 (a free port) with `args` added, and waits until it
    /// has bound its socket.
    pub fn start(binary: &Path, args: &[&str]) -> Self {
        Self::start_listening(binary, "127.0.0.1:0", args)
    }

    /// Starts `binary` with `--listen listen` (`host:port` or `unix:/path`) and `args`.
    pub fn start_listening(binary: &Path, listen: &str, args: &[&str]) -> Self {
        Self::spawn(binary, listen, args, false, &[])
    }

    /// Like [`Self::start`], with `env` (`(name, value)` pairs) added to the plugin's
    /// environment (e.g. `DOCKER_CONFIG` for a tool the plugin runs).
    pub fn start_with_env(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(binary, "127.0.0.1:0", args, false, env)
    }

    /// Like [`Self::start`], with the metrics endpoint on a free port of 127.0.0.1
    /// (`--metrics-listen 127.0.0.1:0`); see [`Self::metrics_text`].
    pub fn start_with_metrics(binary: &Path, args: &[&str]) -> Self {
        Self::spawn(binary, "127.0.0.1:0", args, true, &[])
    }

    fn spawn(
        binary: &Path,
        listen: &str,
        args: &[&str],
        metrics: bool,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the plugin");
        let addr_file = dir.path().join("addr");
        let metrics_addr_file = dir.path().join("metrics-addr");
        let log = std::fs::File::create(dir.path().join("plugin.log")).expect("plugin log file");
        let mut command = Command::new(binary);
        if metrics {
            command
                .args(["--metrics-listen", "127.0.0.1:0", "--metrics-addr-file"])
                .arg(&metrics_addr_file);
        }
        let child = command
            .args(["--listen", listen])
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("--scratch-dir")
            .arg(dir.path())
            .args(["--health-interval", "100ms"])
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut plugin = Self {
            child: ChildGuard::new(child, binary.display().to_string()),
            addr: String::new(),
            metrics_addr: None,
            dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                plugin.addr = addr;
                // The plugin writes the metrics address before the gRPC one.
                plugin.metrics_addr = metrics.then(|| {
                    std::fs::read_to_string(&metrics_addr_file).unwrap_or_else(|e| {
                        panic!(
                            "no metrics address file beside the address file: {e}; log:\n{}",
                            plugin.logs()
                        )
                    })
                });
                return plugin;
            }
            if let Some(status) = plugin.child.try_wait() {
                panic!(
                    "plugin exited at start with {status}; log:\n{}",
                    plugin.logs()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "plugin did not bind within 20 s; log:\n{}",
                plugin.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The bound address: `127.0.0.1:PORT` or `unix:/path`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The bound metrics address (`127.0.0.1:PORT`) of a plugin started with
    /// [`Self::start_with_metrics`].
    pub fn metrics_addr(&self) -> Option<&str> {
        self.metrics_addr.as_deref()
    }

    /// `GET /metrics` of a plugin started with [`Self::start_with_metrics`]: the response body,
    /// after checking the status and the OpenMetrics content type.
    pub async fn metrics_text(&self) -> String {
        let addr = self
            .metrics_addr()
            .expect("plugin started without --metrics-listen");
        let response = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap_or_else(|e| panic!("GET http://{addr}/metrics: {e}"));
        assert_eq!(response.status(), 200, "GET /metrics");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "content type {content_type:?}"
        );
        response.text().await.expect("metrics body")
    }

    /// [`Self::metrics_text`], parsed.
    pub async fn metrics(&self) -> crate::metrics::Scrape {
        crate::metrics::Scrape::parse(&self.metrics_text().await)
    }

    /// The plugin URL as clients take it: `http://127.0.0.1:PORT` or `unix:/path`.
    pub fn url(&self) -> String {
        if self.addr.starts_with("unix:") {
            self.addr.clone()
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// The plugin's process id (e.g. to read `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The plugin's private temp dir (its cache and scratch root).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the plugin has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("plugin.log")).unwrap_or_default()
    }

    /// A gRPC channel to a TCP plugin.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to plugin at {}: {e}", self.addr))
    }

    /// A generated `sidescan.v1.Scan` client over [`Self::channel`].
    pub async fn scan_client(&self) -> ScanClient<Channel> {
        ScanClient::new(self.channel().await)
    }

    /// A generated `sidescan.v1.Scan` client over a plain HTTP/2 connection that sends the
    /// `grpc-timeout` header but, unlike tonic's `Channel`, does not enforce it itself: tonic's
    /// own timer answers `CANCELLED` locally, so tests that pin what the *server* answers to a
    /// deadline use this one.
    pub fn scan_client_without_local_deadline(&self) -> ScanClient<RawHttp2Client> {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        // Like tonic's `Channel`: without it Nagle holds the request body back for a delayed
        // ACK (about 40 ms) after its headers started the server's deadline timer.
        connector.set_nodelay(true);
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build(connector);
        let origin = format!("http://{}", self.addr)
            .parse()
            .expect("plugin address is a valid URI");
        ScanClient::with_origin(http, origin)
    }

    /// The plugin's `grpc.health.v1` status for the `sidescan.v1.Scan` service (over TCP).
    pub async fn health(&self) -> ServingStatus {
        let response = HealthClient::new(self.channel().await)
            .check(HealthCheckRequest {
                service: sidescan_proto::SCAN_SERVICE_NAME.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health check of {}: {e}", self.addr));
        ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown)
    }

    /// Waits until [`Self::health`] is `want` (10 s at most); panics with the plugin's log
    /// otherwise. Scans are refused with UNAVAILABLE until a plugin is serving.
    pub async fn wait_for_health(&self, want: ServingStatus) {
        let started = Instant::now();
        loop {
            let status = self.health().await;
            if status == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "health stayed {status:?}, wanted {want:?}; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `signal` to the plugin process.
    pub fn signal(&self, signal: Signal) {
        self.child.signal(signal);
    }

    /// Waits up to `timeout` for the process to exit and returns its exit code (`None` when it
    /// was killed by a signal). Panics with the plugin's log when it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        match self.child.wait_timeout(timeout) {
            Some(status) => status.code(),
            None => panic!(
                "plugin did not exit within {timeout:?}; log:\n{}",
                self.logs()
            ),
        }
    }
}
