//! Referrers against the testkit's fake registry: with the distribution-spec 1.1 referrers API
//! (attach reports `Via::Api`, no referrers tag, replacing deletes the older report, the
//! `artifactType` filter), and with the API off (the tag schema, a lost `If-Match` retried).

use oci_client::manifest::ImageIndexEntry;
use sidescan_oci::referrers::{self, Via};
use sidescan_oci::registry::Manifest;
use sidescan_oci::report::{self, Attachment, Format, SCANNER_NAME, ScannerId};
use sidescan_oci::{Credentials, Registry};
use sidescan_proto::v1::{ScanReport, ScanResponse, Summary};
use sidescan_testkit::fake_registry::{FakeRegistry, Fault, Match};
use sidescan_testkit::fixtures;

fn response(high: u32) -> ScanResponse {
    ScanResponse {
        report: Some(ScanReport {
            summary: Some(Summary {
                high,
                total: high,
                ..Default::default()
            }),
            ..Default::default()
        }),
        reports: vec![],
    }
}

/// The attachments of a scan by `scanner` with engine `engine`, made at `created`.
/// The documents of a report by `scanner`: the sidescan report, then `extra` in order.
fn docs(
    scanner: &str,
    engine: &str,
    created: &str,
    high: u32,
    extra: &[Format],
) -> Vec<Attachment> {
    let id = ScannerId {
        name: scanner.into(),
        version: "1.0.0".into(),
        engine_version: engine.into(),
    };
    // The sidescan report first here (attachments() puts it last, for the watcher).
    let mut docs = report::attachments(&response(high), &id, created, extra)
        .unwrap()
        .0;
    docs.sort_by_key(|d| d.format != Format::Sidescan);
    docs
}

/// A fake with `clean_image` as `app:1`, a client for it, and the image's manifest.
async fn setup(fake: &FakeRegistry) -> (Registry, Manifest) {
    let img = fixtures::clean_image();
    fake.add("app", "1", &img);
    let client = Registry::new(&fake.url(), Credentials::Anonymous, false).unwrap();
    let subject = client.manifest("app", img.digest()).await.unwrap().unwrap();
    assert_eq!(subject.digest, img.digest());
    (client, subject)
}

fn digests(entries: &[ImageIndexEntry]) -> Vec<&str> {
    let mut d: Vec<&str> = entries.iter().map(|e| e.digest.as_str()).collect();
    d.sort();
    d
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort();
    v
}

