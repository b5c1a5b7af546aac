//! The load benchmark (`cargo bench -p sidescan-tests --bench load`, also run by
//! `scripts/bench`): many `sidescan scan` processes at once against one real plugin process, the
//! way a CI farm or a registry's scan hooks call it.
//!
//! It starts `docker-registry` on 127.0.0.1, pushes `--images` small images (every third one with
//! the test plugin's marker, so a finding), starts the release `sidescan-test-plugin` with
//! `--max-concurrent-scans 4` and the `--max-queued-scans` of each configuration, scans every
//! image once (the scans below are cached ones, as in issue 16's measurement), then runs
//! `--scans` calls of the release `sidescan scan --rpc unary --fail-on high` from `--callers`
//! concurrent callers, image `i % images` for call `i`. Per configuration it reports calls
//! answered OK, refused, other errors, wrong verdicts (exit code 0 for a clean image, 1 for a
//! marked one), p50/p99 latency of a call (process start to exit), throughput, the plugin's open
//! file descriptors and the files under its scratch directory before and after, and from the
//! plugin's metrics the refusals it answered (each retried by the CLI) and the requests answered
//! by an identical scan in flight. It fails on any wrong verdict.
//!
//! Configurations, each on a fresh plugin: with *distinct* requests (each call adds
//! `--report-type vulnerability --report-param call=<i>`, so no two are identical and the single
//! flight never merges them: every call needs a slot or a queue seat) `queue 16, no retries` (the
//! plugin default and CLI before issue 16), `queue 16, retries` (the CLI's default
//! `--max-attempts 5`) and `default queue, retries`; then with *repeated* requests (the same few
//! images over and over, as a registry's hooks send them), both defaults. Each configuration runs
//! its calls twice: the table is the first round; the descriptors and scratch entries are counted
//! after the warm-up, after round one and after round two, so that a pool filling up once tells
//! itself apart from a leak that grows each round.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sidescan_proto::client::DEFAULT_MAX_ATTEMPTS;
use sidescan_testkit::fixtures::{self, Entry, Image, Layer};
use sidescan_testkit::plugin::{
    PluginProcess, ServingStatus, test_plugin_binary, workspace_binary,
};
use sidescan_testkit::registry::Registry;

/// The marker the test plugin reports.
const MARKER: &str = "SIDESCAN-TEST-FINDING";

struct Settings {
    scans: usize,
    callers: usize,
    images: usize,
}

/// One configuration: the plugin's queue depth (`None`: its default) and the CLI's attempts.
struct Config {
    name: &'static str,
    queue: Option<u32>,
    attempts: u32,
    /// Every call distinct (never merged by the single flight).
    distinct: bool,
}

/// How one `sidescan scan` call ended.
struct Call {
    latency: Duration,
    /// Exit code 0 or 1 as wanted for the image.
    outcome: Outcome,
}

#[derive(PartialEq)]
enum Outcome {
    Right,
    Wrong,
    Refused,
    Error(String),
}

fn marked(n: usize) -> bool {
    n.is_multiple_of(3)
}

fn settings() -> Result<Settings, String> {
    let mut s = Settings {
        scans: 1000,
        callers: 32,
        images: 8,
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("{flag} needs a positive number"))?;
        match flag.as_str() {
            "--scans" => s.scans = value,
            "--callers" => s.callers = value,
            "--images" => s.images = value,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(s)
}

/// Open file descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Files and directories under `dir`, the blob and result caches (`cache/`) left out.
fn scratch_entries(dir: &Path) -> usize {
    let mut count = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if d == dir && entry.file_name() == "cache" {
                continue;
            }
            count += 1;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
    }
    count
}

