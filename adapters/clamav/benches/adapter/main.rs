//! The ClamAV adapter benchmark (`scripts/bench-clamav`): end-to-end scans of two images in a
//! local `docker-registry`, by the adapter and by the same manual pipelines on the same clamd,
//! with the same signatures, in the same run:
//!
//! - **synthetic** ([`synthetic`]): 5 layers, about 250 MiB uncompressed, ~5,000 files of mixed
//!   sizes, partly incompressible, EICAR in layer 2; re-scanned as an image sharing all but its
//!   top layer;
//! - **Debian 12** ([`debian`]): a real `debootstrap --variant=minbase bookworm` rootfs layer
//!   (built once, cached in the target dir) under a test-sample layer holding EICAR.
//!
//! Methods, each of which must find EICAR exactly once:
//!
//! - **adapter**: a fresh `sidescan-clamav` (empty caches) driven the way a registry does,
//!   `sidescan scan --plugin-config` with a zot-style `plugin_config.json`; then the re-scan on the
//!   same process (synthetic only) and its peak RSS (`VmHWM`);
//! - **(a) blobs** (synthetic only): `skopeo copy` to an OCI layout, then `clamdscan --fdpass -m`
//!   on its blobs (clamd unpacks gzip and tar itself): the peer plugin's way;
//! - **(b) rootfs**: `skopeo copy`, `umoci unpack`, then `clamdscan --fdpass -m` on the rootfs;
//!   its last step alone (clamd on files already unpacked, in the page cache) is the engine-only
//!   bound.
//!
//! Each method's CPU seconds are counted from `/proc` (clamd's included): a first scan needs
//! that many CPU-seconds, so on this machine's cores it cannot take less than them divided by the
//! cores, and the bench prints that floor as a ratio against (b).
//!
//! clamd runs with `DisableCache yes` so that no method profits from clamd's own clean-file cache.
//! Targets, for each image: first scan at most 0.5x of (b) and at most 1.5x of the engine-only
//! bound; re-scan at most 0.25x of the first scan; adapter peak RSS at most 64 MiB. Options:
//! `--runs N` (default 3), `--connections N` (the adapter's `--clamd-connections`, default 4),
//! `--threads N` (clamd's `MaxThreads`, default 4), `--transfer fildes|instream` (how the adapter
//! hands files to clamd, default `fildes`: the adapter runs with `--clamd-fd-passing`).

mod debian;
mod methods;
mod synthetic;

use std::process::ExitCode;
use std::time::Instant;

use methods::{AdapterRun, CLAMDSCAN_ROOTFS, Timing, adapter_run, baseline};
use sidescan_testkit::clamd::{ClamdOptions, ClamdProcess};
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::registry::Registry;
use sidescan_testkit::tool;

const MIB: f64 = 1024.0 * 1024.0;

/// Benchmark settings from the command line.
pub(crate) struct Settings {
    runs: usize,
    pub(crate) connections: u32,
    threads: u32,
    /// The adapter passes files to clamd as descriptors (FILDES) rather than INSTREAM.
    pub(crate) fd_passing: bool,
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

/// One image every run scans with every method.
struct Workload {
    name: &'static str,
    repo: &'static str,
    /// An image sharing all but the top layer, re-scanned by the same adapter process.
    rescan: Option<&'static str>,
    /// Whether baseline (a) runs too.
    blobs: bool,
    /// What each run measured.
    runs: Vec<Run>,
}

/// One run of one workload.
struct Run {
    adapter: AdapterRun,
    blobs: Option<Timing>,
    rootfs: Timing,
}

impl Workload {
    /// Runs every method once and prints what it took.
    fn run(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        registry: &Registry,
        clamd: &ClamdProcess,
        s: &Settings,
    ) -> Result<(), String> {
        println!("  {} ({}:1)", self.name, self.repo);
        let adapter = adapter_run(runtime, registry, clamd, s, self.repo, self.rescan)?;
        println!(
            "    adapter first scan  {:7.2}s  (sidescan scan --plugin-config, empty caches)",
            adapter.first.as_secs_f64()
        );
        if let Some(rescan) = adapter.rescan {
            println!(
                "    adapter re-scan     {:7.2}s  (image sharing all but its top layer)",
                rescan.as_secs_f64()
            );
        }
        let cpu = adapter.first_cpu;
        println!(
            "    adapter first scan CPU {:.2} CPU-s (clamd {:.2}, adapter {:.2}, sidescan CLI {:.2})",
            cpu.total(),
            cpu.clamd,
            cpu.adapter,
            cpu.cli
        );
        println!(
            "    adapter peak RSS    {:7.1} MiB (VmHWM)",
            adapter.rss as f64 / MIB
        );
        if adapter.fell_back_to_instream {
            println!("    adapter fell back to INSTREAM: clamd refused a descriptor (see its log)");
        }
        let blobs = (self.blobs)
            .then(|| baseline(registry, clamd, self.repo, false))
            .transpose()?;
        if let Some(b) = &blobs {
            println!("    (a) blobs           {}", b.describe());
        }
        let rootfs = baseline(registry, clamd, self.repo, true)?;
        println!("    (b) rootfs          {}", rootfs.describe());
        self.runs.push(Run {
            adapter,
            blobs,
            rootfs,
        });
        Ok(())
    }

