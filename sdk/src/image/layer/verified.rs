//! What reading a layer to its end showed, remembered for the process's life, so that a layer
//! already verified is not read again for every image that shares it.
//!
//! A whole-image scanner that takes only the OCI layout still needs each layer checked (blob
//! digest, diff_id, the Go-compatible tar rules, the limits): [`verify_layer`] reads it to its
//! end. That check is a pure function of the blob's bytes, its media type's compression and the
//! expected diff_id, under this build's reading rules ([`super::PARSER_GENERATION`]), except for
//! the limits, which are image-wide: a layer that fit one image's budget may not fit another's.
//! So a success is remembered with the layer's totals (entries, uncompressed bytes, largest
//! file), and a later image sharing the layer replays those totals into its own budget instead
//! of reading the layer: the same limits trip with the same codes. Only successes are kept;
//! a layer that failed is read again (and fails again) every time.
//!
//! The memo lives in memory only (nothing on disk to tamper with). A replayed layer's blob is
//! still hashed ([`verify_layer`]): decoding is what is spared, not the check of the bytes the
//! scanner will read.
//!
//! [`verify_layer`]: crate::image::unpack::verify_layer

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::budget::Budget;
use super::decode::LayerCheck;
use crate::error::Error;
use crate::image::manifest::LayerFormat;

/// Layers remembered at most; the oldest is forgotten first (a few hundred bytes each).
const CAPACITY: usize = 4096;

/// A verified layer's totals, replayed into a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerTotals {
    /// Tar headers read (every one counts against `max_entries`, as while reading).
    pub entries: u64,
    /// Uncompressed bytes (the tar stream).
    pub uncompressed: u64,
    /// The largest regular file and its path, against `max_file_bytes`.
    pub largest_file: Option<(u64, String)>,
}

impl LayerTotals {
    /// Charges these totals to `budget` as reading the layer would have: entries, the largest
    /// file, uncompressed bytes and the layer's compression ratio.
    /// A tripped limit is recorded in the budget as when reading, so that it wins over a
    /// failure it causes in another layer of the image.
    pub(crate) fn replay(&self, blob_size: u64, budget: &Budget) -> Result<(), Error> {
        let charge = || -> Result<(), Error> {
            budget.add_entries(self.entries)?;
            if let Some((size, path)) = &self.largest_file {
                budget.check_file(*size, path)?;
            }
            budget.add_uncompressed(self.uncompressed)?;
            budget.check_ratio(self.uncompressed, blob_size)
        };
        charge().inspect_err(|e| {
            budget.trip(e.clone());
        })
    }
}

type Key = (String, u64, &'static str, String);

fn key(check: &LayerCheck) -> Key {
    let format = match check.format {
        LayerFormat::Gzip => "gzip",
        LayerFormat::Zstd => "zstd",
        LayerFormat::Tar => "tar",
        LayerFormat::NonDistributable => "non-distributable",
        LayerFormat::Unsupported => "unsupported",
    };
    (
        check.digest.clone(),
        check.size,
        format,
        check.diff_id.clone(),
    )
}

/// Layers verified by this process: (blob digest, size, compression, diff_id) -> totals.
#[derive(Debug, Default)]
pub(crate) struct VerifiedLayers {
    inner: Mutex<Memo>,
}

#[derive(Debug, Default)]
struct Memo {
    totals: HashMap<Key, LayerTotals>,
    order: VecDeque<Key>,
}

impl VerifiedLayers {
    /// The totals of a layer verified before under the same digest, size, compression and
    /// diff_id.
    pub(crate) fn get(&self, check: &LayerCheck) -> Option<LayerTotals> {
        let memo = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        memo.totals.get(&key(check)).cloned()
    }

    /// Remembers a layer that was read to its end and passed every check.
    pub(crate) fn insert(&self, check: &LayerCheck, totals: LayerTotals) {
        let mut memo = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(check);
        if memo.totals.insert(key.clone(), totals).is_none() {
            memo.order.push_back(key);
        }
        while memo.order.len() > CAPACITY {
            if let Some(old) = memo.order.pop_front() {
                memo.totals.remove(&old);
            }
        }
    }

    /// Forgets a blob (its cached file was found corrupt).
    pub(crate) fn forget(&self, digest: &str) {
        let mut memo = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        memo.totals.retain(|k, _| k.0 != digest);
        memo.order.retain(|k| k.0 != digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    fn check(digest: &str, format: LayerFormat) -> LayerCheck {
        LayerCheck {
            path: Default::default(),
            format,
            digest: digest.into(),
            size: 10,
            diff_id: "sha256:d".into(),
            hashed_at_download: false,
        }
    }

    fn totals(entries: u64) -> LayerTotals {
        LayerTotals {
            entries,
            uncompressed: 100,
            largest_file: Some((40, "/a".into())),
        }
    }

    #[test]
    fn keyed_by_digest_size_compression_and_diff_id() {
        let memo = VerifiedLayers::default();
        memo.insert(&check("sha256:a", LayerFormat::Gzip), totals(3));
        assert_eq!(
            memo.get(&check("sha256:a", LayerFormat::Gzip)),
            Some(totals(3))
        );
        assert_eq!(memo.get(&check("sha256:a", LayerFormat::Zstd)), None);
        let mut other_diff = check("sha256:a", LayerFormat::Gzip);
        other_diff.diff_id = "sha256:e".into();
        assert_eq!(memo.get(&other_diff), None);
        let mut other_size = check("sha256:a", LayerFormat::Gzip);
        other_size.size = 11;
        assert_eq!(memo.get(&other_size), None);
        memo.forget("sha256:a");
        assert_eq!(memo.get(&check("sha256:a", LayerFormat::Gzip)), None);
    }

    #[test]
    fn bounded() {
        let memo = VerifiedLayers::default();
        for i in 0..CAPACITY + 5 {
            memo.insert(&check(&format!("sha256:{i}"), LayerFormat::Gzip), totals(1));
        }
        assert_eq!(memo.get(&check("sha256:0", LayerFormat::Gzip)), None);
        assert!(
            memo.get(&check(
                &format!("sha256:{}", CAPACITY + 4),
                LayerFormat::Gzip
            ))
            .is_some()
        );
        assert_eq!(memo.inner.lock().unwrap().totals.len(), CAPACITY);
    }

    #[test]
    fn replay_trips_each_limit_with_its_code() {
        let limit = |f: &dyn Fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            Budget::new(l)
        };
        let t = LayerTotals {
            entries: 5,
            uncompressed: 64 << 20,
            largest_file: Some((1000, "/big".into())),
        };
        assert!(t.replay(32 << 20, &limit(&|_| {})).is_ok());
        for (budget, blob_size, what) in [
            (limit(&|l| l.max_entries = 4), 32 << 20, "entries"),
            (limit(&|l| l.max_file_bytes = 999), 32 << 20, "/big"),
            (
                limit(&|l| l.max_uncompressed_bytes = 1 << 20),
                32 << 20,
                "unpacks",
            ),
            (limit(&|l| l.max_compression_ratio = 10), 1 << 20, "expands"),
        ] {
            let e = t.replay(blob_size, &budget).unwrap_err();
            assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{what}: {e}");
            assert!(e.message().contains(what), "{what}: {e}");
        }
        // image-wide: the same layer twice in one image counts twice
        let budget = limit(&|l| l.max_entries = 8);
        assert!(t.replay(32 << 20, &budget).is_ok());
        assert!(t.replay(32 << 20, &budget).is_err());
    }
}
