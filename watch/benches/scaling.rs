//! Benchmark of scaling out on NATS JetStream: throughput of 1, 2 and 4 `sidescan-watch` workers
//! sharing one durable work queue, and the queue's overhead per job against the in-process one.
//!
//! ```text
//! cargo build --release -p sidescan-tests --bins
//! cargo bench -p sidescan-watch --bench scaling [-- --images 120 --workers 1,2,4 --concurrency 4 --delay 1s]
//! ```
//!
//! Everything runs on 127.0.0.1: a real `nats-server -js` (file storage, a fresh one per run), the
//! test kit's `docker-registry`, the release test plugin. Each run gets a fresh registry with its
//! own `--images` distinct small images (two layers, see `common::image`), pushed before the clock
//! starts, so no run finds another's reports.
//!
//! 1. **Scaling** (latency-bound): the test plugin waits `--delay` per layer (as an engine far
//!    away, or a registry across a WAN, would), with room for every worker's scans
//!    (`--max-concurrent-scans 64`). For each `--workers` W: W watchers with `--nats-stream`,
//!    `--concurrency C` each. The clock starts with the first event posted (batches of 50
//!    distribution events to worker 1, which publishes one job per image) and stops when the
//!    workers' `scans_total{outcome="reported"}` counters sum to `--images`. Speed-up is the
//!    1-worker time over the W-worker time; efficiency is speed-up / W.
//! 2. **Queue overhead**: the plugin without delay (the scans cost what they cost, nothing
//!    waits), one watcher with `--concurrency C`: once with the in-process queue, once with
//!    `--nats-stream`; the same number of images each. Overhead per job is the difference of the
//!    wall times over the number of jobs (at that concurrency).
//!
//! Every run then checks, untimed, that each image lists its report. Needs
//! `apt-get install -y docker-registry nats-server`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sidescan_testkit::nats::NatsServer;
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, test_plugin_binary};
use sidescan_testkit::process::cpu_seconds;
use sidescan_testkit::registry::Registry;
use sidescan_testkit::watch::WatchProcess;

mod common;
use common::{REPO, image, load_average, oci_client, reported, verify};

struct Settings {
    images: usize,
    workers: Vec<usize>,
    concurrency: usize,
    delay: Duration,
}

fn settings() -> Result<Settings, String> {
    let usage = "usage: cargo bench -p sidescan-watch --bench scaling -- [--images N] [--workers 1,2,4] [--concurrency N] [--delay 1s]";
    let mut s = Settings {
        images: 120,
        workers: vec![1, 2, 4],
        concurrency: 4,
        delay: Duration::from_secs(1),
    };
    let args = common::bench_args();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(usage)?;
        match flag.as_str() {
            "--images" => s.images = value.parse().map_err(|_| usage)?,
            "--concurrency" => s.concurrency = value.parse().map_err(|_| usage)?,
            "--delay" => s.delay = humantime::parse_duration(value).map_err(|_| usage)?,
            "--workers" => {
                s.workers = value
                    .split(',')
                    .map(|n| n.parse().map_err(|_| usage))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(usage.into()),
        }
    }
    if s.images == 0 || s.concurrency == 0 || s.workers.is_empty() || s.workers.contains(&0) {
        return Err(usage.into());
    }
    Ok(s)
}

/// The test plugin, waiting `delay` per layer, with room for every worker's scans.
async fn plugin(delay: Duration) -> PluginProcess {
    let delay = format!("{}ms", delay.as_millis());
    let plugin = PluginProcess::start(
        &test_plugin_binary(),
        &[
            "--engine-version",
            "bench-1",
            "--layer-delay",
            &delay,
            "--max-concurrent-scans",
            "64",
            "--max-queued-scans",
            "256",
        ],
    );
    plugin.wait_for_health(ServingStatus::Serving).await;
    plugin
}