async fn get_referrers(
    fake: &FakeRegistry,
    subject: &str,
    filter: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}/v2/app/referrers/{subject}", fake.url()));
    if let Some(t) = filter {
        req = req.query(&[("artifactType", t)]);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn with_the_api_attach_replaces_lists_and_filters_without_a_tag() {
    let fake = FakeRegistry::start();
    let (client, subject) = setup(&fake).await;
    let tag = referrers::fallback_tag(&subject.digest);

    let empty = referrers::list(&client, "app", &subject.digest)
        .await
        .unwrap();
    assert_eq!(empty.via, Via::Api);
    assert!(empty.entries.is_empty());

    // The sidescan report and SARIF by one scanner, a report by another.
    let mut first = Vec::new();
    for doc in docs(
        "sidescan-test",
        "e1",
        "2026-12-01T00:00:00Z",
        1,
        &[Format::Sarif],
    )
    .iter()
    .chain(&docs("other-scanner", "x", "2026-12-01T00:00:00Z", 0, &[]))
    {
        let done = referrers::attach(&client, "app", &subject.descriptor(), doc)
            .await
            .unwrap();
        assert_eq!(done.via, Via::Api);
        assert!(done.replaced.is_empty(), "{done:?}");
        // Stored byte for byte under its digest, with the subject, blobs pushed and verified.
        let stored = fake.manifest("app", &done.digest).unwrap();
        assert_eq!(
            sidescan_testkit::oci::sha256_digest(&stored.data),
            done.digest
        );
        let json: serde_json::Value = serde_json::from_slice(&stored.data).unwrap();
        assert_eq!(json["subject"]["digest"], subject.digest.as_str());
        let layer = json["layers"][0]["digest"].as_str().unwrap();
        assert_eq!(fake.blob("app", layer).unwrap().data, doc.document);
        first.push(done.digest);
    }
    assert_eq!(fake.open_uploads(), 0);
    assert_eq!(fake.tags("app"), ["1"], "no referrers tag with the API");
    assert_eq!(fake.requests(&format!("/v2/app/manifests/{tag}")), 0);

    // A newer sidescan report by the same scanner replaces (deletes) the older one of its
    // type only; the API stops listing it.
    let second = &docs("sidescan-test", "e2", "2026-12-02T00:00:00Z", 0, &[])[0];
    let done = referrers::attach(&client, "app", &subject.descriptor(), second)
        .await
        .unwrap();
    assert_eq!(done.via, Via::Api);
    assert_eq!(done.replaced, &first[..1]);
    assert_eq!(done.deleted, 1);
    assert!(fake.manifest("app", &first[0]).is_none());
    assert!(client.manifest("app", &first[0]).await.unwrap().is_none());
    assert_eq!(fake.tags("app"), ["1"]);

    let listed = referrers::list(&client, "app", &subject.digest)
        .await
        .unwrap();
    assert_eq!(listed.via, Via::Api);
    assert_eq!(
        digests(&listed.entries),
        sorted(vec![done.digest.as_str(), &first[1], &first[2]])
    );
    for e in &listed.entries {
        let m = client.manifest("app", &e.digest).await.unwrap().unwrap();
        assert_eq!(e.size, m.bytes.len() as i64);
        assert_eq!(e.media_type, sidescan_oci::media::OCI_MANIFEST);
        assert_eq!(e.artifact_type.as_deref(), m.json["artifactType"].as_str());
        let a = e.annotations.as_ref().unwrap();
        assert_eq!(serde_json::to_value(a).unwrap(), m.json["annotations"]);
    }
    let latest = report::latest(&listed.entries);
    let current = latest
        .iter()
        .find(|r| {
            r.scanner.name == "sidescan-test" && r.artifact_type == report::REPORT_ARTIFACT_TYPE
        })
        .unwrap();
    assert_eq!(current.digest, done.digest);
    assert_eq!(current.scanner.engine_version, "e2");
    let doc = referrers::document(&client, "app", &current.digest, 1 << 20)
        .await
        .unwrap();
    assert_eq!(doc, second.document);

    // A referrer of another image is not a referrer of this one.
    let other = fixtures::eicar_top_layer();
    fake.add("app", "2", &other);
    let other_subject = client
        .manifest("app", other.digest())
        .await
        .unwrap()
        .unwrap();
    referrers::attach(&client, "app", &other_subject.descriptor(), second)
        .await
        .unwrap();
    let listed = referrers::list(&client, "app", &subject.digest)
        .await
        .unwrap();
    assert_eq!(listed.entries.len(), 3);
    let of_other = referrers::list(&client, "app", other.digest())
        .await
        .unwrap();
    assert_eq!(of_other.entries.len(), 1);

    // The artifactType filter, announced by OCI-Filters-Applied.
    let r = get_referrers(&fake, &subject.digest, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], sidescan_oci::media::OCI_INDEX);
    assert!(r.headers().get("oci-filters-applied").is_none());
    let r = get_referrers(&fake, &subject.digest, Some(report::SARIF_ARTIFACT_TYPE)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let index: serde_json::Value = r.json().await.unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    assert_eq!(entries[0]["digest"], first[1].as_str());
    assert_eq!(entries[0]["artifactType"], report::SARIF_ARTIFACT_TYPE);
    assert_eq!(entries[0]["annotations"][SCANNER_NAME], "sidescan-test");
    let r = get_referrers(&fake, &subject.digest, Some("application/x-none")).await;
    assert_eq!(r.status(), 200);
    let index: serde_json::Value = r.json().await.unwrap();
    assert_eq!(index["manifests"], serde_json::json!([]));
}

#[tokio::test]
async fn without_deletes_the_replaced_report_stays_listed_and_latest_picks_the_new_one() {
    let fake = FakeRegistry::builder().deletes(false).start();
    let (client, subject) = setup(&fake).await;
    let old = &docs("sidescan-test", "e1", "2026-12-01T00:00:00Z", 1, &[])[0];
    let new = &docs("sidescan-test", "e2", "2026-12-02T00:00:00Z", 0, &[])[0];
    let first = referrers::attach(&client, "app", &subject.descriptor(), old)
        .await
        .unwrap();
    let done = referrers::attach(&client, "app", &subject.descriptor(), new)
        .await
        .unwrap();
    assert_eq!(done.replaced, std::slice::from_ref(&first.digest));
    assert_eq!(done.deleted, 0, "the registry refused the delete");
    let listed = referrers::list(&client, "app", &subject.digest)
        .await
        .unwrap();
    assert_eq!(listed.entries.len(), 2);
    let latest = report::latest(&listed.entries);
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].digest, done.digest);
}

