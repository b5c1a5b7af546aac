//! The content-addressed blob cache on disk.
//!
//! Layout: `<cache_dir>/blobs/sha256/<hex>`, downloads staged in `<cache_dir>/tmp/` and renamed
//! into place once their digest is verified (no fsync: a torn file after a crash is caught
//! below). Every directory the cache owns is `0700` and every file it writes `0600` (existing
//! ones are tightened on open): cached layers may hold secrets of private images. Rules:
//!
//! - **Keyed by digest and size.** An entry is `(digest, size)`. A request whose descriptor
//!   names a cached digest with another size never touches that entry: it misses, downloads into
//!   its own temp file under its own lock, and fails there with DATA_LOSS (content with that
//!   digest has exactly one size, and a temp file is only moved into place when its length is
//!   the requested size). Should a download of the other size still succeed while a scan pins
//!   the cached file, it is not moved over that file: the request keeps its own copy, deleted
//!   with its handle. So a hostile manifest cannot make the cache drop a blob other scans use.
//! - **Pinned files are never unlinked.** A [`BlobHandle`] pins its entry. Eviction skips pinned
//!   entries; a pinned entry found corrupt (wrong size on disk, failed re-hash) is only marked:
//!   no new scan gets it, the next download atomically replaces the file with a verified copy of
//!   the same digest and size, and the file is deleted when the last pin goes if nobody did.
//! - **One download per source and blob at a time.** Single-flight is keyed by (source, digest,
//!   size), where the source is the registry (scheme and host) of the request: concurrent scans
//!   of one registry wait for one download and share the file (across repositories and
//!   credentials, as a registry shares blobs), but a slow or stalling registry only stalls
//!   requests that would have gone to it anyway, never a scan of another registry. (A time box
//!   on waiters was the alternative; it either duplicates large honest downloads or still
//!   stalls every other scan for its length.) A request from another source downloads on its
//!   own; whichever finishes first inserts the entry, the other drops its verified-identical
//!   file and pins the inserted one; waiters of a stalled source see that insertion and use it.
//! - **Size cap with LRU eviction.** Every use advances an in-memory clock; past
//!   `cache_max_bytes` the least recently used unpinned blobs are deleted, so a single image
//!   larger than the cap still scans.
//! - **Survives restarts.** On start the directory is rescanned (size, and mtime = insertion
//!   time as the initial LRU order); leftover temp files are deleted. (Files are never touched
//!   after insertion, so their mtime keeps meaning "content unchanged", see below.)
//! - **Corruption, cheaply.** Content is hashed when downloaded. Then a *stamp* (inode, size,
//!   mtime in ns) is written to `<cache_dir>/stamps/<hex>`. On a hit the size is checked, and
//!   [`BlobCache::verify`] compares the stamp: every write through the file system updates the
//!   mtime, so an unchanged stamp means unchanged content and no re-hash; a changed or missing
//!   stamp means a full re-hash, and a mismatch invalidates the entry so the pipeline downloads
//!   it again. On top of that, every streaming reader (layer walks, rootfs unpacks) hashes the
//!   compressed bytes of a cache hit as it reads them and checks them at the end; a blob the
//!   same scan has just downloaded (and hashed as it wrote it) is only counted, not hashed
//!   again, while its uncompressed stream is still checked against the diff_id, so changed
//!   content that decodes differently is still caught. Known limits: a change that keeps
//!   inode, size and mtime (raw-device bit rot, a write in the same coarse clock tick as the
//!   insertion, or someone setting the mtime back on purpose) is only caught by those streaming
//!   checks, not before a whole-image scanner reads a layout blob.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::image::error::Error as ImageError;
use crate::image::reference::digest_hex;

/// Mode of every directory the cache creates or owns.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file the cache writes.
pub(crate) const FILE_MODE: u32 = 0o600;

/// `(hex digest, size)`.
type Key = (String, u64);

#[derive(Debug)]
struct CacheEntry {
    last_use: u64,
    pins: u32,
    /// Found corrupt while pinned: not served again; deleted with its last pin unless a fresh
    /// download replaced it first.
    corrupt: bool,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Key, CacheEntry>,
    total: u64,
    clock: u64,
    /// Single-flight locks by (source, hex, size).
    locks: HashMap<(String, String, u64), Weak<tokio::sync::Mutex<()>>>,
}

impl State {
    /// Forgets an entry (not its file).
    fn forget(&mut self, key: &Key) -> Option<CacheEntry> {
        let e = self.entries.remove(key)?;
        self.total -= key.1;
        Some(e)
    }
}

