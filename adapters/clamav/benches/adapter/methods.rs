//! The timed methods: the adapter (a fresh process per workload and run), and the manual
//! pipelines (a) blobs and (b) rootfs on the same clamd. Each must find EICAR exactly once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sidescan_testkit::clamd::{ClamdProcess, EICAR_SIGNATURE};
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, workspace_binary};
use sidescan_testkit::process::peak_rss;
use sidescan_testkit::registry::Registry;
use sidescan_testkit::tool;

use crate::Settings;

/// The step of (b) that is clamd's own work: the engine-only bound.
pub(crate) const CLAMDSCAN_ROOTFS: &str = "clamdscan rootfs";

/// Runs `cmd`, failing with its output when it does not exit with one of `ok`; returns stdout
/// and the time it took.
pub(crate) fn run(cmd: &mut Command, ok: &[i32]) -> Result<(String, Duration), String> {
    let started = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let took = started.elapsed();
    let code = out.status.code().unwrap_or(-1);
    if !ok.contains(&code) {
        return Err(format!(
            "{cmd:?} exited {code}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), took))
}

/// `clamdscan --fdpass -m` on `target`; returns the infected count and the time.
fn clamdscan(clamd: &ClamdProcess, target: &Path) -> Result<(usize, Duration), String> {
    let (out, took) = run(
        Command::new(tool::require("clamdscan", "apt-get install -y clamdscan"))
            .arg(format!("--config-file={}", clamd.config_path().display()))
            .args(["--fdpass", "-m", "-i"])
            .arg(target),
        &[0, 1],
    )?;
    let infected = out
        .lines()
        .find_map(|l| l.strip_prefix("Infected files: "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no summary from clamdscan:\n{out}"))?;
    Ok((infected, took))
}

/// One timed method: total and its steps.
#[derive(Default)]
pub(crate) struct Timing {
    pub(crate) total: Duration,
    steps: Vec<(&'static str, Duration)>,
    /// A baseline's files (layout, rootfs), deleted only when the bench ends: removing thousands
    /// of files just before the next method makes ext4 slow to create files for some seconds
    /// (its recently-deleted inode check), and clamd creates a temporary file for every archive
    /// it looks into (Debian's many `.gz` files), so that method would pay for this one's
    /// clean-up.
    work: Option<tempfile::TempDir>,
}

impl Timing {
    fn step(&mut self, name: &'static str, took: Duration) {
        self.total += took;
        self.steps.push((name, took));
    }

    /// The time of step `name` (zero when there is none).
    pub(crate) fn of(&self, name: &str) -> Duration {
        self.steps
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(Duration::ZERO, |s| s.1)
    }

    pub(crate) fn describe(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(n, d)| format!("{n} {:.2}s", d.as_secs_f64()))
            .collect();
        format!("{:7.2}s  ({})", self.total.as_secs_f64(), steps.join(", "))
    }
}

/// Checks that `method` found EICAR exactly once (`infected` files or blobs).
fn one_eicar(method: &str, repo: &str, infected: usize) -> Result<(), String> {
    match infected {
        1 => Ok(()),
        n => Err(format!("{method} of {repo} found {n} infected, expected 1")),
    }
}

/// A manual pipeline on `repo:1`: `skopeo copy` to an OCI layout, then either (a)
/// `clamdscan --fdpass -m` on its blobs (clamd unpacks gzip and tar itself), or, with `unpack`,
/// (b) `umoci unpack` and `clamdscan --fdpass -m` on the rootfs.
pub(crate) fn baseline(
    registry: &Registry,
    clamd: &ClamdProcess,
    repo: &str,
    unpack: bool,
) -> Result<Timing, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let layout = dir.path().join("layout");
    let mut t = Timing::default();
    let (_, took) = run(
        Command::new(tool::skopeo())
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(registry.docker_ref(repo, "1"))
            .arg(format!("oci:{}:1", layout.display())),
        &[0],
    )?;
    t.step("skopeo copy", took);
    if !unpack {
        let (infected, took) = clamdscan(clamd, &layout.join("blobs"))?;
        t.step("clamdscan blobs", took);
        one_eicar("baseline (a)", repo, infected)?;
        t.work = Some(dir);
        return Ok(t);
    }
    let bundle = dir.path().join("bundle");
    let mut umoci = Command::new(tool::umoci());
    umoci.arg("unpack");
    if !rustix::process::getuid().is_root() {
        umoci.arg("--rootless");
    }
    let (_, took) = run(
        umoci
            .arg("--image")
            .arg(format!("{}:1", layout.display()))
            .arg(&bundle),
        &[0],
    )?;
    t.step("umoci unpack", took);
    let (infected, took) = clamdscan(clamd, &bundle.join("rootfs"))?;
    t.step(CLAMDSCAN_ROOTFS, took);
    one_eicar("baseline (b)", repo, infected)?;
    t.work = Some(dir);
    Ok(t)
}

/// `sidescan scan repo:1 --plugin-config <zot plugin_config.json>`; checks the one EICAR finding.
fn adapter_scan(config: &Path, repo: &str) -> Result<Duration, String> {
    let (out, took) = run(
        Command::new(workspace_binary("sidescan"))
            .args([
                "scan",
                &format!("{repo}:1"),
                "--insecure",
                "--format",
                "json",
            ])
            .args(["--timeout", "20m", "--plugin-config"])
            .arg(config),
        &[0],
    )?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("sidescan output is not JSON: {e}"))?;
    let findings = v["report"]["vulnerabilities"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let notices = v["report"]["notices"].as_array().map_or(0, Vec::len);
    if findings.len() != 1 || findings[0]["id"] != EICAR_SIGNATURE || notices != 0 {
        return Err(format!(
            "adapter scan of {repo}: expected one EICAR finding and no notices, got {findings:?} and {notices} notices"
        ));
    }
    Ok(took)
}

/// One run of the adapter: a fresh process (empty caches), the first scan, the re-scan if any.
pub(crate) struct AdapterRun {
    pub(crate) first: Duration,
    pub(crate) rescan: Option<Duration>,
    /// Peak RSS (`VmHWM`), bytes.
    pub(crate) rss: u64,
    /// The adapter logged that clamd refused a descriptor and it went on with `INSTREAM`.
    pub(crate) fell_back_to_instream: bool,
}

/// Starts a fresh adapter on `clamd`, scans `repo`, then `rescan` (if any) on the same process.
pub(crate) fn adapter_run(
    runtime: &tokio::runtime::Runtime,
    registry: &Registry,
    clamd: &ClamdProcess,
    s: &Settings,
    repo: &str,
    rescan: Option<&str>,
) -> Result<AdapterRun, String> {
    let plugin = PluginProcess::start(
        &workspace_binary("sidescan-clamav"),
        &[
            "--clamd",
            &clamd.unix_addr(),
            "--clamd-connections",
            &s.connections.to_string(),
            "--stream-max-length",
            "64MiB",
            "--clamd-max-file-size",
            "512MiB",
            &format!("--clamd-fd-passing={}", s.fd_passing),
        ],
    );
    runtime.block_on(plugin.wait_for_health(ServingStatus::Serving));
    let (host, port) = plugin
        .addr()
        .rsplit_once(':')
        .ok_or_else(|| format!("plugin address {}", plugin.addr()))?;
    let port: u16 = port.parse().map_err(|e| format!("plugin port: {e}"))?;
    let config = plugin.dir().join("plugin_config.json");
    let json = serde_json::json!({
        "name": "ClamAV",
        "integrationPoints": [{
            "interface": "VulnScanner",
            "grpcConnection": {"addr": host, "port": port},
            "options": {"zot-addr": registry.host()},
        }],
    });
    std::fs::write(&config, json.to_string()).map_err(|e| e.to_string())?;
    let scans = adapter_scan(&config, repo)
        .and_then(|first| Ok((first, rescan.map(|r| adapter_scan(&config, r)).transpose()?)))
        .map_err(|e| format!("{e}\nadapter log:\n{}", plugin.logs()))?;
    Ok(AdapterRun {
        first: scans.0,
        rescan: scans.1,
        rss: peak_rss(plugin.pid()).map_err(|e| e.to_string())?,
        fell_back_to_instream: plugin.logs().contains("refused FILDES"),
    })
}
