//! Benchmark of scan on push: `sidescan-watch` against a CI-style loop of `sidescan scan --attach`,
//! in one run, everything on 127.0.0.1.
//!
//! ```text
//! cargo build --release -p sidescan-watch -p sidescan-cli -p sidescan-tests --bins
//! cargo bench -p sidescan-watch --bench watch [-- --pushes 30 --images 200 --concurrency 2,4]
//! ```
//!
//! The release `sidescan` and `sidescan-test-plugin` binaries are found next to the bench (hence
//! the build first); `sidescan-watch` is built by `cargo bench` itself. The scanner is the test
//! plugin (every file holding its marker is a HIGH finding), a fresh process with empty caches
//! for each part. Images are small and all distinct (two gzip layers, no layer shared between
//! images: a few text files, 32 KiB of random bytes and one marker file; the size is printed).
//! Registries are the test kit's `docker-registry` (no referrers API: reports go into the
//! `sha256-<hex>` tag schema index), each in a temp dir with a free port.
//!
//! 1. **Event-to-report latency**: a registry notifying a watcher (`--concurrency` the first of
//!    the list); `--pushes` images pushed one at a time with the test kit's registry client.
//!    Latency is from the push's last request (the manifest PUT) answering to the report
//!    referrer being listed (`referrers::list` polled every 5 ms). Prints p50, p99 (nearest rank:
//!    with fewer than 100 pushes it is the max) and max.
//! 2. **Throughput** for each `--concurrency`: a fresh registry, watcher and plugin; `--images`
//!    images pushed back to back; wall time from the first push starting to the watcher's
//!    `scans_total{outcome="reported"}` counter reaching `--images` (it counts a report once it
//!    is attached; the counter is polled every 20 ms). Then, untimed, every image is checked to
//!    list its report, and the watcher's peak RSS is read (`VmHWM` of /proc/PID/status).
//! 3. **Baseline** (between the two watcher runs, so that load drift hits both sides): the same
//!    number of other images pushed beforehand to another registry, then one `sidescan
//!    --plugin URL scan HOST/loop:N --registry URL --insecure --attach` process after the other,
//!    as a CI script would run them; wall time of the whole loop. Every image is then checked
//!    to list its report.
//!
//! The watcher's wall time includes the pushes (they overlap the scans); the loop's does not
//! (its images were pushed beforehand, to a registry nobody scans). Both push times are timed
//! and printed, and the table also compares the watcher with the loop's pushes plus its scans.
//! Needs `apt-get install -y docker-registry`.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use sidescan_testkit::oci::Artifact;
use sidescan_testkit::plugin::{
    PluginProcess, ServingStatus, test_plugin_binary, workspace_binary,
};
use sidescan_testkit::process::{free_port, peak_rss};
use sidescan_testkit::registry::Registry;
use sidescan_testkit::watch::WatchProcess;

mod common;
use common::{MIB, REPO, has_report, image, load_average, oci_client, reported, verify};

/// Benchmark settings from the command line.
struct Settings {
    pushes: usize,
    images: usize,
    concurrency: Vec<usize>,
}

fn settings() -> Result<Settings, String> {
    let usage = "usage: cargo bench -p sidescan-watch --bench watch -- [--pushes N] [--images N] [--concurrency N,M,...]";
    let mut s = Settings {
        pushes: 30,
        images: 200,
        concurrency: vec![2, 4],
    };
    let args = common::bench_args();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(usage)?;
        let number = |v: &str| v.parse::<usize>().ok().filter(|n| *n > 0).ok_or(usage);
        match flag.as_str() {
            "--pushes" => s.pushes = number(value)?,
            "--images" => s.images = number(value)?,
            "--concurrency" => {
                s.concurrency = value.split(',').map(number).collect::<Result<_, _>>()?;
            }
            _ => return Err(usage.into()),
        }
    }
    Ok(s)
}

/// A fresh test plugin (empty caches), serving.
async fn plugin() -> PluginProcess {
    let plugin = PluginProcess::start(&test_plugin_binary(), &["--engine-version", "bench-1"]);
    plugin.wait_for_health(ServingStatus::Serving).await;
    plugin
}

/// A registry whose notifications go to a watcher scanning with `plugin`.
struct Watched {
    registry: Registry,
    watch: WatchProcess,
}

