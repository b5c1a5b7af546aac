//! Tests of the blob cache.

use super::*;
use sidescan_testkit::digest::sha256_digest as digest_of;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// One source (registry) for tests that need no other.
const SRC: &str = "registry-a";

async fn put(cache: &Arc<BlobCache>, data: &'static [u8]) -> BlobHandle {
    let d = digest_of(data);
    cache
        .get_or_fetch(&d, data.len() as u64, SRC, |tmp| async move {
            std::fs::write(tmp, data).map_err(|e| Error::internal(e.to_string()))
        })
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn concurrent_requests_share_one_download() {
    let dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::open(dir.path(), 0).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let data: &'static [u8] = b"shared layer";
    let d = digest_of(data);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let cache = cache.clone();
        let calls = calls.clone();
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let (h, _) = cache
                .get_or_fetch(&d, data.len() as u64, SRC, |tmp| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    std::fs::write(tmp, data).map_err(|e| Error::internal(e.to_string()))
                })
                .await
                .unwrap();
            std::fs::read(h.path()).unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), data);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn lru_eviction_respects_pins_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::open(dir.path(), 20).unwrap();
    let a = put(&cache, b"aaaaaaaaaa").await; // 10
    drop(a);
    let b = put(&cache, b"bbbbbbbbbb").await; // 20 total
    drop(b);
    // use a again so b is the least recently used
    let a = put(&cache, b"aaaaaaaaaa").await;
    let c = put(&cache, b"cccccccccc").await; // 30 > 20: evicts b (a and c pinned)
    assert!(cache.contains(&digest_of(b"aaaaaaaaaa")));
    assert!(!cache.contains(&digest_of(b"bbbbbbbbbb")));
    assert!(cache.contains(&digest_of(b"cccccccccc")));
    assert_eq!(cache.total_bytes(), 20);
    drop((a, c));
    drop(cache);
    // restart: rescan finds both, temp junk is cleaned
    std::fs::write(dir.path().join("tmp").join("junk"), b"x").unwrap();
    let cache = BlobCache::open(dir.path(), 20).unwrap();
    assert_eq!(cache.total_bytes(), 20);
    assert!(cache.contains(&digest_of(b"cccccccccc")));
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    // a pinned blob bigger than the cap stays while in use
    let big = put(&cache, b"0123456789012345678901234").await;
    assert!(big.path().exists());
    drop(big);
    assert!(cache.total_bytes() <= 20);
}

#[tokio::test]
async fn a_dropped_download_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::open(dir.path(), 0).unwrap();
    let d = digest_of(b"never finishes");
    let fut = cache.get_or_fetch(&d, 14, SRC, |tmp| async move {
        std::fs::write(&tmp, b"partial").map_err(|e| Error::internal(e.to_string()))?;
        std::future::pending::<()>().await;
        Ok(())
    });
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), fut)
            .await
            .is_err()
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert!(!cache.contains(&d));
}

#[tokio::test]
async fn corrupt_entries_are_detected_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::open(dir.path(), 0).unwrap();
    let data: &'static [u8] = b"the real content";
    let d = digest_of(data);
    let h = put(&cache, data).await;
    assert!(cache.verify(&h, false).await.unwrap());
    assert!(cache.verify(&h, true).await.unwrap());
    // same size, different bytes: the stamp (mtime) changes, verify re-hashes and catches it
    // (wait out the coarse timestamp tick of the insertion, see the module docs)
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(h.path(), b"the fake content").unwrap();
    assert!(!cache.verify(&h, false).await.unwrap());
    cache.invalidate(&d);
    drop(h);
    let h = put(&cache, data).await;
    assert_eq!(std::fs::read(h.path()).unwrap(), data);
    // truncation is caught by the size check on the next hit
    std::fs::write(h.path(), b"short").unwrap();
    drop(h);
    let (h, fetched) = cache
        .get_or_fetch(&d, data.len() as u64, SRC, |tmp| async move {
            std::fs::write(tmp, data).map_err(|e| Error::internal(e.to_string()))
        })
        .await
        .unwrap();
    assert!(fetched);
    assert_eq!(std::fs::read(h.path()).unwrap(), data);
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn directories_are_0700_and_files_0600_also_when_they_existed() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().unwrap();
    // A fresh cache dir is created 0700.
    let fresh = root.path().join("fresh");
    drop(BlobCache::open(&fresh, 0).unwrap());
    assert_eq!(mode(&fresh), 0o700);
    // An existing one with loose modes (an older version, a careless umask) is tightened,
    // except the cache dir itself, which may be shared.
    let dir = root.path().join("old");
    let loose = std::fs::Permissions::from_mode(0o755);
    for d in ["blobs/sha256", "tmp", "results", "stamps"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
        std::fs::set_permissions(dir.join(d), loose.clone()).unwrap();
    }
    std::fs::set_permissions(dir.join("blobs"), loose.clone()).unwrap();
    std::fs::set_permissions(&dir, loose).unwrap();
    let old: &'static [u8] = b"cached by an older version";
    let old_blob = dir.join("blobs/sha256").join(digest_hex(&digest_of(old)));
    let old_result = dir.join("results/k.json");
    for f in [&old_blob, &old_result] {
        std::fs::write(f, old).unwrap();
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let cache = BlobCache::open(&dir, 0).unwrap();
    assert_eq!(mode(&dir), 0o755, "the cache dir itself is left alone");
    for d in ["blobs", "blobs/sha256", "tmp", "results", "stamps"] {
        assert_eq!(mode(&dir.join(d)), 0o700, "{d}");
    }
    assert_eq!(mode(&old_blob), 0o600);
    assert_eq!(mode(&old_result), 0o600);
    // New downloads: the temp file is 0600 before the fetch writes (even with a plain
    // `fs::write`), and so are the blob and its stamp.
    let data: &'static [u8] = b"private layer";
    let d = digest_of(data);
    let (h, _) = cache
        .get_or_fetch(&d, data.len() as u64, SRC, |tmp| async move {
            assert_eq!(mode(&tmp), 0o600, "temp file");
            std::fs::write(tmp, data).map_err(|e| Error::internal(e.to_string()))
        })
        .await
        .unwrap();
    assert_eq!(mode(h.path()), 0o600);
    assert_eq!(mode(&dir.join("stamps").join(digest_hex(&d))), 0o600);
    let result = dir.join("results").join("r");
    write_private_file(&result, b"{}").unwrap();
    assert_eq!(mode(&result), 0o600);
}