/// A watcher scanning `registry` with `plugin`; on the JetStream queue when `nats` is given.
async fn worker(
    registry: &Registry,
    plugin: &PluginProcess,
    nats: Option<&NatsServer>,
    concurrency: usize,
) -> WatchProcess {
    let mut args = vec![
        "--registry".to_string(),
        registry.url(),
        "--plugin".into(),
        plugin.url(),
        "--concurrency".into(),
        concurrency.to_string(),
        "--queue-size".into(),
        "100000".into(),
    ];
    if let Some(nats) = nats {
        args.extend(
            [
                "--nats",
                &nats.url(),
                "--nats-stream",
                "BENCH",
                "--nats-subject",
                "bench.jobs",
            ]
            .map(str::to_owned),
        );
    }
    let watch = WatchProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_sidescan-watch")),
        "127.0.0.1:0",
        &args,
    );
    watch.wait_ready(Duration::from_secs(30)).await;
    watch
}

/// Pushes `images` distinct images (series `part`) to `registry`; their digests.
async fn push_images(registry: &Registry, images: usize, part: u64) -> Result<Vec<String>, String> {
    let client = registry.client();
    let mut digests = Vec::with_capacity(images);
    for n in 0..images {
        digests.push(
            client
                .push(&image(part, n as u64), REPO, &format!("s-{n}"))
                .await
                .map_err(|e| format!("push: {e}"))?,
        );
    }
    Ok(digests)
}