/// One `sidescan scan` of image `n`; `distinct`: made unique by a report parameter naming call
/// `i`.
async fn one_call(
    cli: &Path,
    plugin: &str,
    registry: &str,
    (n, i): (usize, usize),
    attempts: u32,
    distinct: bool,
) -> Call {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(cli);
    command
        .args(["scan", &format!("load/app{n}:1"), "--plugin", plugin])
        .args([
            "--registry",
            registry,
            "--rpc",
            "unary",
            "--fail-on",
            "high",
        ])
        .args(["--timeout", "120s", "--max-attempts", &attempts.to_string()]);
    if distinct {
        command.args([
            "--report-type",
            "vulnerability",
            "--report-param",
            &format!("call={i}"),
        ]);
    }
    let output = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await;
    let latency = started.elapsed();
    let outcome = match output {
        Err(e) => Outcome::Error(format!("cannot run sidescan: {e}")),
        Ok(out) => match out.status.code() {
            Some(0) if !marked(n) => Outcome::Right,
            Some(1) if marked(n) => Outcome::Right,
            Some(0 | 1) => Outcome::Wrong,
            _ => {
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                if stderr.contains("RESOURCE_EXHAUSTED") {
                    Outcome::Refused
                } else {
                    Outcome::Error(stderr.trim().to_owned())
                }
            }
        },
    };
    Call { latency, outcome }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

async fn run(s: &Settings, registry: &Registry, config: &Config) -> Result<String, String> {
    let mut args = vec!["--max-concurrent-scans".to_owned(), "4".to_owned()];
    if let Some(queue) = config.queue {
        args.extend(["--max-queued-scans".to_owned(), queue.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let plugin = PluginProcess::start_with_metrics(&test_plugin_binary(), &args);
    plugin.wait_for_health(ServingStatus::Serving).await;
    let cli = workspace_binary("sidescan");
    let url = plugin.url();
    let reg = registry.url();
    for n in 0..s.images {
        let warm = one_call(&cli, &url, &reg, (n, 0), 5, false).await;
        if warm.outcome != Outcome::Right {
            return Err(format!("warm-up scan of image {n} failed"));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (fds_before, files_before) = (fds(plugin.pid()), scratch_entries(plugin.dir()));
    let before = plugin.metrics().await;

    let started = Instant::now();
    let calls = round(s, &cli, &url, &reg, config).await?;
    let wall = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds_one, files_one) = (fds(plugin.pid()), scratch_entries(plugin.dir()));
    let after = plugin.metrics().await;
    round(s, &cli, &url, &reg, config).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fds_two, files_two) = (fds(plugin.pid()), scratch_entries(plugin.dir()));
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);

    let count = |f: &dyn Fn(&Outcome) -> bool| calls.iter().filter(|c| f(&c.outcome)).count();
    let ok = count(&|o| matches!(o, Outcome::Right | Outcome::Wrong));
    let wrong = count(&|o| *o == Outcome::Wrong);
    let refused = count(&|o| *o == Outcome::Refused);
    let errors: Vec<&String> = calls
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Error(e) => Some(e),
            _ => None,
        })
        .collect();
    if let Some(first) = errors.first() {
        eprintln!(
            "{}: {} other errors, the first: {first}",
            config.name,
            errors.len()
        );
    }
    let mut latencies: Vec<Duration> = calls.iter().map(|c| c.latency).collect();
    latencies.sort();
    let row = format!(
        "| {} | {} | {} | {} | **{}** | {:.0} | {:.0} | {:.1} | {} → {} → {} | {} → {} → {} | {:.0} | {:.0} |",
        config.name,
        ok,
        refused,
        errors.len(),
        wrong,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        calls.len() as f64 / wall.as_secs_f64(),
        fds_before,
        fds_one,
        fds_two,
        files_before,
        files_one,
        files_two,
        delta("sidescan_scans_total", &[("code", "RESOURCE_EXHAUSTED")]),
        delta("sidescan_scans_shared_total", &[]),
    );
    if wrong > 0 {
        return Err(format!("{row}\n{wrong} wrong verdicts"));
    }
    Ok(row)
}

/// `s.scans` calls from `s.callers` concurrent callers; every call's outcome.
async fn round(
    s: &Settings,
    cli: &Path,
    url: &str,
    reg: &str,
    config: &Config,
) -> Result<Vec<Call>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..s.callers {
        let (next, cli, url, reg) = (next.clone(), cli.to_owned(), url.to_owned(), reg.to_owned());
        let (scans, images, attempts, distinct) =
            (s.scans, s.images, config.attempts, config.distinct);
        callers.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= scans {
                    return calls;
                }
                let call = one_call(&cli, &url, &reg, (i % images, i), attempts, distinct);
                calls.push(call.await);
            }
        }));
    }
    let mut calls = Vec::new();
    for caller in callers {
        calls.extend(caller.await.map_err(|e| e.to_string())?);
    }
    Ok(calls)
}

async fn driver(s: Settings) -> Result<(), String> {
    let registry = Registry::anonymous();
    for n in 0..s.images {
        let text = if marked(n) {
            format!("image {n} {MARKER}\n")
        } else {
            format!("image {n} clean\n")
        };
        let image = Image::new()
            .layer(fixtures::base_layer())
            .layer(Layer::new([Entry::file("app/file.txt", text.into_bytes())]))
            .build();
        registry.push(&image, &format!("load/app{n}"), "1").await;
    }
    let configs = [
        Config {
            name: "distinct, queue 16, no retries (`--max-attempts 1`)",
            queue: Some(16),
            attempts: 1,
            distinct: true,
        },
        Config {
            name: "distinct, queue 16, retries (CLI default)",
            queue: Some(16),
            attempts: DEFAULT_MAX_ATTEMPTS,
            distinct: true,
        },
        Config {
            name: "distinct, default queue, retries",
            queue: None,
            attempts: DEFAULT_MAX_ATTEMPTS,
            distinct: true,
        },
        Config {
            name: "repeated, default queue, retries",
            queue: None,
            attempts: DEFAULT_MAX_ATTEMPTS,
            distinct: false,
        },
    ];
    println!(
        "{} `sidescan scan` calls (release builds) from {} concurrent callers over {} cached images \
         (every third with a finding), `sidescan-test-plugin --max-concurrent-scans 4`:",
        s.scans, s.callers, s.images
    );
    println!();
    println!(
        "| configuration | OK | RESOURCE_EXHAUSTED | other errors | wrong verdicts | p50 ms | p99 ms | calls/s | plugin fds: warm → round 1 → round 2 | scratch entries: warm → 1 → 2 | refusals answered (retried) | shared scans |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|");
    for config in &configs {
        eprintln!("load: {} ...", config.name);
        println!("{}", run(&s, &registry, config).await?);
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}\nusage: load [--scans N] [--callers N] [--images N]");
            return ExitCode::FAILURE;
        }
    };
    match driver(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}
