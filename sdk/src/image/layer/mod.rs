//! Reading layer blobs: the decode chain ([`decode`]: file -> hash -> gzip/zstd/plain -> hash +
//! limits), a tar reader that reads as Go's `archive/tar` does ([`tar`]), what a runtime makes
//! of each entry ([`classify`]: confined paths, whiteouts, refused types, and the one
//! classified-entries iterator), the image-wide limits ([`budget`]), the memo of layers already
//! verified ([`verified`]) and the streaming walk that feeds [`crate::input::Layer`] ([`walk`]).
//!
//! The rule (Architecture Invariant): the SDK scans exactly what a container runtime would
//! extract from a layer, or refuses the layer with DATA_LOSS. [`PARSER_GENERATION`] names the
//! version of these rules; it is part of every per-layer result cache key.

pub(crate) mod budget;
pub(crate) mod classify;
pub(crate) mod decode;
pub(crate) mod tar;
pub(crate) mod verified;
pub(crate) mod walk;

#[cfg(test)]
use std::path::{Path, PathBuf};

#[cfg(test)]
use sha2::{Digest as _, Sha256};

pub(crate) use budget::Budget;
pub(crate) use classify::{Item, LayerEntries, display_path};
pub(crate) use decode::{LayerCheck, LayerFailure, NOT_HASHED_AGAIN};
pub(crate) use verified::VerifiedLayers;
pub(crate) use walk::spawn_walk;

/// The generation of the SDK's layer-reading rules (tar parsing, path confinement, whiteouts,
/// refusals). Bumped whenever a change could make an archive read differently, so that no
/// result cached under older rules is served. Generation 1 read with the `tar` crate;
/// generation 2 reads as Go's `archive/tar` and containerd do.
pub const PARSER_GENERATION: u32 = 2;

/// Below this many uncompressed bytes the compression ratio is not checked (tiny layers of
/// empty files compress extremely well and are harmless).
const RATIO_FLOOR: u64 = 8 << 20;
/// Size of body chunks sent to the plugin.
const CHUNK: usize = 64 << 10;
/// Channel depth (batches of messages, each under `2 * CHUNK` of body bytes); bounds memory to
/// about `2 * DEPTH * CHUNK`.
const DEPTH: usize = 8;

/// sha256 of the given bytes as `sha256:<hex>` (tests and fixtures).
#[cfg(test)]
pub(crate) use sidescan_testkit::digest::sha256_digest;

