//! The ClamAV adapter benchmark (`scripts/bench-clamav`): an end-to-end scan of a multi-layer
//! image (about 250 MiB uncompressed, 5 layers, ~5,000 files of mixed sizes, partly
//! incompressible) in a local `docker-registry`, against two baselines that use the same clamd,
//! with the same signatures, in the same run:
//!
//! - **(a) blobs**: `skopeo copy` to an OCI layout, then `clamdscan --fdpass -m` on its blobs
//!   (clamd unpacks gzip and tar itself): the peer plugin's way;
//! - **(b) rootfs**: `skopeo copy`, `umoci unpack`, then `clamdscan --fdpass -m` on the rootfs.
//!
//! The adapter is driven the way a registry does: `sidescan scan --plugin-config` with a zot-style
//! `plugin_config.json`. Each run starts a fresh adapter (empty caches), scans the image, then an
//! image that shares all but its top layer, and reads the adapter's peak RSS (`VmHWM`). clamd
//! runs with `DisableCache yes` so that no method profits from clamd's own clean-file cache.
//!
//! Targets: first scan at most 0.5x of (b); re-scan at most 0.25x of the first scan; adapter
//! peak RSS at most 64 MiB. Options: `--runs N` (default 3), `--connections N` (the adapter's
//! `--clamd-connections`, default 4), `--threads N` (clamd's `MaxThreads`, default 4),
//! `--transfer fildes|instream` (how the adapter hands files to clamd, default `fildes`: the
//! adapter runs with `--clamd-fd-passing`).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use sidescan_testkit::clamd::{ClamdOptions, ClamdProcess, EICAR_SIGNATURE};
use sidescan_testkit::fixtures::{EICAR, Entry, Image, Layer, PseudoRandom};
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, workspace_binary};
use sidescan_testkit::process::peak_rss;
use sidescan_testkit::registry::Registry;
use sidescan_testkit::tool;

const MIB: f64 = 1024.0 * 1024.0;

/// Benchmark settings from the command line.
struct Settings {
    runs: usize,
    connections: u32,
    threads: u32,
    /// The adapter passes files to clamd as descriptors (FILDES) rather than INSTREAM.
    fd_passing: bool,
}

fn settings() -> Result<Settings, String> {
    let mut s = Settings {
        runs: 3,
        connections: 4,
        threads: 4,
        fd_passing: true,
    };
    // `cargo bench` passes `--bench`; ignore it.
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if flag == "--transfer" {
            s.fd_passing = match value.as_str() {
                "fildes" => true,
                "instream" => false,
                _ => return Err(format!("--transfer {value}: fildes or instream")),
            };
            continue;
        }
        let n: u32 = value
            .parse()
            .map_err(|_| format!("{flag} {value}: not a number"))?;
        if n == 0 {
            return Err(format!("{flag} must be at least 1"));
        }
        match flag.as_str() {
            "--runs" => s.runs = n as usize,
            "--connections" => s.connections = n,
            "--threads" => s.threads = n,
            _ => {
                return Err(format!(
                    "unknown flag {flag} (--runs, --connections, --threads, --transfer)"
                ));
            }
        }
    }
    Ok(s)
}