#[tokio::test]
async fn without_the_api_the_tag_schema_is_used_and_a_lost_if_match_is_retried() {
    let fake = FakeRegistry::builder().referrers_api(false).start();
    let (client, subject) = setup(&fake).await;
    let tag = referrers::fallback_tag(&subject.digest);
    let tag_path = format!("/v2/app/manifests/{tag}");

    // The plain 404 of a registry without the API.
    let r = get_referrers(&fake, &subject.digest, None).await;
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let empty = referrers::list(&client, "app", &subject.digest)
        .await
        .unwrap();
    assert_eq!(empty.via, Via::TagSchema);
    assert!(empty.entries.is_empty());

    let first = docs(
        "sidescan-test",
        "e1",
        "2026-12-01T00:00:00Z",
        1,
        &[Format::Sarif],
    );
    let report_v1 = referrers::attach(&client, "app", &subject.descriptor(), &first[0])
        .await
        .unwrap();
    assert_eq!(report_v1.via, Via::TagSchema);
    assert_eq!(fake.tags("app"), sorted(vec!["1", &tag]));
    let puts = fake.requests_with("PUT", &tag_path);
    assert_eq!(puts.len(), 1);
    assert_eq!(
        puts[0].if_match, None,
        "the tag did not exist: nothing to match"
    );

    // Another writer changed the tag between our GET and PUT (once): 412, then a retry that
    // lands, conditional again.
    let etag_v1 = format!("\"{}\"", fake.manifest("app", &tag).unwrap().digest);
    fake.inject_times(
        Match::Method("PUT".into(), Box::new(Match::Path(tag_path.clone()))),
        Fault::Status(412),
        1,
    );
    let sarif = referrers::attach(&client, "app", &subject.descriptor(), &first[1])
        .await
        .unwrap();
    assert_eq!(sarif.via, Via::TagSchema);
    let puts = fake.requests_with("PUT", &tag_path);
    assert_eq!(puts.len(), 3, "the first, the one answered 412, the retry");
    assert_eq!(puts[1].if_match.as_deref(), Some(etag_v1.as_str()));
    assert_eq!(puts[2].if_match.as_deref(), Some(etag_v1.as_str()));
    let listed = referrers::list(&client, "app", &subject.digest)
        .await
        .unwrap();
    assert_eq!(listed.via, Via::TagSchema);
    assert_eq!(
        digests(&listed.entries),
        sorted(vec![&report_v1.digest, &sarif.digest])
    );

    // The fake's own If-Match check: the ETag before the SARIF entry is stale now.
    let index = fake.manifest("app", &tag).unwrap();
    let r = reqwest::Client::new()
        .put(format!("{}{tag_path}", fake.url()))
        .header("content-type", sidescan_oci::media::OCI_INDEX)
        .header("if-match", &etag_v1)
        .body(index.data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);

    // A newer report replaces the old one in the tag and deletes it; SARIF stays.
    let second = &docs("sidescan-test", "e2", "2026-12-02T00:00:00Z", 0, &[])[0];
    let done = referrers::attach(&client, "app", &subject.descriptor(), second)
        .await
        .unwrap();
    assert_eq!(done.via, Via::TagSchema);
    assert_eq!(done.replaced, std::slice::from_ref(&report_v1.digest));
    assert_eq!(done.deleted, 1);
    assert!(fake.manifest("app", &report_v1.digest).is_none());
    let listed = referrers::list(&client, "app", &subject.digest)
        .await
        .unwrap();
    assert_eq!(
        digests(&listed.entries),
        sorted(vec![&done.digest, &sarif.digest])
    );
    let entry = listed
        .entries
        .iter()
        .find(|e| e.digest == done.digest)
        .unwrap();
    assert_eq!(
        entry.artifact_type.as_deref(),
        Some(report::REPORT_ARTIFACT_TYPE)
    );
    assert_eq!(
        entry.annotations.as_ref().unwrap()[report::ENGINE_VERSION],
        "e2"
    );
    // The tag holds an index of artifacts, never an image to scan.
    let tagged = client.manifest("app", &tag).await.unwrap().unwrap();
    assert!(tagged.is_index());
    assert!(sidescan_oci::media::not_an_image(&tagged.media_type, &tagged.json).is_some());
}
