//! Everything these tests take from the workspace's test helpers, in one place (the Harbor-shaped
//! client is `sidescan_testkit::harbor`), plus the `sidescan-harbor` process.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) use sidescan_testkit::clamd::{ClamdOptions, ClamdProcess, EICAR_SIGNATURE};
pub(crate) use sidescan_testkit::fixtures::{self, EICAR_PATH};
pub(crate) use sidescan_testkit::plugin::{
    PluginProcess, ServingStatus, test_plugin_binary, workspace_binary,
};
pub(crate) use sidescan_testkit::process::ChildGuard;
pub(crate) use sidescan_testkit::registry::Registry;

pub(crate) use sidescan_testkit::harbor::{
    GENERIC_REPORT, METADATA_V1_0, NATIVE_REPORT, ReportAnswer, SCAN_REQUEST_V1_0, SCAN_RESPONSE,
    client as harbor_client, get_report, metadata, poll_report,
    scan_request as harbor_scan_request, submit, submit_accepted,
};

/// A running `sidescan-harbor` on 127.0.0.1, stopped by PID on drop.
pub(crate) struct HarborProcess {
    child: ChildGuard,
    addr: String,
    dir: tempfile::TempDir,
}

impl HarborProcess {
    /// Starts `sidescan-harbor --plugin plugin_url` with `extra` flags and waits until it
    /// listens.
    pub(crate) fn start(plugin_url: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr_file = dir.path().join("addr");
        let log = std::fs::File::create(dir.path().join("harbor.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sidescan-harbor"))
            .args([
                "--plugin",
                plugin_url,
                "--listen",
                "127.0.0.1:0",
                "--addr-file",
            ])
            .arg(&addr_file)
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sidescan-harbor");
        let mut harbor = HarborProcess {
            child: ChildGuard::new(child, "sidescan-harbor"),
            addr: String::new(),
            dir,
        };
        let started = Instant::now();
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file)
                && !addr.is_empty()
            {
                harbor.addr = addr;
                return harbor;
            }
            if let Some(status) = harbor.child.try_wait() {
                panic!("sidescan-harbor exited with {status}:\n{}", harbor.logs());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "sidescan-harbor did not listen:\n{}",
                harbor.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its log.
    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("harbor.log")).unwrap_or_default()
    }

    /// Its temp dir.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}
