//! The timed methods: the adapter (a fresh process per workload and run), and the manual
//! pipelines (a) blobs and (b) rootfs on the same clamd. Each must find EICAR exactly once.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sidescan_testkit::clamd::{ClamdProcess, EICAR_SIGNATURE};
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, workspace_binary};
use sidescan_testkit::process::{cpu_seconds, peak_rss, waited_children_cpu_seconds};
use sidescan_testkit::registry::Registry;
use sidescan_testkit::tool;

use crate::Settings;

/// The step of (b) that is clamd's own work: the engine-only bound.
pub(crate) const CLAMDSCAN_ROOTFS: &str = "clamdscan rootfs";

/// Runs `cmd`, failing with its output when it does not exit with one of `ok`; returns stdout
/// and the time it took.
pub(crate) fn run(cmd: &mut Command, ok: &[i32]) -> Result<(String, Duration), String> {
    run_counted(cmd, ok).map(|(out, took, _)| (out, took))
}

/// [`run`], also returning the CPU seconds `cmd` used.
fn run_counted(cmd: &mut Command, ok: &[i32]) -> Result<(String, Duration, f64), String> {
    let cpu_before = children_cpu()?;
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
    let cpu = children_cpu()? - cpu_before;
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), took, cpu))
}

/// CPU seconds of the children the bench has waited for.
fn children_cpu() -> Result<f64, String> {
    waited_children_cpu_seconds().map_err(|e| format!("reading /proc/self/stat: {e}"))
}

/// CPU seconds process `pid` has used so far.
fn process_cpu(pid: u32) -> Result<f64, String> {
    cpu_seconds(pid, false).map_err(|e| format!("reading /proc/{pid}/stat: {e}"))
}

/// `clamdscan --fdpass -m` on `target`; returns the infected count, the time and the CPU
/// seconds clamd and clamdscan used.
fn clamdscan(clamd: &ClamdProcess, target: &Path) -> Result<(usize, Duration, f64), String> {
    let clamd_before = process_cpu(clamd.pid())?;
    let (out, took, cpu) = run_counted(
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
    Ok((
        infected,
        took,
        cpu + process_cpu(clamd.pid())? - clamd_before,
    ))
}

/// One timed method: total and its steps.
#[derive(Default)]
pub(crate) struct Timing {
    pub(crate) total: Duration,
    /// CPU seconds of every process the method ran (clamd's included).
    pub(crate) cpu: f64,
    /// Each step: name, wall time, CPU seconds.
    steps: Vec<(&'static str, Duration, f64)>,
    /// A baseline's files (layout, rootfs), deleted only when the bench ends: removing thousands
    /// of files just before the next method makes ext4 slow to create files for some seconds
    /// (its recently-deleted inode check), and clamd creates a temporary file for every archive
    /// it looks into (Debian's many `.gz` files), so that method would pay for this one's
    /// clean-up.
    work: Option<tempfile::TempDir>,
}

impl Timing {
    fn step(&mut self, name: &'static str, took: Duration, cpu: f64) {
        self.total += took;
        self.cpu += cpu;
        self.steps.push((name, took, cpu));
    }

    /// The time of step `name` (zero when there is none).
    pub(crate) fn of(&self, name: &str) -> Duration {
        self.steps
            .iter()
            .find(|s| s.0 == name)
            .map_or(Duration::ZERO, |s| s.1)
    }

    /// The CPU seconds of step `name`, if there is one.
    pub(crate) fn cpu_of(&self, name: &str) -> Option<f64> {
        self.steps.iter().find(|s| s.0 == name).map(|s| s.2)
    }

    pub(crate) fn describe(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(n, d, _)| format!("{n} {:.2}s", d.as_secs_f64()))
            .collect();
        format!(
            "{:7.2}s  ({}; {:.2} CPU-s)",
            self.total.as_secs_f64(),
            steps.join(", "),
            self.cpu
        )
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
    let (_, took, cpu) = run_counted(
        Command::new(tool::skopeo())
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(registry.docker_ref(repo, "1"))
            .arg(format!("oci:{}:1", layout.display())),
        &[0],
    )?;
    t.step("skopeo copy", took, cpu);
    if !unpack {
        let (infected, took, cpu) = clamdscan(clamd, &layout.join("blobs"))?;
        t.step("clamdscan blobs", took, cpu);
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
    let (_, took, cpu) = run_counted(
        umoci
            .arg("--image")
            .arg(format!("{}:1", layout.display()))
            .arg(&bundle),
        &[0],
    )?;
    t.step("umoci unpack", took, cpu);
    let (infected, took, cpu) = clamdscan(clamd, &bundle.join("rootfs"))?;
    t.step(CLAMDSCAN_ROOTFS, took, cpu);
    one_eicar("baseline (b)", repo, infected)?;
    t.work = Some(dir);
    Ok(t)
}

/// `sidescan scan repo:1 --plugin-config <zot plugin_config.json>`; checks the one EICAR finding.
fn adapter_scan(config: &Path, repo: &str) -> Result<(Duration, f64), String> {
    let (out, took, cli_cpu) = run_counted(
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
    Ok((took, cli_cpu))
}

/// One run of the adapter: a fresh process (empty caches), the first scan, the re-scan if any.
pub(crate) struct AdapterRun {
    pub(crate) first: Duration,
    /// CPU seconds of the first scan: clamd, the adapter process and the `sidescan` CLI.
    pub(crate) first_cpu: FirstScanCpu,
    pub(crate) rescan: Option<Duration>,
    /// Peak RSS (`VmHWM`), bytes.
    pub(crate) rss: u64,
    /// The adapter logged that clamd refused a descriptor and it went on with `INSTREAM`.
    pub(crate) fell_back_to_instream: bool,
}

/// CPU seconds of an adapter's first scan, by process.
#[derive(Clone, Copy, Default)]
pub(crate) struct FirstScanCpu {
    pub(crate) clamd: f64,
    pub(crate) adapter: f64,
    pub(crate) cli: f64,
}

impl FirstScanCpu {
    pub(crate) fn total(&self) -> f64 {
        self.clamd + self.adapter + self.cli
    }
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
    let clamd_before = process_cpu(clamd.pid())?;
    let adapter_before = process_cpu(plugin.pid())?;
    let (first, cli) =
        adapter_scan(&config, repo).map_err(|e| format!("{e}\nadapter log:\n{}", plugin.logs()))?;
    let first_cpu = FirstScanCpu {
        clamd: process_cpu(clamd.pid())? - clamd_before,
        adapter: process_cpu(plugin.pid())? - adapter_before,
        cli,
    };
    let rescan = rescan
        .map(|r| adapter_scan(&config, r).map(|(took, _)| took))
        .transpose()
        .map_err(|e| format!("{e}\nadapter log:\n{}", plugin.logs()))?;
    Ok(AdapterRun {
        first,
        first_cpu,
        rescan,
        rss: peak_rss(plugin.pid()).map_err(|e| e.to_string())?,
        fell_back_to_instream: plugin.logs().contains("refused FILDES"),
    })
}
