//! A real `sidescan-watch` process on 127.0.0.1, stopped by PID on drop.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::ChildGuard;

/// A running watcher.
#[derive(Debug)]
pub struct WatchProcess {
    child: ChildGuard,
    addr: String,
    dir: tempfile::TempDir,
}

impl WatchProcess {
    /// Starts `binary` (the `sidescan-watch` built with the tests) listening on `listen`
    /// (`127.0.0.1:0` for any free port) with `args`, and waits until it listens.
    pub fn start(binary: &Path, listen: &str, args: &[String]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sidescan-watch-")
            .tempdir()
            .expect("temp dir");
        let addr_file = dir.path().join("addr");
        let log = std::fs::File::create(dir.path().join("watch.log")).expect("log file");
        let child = Command::new(binary)
            .args(["--listen", listen, "--listen-addr-file"])
            .arg(&addr_file)
            .args(args)
            .env("RUST_LOG", "info,sidescan_watch=debug")
            .env_remove("SIDESCAN_REGISTRY_USERNAME")
            .env_remove("SIDESCAN_REGISTRY_PASSWORD")
            .env_remove("SIDESCAN_REGISTRY_TOKEN")
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let mut child = ChildGuard::new(child, "sidescan-watch");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file)
                && !addr.is_empty()
            {
                return Self { child, addr, dir };
            }
            if let Some(status) = child.try_wait() {
                let log = std::fs::read_to_string(dir.path().join("watch.log")).unwrap_or_default();
                panic!("sidescan-watch exited at start ({status}); log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "sidescan-watch did not listen in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The events endpoint, `http://ADDR/events`.
    pub fn events_url(&self) -> String {
        format!("{}/events", self.url())
    }

    /// The log so far (JSON lines).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("watch.log")).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url()))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// Waits until `GET /healthz` answers 200, or panics with the log after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.url())).await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sidescan-watch not ready after {timeout:?}; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process with SIGKILL (no chance to finish anything).
    pub fn kill(&mut self) {
        self.child.signal(rustix::process::Signal::KILL);
        self.child.stop();
    }

    /// Stops the process (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        self.child.stop();
    }
}

/// Runs `sidescan report IMAGE --registry URL` with `extra` (the workspace's `sidescan`
/// binary): its exit code and stdout.
pub fn sidescan_report(image: &str, registry: &str, extra: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(crate::plugin::workspace_binary("sidescan"))
        .args(["report", image, "--registry", registry])
        .args(extra)
        .output()
        .expect("run sidescan report");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
