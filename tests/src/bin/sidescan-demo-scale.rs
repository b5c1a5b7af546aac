//! The README's "Scaling out" job (`scripts/demo-scale`): two `sidescan-watch` workers sharing
//! one durable JetStream queue, one of them killed mid-run, and no image left without a report.
//!
//! It starts, on 127.0.0.1, a real clamd (a small signature database it writes) with
//! `sidescan-clamav`, a `docker-registry` that notifies worker A, and then the README's three
//! commands: `nats-server -js`, and two `sidescan-watch --nats URL --nats-stream SIDESCAN`. It
//! pushes `IMAGES` images (every fifth carries the EICAR test file) as a burst, kills worker B with
//! SIGKILL once it has finished a few jobs, waits until every image lists its report (B's jobs in
//! flight are redelivered to A after the ack wait), prints each worker's counts, and reads one
//! report back with `sidescan report --fail-on high`. Exit 0 when every image has its report,
//! exactly the EICAR images have findings, and the gate fails on one of them.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sidescan_testkit::clamd::ClamdProcess;
use sidescan_testkit::fixtures::{self, EICAR, Entry, Image, Layer};
use sidescan_testkit::metrics::Scrape;
use sidescan_testkit::nats::NatsServer;
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, workspace_binary};
use sidescan_testkit::process::free_port;
use sidescan_testkit::registry::Registry;
use sidescan_testkit::watch::{WatchProcess, sidescan_report as report};

/// Images pushed in the burst.
const IMAGES: usize = 20;

