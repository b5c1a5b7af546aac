//! zot's event formats (CloudEvents binary and structured over HTTP, structured over NATS), and
//! bad events refused with the documented 4xx.

use std::time::Duration;

use serde_json::json;
use sidescan_testkit::fixtures;
use sidescan_testkit::nats::NatsServer;
use sidescan_testkit::registry::Registry;

use crate::support::{client, metric, start_watch, test_plugin, wait_for_report};

/// zot's `zotregistry.image.updated` data for `repo:tag` of `image`.
fn zot_data(repo: &str, tag: &str, image: &sidescan_testkit::oci::Artifact) -> serde_json::Value {
    json!({
        "name": repo,
        "reference": tag,
        "digest": image.digest(),
        "mediaType": image.media_type(),
        "manifest": image.manifest_json().to_string(),
    })
}

fn structured(data: serde_json::Value) -> serde_json::Value {
    json!({"specversion": "1.0", "id": uuid_like(), "source": "zotregistry.dev",
        "type": "zotregistry.image.updated", "datacontenttype": "application/json", "data": data})
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn zot_cloudevents_over_http_in_binary_and_structured_mode() {
    let plugin = test_plugin("e1").await;
    let registry = Registry::anonymous();
    let watch = start_watch("127.0.0.1:0", &registry.url(), &[&plugin], &[]);
    watch.wait_ready(Duration::from_secs(20)).await;
    // The container HEALTHCHECK's view: ready here, not ready where nothing listens.
    let check = |url: String| {
        std::process::Command::new(crate::support::watch_binary())
            .args(["--check-health", &url])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(check(watch.url()), Some(0));
    assert_eq!(check("http://127.0.0.1:9".into()), Some(1));
    let binary_image = crate::support::marked_image("binary");
    let structured_image = fixtures::clean_image();
    registry.push(&binary_image, "bin", "1").await;
    registry.push(&structured_image, "st", "1").await;
    let http = reqwest::Client::new();

    let r = http
        .post(watch.events_url())
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-source", "zotregistry.dev")
        .header("ce-type", "zotregistry.image.updated")
        .header("content-type", "application/json")
        .body(zot_data("bin", "1", &binary_image).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .post(watch.events_url())
        .header("content-type", "application/cloudevents+json")
        .body(structured(zot_data("st", "1", &structured_image)).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let oci = client(&registry);
    let bin = wait_for_report(
        &oci,
        "bin",
        binary_image.digest(),
        "sidescan-test-plugin",
        None,
        Duration::from_secs(30),
        || watch.logs(),
    )
    .await;
    assert!(
        bin.summary["total"] >= 1,
        "the marker is a finding: {bin:?}"
    );
    let st = wait_for_report(
        &oci,
        "st",
        structured_image.digest(),
        "sidescan-test-plugin",
        None,
        Duration::from_secs(30),
        || watch.logs(),
    )
    .await;
    assert_eq!(st.summary["total"], 0);
    let text = watch.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "sidescan_watch_events_total{kind=\"cloudevent-binary\",outcome=\"queued\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "sidescan_watch_events_total{kind=\"cloudevent-structured\",outcome=\"queued\"}"
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn zot_cloudevents_over_a_real_nats_server() {
    let nats = NatsServer::start();
    let plugin = test_plugin("e1").await;
    let registry = Registry::anonymous();
    let watch = start_watch(
        "127.0.0.1:0",
        &registry.url(),
        &[&plugin],
        &["--nats", &nats.url(), "--nats-subject", "zot.events"],
    );
    watch.wait_ready(Duration::from_secs(20)).await;
    let image = fixtures::clean_image();
    registry.push(&image, "natsy", "1").await;
    let publisher = async_nats::connect(nats.url()).await.unwrap();
    // A bad event on the subject first: refused and counted, the subscription goes on.
    publisher
        .publish("zot.events", "not json".into())
        .await
        .unwrap();
    publisher
        .publish(
            "zot.events",
            structured(zot_data("natsy", "1", &image))
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    let found = wait_for_report(
        &client(&registry),
        "natsy",
        image.digest(),
        "sidescan-test-plugin",
        None,
        Duration::from_secs(30),
        || watch.logs(),
    )
    .await;
    assert!(found.complete);
    let text = watch.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "sidescan_watch_events_total{kind=\"nats\",outcome=\"refused\"}"
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn bad_events_get_a_4xx_and_the_watcher_keeps_serving() {
    let plugin = test_plugin("e1").await;
    let registry = Registry::anonymous();
    let watch = start_watch(
        "127.0.0.1:0",
        &registry.url(),
        &[&plugin],
        &["--max-event-bytes", "4KiB"],
    );
    let http = reqwest::Client::new();
    let post = |content_type: &'static str, body: String| {
        http.post(watch.events_url())
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let envelope = "application/vnd.docker.distribution.events.v1+json";
    assert_eq!(
        post(envelope, "{not json".into()).await.unwrap().status(),
        400
    );
    assert_eq!(
        post(envelope, "{\"events\": 7}".into())
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post("text/plain", "hello".into()).await.unwrap().status(),
        415
    );
    assert_eq!(
        post(
            envelope,
            format!("{{\"events\": [], \"pad\": \"{}\"}}", "x".repeat(8192))
        )
        .await
        .unwrap()
        .status(),
        413
    );
    let unknown = json!({"specversion": "1.0", "id": "1", "source": "x", "type": "com.example.nope", "data": {}});
    assert_eq!(
        post("application/cloudevents+json", unknown.to_string())
            .await
            .unwrap()
            .status(),
        422
    );
    let pull = json!({"events": [{"action": "pull", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "a", "digest": "sha256:00"}}]});
    assert_eq!(
        post(envelope, pull.to_string()).await.unwrap().status(),
        202,
        "valid, ignored"
    );
    assert_eq!(
        http.get(format!("{}/livez", watch.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let text = watch.metrics_text().await;
    assert_eq!(
        metric(
            &text,
            "sidescan_watch_events_total{kind=\"unknown\",outcome=\"refused\"}"
        ),
        5.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "sidescan_watch_events_total{kind=\"distribution\",outcome=\"ignored\"}"
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn events_from_outside_the_allowed_sources_are_forbidden() {
    let plugin = test_plugin("e1").await;
    let registry = Registry::anonymous();
    // The test's requests come from 127.0.0.1.
    for (allowed, want) in [("127.0.0.2", 403), ("127.0.0.1", 202)] {
        let watch = start_watch(
            "127.0.0.1:0",
            &registry.url(),
            &[&plugin],
            &["--allow-event-source", allowed],
        );
        let r = reqwest::Client::new()
            .post(watch.events_url())
            .header(
                "content-type",
                "application/vnd.docker.distribution.events.v1+json",
            )
            .body("{\"events\": []}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "allowed {allowed}");
    }
}