/// `len` bytes of text-like content (words from a small dictionary): compresses about 3:1.
fn text(rng: &mut PseudoRandom, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "layer", "registry", "scan", "image", "config", "manifest", "digest", "blob",
        "sha256", "index", "platform", "linux", "amd64", "library", "package", "version",
        "release", "notes", "error", "warning", "info", "debug", "function", "return", "value",
        "struct", "impl", "module", "export", "import", "default", "static", "const", "buffer",
        "stream", "socket", "thread", "memory", "cache", "result", "option", "string", "number",
        "array", "object", "null", "true", "false", "http", "https", "server", "client", "request",
        "response", "header", "body", "status", "timeout", "retry", "limit", "size",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut col = 0;
    while out.len() < len {
        let r = rng.next_u64();
        let word = WORDS[(r % WORDS.len() as u64) as usize];
        out.extend_from_slice(word.as_bytes());
        col += word.len() + 1;
        if r >> 60 == 0 {
            out.extend_from_slice(format!(" {}", (r >> 20) % 100_000).as_bytes());
        }
        if col > 72 {
            out.push(b'\n');
            col = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

/// `count` files under `dir` added to `layer`, sizes in `lo..=hi`, pseudo-random
/// (incompressible) when `random`, text otherwise; sizes and seeds from `rng`.
fn files(
    layer: Layer,
    rng: &mut PseudoRandom,
    dir: &str,
    count: usize,
    (lo, hi): (u64, u64),
    random: bool,
) -> Layer {
    let mut layer = layer.push(Entry::dir(dir));
    for i in 0..count {
        let len = lo + rng.next_u64() % (hi - lo + 1);
        let path = format!("{dir}/f{i:05}.{}", if random { "bin" } else { "txt" });
        layer = layer.push(if random {
            Entry::pseudo_random(path, len, rng.next_u64())
        } else {
            Entry::file(path, text(rng, len as usize))
        });
    }
    layer
}

/// Four shared layers (EICAR in the second) and a top layer made from `top_seed`.
fn bench_image(top_seed: u64) -> Artifact {
    const K: u64 = 1024;
    const M: u64 = 1024 * 1024;
    let mut rng = PseudoRandom::new(2024);
    let base = Layer::new([]);
    let base = files(base, &mut rng, "usr/share/doc", 2500, (512, 24 * K), false);
    let base = files(
        base,
        &mut rng,
        "usr/lib/x86_64",
        150,
        (64 * K, 640 * K),
        true,
    );
    let runtime = Layer::new([]);
    let runtime = files(runtime, &mut rng, "opt/runtime/lib", 16, (M, 5 * M), true);
    let runtime = files(
        runtime,
        &mut rng,
        "opt/runtime/share",
        800,
        (K, 16 * K),
        false,
    )
    .push(Entry::dir("opt/runtime/tools"))
    .push(Entry::file("opt/runtime/tools/eicar.com", EICAR));
    let libs = Layer::new([]);
    let libs = files(
        libs,
        &mut rng,
        "usr/local/lib/a",
        600,
        (4 * K, 96 * K),
        true,
    );
    let libs = files(
        libs,
        &mut rng,
        "usr/local/lib/b",
        600,
        (4 * K, 96 * K),
        false,
    );
    let assets = Layer::new([]);
    let assets = files(
        assets,
        &mut rng,
        "srv/assets/bin",
        2,
        (12 * M, 12 * M),
        true,
    );
    let assets = files(
        assets,
        &mut rng,
        "srv/assets/text",
        2,
        (10 * M, 10 * M),
        false,
    );
    let mut top_rng = PseudoRandom::new(top_seed);
    let app = files(
        Layer::new([]),
        &mut top_rng,
        "app/src",
        400,
        (K, 8 * K),
        false,
    );
    let app = files(app, &mut top_rng, "app/bin", 1, (3 * M, 3 * M), true);
    Image::new()
        .layer(base)
        .layer(runtime)
        .layer(libs)
        .layer(assets)
        .layer(app)
        .build()
}

/// Runs `cmd`, failing with its output when it does not exit with one of `ok`; returns stdout
/// and the time it took.
fn run(cmd: &mut Command, ok: &[i32]) -> Result<(String, Duration), String> {
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

/// `skopeo copy` of `repo:1` into an OCI layout at `dir` (tag `1`).
fn skopeo_copy(registry: &Registry, repo: &str, dir: &Path) -> Result<Duration, String> {
    Ok(run(
        Command::new(tool::skopeo())
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(registry.docker_ref(repo, "1"))
            .arg(format!("oci:{}:1", dir.display())),
        &[0],
    )?
    .1)
}

/// One timed method: total and its steps.
#[derive(Default)]
struct Timing {
    total: Duration,
    steps: Vec<(&'static str, Duration)>,
}

impl Timing {
    fn step(&mut self, name: &'static str, took: Duration) {
        self.total += took;
        self.steps.push((name, took));
    }

    fn describe(&self) -> String {
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(n, d)| format!("{n} {:.2}s", d.as_secs_f64()))
            .collect();
        format!("{:7.2}s  ({})", self.total.as_secs_f64(), steps.join(", "))
    }
}

/// Baseline (a): skopeo copy + clamdscan on the layout's blobs.
fn baseline_blobs(registry: &Registry, clamd: &ClamdProcess) -> Result<Timing, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let layout = dir.path().join("layout");
    let mut t = Timing::default();
    t.step("skopeo copy", skopeo_copy(registry, "bench/app", &layout)?);
    let (infected, took) = clamdscan(clamd, &layout.join("blobs"))?;
    t.step("clamdscan blobs", took);
    if infected != 1 {
        return Err(format!(
            "baseline (a) found {infected} infected blobs, expected 1"
        ));
    }
    Ok(t)
}

/// Baseline (b): skopeo copy + umoci unpack + clamdscan on the rootfs.
fn baseline_rootfs(registry: &Registry, clamd: &ClamdProcess) -> Result<Timing, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let layout = dir.path().join("layout");
    let bundle = dir.path().join("bundle");
    let mut t = Timing::default();
    t.step("skopeo copy", skopeo_copy(registry, "bench/app", &layout)?);
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
    t.step("clamdscan rootfs", took);
    if infected != 1 {
        return Err(format!(
            "baseline (b) found {infected} infected files, expected 1"
        ));
    }
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

/// One run of the adapter: a fresh process (empty caches), the first scan, the re-scan.
struct AdapterRun {
    first: Duration,
    rescan: Duration,
    rss: u64,
}

fn adapter_run(
    runtime: &tokio::runtime::Runtime,
    registry: &Registry,
    clamd: &ClamdProcess,
    s: &Settings,
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
    let scans = adapter_scan(&config, "bench/app")
        .and_then(|first| Ok((first, adapter_scan(&config, "bench/app2")?)))
        .map_err(|e| format!("{e}\nadapter log:\n{}", plugin.logs()))?;
    Ok(AdapterRun {
        first: scans.0,
        rescan: scans.1,
        rss: peak_rss(plugin.pid()).map_err(|e| e.to_string())?,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "target met" } else { "TARGET MISSED" }
}

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-clamav: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> Result<(), String> {
    let s = settings()?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    tool::skopeo();
    tool::umoci();
    tool::require("clamdscan", "apt-get install -y clamdscan");

    let started = Instant::now();
    let v1 = bench_image(1);
    let v2 = bench_image(2);
    let uncompressed: u64 = v1.layers.iter().map(|l| l.uncompressed_size).sum();
    let compressed: u64 = v1.layers.iter().map(|l| l.blob.size()).sum();
    println!(
        "image: {} layers, {:.0} MiB uncompressed, {:.0} MiB compressed; the re-scanned image shares all but its top layer ({:.1} MiB compressed); built in {:.1}s",
        v1.layers.len(),
        uncompressed as f64 / MIB,
        compressed as f64 / MIB,
        v2.layers[4].blob.size() as f64 / MIB,
        started.elapsed().as_secs_f64()
    );

    let registry = Registry::anonymous();
    runtime.block_on(registry.push(&v1, "bench/app", "1"));
    runtime.block_on(registry.push(&v2, "bench/app2", "1"));
    drop((v1, v2));
    let clamd = ClamdProcess::start_with(&ClamdOptions {
        stream_max_length: "64M".into(),
        max_file_size: Some("512M".into()),
        max_scan_size: Some("4000M".into()),
        max_threads: Some(s.threads),
        log_clean: false,
        extra_config: vec!["DisableCache yes".into(), "MaxScanTime 600000".into()],
    });
    println!(
        "clamd 1.4.6: MaxThreads {}, StreamMaxLength 64M, MaxFileSize 512M, MaxScanSize 4000M, DisableCache yes, test signatures only; adapter --clamd-connections {}, transfer {}; {} CPUs",
        s.threads,
        s.connections,
        if s.fd_passing {
            "FILDES (memfd)"
        } else {
            "INSTREAM"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let (mut first, mut rescan, mut rss, mut blobs, mut rootfs) =
        (vec![], vec![], vec![], vec![], vec![]);
    for r in 1..=s.runs {
        println!("\nrun {r} of {}", s.runs);
        let a = adapter_run(&runtime, &registry, &clamd, &s)?;
        println!(
            "  adapter first scan  {:7.2}s  (sidescan scan --plugin-config, empty caches)",
            a.first.as_secs_f64()
        );
        println!(
            "  adapter re-scan     {:7.2}s  (image sharing all but its top layer)",
            a.rescan.as_secs_f64()
        );
        println!(
            "  adapter peak RSS    {:7.1} MiB (VmHWM)",
            a.rss as f64 / MIB
        );
        let b = baseline_blobs(&registry, &clamd)?;
        println!("  (a) blobs           {}", b.describe());
        let c = baseline_rootfs(&registry, &clamd)?;
        println!("  (b) rootfs          {}", c.describe());
        first.push(a.first.as_secs_f64());
        rescan.push(a.rescan.as_secs_f64());
        rss.push(a.rss as f64 / MIB);
        blobs.push(b.total.as_secs_f64());
        rootfs.push(c.total.as_secs_f64());
    }

    let peak = rss.iter().copied().fold(0.0, f64::max);
    let (first, rescan, blobs, rootfs) =
        (median(first), median(rescan), median(blobs), median(rootfs));
    println!("\nmedians over {} runs", s.runs);
    println!(
        "  adapter first scan {first:.2}s, re-scan {rescan:.2}s; (a) blobs {blobs:.2}s; (b) rootfs {rootfs:.2}s"
    );
    let to_rootfs = first / rootfs;
    let to_blobs = first / blobs;
    let rescan_ratio = rescan / first;
    println!(
        "  first scan / (b) rootfs   = {to_rootfs:.2}x   (target <= 0.50x: {})",
        verdict(to_rootfs <= 0.5)
    );
    println!("  first scan / (a) blobs    = {to_blobs:.2}x");
    println!(
        "  re-scan / first scan      = {rescan_ratio:.2}x   (target <= 0.25x: {})",
        verdict(rescan_ratio <= 0.25)
    );
    println!(
        "  adapter peak RSS (max)    = {peak:.1} MiB (target <= 64 MiB: {})",
        verdict(peak <= 64.0)
    );
    Ok(())
}