    /// The median over the runs of `f`, seconds (`None` when no run has it).
    fn median(&self, f: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
        let mut v: Vec<f64> = self.runs.iter().filter_map(f).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        match n {
            0 => None,
            _ if n % 2 == 1 => Some(v[n / 2]),
            _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }

    /// Prints the medians and the ratios against the targets.
    fn summary(&self) {
        let secs = |d: std::time::Duration| Some(d.as_secs_f64());
        let first = self.median(|r| secs(r.adapter.first)).unwrap_or(0.0);
        let rescan = self.median(|r| r.adapter.rescan.and_then(secs));
        let blobs = self.median(|r| r.blobs.as_ref().and_then(|b| secs(b.total)));
        let rootfs = self.median(|r| secs(r.rootfs.total)).unwrap_or(0.0);
        let engine = self
            .median(|r| secs(r.rootfs.of(CLAMDSCAN_ROOTFS)))
            .unwrap_or(0.0);
        let peak = self.runs.iter().map(|r| r.adapter.rss).max().unwrap_or(0) as f64 / MIB;
        let first_cpu = self
            .median(|r| Some(r.adapter.first_cpu.total()))
            .unwrap_or(0.0);
        // Each run's wall time is at least its CPU-seconds over the cores, so no run can beat
        // the least of them.
        let least_cpu = self
            .runs
            .iter()
            .map(|r| r.adapter.first_cpu.total())
            .fold(f64::INFINITY, f64::min);
        let clamd_cpu = self
            .median(|r| Some(r.adapter.first_cpu.clamd))
            .unwrap_or(0.0);
        let engine_cpu = self
            .median(|r| r.rootfs.cpu_of(CLAMDSCAN_ROOTFS))
            .unwrap_or(0.0);
        println!("  {}", self.name);
        print!("    adapter first scan {first:.2}s");
        if let Some(rescan) = rescan {
            print!(", re-scan {rescan:.2}s");
        }
        if let Some(blobs) = blobs {
            print!("; (a) blobs {blobs:.2}s");
        }
        println!("; (b) rootfs {rootfs:.2}s, its clamdscan step (engine only) {engine:.2}s");
        let ratio = |name: &str, value: f64, target: Option<f64>| match target {
            Some(t) => println!(
                "    {name:<41} = {value:.2}x   (target <= {t:.2}x: {})",
                verdict(value <= t)
            ),
            None => println!("    {name:<41} = {value:.2}x"),
        };
        ratio("first scan / (b) rootfs", first / rootfs, Some(0.5));
        let cores = cores() as f64;
        println!(
            "    first scan CPU {first_cpu:.2} CPU-s (clamd {clamd_cpu:.2}; clamd and clamdscan in the engine-only step {engine_cpu:.2}); least {least_cpu:.2}: on {cores} cores no first scan takes less than {:.2}s = {:.2}x of (b)",
            least_cpu / cores,
            least_cpu / cores / rootfs
        );
        ratio(
            "first scan / engine only (clamdscan step)",
            first / engine,
            Some(1.5),
        );
        if let Some(blobs) = blobs {
            ratio("first scan / (a) blobs", first / blobs, None);
        }
        if let Some(rescan) = rescan {
            ratio("re-scan / first scan", rescan / first, Some(0.25));
        }
        println!(
            "    {:<41} = {peak:.1} MiB (target <= 64 MiB: {})",
            "adapter peak RSS (max)",
            verdict(peak <= 64.0)
        );
    }
}

/// CPUs this process may run on.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn verdict(met: bool) -> &'static str {
    if met { "target met" } else { "TARGET MISSED" }
}

/// Compressed and uncompressed size of `image`'s layers, MiB.
fn sizes(image: &Artifact) -> (f64, f64) {
    let sum = |f: fn(&sidescan_testkit::oci::LayerBlob) -> u64| {
        image.layers.iter().map(f).sum::<u64>() as f64 / MIB
    };
    (sum(|l| l.blob.size()), sum(|l| l.uncompressed_size))
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
    let v1 = synthetic::image(1);
    let v2 = synthetic::image(2);
    let (compressed, uncompressed) = sizes(&v1);
    println!(
        "synthetic image: {} layers, {uncompressed:.0} MiB uncompressed, {compressed:.0} MiB compressed; the re-scanned image shares all but its top layer ({:.1} MiB compressed); built in {:.1}s",
        v1.layers.len(),
        v2.layers[4].blob.size() as f64 / MIB,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let deb = debian::image()?;
    let (compressed, uncompressed) = sizes(&deb.image);
    println!(
        "Debian 12 image: debootstrap --variant=minbase bookworm rootfs layer ({:.1} MiB compressed, {:.1} MiB uncompressed, {} files; debootstrap took {:.0}s{}) + test-sample layer with EICAR; {compressed:.1} MiB compressed, {uncompressed:.1} MiB uncompressed in all; ready in {:.1}s",
        deb.image.layers[0].blob.size() as f64 / MIB,
        deb.rootfs.uncompressed as f64 / MIB,
        deb.rootfs.files,
        deb.rootfs.debootstrap_secs,
        if deb.cached {
            ", layer cached from an earlier run"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );

    let registry = Registry::anonymous();
    runtime.block_on(registry.push(&v1, "bench/app", "1"));
    runtime.block_on(registry.push(&v2, "bench/app2", "1"));
    runtime.block_on(registry.push(&deb.image, "bench/debian12", "1"));
    drop((v1, v2, deb));
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
        cores()
    );

    let mut workloads = [
        Workload {
            name: "synthetic image",
            repo: "bench/app",
            rescan: Some("bench/app2"),
            blobs: true,
            runs: vec![],
        },
        Workload {
            name: "Debian 12 image",
            repo: "bench/debian12",
            rescan: None,
            blobs: false,
            runs: vec![],
        },
    ];
    for r in 1..=s.runs {
        println!("\nrun {r} of {}", s.runs);
        for w in &mut workloads {
            w.run(&runtime, &registry, &clamd, &s)?;
        }
    }
    println!("\nmedians over {} runs", s.runs);
    for w in &workloads {
        w.summary();
    }
    Ok(())
}
