//! Trivy's vulnerability DB: on disk `<cache>/db/trivy.db` (a bbolt file) and
//! `<cache>/db/metadata.json`, how the adapter checks and replaces them ([`check`], [`replace`]),
//! and the `DbManager` that owns the DB's lifecycle: readiness, the part of the engine version
//! the DB decides, the lock scans hold, and the non-overlapping downloads.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{Mutex, RwLock, RwLockReadGuard, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::TrivyConfig;
use crate::error::TrivyError;
use crate::process;

/// The bbolt meta-page magic (`0xED0CDAED`), at offset 16 of a bbolt file, little-endian.
const BOLT_MAGIC: u32 = 0xED0C_DAED;

/// `metadata.json` of Trivy's vulnerability DB.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DbMetadata {
    /// Schema version of the DB (2 for Trivy 0.76).
    pub version: u32,
    /// When the DB was built (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
    /// When the next DB is due (RFC 3339).
    #[serde(default)]
    pub next_update: String,
    /// When this copy was downloaded (RFC 3339).
    #[serde(default)]
    pub downloaded_at: String,
}

/// Reads `<db_dir>/metadata.json` and checks that `<db_dir>/trivy.db` looks like a bbolt file.
///
/// This is the readiness test of the vulnerability DB: anything it rejects is a DB Trivy cannot use.
pub fn check(db_dir: &Path) -> Result<DbMetadata, TrivyError> {
    let meta_path = db_dir.join("metadata.json");
    let raw = std::fs::read(&meta_path)
        .map_err(|e| TrivyError::DbUnusable(format!("cannot read {}: {e}", meta_path.display())))?;
    let meta: DbMetadata = serde_json::from_slice(&raw).map_err(|e| {
        TrivyError::DbUnusable(format!("cannot parse {}: {e}", meta_path.display()))
    })?;
    if meta.updated_at.is_empty() {
        return Err(TrivyError::DbUnusable(format!(
            "{} has no UpdatedAt",
            meta_path.display()
        )));
    }
    let db_path = db_dir.join("trivy.db");
    let mut header = [0u8; 20];
    std::fs::File::open(&db_path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| TrivyError::DbUnusable(format!("cannot read {}: {e}", db_path.display())))?;
    let magic = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
    if magic != BOLT_MAGIC {
        return Err(TrivyError::DbUnusable(format!(
            "{} is not a bbolt database (bad magic {magic:#010x})",
            db_path.display()
        )));
    }
    Ok(meta)
}