async fn watched(plugin: &PluginProcess, concurrency: usize) -> Watched {
    let port = free_port();
    let registry = Registry::with_notifications(&format!("http://127.0.0.1:{port}/events"));
    let args = [
        "--registry".to_string(),
        registry.url(),
        "--plugin".into(),
        plugin.url(),
        "--concurrency".into(),
        concurrency.to_string(),
    ];
    let watch = WatchProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_sidescan-watch")),
        &format!("127.0.0.1:{port}"),
        &args,
    );
    watch.wait_ready(Duration::from_secs(20)).await;
    Watched { registry, watch }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Part 1: push one image, wait for its report, `pushes` times; the sorted latencies.
async fn latency(pushes: usize, concurrency: usize) -> Result<Vec<Duration>, String> {
    let images: Vec<Artifact> = (0..pushes as u64).map(|n| image(1, n)).collect();
    let plugin = plugin().await;
    let w = watched(&plugin, concurrency).await;
    let oci = oci_client(&w.registry)?;
    let client = w.registry.client();
    let mut samples = Vec::with_capacity(pushes);
    for (n, img) in images.iter().enumerate() {
        let digest = client
            .push(img, REPO, &format!("lat-{n}"))
            .await
            .map_err(|e| format!("push: {e}"))?;
        let pushed = Instant::now();
        loop {
            if has_report(&oci, &digest).await? {
                samples.push(pushed.elapsed());
                break;
            }
            if pushed.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "no report on {REPO}@{digest} after 60 s; watcher log:\n{}",
                    w.watch.logs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    samples.sort();
    Ok(samples)
}

/// One throughput run: wall time, the time the pushes took (during the watcher's run, before
/// the loop's), the watcher's peak RSS.
struct Run {
    wall: Duration,
    pushes: Duration,
    rss: Option<u64>,
}

/// Part 2: `images` images pushed back to back to a registry notifying a watcher.
async fn watcher_run(images: usize, concurrency: usize) -> Result<Run, String> {
    let artifacts: Vec<Artifact> = (0..images as u64)
        .map(|n| image(10 + concurrency as u64, n))
        .collect();
    let plugin = plugin().await;
    let w = watched(&plugin, concurrency).await;
    let client = w.registry.client();
    let start = Instant::now();
    let push_all = async {
        let mut digests = Vec::with_capacity(images);
        for (n, img) in artifacts.iter().enumerate() {
            digests.push(
                client
                    .push(img, REPO, &format!("w-{n}"))
                    .await
                    .map_err(|e| format!("push: {e}"))?,
            );
        }
        Ok::<_, String>((digests, start.elapsed()))
    };
    let all_reported = async {
        loop {
            let reported = reported(&w.watch).await;
            if reported >= images as f64 {
                return Ok(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(120) {
                return Err(format!(
                    "{reported} of {images} reports after 120 s; watcher log:\n{}",
                    w.watch.logs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (pushed, wall) = tokio::join!(push_all, all_reported);
    let ((digests, pushes), wall) = (pushed?, wall?);
    let rss = peak_rss(w.watch.pid()).map_err(|e| e.to_string())?;
    verify(&oci_client(&w.registry)?, &digests, "watcher").await?;
    let reported = reported(&w.watch).await;
    if reported != images as f64 {
        return Err(format!(
            "the watcher reported {reported} times for {images} images"
        ));
    }
    Ok(Run {
        wall,
        pushes,
        rss: Some(rss),
    })
}

/// Part 3: `images` images pushed beforehand, then `sidescan scan --attach` on each in turn.
fn loop_run(rt: &tokio::runtime::Runtime, images: usize) -> Result<Run, String> {
    let registry = Registry::anonymous();
    let plugin = rt.block_on(plugin());
    let client = registry.client();
    let artifacts: Vec<Artifact> = (0..images as u64).map(|n| image(3, n)).collect();
    let pushing = Instant::now();
    let digests = rt.block_on(async {
        let mut digests = Vec::with_capacity(images);
        for (n, img) in artifacts.iter().enumerate() {
            digests.push(
                client
                    .push(img, REPO, &format!("loop-{n}"))
                    .await
                    .map_err(|e| format!("push: {e}"))?,
            );
        }
        Ok::<_, String>(digests)
    })?;
    let pushes = pushing.elapsed();
    let sidescan = workspace_binary("sidescan");
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (plugin_url, registry_url, host) = (plugin.url(), registry.url(), registry.host());
    let start = Instant::now();
    for n in 0..images {
        let out = Command::new(&sidescan)
            .args(["--plugin", &plugin_url, "scan"])
            .arg(format!("{host}/{REPO}:loop-{n}"))
            .args(["--registry", &registry_url, "--insecure", "--attach"])
            .env("HOME", home.path())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG")
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", sidescan.display()))?;
        if !out.status.success() {
            return Err(format!(
                "sidescan scan {REPO}:loop-{n} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let wall = start.elapsed();
    rt.block_on(verify(&oci_client(&registry)?, &digests, "loop"))?;
    Ok(Run {
        wall,
        pushes,
        rss: None,
    })
}

fn bench() -> Result<(), String> {
    let s = settings()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let sample = image(0, 0);
    let compressed: u64 = sample.all_blobs().iter().map(|b| b.size()).sum();
    println!(
        "images: {} layers, {:.1} KiB compressed each (blobs and manifest), all distinct; {} CPUs; load average {}",
        sample.layers.len(),
        (compressed + sample.manifest.size()) as f64 / 1024.0,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    let first = s.concurrency[0];
    eprintln!(
        "latency: {} pushes one at a time (--concurrency {first}) ...",
        s.pushes
    );
    let lat = rt.block_on(latency(s.pushes, first))?;
    let (p50, p99, max) = (
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
        ms(percentile(&lat, 1.0)),
    );
    println!("event-to-report latency: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms");

    // Watcher runs, with the loop after the first of them.
    let mut runs: Vec<(usize, Run)> = Vec::new();
    let mut baseline = None;
    for (i, &c) in s.concurrency.iter().enumerate() {
        eprintln!("watcher --concurrency {c}: {} pushes ...", s.images);
        let run = rt.block_on(watcher_run(s.images, c))?;
        println!(
            "watcher --concurrency {c}: {:.2} s to {} reports (pushes done at {:.2} s), peak RSS {:.1} MiB",
            run.wall.as_secs_f64(),
            s.images,
            run.pushes.as_secs_f64(),
            run.rss.unwrap_or_default() as f64 / MIB
        );
        runs.push((c, run));
        if i == 0 {
            eprintln!("loop: {} x sidescan scan --attach ...", s.images);
            let run = loop_run(&rt, s.images)?;
            println!(
                "loop of sidescan scan --attach: {:.2} s for {} images (pushed beforehand in {:.2} s)",
                run.wall.as_secs_f64(),
                s.images,
                run.pushes.as_secs_f64()
            );
            baseline = Some(run);
        }
    }
    let baseline = baseline.ok_or("no baseline run")?;
    let b = baseline.wall.as_secs_f64();

    println!();
    println!(
        "Event-to-report latency, {} small distinct images pushed one at a time (watcher --concurrency {first}):",
        lat.len()
    );
    println!();
    println!("| pushes | p50 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|");
    println!("| {} | {p50:.0} | {p99:.0} | {max:.0} |", lat.len());
    println!();
    println!(
        "{} distinct images → {} reports attached (load average at the end {}, whole bench {:.0} s):",
        s.images,
        s.images,
        load_average(),
        started.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "| run | wall s | x loop | {n} pushes took s | wall incl. pushes s | x loop incl. pushes | watcher peak RSS |",
        n = s.images
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let bp = b + baseline.pushes.as_secs_f64();
    println!(
        "| loop: `sidescan scan --attach` per image, sequential (pushed beforehand) | {b:.2} | 1.00 | {:.2} | {bp:.2} | 1.00 | - |",
        baseline.pushes.as_secs_f64()
    );
    for (c, run) in &runs {
        let w = run.wall.as_secs_f64();
        println!(
            "| sidescan-watch --concurrency {c} (first push → last report) | {w:.2} | {:.2} | {:.2} | {w:.2} | {:.2} | {:.1} MiB |",
            w / b,
            run.pushes.as_secs_f64(),
            w / bp,
            run.rss.unwrap_or_default() as f64 / MIB
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    common::exit(bench())
}
