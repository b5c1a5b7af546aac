//! Verified downloads of artifact files ([`sidescan_oci::artifact::download`]) from the testkit's
//! fault-injecting registry: wrong bytes, a truncated transfer and an oversized body are refused
//! by cause, and nothing is left in the target directory; the clean transfer lands under its
//! title.

use sidescan_oci::artifact::{self, clamav::Database};
use sidescan_oci::{Credentials, Error, Registry};
use sidescan_testkit::fake_registry::{FakeRegistry, Fault, Match};
use sidescan_testkit::oci::{Blob, OCI_MANIFEST};

const REPO: &str = "mirror/clamav";
const SIGNATURES: &[u8] = b"Sig-A:0:*:41424344\nSig-B:0:*:45464748\n";

/// A fake registry holding a ClamAV database with one file, `custom.ndb`.
fn setup() -> (FakeRegistry, Blob) {
    let fake = FakeRegistry::start();
    let layer = Blob::new(artifact::clamav::LAYER_TYPE, SIGNATURES.to_vec());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact::clamav::ARTIFACT_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
            "digest": sidescan_oci::registry::sha256_digest(b"{}"), "size": 2},
        "layers": [{"mediaType": artifact::clamav::LAYER_TYPE, "digest": layer.digest,
            "size": layer.size(), "annotations": {artifact::TITLE: "custom.ndb"}}],
    });
    fake.add_blob(REPO, layer.clone());
    fake.add_manifest(
        REPO,
        "db",
        Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap()),
    );
    (fake, layer)
}

async fn fetch(fake: &FakeRegistry, dir: &std::path::Path) -> Result<(), Error> {
    let registry = Registry::new(&fake.url(), Credentials::Anonymous, true)?;
    let manifest = registry.manifest(REPO, "db").await?.expect("manifest");
    let db = Database::parse(&manifest)?;
    assert_eq!(db.files.len(), 1);
    artifact::download(&registry, REPO, &db.files[0], dir, &|_| {}).await?;
    Ok(())
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn corrupt_transfers_are_refused_and_leave_nothing() {
    let (fake, layer) = setup();
    let dir = tempfile::tempdir().unwrap();
    let blob = Match::Digest(layer.digest.clone());

    fake.inject(blob.clone(), Fault::WrongBytes);
    let err = fetch(&fake, dir.path()).await.expect_err("wrong bytes");
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    fake.clear_faults();

    let mut longer = SIGNATURES.to_vec();
    longer.extend_from_slice(b"Sig-C:0:*:494a4b4c\n");
    fake.inject(blob.clone(), Fault::Replace(longer.into()));
    let err = fetch(&fake, dir.path())
        .await
        .expect_err("more bytes than declared");
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    fake.clear_faults();

    fake.inject(blob, Fault::Truncate { after: 5 });
    let err = fetch(&fake, dir.path()).await.expect_err("truncated");
    assert!(
        matches!(err, Error::Http(_) | Error::DigestMismatch { .. }),
        "{err}"
    );
    fake.clear_faults();
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    fetch(&fake, dir.path()).await.expect("clean transfer");
    assert_eq!(entries(dir.path()), ["custom.ndb"]);
    assert_eq!(
        std::fs::read(dir.path().join("custom.ndb")).unwrap(),
        SIGNATURES
    );
}