/// Moves the DB downloaded into `staging_db` (a `db` directory holding trivy.db + metadata.json)
/// over `db_dir`, keeping the old one only until the new one is in place.
///
/// Call with scans excluded (the scanner holds its DB write lock), so no Trivy run sees a
/// half-replaced directory.
pub fn replace(staging_db: &Path, db_dir: &Path) -> Result<(), TrivyError> {
    check(staging_db)?;
    let old = db_dir.with_extension("old");
    if old.exists() {
        std::fs::remove_dir_all(&old)
            .map_err(|e| TrivyError::io(format!("removing {}", old.display()), e))?;
    }
    if db_dir.exists() {
        std::fs::rename(db_dir, &old)
            .map_err(|e| TrivyError::io(format!("moving {} aside", db_dir.display()), e))?;
    }
    if let Err(e) = std::fs::rename(staging_db, db_dir) {
        // Put the old DB back so the scanner keeps working.
        let _ = std::fs::rename(&old, db_dir);
        return Err(TrivyError::io(
            format!("moving the new DB to {}", db_dir.display()),
            e,
        ));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Result of [`TrivyAdapter::update_db`](crate::TrivyAdapter::update_db).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUpdate {
    /// A new DB was downloaded and is now in use.
    Updated(DbMetadata),
    /// Another update was already running; this one did nothing.
    AlreadyRunning,
    /// `--skip-db-update` is set: the adapter never downloads.
    Disabled,
}

/// The vulnerability DB's lifecycle, owned for the adapter: whether the DB is usable, the DB's
/// part of the engine version, the lock that keeps a DB swap away from running scans, and the
/// downloads (never two at once; periodic with `--db-update-interval`).
pub(crate) struct DbManager {
    config: Arc<TrivyConfig>,
    /// The adapter's bound on concurrent Trivy processes, which downloads count against too.
    processes: Arc<Semaphore>,
    /// Scans hold it shared; replacing the DB directory holds it exclusively.
    db_lock: RwLock<()>,
    /// Held while a DB download runs: updates never overlap.
    updating: Mutex<()>,
    /// When the last DB download was started (periodic updates).
    last_update: std::sync::Mutex<Option<Instant>>,
    /// Cancels background DB downloads when the manager is dropped.
    shutdown: CancellationToken,
    /// Unique names for staging directories.
    staging_seq: AtomicU64,
}

impl Drop for DbManager {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl DbManager {
    /// A manager for the DB in `config.db_dir()`, downloading with at most one of `processes`.
    /// Starts nothing.
    pub(crate) fn new(config: Arc<TrivyConfig>, processes: Arc<Semaphore>) -> Self {
        Self {
            config,
            processes,
            db_lock: RwLock::new(()),
            updating: Mutex::new(()),
            last_update: std::sync::Mutex::new(None),
            shutdown: CancellationToken::new(),
            staging_seq: AtomicU64::new(0),
        }
    }

    /// The DB's metadata, if the DB is usable ([`check`]).
    pub(crate) fn metadata(&self) -> Result<DbMetadata, TrivyError> {
        check(&self.config.db_dir())
    }

    /// Why the DB keeps the plugin from being ready: `Err` when the configured scanners need a
    /// DB and it is missing or unusable.
    pub(crate) fn readiness(&self) -> Result<(), TrivyError> {
        if self.config.wants_db() {
            self.metadata()?;
        }
        Ok(())
    }

    /// The DB's part of the engine version, `db=v<schema>@<UpdatedAt>`, when the configured
    /// scanners use a DB (`None` otherwise); an error when they need one that is unusable.
    pub(crate) fn engine_version(&self) -> Result<Option<String>, TrivyError> {
        if !self.config.wants_db() {
            return Ok(None);
        }
        let meta = self.metadata()?;
        Ok(Some(format!("db=v{}@{}", meta.version, meta.updated_at)))
    }

    /// Held (shared) for the whole of a scan, so no update swaps the DB under a Trivy run;
    /// checks that the DB is usable when the scan needs one.
    pub(crate) async fn lock_for_scan(&self) -> Result<RwLockReadGuard<'_, ()>, TrivyError> {
        let shared = self.db_lock.read().await;
        if self.config.wants_db() {
            self.metadata()?;
        }
        Ok(shared)
    }

    /// Downloads a fresh vulnerability DB (`trivy image --download-db-only`) into a staging
    /// directory and swaps it in while no scan runs. Never overlaps itself: a call while another
    /// runs returns [`DbUpdate::AlreadyRunning`] at once.
    pub(crate) async fn update_now(&self) -> Result<DbUpdate, TrivyError> {
        let cfg = &self.config;
        if cfg.skip_db_update {
            return Ok(DbUpdate::Disabled);
        }
        let Ok(_running) = self.updating.try_lock() else {
            return Ok(DbUpdate::AlreadyRunning);
        };
        if let Ok(mut last) = self.last_update.lock() {
            *last = Some(Instant::now());
        }
        let seq = self.staging_seq.fetch_add(1, Ordering::Relaxed);
        let staging = cfg
            .trivy_cache_dir
            .join(format!(".staging-{}-{seq}", std::process::id()));
        std::fs::create_dir_all(&staging)
            .map_err(|e| TrivyError::io(format!("creating {}", staging.display()), e))?;
        let result = self.download_into(&staging).await;
        let result = match result {
            Ok(()) => {
                let _exclusive = self.db_lock.write().await;
                replace(&staging.join("db"), &cfg.db_dir()).and_then(|()| self.metadata())
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&staging);
        match &result {
            Ok(meta) => tracing::info!(updated_at = %meta.updated_at, "trivy DB updated"),
            Err(e) => tracing::warn!(error = %e, "trivy DB update failed"),
        }
        result.map(DbUpdate::Updated)
    }

    async fn download_into(&self, staging: &Path) -> Result<(), TrivyError> {
        let cfg = &self.config;
        let mut args: Vec<OsString> = vec![
            "image".into(),
            "--download-db-only".into(),
            "--cache-dir".into(),
            staging.as_os_str().to_owned(),
            "--no-progress".into(),
            "--skip-version-check".into(),
            "--disable-telemetry".into(),
        ];
        if !cfg.db_repository.is_empty() {
            args.push("--db-repository".into());
            args.push(cfg.db_repository.join(",").into());
        }
        if !cfg.java_db_repository.is_empty() {
            args.push("--java-db-repository".into());
            args.push(cfg.java_db_repository.join(",").into());
        }
        let _permit = self
            .processes
            .acquire()
            .await
            .map_err(|_| TrivyError::Cancelled)?;
        process::run(
            &cfg.trivy_bin,
            &args,
            &[],
            cfg.trivy_timeout,
            &self.shutdown,
            cfg.stderr_tail_bytes,
        )
        .await
        .map(|_| ())
    }

    /// Starts a background DB download when one is due: no usable DB yet, or
    /// `--db-update-interval` has passed since the last one. Does nothing with `--skip-db-update`
    /// or while a download runs. Needs a Tokio runtime.
    pub(crate) fn start_update_if_due(self: &Arc<Self>) {
        let cfg = &self.config;
        if cfg.skip_db_update || !cfg.wants_db() {
            return;
        }
        let last = self.last_update.lock().ok().and_then(|l| *l);
        let due = match (last, cfg.db_update_interval) {
            // Never tried: download when there is no usable DB, or when periodic updates are on.
            (None, interval) => interval.is_some() || self.metadata().is_err(),
            (Some(at), Some(interval)) => at.elapsed() >= interval,
            // Tried once without an interval: retry a missing DB every 10 minutes.
            (Some(at), None) => {
                self.metadata().is_err() && at.elapsed() >= Duration::from_secs(600)
            }
        };
        if !due || self.updating.try_lock().is_err() {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let _ = this.update_now().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_rejects_missing_garbage_and_accepts_bolt_magic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path();
        assert!(matches!(check(db), Err(TrivyError::DbUnusable(_))));
        std::fs::write(db.join("metadata.json"), b"not json").expect("write");
        assert!(matches!(check(db), Err(TrivyError::DbUnusable(_))));
        std::fs::write(
            db.join("metadata.json"),
            br#"{"Version":2,"NextUpdate":"2999-01-01T00:00:00Z","UpdatedAt":"2024-05-01T00:00:00Z","DownloadedAt":"2024-05-01T00:00:00Z"}"#,
        )
        .expect("write");
        assert!(matches!(check(db), Err(TrivyError::DbUnusable(_))));
        std::fs::write(db.join("trivy.db"), [0u8; 4096]).expect("write");
        let err = check(db).expect_err("zeros are no bolt file");
        assert!(err.to_string().contains("bad magic"), "{err}");
        let mut page = vec![0u8; 4096];
        page[16..20].copy_from_slice(&BOLT_MAGIC.to_le_bytes());
        std::fs::write(db.join("trivy.db"), page).expect("write");
        let meta = check(db).expect("usable");
        assert_eq!(meta.version, 2);
        assert_eq!(meta.updated_at, "2024-05-01T00:00:00Z");
    }
}
