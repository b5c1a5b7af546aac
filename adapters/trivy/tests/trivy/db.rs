//! The vulnerability DB: a missing or corrupt DB, the engine version and properties following
//! it, updates swapped in without overlap, a failed download keeping the old DB.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::fixture_db;
use crate::common::{World, images};
use sidescan_sdk::prelude::*;
use sidescan_trivy::{DbUpdate, TrivyAdapter, TrivyConfig};

use crate::UPDATED_AT;

#[tokio::test]
async fn missing_or_corrupt_db_is_not_ready_and_fails_with_failed_precondition() {
    let w = World::empty();
    let adapter = w.adapter(&[]);
    let input = w.layout("alpine", &images::alpine_image());

    // No DB at all.
    assert!(matches!(adapter.readiness().await, Readiness::NotReady(_)));
    let err = adapter
        .scan_image(&input, &w.ctx("nodb"))
        .await
        .expect_err("no DB");
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");

    // Unparseable metadata.json.
    fixture_db::write_standard(&w.db_dir(), UPDATED_AT);
    assert_eq!(adapter.readiness().await, Readiness::Ready);
    std::fs::write(w.db_dir().join("metadata.json"), b"{not json").expect("write");
    match adapter.readiness().await {
        Readiness::NotReady(why) => assert!(why.contains("metadata.json"), "{why}"),
        Readiness::Ready => panic!("ready with garbage metadata"),
    }
    let err = adapter
        .scan_image(&input, &w.ctx("badmeta"))
        .await
        .expect_err("bad metadata");
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");

    // trivy.db that is not a bbolt file.
    fixture_db::write_metadata(&w.db_dir(), UPDATED_AT);
    std::fs::write(w.db_dir().join("trivy.db"), vec![0x5a; 8192]).expect("write");
    assert!(matches!(adapter.readiness().await, Readiness::NotReady(_)));

    // A file with bbolt's magic but broken pages passes the cheap check; the real trivy rejects
    // it, and its stderr makes that FAILED_PRECONDITION (the DB, not a bug).
    let mut page = vec![0u8; 8192];
    page[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
    std::fs::write(w.db_dir().join("trivy.db"), page).expect("write");
    assert_eq!(adapter.readiness().await, Readiness::Ready);
    let err = adapter
        .scan_image(&input, &w.ctx("baddb"))
        .await
        .expect_err("broken DB");
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    assert!(
        err.message().contains("trivy exited"),
        "trivy itself refused: {err:?}"
    );
}

#[tokio::test]
async fn engine_version_and_properties_follow_the_db() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&[]);
    assert_eq!(adapter.readiness().await, Readiness::Ready);
    let v1 = adapter.engine_version().await.expect("engine version");
    assert!(v1.contains("trivy=0.76.0"), "{v1}");
    assert!(v1.contains(UPDATED_AT), "{v1}");
    let props = adapter.properties().await;
    assert_eq!(props["trivy.version"], "0.76.0");
    assert_eq!(props["trivy.db.version"], "2");
    assert_eq!(props["trivy.db.updated_at"], UPDATED_AT);
    assert_eq!(props["trivy.db.next_update"], "2999-01-01T00:00:00Z");
    assert!(sidescan_trivy::scanner::find_executable(std::path::Path::new("sh")).is_some());

    fixture_db::write_metadata(&w.db_dir(), "2024-06-01T00:00:00Z");
    let v2 = adapter.engine_version().await.expect("engine version");
    assert_ne!(v1, v2, "a newer DB must change the engine version");
    assert!(v2.contains("2024-06-01T00:00:00Z"), "{v2}");

    // Flags that change results change it too.
    let other = w.adapter(&["--ignore-unfixed"]);
    assert_ne!(other.engine_version().await.expect("ev"), v2);
    let other = w.adapter(&["--scanners", "vuln,secret"]);
    assert_ne!(other.engine_version().await.expect("ev"), v2);
    let other = w.adapter(&["--severities", "HIGH,CRITICAL"]);
    assert_ne!(other.engine_version().await.expect("ev"), v2);
}

/// A fake trivy for the DB download only (no network here): `--download-db-only` sleeps, then
/// copies the DB in `source` into `<--cache-dir>/db`.
fn downloading_trivy(dir: &Path, source: &Path) -> PathBuf {
    let script = dir.join("downloading-trivy");
    let body = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Version: 0.76.0'; exit 0; fi\ncache=''\nprev=''\nfor a in \"$@\"; do [ \"$prev\" = --cache-dir ] && cache=\"$a\"; prev=\"$a\"; done\nsleep 1\nmkdir -p \"$cache/db\"\ncp '{s}/trivy.db' '{s}/metadata.json' \"$cache/db/\"\n",
        s = source.display()
    );
    std::fs::write(&script, body).expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

#[tokio::test]
async fn db_updates_swap_the_db_in_and_never_overlap() {
    let w = World::with_db(UPDATED_AT);
    let newer = w.dir.path().join("newer-db");
    fixture_db::write_standard(&newer, "2024-07-01T00:00:00Z");
    let mut config: TrivyConfig = w.config(&[]);
    config.skip_db_update = false;
    config.trivy_bin = downloading_trivy(w.dir.path(), &newer);
    let adapter = TrivyAdapter::new(config);
    let before = adapter.engine_version().await.expect("ev");
    let (a, b) = tokio::join!(adapter.update_db(), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        adapter.update_db().await
    });
    let a = a.expect("first update");
    let b = b.expect("second update");
    assert!(
        matches!(&a, DbUpdate::Updated(m) if m.updated_at == "2024-07-01T00:00:00Z"),
        "{a:?}"
    );
    assert_eq!(b, DbUpdate::AlreadyRunning);
    let after = adapter.engine_version().await.expect("ev");
    assert_ne!(before, after);
    assert!(after.contains("2024-07-01T00:00:00Z"), "{after}");
    assert_eq!(
        adapter.properties().await["trivy.db.updated_at"],
        "2024-07-01T00:00:00Z"
    );
    let leftovers: Vec<_> = std::fs::read_dir(w.cache_dir())
        .expect("cache dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["db"], "staging directories removed");

    // With --skip-db-update nothing is downloaded.
    assert_eq!(
        w.adapter(&[]).update_db().await.expect("skip"),
        DbUpdate::Disabled
    );
}

#[tokio::test]
async fn a_failed_db_download_keeps_the_old_db() {
    let w = World::with_db(UPDATED_AT);
    let mut config = w.config(&["--db-repository", "127.0.0.1:1/nothing/trivy-db:2"]);
    config.skip_db_update = false;
    config.trivy_timeout = Duration::from_secs(60);
    let adapter = TrivyAdapter::new(config);
    let err = adapter
        .update_db()
        .await
        .expect_err("nothing listens on port 1");
    eprintln!("download error: {err}");
    assert_eq!(adapter.readiness().await, Readiness::Ready);
    assert_eq!(
        adapter.properties().await["trivy.db.updated_at"],
        UPDATED_AT
    );
}