/// The blob cache. Share it as `Arc<BlobCache>`.
#[derive(Debug)]
pub(crate) struct BlobCache {
    blobs: PathBuf,
    tmp: PathBuf,
    results: PathBuf,
    stamps: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    /// Woken on every insertion, so requests waiting for a stalled download of one source see a
    /// copy another source inserted.
    inserted: tokio::sync::Notify,
}

/// A blob in the cache, pinned (never unlinked, never evicted) while the handle lives.
#[derive(Debug)]
pub(crate) struct BlobHandle {
    cache: Arc<BlobCache>,
    key: Key,
    path: PathBuf,
    /// A private download outside the cache (see [`BlobCache::get_or_fetch`]): deleted on drop.
    own: bool,
}

impl BlobHandle {
    /// Path of the cached file (read-only use).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BlobHandle {
    fn drop(&mut self) {
        if self.own {
            let _ = std::fs::remove_file(&self.path);
            return;
        }
        let mut state = self.cache.lock();
        let mut delete = false;
        if let Some(entry) = state.entries.get_mut(&self.key) {
            entry.pins = entry.pins.saturating_sub(1);
            delete = entry.pins == 0 && entry.corrupt;
        }
        if delete {
            state.forget(&self.key);
            self.cache.remove_files(&self.key.0);
        }
        self.cache.evict(&mut state);
    }
}

fn io_err(action: &str, path: &Path, e: std::io::Error) -> ImageError {
    ImageError::io("blob cache", action, path, e)
}

/// Creates `dir` (and missing parents) with mode 0700 and tightens it to 0700 if it existed.
fn private_dir(dir: &Path) -> Result<(), Error> {
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)));
    made.map_err(|source| {
        ImageError::CacheDir {
            context: format!("cannot create cache dir {}", dir.display()),
            source,
        }
        .into()
    })
}

/// Tightens a file the cache owns to 0600 if it is looser.
fn tighten_file(path: &Path, meta: &std::fs::Metadata) {
    if meta.permissions().mode() & 0o777 != FILE_MODE {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE));
    }
}

/// Writes `data` to `path` (created 0600, or truncated).
pub(crate) fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    f.write_all(data)
}

