//! One update cycle and the loop that runs it every `--signatures-interval`.
//!
//! 1. Adopt what the state file says is installed, once clamd is seen detecting its probe (a
//!    restart of the plugin serves at once, even while the registry is down).
//! 2. Resolve the tag. An outage or a missing tag keeps the current set. The current digest, or
//!    one that failed before, is left alone.
//! 3. Check the artifact (type, media types, safe unique names, sizes), download every file into
//!    `.staging` verifying size and digest, add the probe, swap, `RELOAD`, and wait until clamd
//!    detects the new probe. Only then does the engine version name the new artifact.
//! 4. On any failure: the old files back, `RELOAD`, and the old probe awaited; until it is seen
//!    the engine version stays one-off (never cached).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sidescan_oci::artifact::{clamav::Database, download};
use sidescan_oci::{Error as OciError, Registry};

use super::files::{Installed, PROBE_FILE, probe};
use super::{Signatures, short};
use crate::protocol::Verdict;

/// How often clamd is probed while it loads a set.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Why an update did not happen.
#[derive(Debug, thiserror::Error)]
pub(super) enum UpdateError {
    /// The registry could not be asked (outage, auth): nothing changed.
    #[error("registry: {0}")]
    Registry(#[source] OciError),
    /// The tag does not exist.
    #[error("{0} does not exist")]
    Missing(String),
    /// The artifact is not a usable ClamAV database, or a file failed verification.
    #[error("artifact {digest} refused: {why}")]
    Artifact {
        /// Its digest.
        digest: String,
        /// Why.
        why: String,
    },
    /// Writing the signature directory failed.
    #[error("signature directory: {0}")]
    Disk(#[source] std::io::Error),
    /// clamd did not load the new set in time (it refused a file: see clamd's log).
    #[error(
        "clamd did not load artifact {digest} within {}: it refused the database (see clamd's log) or is too slow (--signatures-reload-timeout)",
        humantime::format_duration(*after)
    )]
    NotLoaded {
        /// Its digest.
        digest: String,
        /// The timeout.
        after: Duration,
    },
}

impl Signatures {
    /// Runs a cycle now and then every `--signatures-interval`.
    pub(super) async fn run(self: Arc<Self>) {
        loop {
            self.cycle().await;
            tokio::time::sleep(self.config.signatures_interval).await;
        }
    }

    /// One cycle; failures are logged and recorded, never fatal.
    pub(super) async fn cycle(&self) {
        if self.state().current.is_none() {
            self.adopt().await;
        }
        match self.update().await {
            Ok(None) => {}
            Ok(Some(installed)) => {
                tracing::info!(digest = %installed.digest, version = ?installed.version,
                    files = installed.files.len(), "clamd serves the new signatures");
                self.state().last_error = None;
            }
            Err(e) => {
                match &e {
                    UpdateError::Registry(_) | UpdateError::Missing(_) => {
                        tracing::warn!(reference = %self.reference, error = %e,
                            "signature update check failed: keeping the current signatures");
                    }
                    _ => tracing::error!(reference = %self.reference, error = %e,
                        "signature update failed: keeping the current signatures"),
                }
                self.state().last_error = Some(e.to_string());
            }
        }
    }

    /// Takes what the state file names as current once clamd detects its probe.
    async fn adopt(&self) {
        let Some(installed) = self.dir.installed() else {
            return;
        };
        if self.serves(&installed.digest).await {
            tracing::info!(digest = %installed.digest, "clamd serves the installed signatures");
            let mut state = self.state();
            state.current = Some(installed);
            state.updating = None;
        }
    }

    /// Whether clamd detects the probe of `digest` now.
    async fn serves(&self, digest: &str) -> bool {
        let (bytes, name) = probe(digest);
        matches!(self.clamd.scan_sample(&bytes).await,
            Ok(Verdict::Found(names)) if names.iter().any(|n| n.starts_with(&name)))
    }

