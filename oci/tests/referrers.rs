//! Referrers against a real `docker-registry` (2.8: no referrers API, so the tag schema path),
//! with htpasswd auth: attach, list, replace the current report of a scanner, read it back.

use sidescan_oci::referrers::{self, Via};
use sidescan_oci::report::{self, Format, ScannerId};
use sidescan_oci::{Credentials, Registry};
use sidescan_proto::v1::{ScanReport, ScanResponse, Scanner, Summary};
use sidescan_testkit::{fixtures, registry};

fn response(high: u32) -> ScanResponse {
    ScanResponse {
        report: Some(ScanReport {
            scanner: Some(Scanner {
                name: "sidescan-test".into(),
                version: "1.0.0".into(),
                ..Default::default()
            }),
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

fn scanner(name: &str, engine: &str) -> ScannerId {
    ScannerId {
        name: name.into(),
        version: "1.0.0".into(),
        engine_version: engine.into(),
    }
}

#[tokio::test]
async fn attach_list_replace_and_read_back_on_a_registry_without_the_api() {
    let reg = registry::Registry::htpasswd();
    let (user, password) = reg.credentials().unwrap();
    let digest = reg.push(&fixtures::clean_image(), "app", "1").await;
    let client = Registry::new(
        &reg.url(),
        Credentials::Basic {
            username: user.into(),
            password: password.into(),
        },
        false,
    )
    .unwrap();
    let subject = client.manifest("app", &digest).await.unwrap().unwrap();
    assert_eq!(subject.digest, digest);

    let empty = referrers::list(&client, "app", &digest).await.unwrap();
    assert_eq!(empty.via, Via::TagSchema);
    assert!(empty.entries.is_empty());

    let (first, _) = report::attachments(
        &response(1),
        &scanner("sidescan-test", "e1"),
        "2026-12-01T00:00:00Z",
        &[Format::Sarif],
    )
    .unwrap();
    for doc in &first {
        let done = referrers::attach(&client, "app", &subject.descriptor(), doc)
            .await
            .unwrap();
        assert_eq!(done.via, Via::TagSchema);
        assert!(done.replaced.is_empty());
    }
    let other = &report::attachments(
        &response(0),
        &scanner("other-scanner", "x"),
        "2026-12-01T00:00:00Z",
        &[],
    )
    .unwrap()
    .0[0];
    referrers::attach(&client, "app", &subject.descriptor(), other)
        .await
        .unwrap();

    // A newer report by the same scanner replaces the older one of its type, and only it.
    let (second, _) = report::attachments(
        &response(0),
        &scanner("sidescan-test", "e2"),
        "2026-12-02T00:00:00Z",
        &[],
    )
    .unwrap();
    assert_eq!(second.len(), 1);
    let done = referrers::attach(&client, "app", &subject.descriptor(), &second[0])
        .await
        .unwrap();
    assert_eq!(done.replaced.len(), 1, "{done:?}");
    assert_eq!(done.deleted, 1, "the test registry allows deletes");
    assert!(
        client
            .manifest("app", &done.replaced[0])
            .await
            .unwrap()
            .is_none()
    );

    let listed = referrers::list(&client, "app", &digest).await.unwrap();
    assert_eq!(
        listed.entries.len(),
        3,
        "sidescan report, SARIF, other scanner"
    );
    let latest = report::latest(&listed.entries);
    let mine: Vec<_> = latest
        .iter()
        .filter(|r| r.scanner.name == "sidescan-test")
        .collect();
    assert_eq!(mine.len(), 2);
    let current = mine
        .iter()
        .find(|r| r.artifact_type == report::REPORT_ARTIFACT_TYPE)
        .unwrap();
    assert_eq!(current.scanner.engine_version, "e2");
    assert!(current.complete);

    let doc = referrers::document(&client, "app", &current.digest, 1 << 20)
        .await
        .unwrap();
    let back: ScanResponse =
        sidescan_proto::json::from_slice(&doc, "sidescan.v1.ScanResponse").unwrap();
    assert_eq!(back, response(0));

    // The referrers tag is an index of artifacts only: never an image to scan.
    let tag = referrers::fallback_tag(&digest);
    let index = client.manifest("app", &tag).await.unwrap().unwrap();
    assert!(sidescan_oci::media::not_an_image(&index.media_type, &index.json).is_some());
    let artifact = client
        .manifest("app", &current.digest)
        .await
        .unwrap()
        .unwrap();
    assert!(sidescan_oci::media::not_an_image(&artifact.media_type, &artifact.json).is_some());
    assert_eq!(artifact.json["subject"]["digest"], digest.as_str());
}