impl BlobCache {
    /// Opens (creating) the cache under `dir`, rescanning existing blobs. The directories the
    /// cache owns are created (or tightened to) 0700 and the files in them 0600; `dir` itself is
    /// only created 0700 when missing, never changed (it may be shared).
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Arc<Self>, Error> {
        if !dir.exists() {
            private_dir(dir)?;
        }
        let blobs = dir.join("blobs").join("sha256");
        let tmp = dir.join("tmp");
        let results = dir.join("results");
        let stamps = dir.join("stamps");
        for d in [&dir.join("blobs"), &blobs, &tmp, &results, &stamps] {
            private_dir(d)?;
        }
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        for d in [&results, &stamps] {
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    if let Ok(meta) = e.metadata() {
                        tighten_file(&e.path(), &meta);
                    }
                }
            }
        }
        let mut found: Vec<(SystemTime, String, u64)> = Vec::new();
        let rd = std::fs::read_dir(&blobs).map_err(|source| ImageError::CacheDir {
            context: format!("cannot read cache dir {}", blobs.display()),
            source,
        })?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            let valid =
                name.len() == 64 && name.bytes().all(|c| c.is_ascii_hexdigit()) && meta.is_file();
            if !valid {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            tighten_file(&e.path(), &meta);
            found.push((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                name,
                meta.len(),
            ));
        }
        found.sort();
        let mut state = State::default();
        for (_, name, size) in found {
            state.clock += 1;
            state.total += size;
            let last_use = state.clock;
            state.entries.insert(
                (name, size),
                CacheEntry {
                    last_use,
                    pins: 0,
                    corrupt: false,
                },
            );
        }
        let cache = Arc::new(Self {
            blobs,
            tmp,
            results,
            stamps,
            max_bytes,
            state: Mutex::new(state),
            inserted: tokio::sync::Notify::new(),
        });
        {
            let mut state = cache.lock();
            cache.evict(&mut state);
        }
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes currently cached.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.lock().total
    }

    /// Whether a blob is cached (any size).
    #[cfg(test)]
    pub(crate) fn contains(&self, digest: &str) -> bool {
        let hex = digest_hex(digest);
        self.lock().entries.keys().any(|(h, _)| h == hex)
    }

    fn remove_files(&self, hex: &str) {
        let _ = std::fs::remove_file(self.blobs.join(hex));
        let _ = std::fs::remove_file(self.stamps.join(hex));
    }

    /// Deletes least recently used, unpinned blobs until the total is within the cap.
    fn evict(&self, state: &mut State) {
        if self.max_bytes == 0 {
            return;
        }
        while state.total > self.max_bytes {
            let victim = state
                .entries
                .iter()
                .filter(|(_, e)| e.pins == 0)
                .min_by_key(|(_, e)| e.last_use)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            state.forget(&victim);
            // One file per digest: never delete it while another size's entry pins it.
            if !state.entries.keys().any(|(h, _)| *h == victim.0) {
                self.remove_files(&victim.0);
            }
            tracing::debug!(blob = %victim.0, "evicted from blob cache");
        }
    }

    /// Returns the cached blob `digest` (validated `sha256:`) of `size` bytes, downloading it with
    /// `fetch` into a temp path (created empty, mode 0600) when it is absent. Concurrent callers
    /// with the same `source` (the registry) share one download;
    /// other sources do not wait for it (see the module docs). A fetched file whose length is not
    /// `size` is DATA_LOSS and never enters the cache. The boolean is true when this call
    /// downloaded it.
    pub(crate) async fn get_or_fetch<F, Fut>(
        self: &Arc<Self>,
        digest: &str,
        size: u64,
        source: &str,
        fetch: F,
    ) -> Result<(BlobHandle, bool), Error>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>>,
    {
        let key: Key = (digest_hex(digest).to_string(), size);
        let lock = {
            let mut state = self.lock();
            state.locks.retain(|_, w| w.strong_count() > 0);
            let lock_key = (source.to_string(), key.0.clone(), size);
            match state.locks.get(&lock_key).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    state.locks.insert(lock_key, Arc::downgrade(&l));
                    l
                }
            }
        };
        let _guard = loop {
            let notified = self.inserted.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(handle) = self.hit(&key) {
                return Ok((handle, false));
            }
            tokio::select! {
                guard = lock.lock() => break guard,
                () = &mut notified => {}
            }
        };
        if let Some(handle) = self.hit(&key) {
            return Ok((handle, false));
        }
        let hex = &key.0;
        tracing::debug!(blob = %hex, size, "blob not cached: downloading");
        let tmp = self
            .tmp
            .join(format!("{hex}.{}", uuid::Uuid::new_v4().simple()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(|e| io_err("create a download file at", &tmp, e))?;
        // Removes the partial download on error and when this future is dropped (cancellation).
        let mut guard = TempFile(Some(tmp.clone()));
        fetch(tmp.clone()).await?;
        let meta =
            std::fs::metadata(&tmp).map_err(|e| io_err("read the downloaded blob at", &tmp, e))?;
        if meta.len() != size {
            return Err(ImageError::SizeMismatch {
                what: format!("blob {digest}"),
                expected: size,
                actual: meta.len(),
            }
            .into());
        }
        tighten_file(&tmp, &meta);
        let path = self.blobs.join(hex);
        let mut state = self.lock();
        // Another source may have inserted it meanwhile: keep that file (it may be pinned).
        if let Some(handle) = self.pin_locked(&mut state, &key) {
            return Ok((handle, true));
        }
        let pinned_other_size = state
            .entries
            .iter()
            .any(|((h, s), e)| h == hex && *s != size && e.pins > 0 && !e.corrupt);
        if pinned_other_size {
            // A running scan pins a file of this digest with another size. One of the two sizes
            // is wrong; whichever it is, that file is not replaced under the scan: this request
            // keeps its own (verified by `fetch`) file, deleted when its handle drops.
            drop(state);
            guard.0 = None;
            tracing::warn!(blob = %hex, size, "blob cached with another size and in use; keeping a private copy");
            return Ok((
                BlobHandle {
                    cache: Arc::clone(self),
                    key,
                    path: tmp,
                    own: true,
                },
                true,
            ));
        }
        // Under the state lock, so no hit or eviction sees the file half-replaced. This replaces
        // only a file that is absent, corrupt or unpinned with another (so wrong) size, with
        // content `fetch` verified for this digest and size.
        std::fs::rename(&tmp, &path)
            .map_err(|e| io_err("move blob into the cache at", &path, e))?;
        guard.0 = None;
        if let Some(stamp) = stamp_of(&path) {
            let _ = write_private_file(&self.stamps.join(hex), stamp.as_bytes());
        }
        state.clock += 1;
        let last_use = state.clock;
        // Pins of a replaced corrupt entry carry over (their handles still unpin this key); an
        // entry of another size for this digest named the file just replaced: forget it.
        let pins = state.forget(&key).map_or(0, |old| old.pins);
        let stale: Vec<Key> = state
            .entries
            .keys()
            .filter(|(h, _)| h == hex)
            .cloned()
            .collect();
        for k in stale {
            state.forget(&k);
        }
        state.entries.insert(
            key.clone(),
            CacheEntry {
                last_use,
                pins: pins + 1,
                corrupt: false,
            },
        );
        state.total += size;
        self.evict(&mut state);
        drop(state);
        self.inserted.notify_waiters();
        Ok((
            BlobHandle {
                cache: Arc::clone(self),
                key,
                path,
                own: false,
            },
            true,
        ))
    }

    /// A pinned handle when the blob is cached, intact as far as its size tells, with the
    /// expected size.
    fn hit(self: &Arc<Self>, key: &Key) -> Option<BlobHandle> {
        let mut state = self.lock();
        self.pin_locked(&mut state, key)
    }

    fn pin_locked(self: &Arc<Self>, state: &mut State, key: &Key) -> Option<BlobHandle> {
        let path = self.blobs.join(&key.0);
        let entry = state.entries.get(key)?;
        if entry.corrupt {
            return None;
        }
        let on_disk = std::fs::metadata(&path).ok().map(|m| m.len());
        if on_disk != Some(key.1) {
            // Truncated or deleted behind our back: forget it, and delete it unless pinned.
            tracing::warn!(blob = %key.0, "cached blob has the wrong size; downloading it again");
            self.discard(state, key);
            return None;
        }
        state.clock += 1;
        let clock = state.clock;
        if let Some(entry) = state.entries.get_mut(key) {
            entry.last_use = clock;
            entry.pins += 1;
        }
        Some(BlobHandle {
            cache: Arc::clone(self),
            key: key.clone(),
            path,
            own: false,
        })
    }

    /// Drops a corrupt entry: deleted now when unpinned, else marked (see [`CacheEntry::corrupt`]);
    /// its stamp goes either way, so a pinned holder's [`verify`](Self::verify) re-hashes.
    fn discard(&self, state: &mut State, key: &Key) {
        let Some(entry) = state.entries.get_mut(key) else {
            return;
        };
        if entry.pins > 0 {
            entry.corrupt = true;
            let _ = std::fs::remove_file(self.stamps.join(&key.0));
        } else {
            state.forget(key);
            self.remove_files(&key.0);
        }
    }

    /// Checks a cached blob: an unchanged stamp passes without reading the file (unless
    /// `force`); otherwise the file is re-hashed on a blocking thread. False means corrupt.
    pub(crate) async fn verify(&self, handle: &BlobHandle, force: bool) -> Result<bool, Error> {
        let path = handle.path.clone();
        let hex = handle.key.0.clone();
        let stamp_path = self.stamps.join(&hex);
        // A private copy has no stamp of its own: always re-hashed, never stamped.
        let own = handle.own;
        let force = force || own;
        tokio::task::spawn_blocking(move || -> Result<bool, Error> {
            let before = stamp_of(&path);
            if !force && before.is_some() && std::fs::read_to_string(&stamp_path).ok() == before {
                return Ok(true);
            }
            let ok = sha256_file(&path).map_err(|e| io_err("read cached blob", &path, e))? == hex;
            if ok
                && !own
                && let Some(stamp) = before
            {
                let _ = write_private_file(&stamp_path, stamp.as_bytes());
            }
            Ok(ok)
        })
        .await
        .map_err(|e| Error::internal(format!("hash thread failed: {e}")))?
    }

    /// Forgets a corrupt blob so the next [`get_or_fetch`](Self::get_or_fetch) downloads it
    /// again. Its file is deleted now only when no scan pins it; otherwise when the last pin
    /// goes, unless a fresh verified download replaced it first.
    pub(crate) fn invalidate(&self, digest: &str) {
        let hex = digest_hex(digest);
        let mut state = self.lock();
        let keys: Vec<Key> = state
            .entries
            .keys()
            .filter(|(h, _)| h == hex)
            .cloned()
            .collect();
        for key in keys {
            self.discard(&mut state, &key);
        }
        tracing::warn!(blob = %hex, "cached blob is corrupt; it will be downloaded again");
    }

    /// Directory of the result cache.
    pub(crate) fn results_dir(&self) -> &Path {
        &self.results
    }
}

/// Deletes a temp file when dropped, unless disarmed.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `ino size mtime_ns` of a file: changes whenever its content is written. (Not ctime: hard
/// links into OCI layouts and their removal change it without touching the content.)
fn stamp_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "{} {} {}.{:09}",
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// sha256 hex of a file.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests;