    /// Waits until clamd detects the probe of `digest`, at most `timeout`.
    async fn await_probe(&self, digest: &str, timeout: Duration) -> bool {
        let started = Instant::now();
        loop {
            if self.serves(digest).await {
                return true;
            }
            if started.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    fn registry(&self) -> Result<Registry, OciError> {
        let host = &self.reference.registry;
        let creds = self
            .config
            .credential_sources()
            .resolve(host, Some(&self.reference.repository))?;
        let insecure = self.reference.is_loopback()
            || self.config.insecure_registries.iter().any(|r| r == host);
        Registry::new(host, creds, insecure)
    }

    /// Resolves the tag and installs a new artifact; `Ok(None)` when nothing was to do.
    async fn update(&self) -> Result<Option<Installed>, UpdateError> {
        let registry = self.registry().map_err(UpdateError::Registry)?;
        let repo = &self.reference.repository;
        let manifest = registry
            .manifest(repo, self.reference.reference())
            .await
            .map_err(UpdateError::Registry)?
            .ok_or_else(|| UpdateError::Missing(self.reference.to_string()))?;
        {
            let mut state = self.state();
            state.last_check = Some(SystemTime::now());
            if state.current.as_ref().map(|c| c.digest.as_str()) == Some(manifest.digest.as_str()) {
                state.last_error = None;
                return Ok(None);
            }
            if state.refused.as_deref() == Some(manifest.digest.as_str()) {
                // Refused before: its error stays on show until the tag moves.
                return Ok(None);
            }
        }
        let digest = manifest.digest.clone();
        let started = Instant::now();
        let outcome = self.install(&registry, &manifest).await;
        match outcome {
            Ok(installed) => {
                tracing::info!(%digest, seconds = started.elapsed().as_secs_f64(),
                    "signature update done");
                let mut state = self.state();
                state.current = Some(installed.clone());
                state.updating = None;
                state.refused = None;
                Ok(Some(installed))
            }
            Err(e) => {
                if !matches!(e, UpdateError::Registry(_)) {
                    self.state().refused = Some(digest);
                }
                Err(e)
            }
        }
    }

    async fn install(
        &self,
        registry: &Registry,
        manifest: &sidescan_oci::registry::Manifest,
    ) -> Result<Installed, UpdateError> {
        let digest = manifest.digest.clone();
        let refuse = |why: String| UpdateError::Artifact {
            digest: digest.clone(),
            why,
        };
        let db = Database::parse(manifest).map_err(|e| refuse(e.to_string()))?;
        if db.files.iter().any(|f| f.name == PROBE_FILE) {
            return Err(refuse(format!("{PROBE_FILE} is reserved for the plugin")));
        }
        tracing::info!(%digest, files = db.files.len(), "downloading new signatures");
        let staging = {
            let dir = self.dir.clone();
            blocking(move || dir.fresh_staging()).await?
        };
        for file in &db.files {
            if let Err(e) = download(
                registry,
                &self.reference.repository,
                file,
                &staging,
                &|_| {},
            )
            .await
            {
                let dir = self.dir.clone();
                let _ = blocking(move || dir.drop_staging()).await;
                return Err(match e {
                    e if e.is_transient() => UpdateError::Registry(e),
                    e => refuse(format!("{}: {e}", file.name)),
                });
            }
        }
        let dir = self.dir.clone();
        let probe_digest = digest.clone();
        blocking(move || {
            dir.stage_probe(&probe_digest)?;
            dir.swap()
        })
        .await?;
        // From here until clamd is seen serving a known set, nothing is cached.
        let id = format!(
            "{}.{}",
            short(&digest),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        self.state().updating = Some(id);
        let timeout = self.config.signatures_reload_timeout;
        let loaded = match self.clamd.reload().await {
            Ok(()) => self.await_probe(&digest, timeout).await,
            Err(e) => {
                tracing::warn!(error = %e, "clamd RELOAD failed");
                false
            }
        };
        if !loaded {
            self.roll_back().await;
            return Err(UpdateError::NotLoaded {
                digest,
                after: timeout,
            });
        }
        let installed = Installed {
            digest,
            version: db.version.clone(),
            created: db.created.clone(),
            installed_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            files: db.files.iter().map(|f| f.name.clone()).collect(),
        };
        let dir = self.dir.clone();
        let record = installed.clone();
        blocking(move || dir.commit(&record)).await?;
        Ok(installed)
    }

    /// Puts the previous files back and waits until clamd serves them again; the engine version
    /// stays one-off until it does.
    async fn roll_back(&self) {
        let dir = self.dir.clone();
        if let Err(e) = blocking(move || dir.restore()).await {
            tracing::error!(error = %e, "restoring the previous signatures failed");
        }
        let previous = self.state().current.as_ref().map(|c| c.digest.clone());
        let Some(previous) = previous else {
            return;
        };
        if let Err(e) = self.clamd.reload().await {
            tracing::warn!(error = %e, "clamd RELOAD of the previous signatures failed");
        }
        if self
            .await_probe(&previous, self.config.signatures_reload_timeout)
            .await
        {
            tracing::info!(digest = %previous, "clamd serves the previous signatures again");
            self.state().updating = None;
        } else {
            tracing::error!(digest = %previous,
                "clamd does not confirm the previous signatures: results are not cached");
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, UpdateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UpdateError::Disk(std::io::Error::other(e)))?
        .map_err(UpdateError::Disk)
}
