//! The JetStream queue (`--nats-stream`): watchers sharing a durable work queue on a real
//! nats-server. A watcher killed mid-scan loses no job, a restarted server loses no job, NATS
//! down means 503 (the registry retries) until it is back, and a poison job is dead-lettered
//! while the rest flow.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use sidescan_oci::referrers;
use sidescan_testkit::nats::NatsServer;
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, test_plugin_binary};
use sidescan_testkit::process::free_port;
use sidescan_testkit::registry::Registry;
use sidescan_testkit::watch::WatchProcess;

use crate::support::{client, marked_image, metric, start_watch, wait_for_report};

fn jetstream_args(nats: &str) -> Vec<String> {
    [
        "--nats",
        nats,
        "--nats-stream",
        "SIDESCAN",
        "--nats-subject",
        "sidescan.jobs",
        "--nats-ack-wait",
        "3s",
        "--nats-max-deliver",
        "3",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn watch(listen: &str, registry: &Registry, plugin: &PluginProcess, nats: &str) -> WatchProcess {
    let args = jetstream_args(nats);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_watch(listen, &registry.url(), &[plugin], &args)
}

/// A test plugin that takes `delay` per layer (so scans are in flight when something dies).
async fn slow_plugin(delay: &str) -> PluginProcess {
    let plugin = PluginProcess::start(&test_plugin_binary(), &["--layer-delay", delay]);
    plugin.wait_for_health(ServingStatus::Serving).await;
    plugin
}

async fn post_push(watch: &WatchProcess, repo: &str, digest: &str) -> u16 {
    let body = serde_json::json!({"events": [{"action": "push", "target": {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "repository": repo, "digest": digest, "tag": "1"}}]});
    reqwest::Client::new()
        .post(watch.events_url())
        .header(
            "content-type",
            "application/vnd.docker.distribution.events.v1+json",
        )
        .body(body.to_string())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn assert_one_report_each(
    registry: &Registry,
    images: &[(String, String)],
    logs: impl Fn() -> String,
) {
    let oci = client(registry);
    for (repo, digest) in images {
        wait_for_report(
            &oci,
            repo,
            digest,
            "sidescan-test-plugin",
            None,
            Duration::from_secs(60),
            &logs,
        )
        .await;
        let listed = referrers::list(&oci, repo, digest).await.unwrap();
        assert_eq!(
            listed.entries.len(),
            1,
            "{repo}: exactly one current report: {:?}",
            listed.entries
        );
    }
}

/// How many events the two-worker run takes.
const EVENTS: usize = 100;

#[tokio::test]
async fn a_worker_killed_mid_run_loses_none_of_100_jobs_and_each_image_gets_one_report() {
    let nats = NatsServer::start();
    let plugin = slow_plugin("300ms").await;
    let registry = Registry::anonymous();
    let mut a = watch("127.0.0.1:0", &registry, &plugin, &nats.url());
    let b = watch("127.0.0.1:0", &registry, &plugin, &nats.url());
    a.wait_ready(Duration::from_secs(30)).await;
    b.wait_ready(Duration::from_secs(30)).await;

    let mut images = Vec::new();
    for i in 0..EVENTS {
        let repo = format!("fleet/app{i}");
        let digest = registry.push(&marked_image(&repo), &repo, "1").await;
        // Events arrive at both watchers, as behind a Service.
        let to = if i % 2 == 0 { &a } else { &b };
        assert_eq!(post_push(to, &repo, &digest).await, 202);
        images.push((repo, digest));
    }
    // Let A finish about half of its share, then kill it without warning while it holds jobs
    // it has not finished: those are redelivered to B after the ack wait.
    let jobs = |text: &str, outcome: &str| {
        metric(
            text,
            &format!("sidescan_watch_jetstream_jobs_total{{outcome=\"{outcome}\"}}"),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let acked_by_a = loop {
        let text = a.metrics_text().await;
        let acked = jobs(&text, "acked");
        let finished = acked + jobs(&text, "nacked") + jobs(&text, "dead-lettered");
        if acked >= (EVENTS / 4) as f64 && jobs(&text, "delivered") >= finished + 2.0 {
            break acked;
        }
        assert!(
            Instant::now() < deadline,
            "A never held unfinished jobs after acking a quarter: {text}\n{}",
            a.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    a.kill();
    let killed_at = Instant::now();
    assert_one_report_each(&registry, &images, || b.logs()).await;
    let text = b.metrics_text().await;
    let redelivered = jobs(&text, "redelivered");
    println!(
        "{EVENTS} events: A acked {acked_by_a} before SIGKILL, B acked {} ({redelivered} of them \
         redelivered from A) and finished {:.1} s after the kill",
        jobs(&text, "acked"),
        killed_at.elapsed().as_secs_f64()
    );
    assert!(
        redelivered >= 1.0,
        "the jobs A held were redelivered to B: {text}"
    );
}

#[tokio::test]
async fn a_nats_server_restart_mid_run_loses_no_job() {
    let nats = NatsServer::start();
    let plugin = slow_plugin("200ms").await;
    let registry = Registry::anonymous();
    let w = watch("127.0.0.1:0", &registry, &plugin, &nats.url());
    w.wait_ready(Duration::from_secs(30)).await;
    let mut images = Vec::new();
    for i in 0..8 {
        let repo = format!("restart/app{i}");
        let digest = registry.push(&marked_image(&repo), &repo, "1").await;
        assert_eq!(post_push(&w, &repo, &digest).await, 202);
        images.push((repo, digest));
    }
    // The jobs are in the stream's files; the server goes away and comes back on the same port.
    let nats = nats.restart();
    assert_one_report_each(&registry, &images, || {
        format!("{}\nnats:\n{}", w.logs(), nats.log())
    })
    .await;
}

#[tokio::test]
async fn nats_unreachable_means_not_ready_and_503_until_it_is_back() {
    let port = free_port();
    let nats_url = format!("nats://127.0.0.1:{port}");
    let plugin = slow_plugin("0s").await;
    let registry = Registry::anonymous();
    let w = watch("127.0.0.1:0", &registry, &plugin, &nats_url);
    let repo = "late/app";
    let digest = registry.push(&marked_image(repo), repo, "1").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let health = reqwest::get(format!("{}/healthz", w.url())).await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(
        post_push(&w, repo, &digest).await,
        503,
        "refused, not accepted and dropped"
    );

    let _nats = NatsServer::start_on(port);
    w.wait_ready(Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while post_push(&w, repo, &digest).await != 202 {
        assert!(
            Instant::now() < deadline,
            "events still refused:\n{}",
            w.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_one_report_each(&registry, &[(repo.to_string(), digest)], || w.logs()).await;
}

#[tokio::test]
async fn a_poison_job_is_dead_lettered_and_the_rest_keep_flowing() {
    let nats = NatsServer::start();
    let plugin = slow_plugin("0s").await;
    let registry = Registry::anonymous();
    let w = watch("127.0.0.1:0", &registry, &plugin, &nats.url());
    w.wait_ready(Duration::from_secs(30)).await;
    let listener = async_nats::connect(nats.url()).await.unwrap();
    let mut dead = listener.subscribe("sidescan.dead").await.unwrap();
    listener.flush().await.unwrap();

    // An image whose layer does not match its diff_id: every plugin refuses it (DATA_LOSS), so
    // the job can never succeed.
    let poison = sidescan_testkit::hostile::wrong_diff_id();
    let poison_digest = registry.push(&poison.artifact, "poison/app", "1").await;
    assert_eq!(post_push(&w, "poison/app", &poison_digest).await, 202);
    let repo = "healthy/app";
    let digest = registry.push(&marked_image(repo), repo, "1").await;
    assert_eq!(post_push(&w, repo, &digest).await, 202);

    let message = tokio::time::timeout(Duration::from_secs(30), dead.next())
        .await
        .unwrap_or_else(|_| panic!("nothing dead-lettered:\n{}", w.logs()))
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert!(
        body["job"].as_str().unwrap().contains("poison/app"),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("DATA_LOSS"),
        "{body}"
    );
    assert_one_report_each(&registry, &[(repo.to_string(), digest)], || w.logs()).await;
    let text = w.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "sidescan_watch_jetstream_jobs_total{outcome=\"dead-lettered\"}"
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn the_consumer_lag_is_exported_for_autoscaling() {
    let nats = NatsServer::start();
    let plugin = slow_plugin("2s").await;
    let registry = Registry::anonymous();
    let mut args = jetstream_args(&nats.url());
    args.extend(["--concurrency", "1"].map(str::to_owned));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let w = start_watch("127.0.0.1:0", &registry.url(), &[&plugin], &args);
    w.wait_ready(Duration::from_secs(30)).await;
    for i in 0..5 {
        let repo = format!("lag/app{i}");
        let digest = registry.push(&marked_image(&repo), &repo, "1").await;
        assert_eq!(post_push(&w, &repo, &digest).await, 202);
    }
    // One job runs at a time for 2 s or more: the gauges must show the others waiting.
    let waiting = "sidescan_watch_jetstream_consumer_pending{state=\"waiting\"}";
    let unacked = "sidescan_watch_jetstream_consumer_pending{state=\"unacked\"}";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = w.metrics_text().await;
        if metric(&text, waiting) + metric(&text, unacked) >= 3.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no lag seen: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
