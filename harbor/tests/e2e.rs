//! `sidescan-harbor` as an operator runs it, called as Harbor calls it: a real `docker-registry`
//! with htpasswd auth (Harbor's robot account), a real clamd, the real `sidescan-clamav`, and the
//! `sidescan-harbor` binary in front, driven by a Harbor-shaped client (version=1.0 media types,
//! Basic robot credentials, 5 s timeout, no redirects, first poll after 2 s, Refresh-After).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// ClamAV behind the Harbor API: metadata Harbor registers, EICAR as an item, an incomplete
/// scan that is not clean, a plugin error as a failed job (500 with its code).
#[tokio::test]
async fn clamav_behind_the_harbor_api_reports_eicar_to_a_harbor_shaped_client() {
    let registry = Registry::htpasswd();
    let authorization = registry.authorization().expect("htpasswd credentials");
    let eicar = fixtures::eicar_top_layer();
    let eicar_digest = registry.push(&eicar, "harbor/eicar", "1").await;
    let large = fixtures::large_file_image(3 << 20);
    let large_digest = registry.push(&large, "harbor/large", "1").await;

    let clamd = ClamdProcess::start_with(&ClamdOptions {
        stream_max_length: "1M".into(),
        ..ClamdOptions::default()
    });
    let plugin = PluginProcess::start(
        &workspace_binary("sidescan-clamav"),
        &["--clamd", &clamd.tcp_addr(), "--stream-max-length", "1MiB"],
    );
    plugin.wait_for_health(ServingStatus::Serving).await;
    let harbor = HarborProcess::start(&plugin.url(), &["--refresh-after", "1s"]);
    let client = harbor_client();
    let base = harbor.url();

    // Registration: what Harbor's ScannerAdapterMetadata.Validate requires.
    let md = metadata(&client, &base).await;
    assert_eq!(md.status(), 200);
    assert_eq!(md.headers()["content-type"], METADATA_V1_0);
    let md: Value = md.json().await.expect("metadata JSON");
    for field in ["name", "vendor", "version"] {
        assert!(
            !md["scanner"][field].as_str().unwrap_or("").is_empty(),
            "{md}"
        );
    }
    assert_eq!(md["scanner"]["name"], "sidescan-clamav");
    for cap in md["capabilities"].as_array().expect("capabilities") {
        let consumes = cap["consumes_mime_types"].to_string();
        assert!(
            consumes.contains("application/vnd.docker.distribution.manifest.v2+json"),
            "{md}"
        );
        assert!(
            cap["produces_mime_types"]
                .to_string()
                .contains(GENERIC_REPORT),
            "{md}"
        );
    }
    assert!(
        md["properties"]["clamav.signature_version"].is_string(),
        "{md}"
    );
    assert_eq!(
        md["properties"]["harbor.scanner-adapter/registry-authorization-type"],
        "Basic"
    );

    // EICAR: accepted at once, then found.
    let body = harbor_scan_request(
        &registry.url(),
        &authorization,
        "harbor/eicar",
        &eicar_digest,
        eicar.media_type(),
    );
    let accepted = submit(&client, &base, &body).await;
    assert_eq!(accepted.status(), 202);
    assert_eq!(accepted.headers()["content-type"], SCAN_RESPONSE);
    let id = accepted.json::<Value>().await.expect("id")["id"]
        .as_str()
        .expect("id string")
        .to_owned();
    let ReportAnswer {
        status,
        body: text,
        content_type,
        ..
    } = poll_report(
        &client,
        &base,
        &id,
        GENERIC_REPORT,
        "",
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        status,
        200,
        "{text}\nharbor log:\n{}\nplugin log:\n{}",
        harbor.logs(),
        plugin.logs()
    );
    assert_eq!(content_type.as_deref(), Some(GENERIC_REPORT));
    let doc: Value = serde_json::from_str(&text).expect("report JSON");
    let items = doc["vulnerabilities"].as_array().expect("items");
    let item = items
        .iter()
        .find(|i| i["id"] == EICAR_SIGNATURE)
        .unwrap_or_else(|| panic!("no EICAR item: {doc:#}"));
    assert_eq!(item["package"], format!("/{EICAR_PATH}"));
    assert_eq!(item["vendor_attributes"]["sidescan.kind"], "malware");
    assert_eq!(doc["severity"], item["severity"]);
    assert_ne!(doc["severity"], "None");
    assert_eq!(doc["incomplete"], false, "{doc:#}");
    assert_eq!(doc["artifact"]["digest"], eicar_digest.as_str());

    // A file over clamd's StreamMaxLength: the scan is incomplete, and Harbor's document says so
    // with an item of the configured severity (Critical by default).
    let body = harbor_scan_request(
        &registry.url(),
        &authorization,
        "harbor/large",
        &large_digest,
        large.media_type(),
    );
    let id = submit_accepted(&client, &base, &body).await;
    let ReportAnswer {
        status, body: text, ..
    } = poll_report(
        &client,
        &base,
        &id,
        NATIVE_REPORT,
        "",
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let doc: Value = serde_json::from_str(&text).expect("report JSON");
    assert_eq!(doc["severity"], "Critical", "{doc:#}");
    assert_eq!(doc["incomplete"], true);
    assert_eq!(
        doc["vulnerabilities"][0]["id"],
        "SIDESCAN-INCOMPLETE-file-too-large"
    );
    assert_eq!(doc["vulnerabilities"][0]["severity"], "Critical");

    // Wrong robot secret: the job fails; its report is 500 with the plugin's code.
    let body = harbor_scan_request(
        &registry.url(),
        "Basic d3Jvbmc6d3Jvbmc=",
        "harbor/eicar",
        &eicar_digest,
        eicar.media_type(),
    );
    let id = submit_accepted(&client, &base, &body).await;
    let ReportAnswer {
        status,
        body: text,
        content_type,
        ..
    } = poll_report(
        &client,
        &base,
        &id,
        GENERIC_REPORT,
        "",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(status, 500, "{text}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/vnd.scanner.adapter.error+json; version=1.0")
    );
    assert!(text.contains("UNAUTHENTICATED"), "{text}");
    assert!(
        !harbor
            .logs()
            .contains(authorization.trim_start_matches("Basic ")),
        "credentials logged"
    );
}

/// Bad input for each endpoint of the running binary gets its documented status, never 500.
#[tokio::test]
async fn bad_input_gets_the_documented_status_from_the_binary() {
    let plugin = PluginProcess::start(&test_plugin_binary(), &[]);
    plugin.wait_for_health(ServingStatus::Serving).await;
    let harbor = HarborProcess::start(&plugin.url(), &[]);
    let client = harbor_client();
    let base = harbor.url();
    let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let good = harbor_scan_request(
        "http://core:8080",
        "",
        "library/a",
        digest,
        "application/vnd.oci.image.manifest.v1+json",
    );
    let post = |body: String| {
        let client = client.clone();
        let base = base.clone();
        async move {
            client
                .post(format!("{base}/api/v1/scan"))
                .header("Content-Type", SCAN_REQUEST_V1_0)
                .body(body)
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };
    assert_eq!(post("{not json".into()).await, 400);
    assert_eq!(post("{\"artifact\": []}".into()).await, 400);
    let mut v = good.clone();
    v["artifact"]["repository"] = Value::from("UPPER/case");
    assert_eq!(post(v.to_string()).await, 422);
    let mut v = good.clone();
    v["registry"]["authorization"] = Value::from("Negotiate abc");
    assert_eq!(post(v.to_string()).await, 422);
    let mut v = good.clone();
    v["enabled_capabilities"] = serde_json::json!([{"type": "sbom"}]);
    assert_eq!(
        post(v.to_string()).await,
        501,
        "the test plugin makes no SBOM"
    );

    let get = |path: String, accept: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            client
                .get(format!("{base}{path}"))
                .header("Accept", accept)
                .send()
                .await
                .expect("get")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        get("/api/v1/scan/unknown/report".into(), GENERIC_REPORT).await,
        404
    );
    assert_eq!(
        get(
            "/api/v1/scan/unknown/report".into(),
            "application/vnd.scanner.adapter.vuln.report.raw"
        )
        .await,
        501
    );
    assert_eq!(
        get(
            "/api/v1/scan/unknown/report".into(),
            "application/vnd.security.sbom.report+json; version=1.0"
        )
        .await,
        400
    );

    // Accepted at once although its registry does not exist: the failure belongs to the job.
    let accepted = post(good.to_string()).await;
    assert_eq!(accepted, 202);
    let log = harbor.logs();
    assert!(!log.contains("panicked"), "{log}");
}

/// The same API served by the plugin process itself (`sidescan-clamav --harbor-listen`), as an
/// operator registers it in Harbor without a separate adapter: metadata Harbor accepts, a scan
/// accepted at once, then the EICAR item.
#[tokio::test]
async fn clamav_with_harbor_listen_serves_a_full_harbor_scan_flow() {
    let registry = Registry::htpasswd();
    let authorization = registry.authorization().expect("htpasswd credentials");
    let eicar = fixtures::eicar_top_layer();
    let eicar_digest = registry.push(&eicar, "harbor/embedded", "1").await;
    let clamd = ClamdProcess::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let addr_file = dir.path().join("harbor-addr");
    let addr_arg = addr_file.display().to_string();
    let plugin = PluginProcess::start(
        &workspace_binary("sidescan-clamav"),
        &[
            "--clamd",
            &clamd.unix_addr(),
            "--harbor-listen",
            "127.0.0.1:0",
            "--harbor-addr-file",
            &addr_arg,
        ],
    );
    plugin.wait_for_health(ServingStatus::Serving).await;
    let base = format!(
        "http://{}",
        std::fs::read_to_string(&addr_file).expect("--harbor-addr-file written")
    );
    let client = harbor_client();

    let md = metadata(&client, &base).await;
    assert_eq!(md.status(), 200);
    assert_eq!(md.headers()["content-type"], METADATA_V1_0);
    let md: Value = md.json().await.expect("metadata JSON");
    assert_eq!(md["scanner"]["name"], "sidescan-clamav", "{md}");

    let body = harbor_scan_request(
        &registry.url(),
        &authorization,
        "harbor/embedded",
        &eicar_digest,
        eicar.media_type(),
    );
    let id = submit_accepted(&client, &base, &body).await;
    let answer = poll_report(
        &client,
        &base,
        &id,
        GENERIC_REPORT,
        "",
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        answer.status,
        200,
        "{}\nplugin log:\n{}",
        answer.body,
        plugin.logs()
    );
    let doc = answer.json();
    let item = doc["vulnerabilities"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == EICAR_SIGNATURE)
        .unwrap_or_else(|| panic!("no EICAR item: {doc:#}"))
        .clone();
    assert_eq!(item["package"], format!("/{EICAR_PATH}"));
    assert_eq!(doc["incomplete"], false, "{doc:#}");
    // the scan ran through the plugin's own sidescan.v1 path: one scan span in its log
    assert!(plugin.logs().contains("scan finished"), "{}", plugin.logs());
}

/// Two `sidescan-harbor` replicas sharing NATS JetStream (`--nats`): Harbor submits to one and
/// polls the other, as it does behind a Kubernetes Service, and gets the report.
#[tokio::test]
async fn with_nats_a_scan_submitted_to_one_replica_is_served_by_another() {
    let nats = sidescan_testkit::nats::NatsServer::start();
    let plugin = PluginProcess::start(&test_plugin_binary(), &[]);
    plugin.wait_for_health(ServingStatus::Serving).await;
    let a = HarborProcess::start(&plugin.url(), &["--nats", &nats.url()]);
    let b = HarborProcess::start(&plugin.url(), &["--nats", &nats.url()]);
    let registry = Registry::anonymous();
    let image = fixtures::clean_image();
    let digest = registry.push(&image, "shared/app", "1").await;
    let client = harbor_client();
    let body = harbor_scan_request(
        &registry.url(),
        "",
        "shared/app",
        &digest,
        image.media_type(),
    );
    let id = submit_accepted(&client, &a.url(), &body).await;
    let answer = poll_report(
        &client,
        &b.url(),
        &id,
        GENERIC_REPORT,
        "",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        answer.status,
        200,
        "{}\nA:\n{}\nB:\n{}",
        answer.body,
        a.logs(),
        b.logs()
    );
    let doc: Value = serde_json::from_str(&answer.body).expect("report JSON");
    assert_eq!(doc["artifact"]["digest"], digest.as_str(), "{doc}");
    // An id neither replica issued is unknown to both.
    let unknown = get_report(&client, &b.url(), "no-such-job", GENERIC_REPORT, "").await;
    assert_eq!(unknown.status, 404);
}