/// The number of current sidescan reports attached to the image and the findings total of the
/// first, if it has one.
fn reported_findings(image: &str, registry: &str) -> Option<(usize, u64)> {
    let (_, json) = report(image, registry, &["--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json).ok()?;
    let reports = value["reports"].as_array()?;
    let report = reports.first()?;
    // proto3 JSON leaves a zero total out
    let total = report["response"]["report"]["summary"]["total"].as_u64();
    Some((reports.len(), total.unwrap_or(0)))
}

/// A worker's counters: reports attached, JetStream jobs delivered to it, redelivered to it,
/// and finished by it (acked, nacked or dead-lettered).
async fn counts(worker: &WatchProcess) -> [u64; 4] {
    let scrape = Scrape::parse(&worker.metrics_text().await);
    let jobs = |outcome: &str| {
        scrape.sum(
            "sidescan_watch_jetstream_jobs_total",
            &[("outcome", outcome)],
        ) as u64
    };
    [
        scrape.sum("sidescan_watch_scans_total", &[("outcome", "reported")]) as u64,
        jobs("delivered"),
        jobs("redelivered"),
        jobs("acked") + jobs("nacked") + jobs("dead-lettered"),
    ]
}

/// Image `n`: the shared base plus a top layer of its own; every fifth carries EICAR.
fn image(n: usize) -> sidescan_testkit::oci::Artifact {
    let mut top = vec![Entry::file(
        "srv/app/version.txt",
        format!("release {n}\n").into_bytes(),
    )];
    if n.is_multiple_of(5) {
        top.push(Entry::file("srv/app/eicar.com", EICAR));
    }
    Image::new()
        .layer(fixtures::base_layer())
        .layer(Layer::new(top))
        .build()
}

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");

    println!("==> clamd (test signatures) and the ClamAV adapter");
    let clamd = ClamdProcess::start();
    let clamav = PluginProcess::start(
        &workspace_binary("sidescan-clamav"),
        &["--clamd", &clamd.unix_addr()],
    );
    runtime.block_on(clamav.wait_for_health(ServingStatus::Serving));

    let port_a = free_port();
    let registry = Registry::with_notifications(&format!("http://127.0.0.1:{port_a}/events"));
    println!("==> docker-registry {} notifying worker A", registry.url());

    println!("==> 1. nats-server -js -a 127.0.0.1 -p PORT -sd DIR");
    let nats = NatsServer::start();
    let watch_args: Vec<String> = [
        "--registry",
        &registry.url(),
        "--plugin",
        &clamav.url(),
        "--nats",
        &nats.url(),
        "--nats-stream",
        "SIDESCAN",
        "--nats-ack-wait",
        "5s",
        "--log-format",
        "text",
    ]
    .map(str::to_owned)
    .to_vec();
    let watch = workspace_binary("sidescan-watch");
    println!(
        "==> 2. sidescan-watch --listen 127.0.0.1:{port_a} {}",
        watch_args.join(" ")
    );
    let a = WatchProcess::start(&watch, &format!("127.0.0.1:{port_a}"), &watch_args);
    println!(
        "==> 3. sidescan-watch --listen 127.0.0.1:0 {}",
        watch_args.join(" ")
    );
    let mut b = WatchProcess::start(&watch, "127.0.0.1:0", &watch_args);
    runtime.block_on(async {
        a.wait_ready(Duration::from_secs(30)).await;
        b.wait_ready(Duration::from_secs(30)).await;
    });

    println!("==> pushing {IMAGES} images to demo/app (every fifth with EICAR)");
    let started = Instant::now();
    let client = registry.client();
    let pushing = runtime.spawn(async move {
        for n in 0..IMAGES {
            client
                .push(&image(n), "demo/app", &format!("{n}"))
                .await
                .expect("push");
        }
    });
    // Kill B once it has attached a report and holds a job it has not finished, while images
    // are still being pushed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let [reported_by_b, delivered, _, finished] = runtime.block_on(async {
        loop {
            let counts = counts(&b).await;
            let [reported, delivered, _, finished] = counts;
            if (reported >= 1 && delivered > finished) || Instant::now() > deadline {
                return counts;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    b.kill();
    println!(
        "==> killed worker B (SIGKILL) {:.1?} into the run: it had attached {reported_by_b} \
         report(s) and held {} job(s) unfinished",
        started.elapsed(),
        delivered.saturating_sub(finished)
    );
    runtime.block_on(pushing).expect("pushes");

    let mut missing: Vec<usize> = (0..IMAGES).collect();
    let mut findings = [0u64; IMAGES];
    let mut reports = [0usize; IMAGES];
    let deadline = Instant::now() + Duration::from_secs(120);
    while !missing.is_empty() {
        missing.retain(|&n| {
            let image = format!("{}/demo/app:{n}", registry.host());
            match reported_findings(&image, &registry.url()) {
                Some((count, total)) => {
                    reports[n] = count;
                    findings[n] = total;
                    false
                }
                None => true,
            }
        });
        if Instant::now() > deadline {
            eprintln!(
                "demo-scale: no report on {missing:?} after 120 s; worker A log:\n{}",
                a.logs()
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let [reported_by_a, _, redelivered, _] = runtime.block_on(counts(&a));
    println!(
        "==> all {IMAGES} images have their report {:.1?} after the first push: worker A attached \
         {reported_by_a} and took over {redelivered} job(s) B had in flight; worker B attached \
         {reported_by_b} before it died",
        started.elapsed()
    );

    let eicar = format!("{}/demo/app:5", registry.host());
    println!(
        "==> sidescan report {eicar} --registry {} --fail-on high",
        registry.url()
    );
    let (code, table) = report(&eicar, &registry.url(), &["--fail-on", "high"]);
    print!("{table}");
    println!("    sidescan report exited {code}");

    let wrong: Vec<usize> = (0..IMAGES)
        .filter(|&n| reports[n] != 1 || (findings[n] > 0) != n.is_multiple_of(5))
        .collect();
    if wrong.is_empty() && code == 1 && table.contains("eicar.com") {
        println!("demo-scale: OK, every image reported once, findings exactly on the EICAR images");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "demo-scale: not exactly one report, or unexpected findings, on images {wrong:?}; or gate exit {code}"
        );
        ExitCode::FAILURE
    }
}
