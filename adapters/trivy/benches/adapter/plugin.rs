//! The adapter under measurement: a release `sidescan-trivy` process, and one timed `ScanImage`
//! on it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sidescan_proto::mime;
use sidescan_proto::v1 as pb;
use sidescan_proto::v1::scan_client::ScanClient;
use sidescan_testkit::process::ChildGuard;
use sidescan_testkit::registry::Registry;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::REPO;

/// A release `sidescan-trivy` process on 127.0.0.1 with its own temp dir (empty blob cache).
pub(crate) struct Adapter {
    child: ChildGuard,
    addr: String,
    dir: tempfile::TempDir,
}

impl Adapter {
    pub(crate) fn start(
        trivy: &Path,
        trivy_cache: &Path,
        image_source: &str,
    ) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("bench-trivy-adapter-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        // Cold means cold: no layer Trivy analysed for an earlier adapter is kept (the adapter's
        // `--layer-cache-max-size` caches live beside the DB in the Trivy cache dir).
        match std::fs::remove_dir_all(trivy_cache.join("layer-cache")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("clearing Trivy's layer caches: {e}"));
            }
            _ => {}
        }
        let log =
            std::fs::File::create(dir.path().join("adapter.log")).map_err(|e| e.to_string())?;
        let child = Command::new(env!("CARGO_BIN_EXE_sidescan-trivy"))
            .args(["--listen", "127.0.0.1:0", "--addr-file"])
            .arg(dir.path().join("addr"))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("--scratch-dir")
            .arg(dir.path())
            .args(["--health-interval", "100ms"])
            // Debug lines of this crate tell whether a scan ran Trivy.
            .args(["--log-level", "info,sidescan_trivy=debug"])
            .arg("--trivy-bin")
            .arg(trivy)
            .arg("--trivy-cache-dir")
            .arg(trivy_cache)
            .arg("--skip-db-update")
            .args(["--image-source", image_source])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("sidescan-trivy: {e}"))?;
        let mut child = ChildGuard::new(child, "sidescan-trivy");
        let started = Instant::now();
        loop {
            if let Ok(addr) = std::fs::read_to_string(dir.path().join("addr")) {
                return Ok(Self { child, addr, dir });
            }
            if child.try_wait().is_some() || started.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "sidescan-trivy did not start; log:\n{}",
                    std::fs::read_to_string(dir.path().join("adapter.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("adapter.log")).unwrap_or_default()
    }

    /// CPU seconds the adapter process and the Trivy runs it has waited for have used so far.
    pub(crate) fn cpu_seconds(&self) -> Result<f64, String> {
        sidescan_testkit::process::cpu_seconds(self.child.pid(), true)
            .map_err(|e| format!("adapter CPU: {e}"))
    }

    /// How many Trivy runs the adapter has logged.
    pub(crate) fn trivy_runs(&self) -> usize {
        self.log().matches("trivy image run").count()
    }

    /// Peak RSS of the adapter process (not its children), KiB.
    pub(crate) fn vm_hwm_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    pub(crate) async fn channel(&self) -> Result<tonic::transport::Channel, String> {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))
    }

    pub(crate) async fn wait_serving(&self) -> Result<(), String> {
        let mut health = HealthClient::new(self.channel().await?);
        for _ in 0..200 {
            let status = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status)
                .unwrap_or(-1);
            if status == ServingStatus::Serving as i32 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "sidescan-trivy never SERVING; log:\n{}",
            self.log()
        ))
    }
}

/// One timed `ScanImage`: wall time and the reported (id, package) pairs.
pub(crate) async fn scan(
    client: &mut ScanClient<tonic::transport::Channel>,
    registry: &Registry,
    tag: &str,
) -> Result<(Duration, BTreeSet<(String, String)>), String> {
    let mut req = pb::ScanRequest {
        image: format!("{REPO}:{tag}"),
        registry: Some(pb::Registry {
            url: registry.url(),
            ..Default::default()
        }),
        ..Default::default()
    };
    req.report_types.insert(
        mime::VULNERABILITY_REPORT.into(),
        pb::ReportParameters::default(),
    );
    let started = Instant::now();
    let response = client
        .scan_image(req)
        .await
        .map_err(|e| format!("ScanImage: {e:?}"))?
        .into_inner();
    let elapsed = started.elapsed();
    let found = response
        .report
        .map(|r| {
            r.vulnerabilities
                .into_iter()
                .map(|v| (v.id, v.package))
                .collect()
        })
        .unwrap_or_default();
    Ok((elapsed, found))
}
