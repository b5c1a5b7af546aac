//! Trivy's per-layer analysis cache, kept across scans (`--layer-cache-max-size`).
//!
//! Trivy caches what it found in each layer (OS, packages, ...) under a key made of the layer's
//! diff_id, Trivy's analyzer versions and the scan's options, so a new image on a known base has
//! only its new layers analysed. Nothing stale can be served: vulnerabilities are matched against
//! the DB on every run (a DB update needs no invalidation), a new Trivy changes the analyzer
//! versions and so the keys, other scanners or options are other keys, and the SDK has verified
//! every layer against its diff_id before Trivy sees it.
//!
//! Trivy's file-system cache is one bbolt file that a Trivy process keeps locked while it runs,
//! so each of the `--max-trivy-processes` slots gets a cache directory of its own and concurrent
//! scans never wait for each other. The vulnerability DB stays shared: a slot's `db` and
//! `java-db` are symlinks to the adapter's (`--trivy-cache-dir`), resolved when Trivy opens them,
//! which the DB swap never does during a scan (scans hold the DB's read lock). A slot whose cache
//! file has grown past the cap is emptied before its next run.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::TrivyError;

/// The directory, under `--trivy-cache-dir`, holding one directory per slot.
const SLOTS_DIR: &str = "layer-cache";
/// Trivy's cache file inside a `--cache-dir`.
const CACHE_FILE: &str = "fanal/fanal.db";

/// The slots' cache directories and which of them are free.
#[derive(Debug)]
pub(crate) struct LayerCaches {
    trivy_cache_dir: PathBuf,
    max_bytes: u64,
    free: Mutex<Vec<usize>>,
}

/// A slot taken for one Trivy run; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    caches: &'a LayerCaches,
    index: usize,
    dir: PathBuf,
}

impl LayerCaches {
    /// `slots` caches under `trivy_cache_dir`, each emptied past `max_bytes`.
    pub(crate) fn new(trivy_cache_dir: &Path, slots: usize, max_bytes: u64) -> Self {
        Self {
            trivy_cache_dir: trivy_cache_dir.to_path_buf(),
            max_bytes,
            free: Mutex::new((0..slots.max(1)).rev().collect()),
        }
    }

    /// Takes a free slot and prepares its directory: the DB links, the size cap. Callers hold a
    /// Trivy process permit, and there is a slot for each.
    pub(crate) fn take(&self) -> Result<Slot<'_>, TrivyError> {
        let index = self
            .free
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .ok_or_else(|| {
                TrivyError::io(
                    "taking a Trivy layer-cache slot",
                    std::io::Error::other("none free: more Trivy runs than process permits"),
                )
            })?;
        let slot = Slot {
            caches: self,
            index,
            dir: self.trivy_cache_dir.join(SLOTS_DIR).join(index.to_string()),
        };
        slot.prepare()?;
        Ok(slot)
    }
}

impl Slot<'_> {
    /// The `--cache-dir` of this slot's Trivy run.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn prepare(&self) -> Result<(), TrivyError> {
        let io = |what: &str, path: &Path| {
            let context = format!("{what} {}", path.display());
            move |e| TrivyError::io(context, e)
        };
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        let shared = std::path::absolute(&self.caches.trivy_cache_dir)
            .map_err(io("resolving", &self.caches.trivy_cache_dir))?;
        for name in ["db", "java-db"] {
            let link = self.dir.join(name);
            let target = shared.join(name);
            if std::fs::read_link(&link).is_ok_and(|t| t == target) {
                continue;
            }
            // A stale link, or a directory an older adapter's Trivy made there.
            let _ = std::fs::remove_file(&link).or_else(|_| std::fs::remove_dir_all(&link));
            if target.exists() {
                std::os::unix::fs::symlink(&target, &link).map_err(io("linking", &link))?;
            }
        }
        let cache = self.dir.join(CACHE_FILE);
        if std::fs::metadata(&cache).is_ok_and(|m| m.len() > self.caches.max_bytes) {
            tracing::info!(
                slot = self.index,
                cap = self.caches.max_bytes,
                "Trivy layer cache over its cap: emptied"
            );
            let fanal = self.dir.join("fanal");
            std::fs::remove_dir_all(&fanal).map_err(io("emptying", &fanal))?;
        }
        Ok(())
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut free) = self.caches.free.lock() {
            free.push(self.index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_link_the_shared_db_and_are_emptied_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("db/trivy.db"), b"db").unwrap();
        let caches = LayerCaches::new(dir.path(), 2, 10);
        let a = caches.take().unwrap();
        let b = caches.take().unwrap();
        assert_ne!(a.dir(), b.dir());
        assert!(caches.take().is_err(), "two slots, both taken");
        assert_eq!(std::fs::read(a.dir().join("db/trivy.db")).unwrap(), b"db");
        assert!(
            !a.dir().join("java-db").exists(),
            "no link to a missing java DB"
        );
        let first = a.dir().to_path_buf();
        std::fs::create_dir_all(first.join("fanal")).unwrap();
        std::fs::write(first.join(CACHE_FILE), b"under").unwrap();
        drop(a);
        let again = caches.take().unwrap();
        assert_eq!(again.dir(), first, "the freed slot is reused");
        assert!(again.dir().join(CACHE_FILE).exists(), "under the cap: kept");
        std::fs::write(first.join(CACHE_FILE), b"well over ten bytes").unwrap();
        drop(again);
        let again = caches.take().unwrap();
        assert!(
            !again.dir().join(CACHE_FILE).exists(),
            "over the cap: emptied"
        );
        assert!(again.dir().join("db").exists(), "the DB link stays");
    }
}
