//! The `sidescan-clamav` binary as a process beside a real clamd: flags, `GetMetadata`
//! (capabilities, clamd properties) and gRPC health following clamd's PING.

#[path = "support/clamd.rs"]
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sidescan_proto::v1 as pb;
use support::ClamdProcess;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The plugin process, stopped by PID on drop.
struct Plugin {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Plugin {
    fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("plugin temp dir");
        let addr_file = dir.path().join("addr");
        let log = std::fs::File::create(dir.path().join("plugin.log")).expect("log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sidescan-clamav"))
            .args(["--listen", "127.0.0.1:0", "--health-interval", "100ms"])
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("--scratch-dir")
            .arg(dir.path())
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sidescan-clamav");
        let started = Instant::now();
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                return Self { child, addr, dir };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sidescan-clamav exited with {status}: {}", logs(dir.path()));
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "sidescan-clamav did not bind: {}",
                logs(dir.path())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to plugin")
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn logs(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("plugin.log")).unwrap_or_default()
}

async fn wait_for_status(plugin: &Plugin, want: ServingStatus) {
    let channel = plugin.channel().await;
    let started = Instant::now();
    loop {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: sidescan_proto::SCAN_SERVICE_NAME.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        if status == want as i32 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "health stayed {status}, wanted {want:?}; log:\n{}",
            logs(plugin.dir.path())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metadata_and_health_follow_clamd() {
    let mut clamd = ClamdProcess::start();
    let plugin = Plugin::start(&["--clamd", &clamd.unix_addr(), "--malware-severity", "high"]);
    wait_for_status(&plugin, ServingStatus::Serving).await;

    let meta = pb::scan_client::ScanClient::new(plugin.channel().await)
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("GetMetadata")
        .into_inner();
    assert_eq!(
        meta.scanner.as_ref().map(|s| s.name.as_str()),
        Some("sidescan-clamav")
    );
    assert_eq!(
        meta.properties.get("clamav.version").map(String::as_str),
        Some("1.4.6")
    );
    let cap = &meta.capabilities[0];
    assert_eq!(cap.r#type, "malware");
    assert_eq!(
        cap.produces_mime_types,
        [sidescan_proto::mime::MALWARE_REPORT]
    );
    assert!(
        cap.consumes_mime_types
            .iter()
            .any(|t| t == sidescan_proto::mime::OCI_MANIFEST)
    );
    assert!(
        cap.consumes_mime_types
            .iter()
            .any(|t| t == "application/octet-stream")
    );
    let features = meta.features.expect("features");
    assert!(
        features.layer_result_cache && features.artifact_blobs,
        "{features:?}"
    );

    let started = Instant::now();
    clamd.kill();
    wait_for_status(&plugin, ServingStatus::NotServing).await;
    let down = started.elapsed();
    clamd.restart();
    wait_for_status(&plugin, ServingStatus::Serving).await;
    eprintln!(
        "health NOT_SERVING {down:?} after clamd was killed, SERVING again {:?} after",
        started.elapsed()
    );
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["--clamd", "nowhere"][..],
        &["--malware-severity", "severe"],
        &["--clamd-connections", "0"],
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_sidescan-clamav"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run sidescan-clamav");
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}