/// Posts one distribution push event per digest to `watch`, 50 per request.
async fn post_events(watch: &WatchProcess, digests: &[String]) -> Result<(), String> {
    let http = reqwest::Client::new();
    for chunk in digests.chunks(50) {
        let events: Vec<_> = chunk
            .iter()
            .map(|digest| {
                serde_json::json!({"action": "push", "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "repository": REPO, "digest": digest}})
            })
            .collect();
        let status = http
            .post(watch.events_url())
            .header(
                "content-type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .body(serde_json::json!({ "events": events }).to_string())
            .send()
            .await
            .map_err(|e| format!("POST /events: {e}"))?
            .status();
        if status != 202 {
            return Err(format!("POST /events answered {status}"));
        }
    }
    Ok(())
}

/// Posts the events, then waits for the workers' reports to sum to the number of images; the
/// wall time from the first post.
async fn drain(workers: &[WatchProcess], digests: &[String]) -> Result<Duration, String> {
    let start = Instant::now();
    post_events(&workers[0], digests).await?;
    loop {
        let mut sum = 0.0;
        for w in workers {
            sum += reported(w).await;
        }
        if sum >= digests.len() as f64 {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(300) {
            let logs: Vec<String> = workers.iter().map(|w| w.logs()).collect();
            return Err(format!(
                "{sum} of {} reports after 300 s; logs:\n{}",
                digests.len(),
                logs.join("\n---\n")
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one run measured: wall time and the CPU-seconds each component spent during it.
struct Measured {
    wall: Duration,
    watchers_cpu: f64,
    nats_cpu: f64,
    registry_cpu: f64,
    plugin_cpu: f64,
}

/// CPU-seconds of `pids` so far (a process that is gone counts 0).
fn cpu(pids: &[u32]) -> f64 {
    pids.iter()
        .map(|&pid| cpu_seconds(pid, false).unwrap_or(0.0))
        .sum()
}

/// One run: a fresh registry (and NATS server when `jetstream`), `workers` watchers.
async fn run(
    s: &Settings,
    workers: usize,
    delay: Duration,
    jetstream: bool,
    part: u64,
) -> Result<Measured, String> {
    let registry = Registry::anonymous();
    let digests = push_images(&registry, s.images, part).await?;
    let nats = jetstream.then(NatsServer::start);
    let plugin = plugin(delay).await;
    let mut watchers = Vec::with_capacity(workers);
    for _ in 0..workers {
        watchers.push(worker(&registry, &plugin, nats.as_ref(), s.concurrency).await);
    }
    let watcher_pids: Vec<u32> = watchers.iter().map(WatchProcess::pid).collect();
    let nats_pid: Vec<u32> = nats.iter().map(NatsServer::pid).collect();
    let before = [
        cpu(&watcher_pids),
        cpu(&nats_pid),
        cpu(&[registry.pid()]),
        cpu(&[plugin.pid()]),
    ];
    let wall = drain(&watchers, &digests).await?;
    let measured = Measured {
        wall,
        watchers_cpu: cpu(&watcher_pids) - before[0],
        nats_cpu: cpu(&nats_pid) - before[1],
        registry_cpu: cpu(&[registry.pid()]) - before[2],
        plugin_cpu: cpu(&[plugin.pid()]) - before[3],
    };
    verify(&oci_client(&registry)?, &digests, "workers").await?;
    Ok(measured)
}

fn bench() -> Result<(), String> {
    let s = settings()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    println!(
        "{} distinct images per run ({} layers each); {} CPUs; load average {}",
        s.images,
        image(0, 0).layers.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let mut scaling = Vec::new();
    for (i, &w) in s.workers.iter().enumerate() {
        eprintln!(
            "scaling: {w} worker(s) x --concurrency {} ...",
            s.concurrency
        );
        let m = rt.block_on(run(&s, w, s.delay, true, 100 + i as u64))?;
        println!("{w} worker(s): {:.2} s", m.wall.as_secs_f64());
        scaling.push((w, m));
    }
    eprintln!("overhead: in-process queue ...");
    let in_process = rt.block_on(run(&s, 1, Duration::ZERO, false, 200))?;
    eprintln!("overhead: JetStream queue ...");
    let on_jetstream = rt.block_on(run(&s, 1, Duration::ZERO, true, 201))?;

    println!();
    println!(
        "Scaling: {} images, the test plugin waiting {} ms per layer, each worker `--concurrency {}` (load average at the end {}):",
        s.images,
        s.delay.as_millis(),
        s.concurrency,
        load_average()
    );
    println!();
    println!("| workers | wall s | images/s | speed-up | efficiency |");
    println!("|---:|---:|---:|---:|---:|");
    let (base_workers, base) = (scaling[0].0, scaling[0].1.wall);
    for (w, m) in &scaling {
        let speedup = base.as_secs_f64() / m.wall.as_secs_f64();
        println!(
            "| {w} | {:.2} | {:.1} | {speedup:.2}x | {:.0} % |",
            m.wall.as_secs_f64(),
            s.images as f64 / m.wall.as_secs_f64(),
            100.0 * speedup * base_workers as f64 / *w as f64
        );
    }
    println!();
    println!(
        "Queue overhead: {} images, the test plugin without delay, one watcher `--concurrency {}`:",
        s.images, s.concurrency
    );
    println!();
    println!(
        "| queue | wall s | wall ms per job | x in-process | CPU ms per job: watcher | nats-server | registry | plugin |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let per_job = |seconds: f64| seconds * 1000.0 / s.images as f64;
    for (name, m) in [
        ("in-process", &in_process),
        ("JetStream (`--nats-stream`, file storage)", &on_jetstream),
    ] {
        println!(
            "| {name} | {:.2} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
            m.wall.as_secs_f64(),
            per_job(m.wall.as_secs_f64()),
            m.wall.as_secs_f64() / in_process.wall.as_secs_f64(),
            per_job(m.watchers_cpu),
            per_job(m.nats_cpu),
            per_job(m.registry_cpu),
            per_job(m.plugin_cpu),
        );
    }
    println!();
    println!(
        "JetStream adds {:.1} ms of wall time per job at this concurrency.",
        per_job(on_jetstream.wall.as_secs_f64()) - per_job(in_process.wall.as_secs_f64())
    );
    println!();
    println!("CPU ms per job in the scaling runs (latency-bound plugin):");
    println!();
    println!("| workers | watchers | nats-server | registry | plugin |");
    println!("|---:|---:|---:|---:|---:|");
    for (w, m) in &scaling {
        println!(
            "| {w} | {:.1} | {:.1} | {:.1} | {:.1} |",
            per_job(m.watchers_cpu),
            per_job(m.nats_cpu),
            per_job(m.registry_cpu),
            per_job(m.plugin_cpu)
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    common::exit(bench())
}