#[tokio::test]
async fn a_wrong_size_never_removes_a_pinned_blob() {
    let dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::open(dir.path(), 0).unwrap();
    let data: &'static [u8] = b"a popular base layer";
    let d = digest_of(data);
    let size = data.len() as u64;
    // Scan A pins the blob.
    let a = put(&cache, data).await;
    // Scan B's manifest names the same digest with a wrong size. The registry serves the real
    // content: DATA_LOSS for B alone.
    let err = cache
        .get_or_fetch(&d, size + 1, "registry-b", |tmp| async move {
            std::fs::write(tmp, data).map_err(|e| Error::internal(e.to_string()))
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err}");
    // Even a fetch that (wrongly) produces that many bytes does not replace A's file: B keeps
    // a private copy, gone with its handle.
    let (b, fetched) = cache
        .get_or_fetch(&d, size + 1, "registry-b", |tmp| async move {
            std::fs::write(tmp, vec![b'x'; data.len() + 1])
                .map_err(|e| Error::internal(e.to_string()))
        })
        .await
        .unwrap();
    assert!(fetched);
    assert_ne!(b.path(), a.path());
    let private = b.path().to_path_buf();
    drop(b);
    assert!(!private.exists());
    // A still reads its blob, and it is still cached for others.
    assert_eq!(std::fs::read(a.path()).unwrap(), data);
    let (again, fetched) = cache
        .get_or_fetch(&d, size, SRC, |_| async {
            Err(Error::internal("must be a cache hit"))
        })
        .await
        .unwrap();
    assert!(!fetched);
    drop(again);
    // Invalidating a pinned blob does not unlink it under A: a new request downloads a fresh
    // copy (atomically replacing the path with verified content), A's reads keep working.
    cache.invalidate(&d);
    assert_eq!(std::fs::read(a.path()).unwrap(), data);
    let (fresh, fetched) = cache
        .get_or_fetch(&d, size, SRC, |tmp| async move {
            std::fs::write(tmp, data).map_err(|e| Error::internal(e.to_string()))
        })
        .await
        .unwrap();
    assert!(fetched);
    assert_eq!(std::fs::read(a.path()).unwrap(), data);
    drop((a, fresh));
    assert!(cache.contains(&d), "the fresh copy stays cached");
    assert_eq!(cache.total_bytes(), size);
    // Invalidated while pinned and not replaced: deleted with the last pin.
    let a = put(&cache, data).await;
    let path = a.path().to_path_buf();
    cache.invalidate(&d);
    assert!(path.exists());
    drop(a);
    assert!(!path.exists());
    assert!(!cache.contains(&d));
    assert_eq!(cache.total_bytes(), 0);
}

#[tokio::test]
async fn a_stalled_source_does_not_stall_other_sources() {
    let dir = tempfile::tempdir().unwrap();
    let cache = BlobCache::open(dir.path(), 0).unwrap();
    let data: &'static [u8] = b"layer from two registries";
    let d = digest_of(data);
    let size = data.len() as u64;
    // The hostile registry accepts the download and never finishes it.
    let stalled = {
        let (cache, d) = (cache.clone(), d.clone());
        tokio::spawn(async move {
            cache
                .get_or_fetch(&d, size, "hostile", |tmp| async move {
                    std::fs::write(&tmp, b"lay").map_err(|e| Error::internal(e.to_string()))?;
                    std::future::pending::<()>().await;
                    Ok(())
                })
                .await
                .map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A second request of that source waits for the stalled download (same request) ...
    let twin = {
        let (cache, d) = (cache.clone(), d.clone());
        tokio::spawn(async move {
            let (h, fetched) = cache
                .get_or_fetch(&d, size, "hostile", |_| async {
                    Err(Error::internal("the twin must not download"))
                })
                .await?;
            assert!(!fetched);
            Ok::<_, Error>(std::fs::read(h.path()).unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!twin.is_finished());
    // ... but a request with a good source finishes while the first is still stalled.
    let (h, fetched) = tokio::time::timeout(
        Duration::from_secs(5),
        cache.get_or_fetch(&d, size, "good", |tmp| async move {
            std::fs::write(tmp, data).map_err(|e| Error::internal(e.to_string()))
        }),
    )
    .await
    .expect("the good source is not stalled by the hostile one")
    .unwrap();
    assert!(fetched);
    assert_eq!(std::fs::read(h.path()).unwrap(), data);
    assert!(!stalled.is_finished());
    // The waiting twin sees the inserted copy and stops waiting.
    let got = tokio::time::timeout(Duration::from_secs(5), twin)
        .await
        .expect("the twin is woken by the insertion")
        .unwrap()
        .unwrap();
    assert_eq!(got, data);
    stalled.abort();
}