/// Path helper for tests.
#[cfg(test)]
pub(crate) fn write_blob(dir: &Path, data: &[u8]) -> PathBuf {
    let p = dir.join(hex::encode(Sha256::digest(data)));
    std::fs::write(&p, data).expect("write blob");
    p
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Building tar layers in tests.

    /// One entry of a test layer.
    pub(crate) enum E<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Fifo(&'a str),
    }

    /// A tar built from entries by the test kit's writer, paths written exactly as given.
    pub(crate) fn tar(entries: &[E<'_>]) -> Vec<u8> {
        use sidescan_testkit::fixtures::{Entry, Layer};
        Layer::new(entries.iter().map(|e| match *e {
            E::File(p, d) => Entry::file(p, d.to_vec()),
            E::Dir(p) => Entry::dir(p),
            E::Symlink(p, t) => Entry::symlink(p, t),
            E::Hardlink(p, t) => Entry::hardlink(p, t).mode(0o777),
            E::Fifo(p) => Entry::fifo(p).mode(0o644),
        }))
        .tar_bytes()
    }

    /// gzip of `data`.
    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("gzip");
        enc.finish().expect("gzip")
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{E, gzip, tar};
    use super::walk::WalkResult;
    use super::*;
    use crate::image::manifest::LayerFormat;
    use crate::input::{EntryKind, EntrySource as _};
    use crate::limits::Limits;
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncReadExt as _;
    use tokio_util::sync::CancellationToken;

    fn check_for(dir: &Path, tar_bytes: &[u8], format: LayerFormat) -> LayerCheck {
        let blob = match format {
            LayerFormat::Gzip => gzip(tar_bytes),
            LayerFormat::Zstd => zstd::encode_all(tar_bytes, 3).unwrap(),
            _ => tar_bytes.to_vec(),
        };
        LayerCheck {
            path: write_blob(dir, &blob),
            format,
            digest: sha256_digest(&blob),
            size: blob.len() as u64,
            diff_id: sha256_digest(tar_bytes),
            hashed_at_download: false,
        }
    }

    async fn walk_all(
        check: LayerCheck,
        limits: Limits,
        read_bodies: bool,
    ) -> (
        Vec<(String, EntryKind, Option<String>, Vec<u8>)>,
        WalkResult,
    ) {
        let mut h = spawn_walk(check, Budget::new(limits), CancellationToken::new());
        let mut out = Vec::new();
        loop {
            match h.next_entry().await {
                Ok(Some(mut e)) => {
                    let mut body = Vec::new();
                    if read_bodies {
                        e.read_to_end(&mut body).await.unwrap();
                    }
                    out.push((e.path.clone(), e.kind, e.link_target.clone(), body));
                }
                Ok(None) => break,
                Err(_) => break,
            }
        }
        let r = h.finish().await;
        (out, r)
    }

    #[tokio::test]
    async fn streams_entries_in_every_format_and_verifies() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let t = tar(&[
            E::Dir("etc/"),
            E::File("etc/passwd", b"root:x:0:0"),
            E::File("big.bin", &big),
            E::File("skipped", b"not read"),
            E::Symlink("etc/link", "/etc/passwd"),
            E::Hardlink("hard", "etc/passwd"),
            E::File("etc/.wh.old", b""),
            E::File("var/.wh..wh..opq", b""),
            E::Fifo("fifo"),
            E::File("../escape", b"x"),
        ]);
        for format in [LayerFormat::Gzip, LayerFormat::Zstd, LayerFormat::Tar] {
            let dir = tempfile::tempdir().unwrap();
            let (entries, result) =
                walk_all(check_for(dir.path(), &t, format), Limits::default(), true).await;
            let notices = result.unwrap_or_else(|f| panic!("{format:?}: {f:?}"));
            let summary: Vec<(&str, EntryKind)> =
                entries.iter().map(|e| (e.0.as_str(), e.1)).collect();
            assert_eq!(
                summary,
                vec![
                    ("/etc", EntryKind::Directory),
                    ("/etc/passwd", EntryKind::File),
                    ("/big.bin", EntryKind::File),
                    ("/skipped", EntryKind::File),
                    ("/etc/link", EntryKind::Symlink),
                    ("/hard", EntryKind::Hardlink),
                    ("/etc/old", EntryKind::Whiteout),
                    ("/var", EntryKind::OpaqueWhiteout),
                    ("/escape", EntryKind::File),
                ]
            );
            assert_eq!(entries[1].3, b"root:x:0:0");
            assert_eq!(entries[2].3, big);
            assert_eq!(entries[4].2.as_deref(), Some("/etc/passwd"));
            assert_eq!(entries[5].2.as_deref(), Some("/etc/passwd"));
            // the fifo has no data; `../escape` is extracted (and scanned) as `/escape`
            assert_eq!(entries[8].3, b"x");
            assert!(notices.is_empty(), "{notices:?}");
        }
    }

    #[tokio::test]
    async fn many_small_entries_arrive_in_order_across_batches() {
        // Several batches of small files (each batch holds at most 64 messages or a chunk of
        // body bytes) with a large body between them, then a limit that trips: every entry
        // before the failure arrives, in order and whole, and then the failure.
        let names: Vec<String> = (0..300).map(|i| format!("f{i:03}")).collect();
        let bodies: Vec<Vec<u8>> = (0..300).map(|i| vec![(i % 200) as u8; i * 37]).collect();
        let big = vec![9u8; 200_000];
        let mut items: Vec<E<'_>> = names
            .iter()
            .zip(&bodies)
            .map(|(n, b)| E::File(n.as_str(), b.as_slice()))
            .collect();
        items.insert(150, E::File("big", &big));
        let t = tar(&items);
        let dir = tempfile::tempdir().unwrap();
        let (entries, result) = walk_all(
            check_for(dir.path(), &t, LayerFormat::Gzip),
            Limits::default(),
            true,
        )
        .await;
        result.unwrap();
        assert_eq!(entries.len(), 301);
        for (i, (path, _, _, body)) in entries.iter().enumerate() {
            let (want_path, want_body) = match i {
                150 => ("/big".to_owned(), &big),
                _ => {
                    let j = if i < 150 { i } else { i - 1 };
                    (format!("/{}", names[j]), &bodies[j])
                }
            };
            assert_eq!((path, body), (&want_path, want_body), "entry {i}");
        }
        let limits = Limits {
            max_entries: 200,
            ..Limits::default()
        };
        let (entries, result) =
            walk_all(check_for(dir.path(), &t, LayerFormat::Gzip), limits, true).await;
        assert_eq!(
            result.unwrap_err().error.code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(entries.len(), 200);
        assert_eq!(entries[199].0, format!("/{}", names[198]));
    }

    #[tokio::test]
    async fn unread_bodies_are_skipped_and_early_stop_still_verifies() {
        let big = vec![7u8; 500_000];
        let t = tar(&[E::File("a", &big), E::File("b", &big), E::File("c", b"c")]);
        let dir = tempfile::tempdir().unwrap();
        let (entries, result) = walk_all(
            check_for(dir.path(), &t, LayerFormat::Gzip),
            Limits::default(),
            false,
        )
        .await;
        assert_eq!(entries.len(), 3);
        assert!(result.is_ok());
        // The plugin stops after the first entry: finish() still reads to the end and verifies.
        let mut check = check_for(dir.path(), &t, LayerFormat::Gzip);
        check.diff_id = sha256_digest(b"something else");
        let mut h = spawn_walk(
            check,
            Budget::new(Limits::default()),
            CancellationToken::new(),
        );
        let first = h.next_entry().await.unwrap().unwrap();
        assert_eq!(first.path, "/a");
        let err = h.finish().await.unwrap_err();
        assert_eq!(err.error.code(), tonic::Code::DataLoss, "{:?}", err.error);
        assert!(!err.cache_suspect);
    }

    #[tokio::test]
    async fn diff_id_mismatch_is_data_loss_and_damaged_blob_is_suspect() {
        let t = tar(&[E::File("a", b"hello")]);
        let dir = tempfile::tempdir().unwrap();
        let mut check = check_for(dir.path(), &t, LayerFormat::Gzip);
        check.diff_id = sha256_digest(b"x");
        let (_, r) = walk_all(check, Limits::default(), true).await;
        assert_eq!(r.unwrap_err().error.code(), tonic::Code::DataLoss);
        // flip a byte in the cached gzip: decoding or the blob digest fails, cache suspect
        let check = check_for(dir.path(), &t, LayerFormat::Gzip);
        let mut bytes = std::fs::read(&check.path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&check.path, &bytes).unwrap();
        let (_, r) = walk_all(check, Limits::default(), true).await;
        let f = r.unwrap_err();
        assert!(f.cache_suspect, "{f:?}");
    }

    #[tokio::test]
    async fn a_blob_hashed_at_download_is_counted_and_its_diff_id_still_checked() {
        let t = tar(&[E::File("a", b"hello")]);
        let dir = tempfile::tempdir().unwrap();
        // The digest is taken as verified: a stale claim is not noticed by the walk itself...
        let mut check = check_for(dir.path(), &t, LayerFormat::Gzip);
        check.hashed_at_download = true;
        check.digest = sha256_digest(b"another blob");
        let (entries, r) = walk_all(check.clone(), Limits::default(), true).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(entries.len(), 1);
        // ...but the same claim is a cache-suspect failure when the bytes are hashed.
        check.hashed_at_download = false;
        let (_, r) = walk_all(check, Limits::default(), true).await;
        let f = r.unwrap_err();
        assert!(f.cache_suspect, "{f:?}");
        assert_eq!(f.error.code(), tonic::Code::DataLoss);
        // The uncompressed stream is still hashed: a diff_id that does not match is DataLoss.
        let mut check = check_for(dir.path(), &t, LayerFormat::Gzip);
        check.hashed_at_download = true;
        check.diff_id = sha256_digest(b"x");
        let (_, r) = walk_all(check, Limits::default(), true).await;
        assert_eq!(r.unwrap_err().error.code(), tonic::Code::DataLoss);
        // So is content changed on disk after the download, since it decodes differently.
        let mut check = check_for(dir.path(), &t, LayerFormat::Tar);
        check.hashed_at_download = true;
        let mut bytes = std::fs::read(&check.path).unwrap();
        let body = bytes.windows(5).position(|w| w == b"hello").unwrap();
        bytes[body] = b'j';
        std::fs::write(&check.path, &bytes).unwrap();
        let (_, r) = walk_all(check.clone(), Limits::default(), true).await;
        assert_eq!(r.unwrap_err().error.code(), tonic::Code::DataLoss);
        // And a size that changed is a cache-suspect failure without any hash.
        bytes.extend_from_slice(&[0; 512]);
        std::fs::write(&check.path, &bytes).unwrap();
        let (_, r) = walk_all(check, Limits::default(), true).await;
        let f = r.unwrap_err();
        assert!(f.cache_suspect, "{f:?}");
    }

    #[tokio::test]
    async fn limits_stop_bombs_while_streaming() {
        // 64 MiB of zeros gzips to ~64 KiB: ratio ~1000
        let zeros = vec![0u8; 64 << 20];
        let t = tar(&[E::File("zeros", &zeros)]);
        let dir = tempfile::tempdir().unwrap();
        let check = check_for(dir.path(), &t, LayerFormat::Gzip);
        let budget = Budget::new(Limits::default());
        let mut h = spawn_walk(check.clone(), budget.clone(), CancellationToken::new());
        let mut e = h.next_entry().await.unwrap().unwrap();
        let mut sink = Vec::new();
        let _ = e.read_to_end(&mut sink).await;
        drop(e);
        let f = h.finish().await.unwrap_err();
        assert_eq!(
            f.error.code(),
            tonic::Code::ResourceExhausted,
            "{:?}",
            f.error
        );
        assert!(f.error.message().contains("expands"), "{}", f.error);
        // stopped early: far less than the whole 64 MiB went through
        assert!(budget.uncompressed.load(Ordering::Relaxed) < 32 << 20);

        let small = tar(&[
            E::File("a", b"1"),
            E::File("b", b"2"),
            E::File("c", &[1u8; 100]),
        ]);
        let limits = |f: &dyn Fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            l
        };
        for (l, what) in [
            (limits(&|l| l.max_entries = 2), "entries"),
            (limits(&|l| l.max_file_bytes = 50), "file"),
            (limits(&|l| l.max_uncompressed_bytes = 1000), "unpacks"),
        ] {
            let (_, r) = walk_all(check_for(dir.path(), &small, LayerFormat::Gzip), l, true).await;
            let f = r.unwrap_err();
            assert_eq!(
                f.error.code(),
                tonic::Code::ResourceExhausted,
                "{what}: {:?}",
                f.error
            );
            assert!(f.error.message().contains(what), "{what}: {}", f.error);
        }
    }

    #[tokio::test]
    async fn cancellation_stops_the_walk() {
        let t = tar(&[E::File("a", &vec![1u8; 1 << 20]), E::File("b", b"b")]);
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let mut h = spawn_walk(
            check_for(dir.path(), &t, LayerFormat::Gzip),
            Budget::new(Limits::default()),
            cancel.clone(),
        );
        let _first = h.next_entry().await.unwrap().unwrap();
        cancel.cancel();
        let err = h.next_entry().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Cancelled);
    }
}
