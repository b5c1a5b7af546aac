//! [`TrivyAdapter`]: the [`Scanner`] implementation.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sidescan_proto::mime;
use sidescan_sdk::prelude::*;
use sidescan_sdk::{Phase, ProgressEvent, RegistryCredentials, RemoteImage, ReportDocument};
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::{ImageSource, TrivyConfig};
pub use crate::db::DbUpdate;
use crate::db::{DbManager, DbMetadata};
use crate::error::TrivyError;
use crate::layer_cache::LayerCaches;
use crate::process;
use crate::report;

/// Notice code: Trivy detected no OS, so no OS package was checked for vulnerabilities.
pub const NOTICE_OS_NOT_DETECTED: &str = "os-not-detected";
/// Notice code: the image's OS is past its end of life; advisories may be incomplete.
pub const NOTICE_OS_END_OF_LIFE: &str = "os-end-of-life";

struct Inner {
    config: Arc<TrivyConfig>,
    /// Bounds concurrent Trivy processes (`--max-trivy-processes`), DB downloads included.
    processes: Arc<Semaphore>,
    /// The vulnerability DB: readiness, the scans' lock, downloads.
    db: Arc<DbManager>,
    /// Trivy's per-layer caches, one per process slot; `None` with `--layer-cache-max-size 0`.
    layer_caches: Option<LayerCaches>,
    /// `trivy --version`, once known.
    version: OnceCell<String>,
}

/// The Trivy scanner plugin: runs `trivy image` on the SDK's verified OCI layout.
///
/// Cheap to clone (shared state).
#[derive(Clone)]
pub struct TrivyAdapter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TrivyAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrivyAdapter")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl TrivyAdapter {
    /// An adapter with `config`. Starts nothing: the first [`Scanner::readiness`] poll checks the
    /// binary and the DB and, when allowed, starts DB downloads.
    pub fn new(config: TrivyConfig) -> Self {
        let permits = usize::try_from(config.max_trivy_processes.max(1)).unwrap_or(1);
        let config = Arc::new(config);
        let processes = Arc::new(Semaphore::new(permits));
        let db = Arc::new(DbManager::new(Arc::clone(&config), Arc::clone(&processes)));
        let max_bytes = config.layer_cache_max_size.as_u64();
        let layer_caches =
            (max_bytes > 0).then(|| LayerCaches::new(&config.trivy_cache_dir, permits, max_bytes));
        Self {
            inner: Arc::new(Inner {
                config,
                processes,
                db,
                layer_caches,
                version: OnceCell::new(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TrivyConfig {
        &self.inner.config
    }

    /// Trivy's version (`0.76.0`), from `trivy --version`; remembered once known.
    ///
    /// The probe runs in a task of its own: a caller that gives up on it (a readiness poll past
    /// the SDK's time limit, which is the health interval) does not cancel it, so a slow first
    /// `trivy --version` on a loaded machine still completes and is remembered, instead of being
    /// restarted and cut short on every poll.
    pub async fn trivy_version(&self) -> Result<String, TrivyError> {
        if let Some(version) = self.inner.version.get() {
            return Ok(version.clone());
        }
        let this = self.clone();
        tokio::spawn(async move { this.probe_version().await })
            .await
            .map_err(|e| TrivyError::BadOutput(format!("`trivy --version` probe failed: {e}")))?
    }

    async fn probe_version(&self) -> Result<String, TrivyError> {
        self.inner
            .version
            .get_or_try_init(|| async {
                let out = self
                    .run_trivy(
                        vec!["--version".into()],
                        Duration::from_secs(30),
                        &CancellationToken::new(),
                    )
                    .await?;
                let text = String::from_utf8_lossy(&out.stdout);
                text.lines()
                    .find_map(|l| l.trim().strip_prefix("Version:"))
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        TrivyError::BadOutput(format!("no version in `trivy --version`: {text:?}"))
                    })
            })
            .await
            .cloned()
    }

    /// The vulnerability DB's metadata, if the DB is usable.
    pub fn db_metadata(&self) -> Result<DbMetadata, TrivyError> {
        self.inner.db.metadata()
    }

    /// Downloads a fresh vulnerability DB (`trivy image --download-db-only`) into a staging
    /// directory and swaps it in while no scan runs. Never overlaps itself: a call while another
    /// runs returns [`DbUpdate::AlreadyRunning`] at once.
    pub async fn update_db(&self) -> Result<DbUpdate, TrivyError> {
        self.inner.db.update_now().await
    }

    /// Starts a background DB download when one is due: no usable DB yet, or
    /// `--db-update-interval` has passed since the last one. Does nothing with `--skip-db-update`
    /// or while a download runs. Needs a Tokio runtime.
    pub fn schedule_db_update_if_due(&self) {
        self.inner.db.start_update_if_due();
    }

    /// Flags every `trivy image` run shares: offline, no self-updates, the configured scanners
    /// and filters. `layer_cache` is the run's slot directory (Trivy's file-system cache), or
    /// `None` for the in-memory cache in `--trivy-cache-dir`.
    fn scan_args(&self, layer_cache: Option<&Path>) -> Vec<OsString> {
        let cfg = &self.inner.config;
        let (cache_dir, backend) = match layer_cache {
            Some(dir) => (dir, "fs"),
            None => (cfg.trivy_cache_dir.as_path(), "memory"),
        };
        let mut args: Vec<OsString> = vec![
            "image".into(),
            "--cache-dir".into(),
            cache_dir.as_os_str().to_owned(),
            "--cache-backend".into(),
            backend.into(),
            "--skip-db-update".into(),
            "--skip-java-db-update".into(),
            "--skip-check-update".into(),
            "--skip-version-check".into(),
            "--skip-vex-repo-update".into(),
            "--disable-telemetry".into(),
            "--no-progress".into(),
            // No ignore file or secret config picked up from the working directory.
            "--ignorefile=".into(),
            "--secret-config=".into(),
            "--timeout".into(),
            format!("{}ms", cfg.trivy_timeout.as_millis().max(1)).into(),
        ];
        if cfg.offline_scan {
            args.push("--offline-scan".into());
        }
        if !cfg.db_repository.is_empty() {
            args.push("--db-repository".into());
            args.push(cfg.db_repository.join(",").into());
        }
        if !cfg.java_db_repository.is_empty() {
            args.push("--java-db-repository".into());
            args.push(cfg.java_db_repository.join(",").into());
        }
        args
    }

    /// Flags that change which findings a scan reports (part of the engine version).
    fn result_flags(&self) -> Vec<OsString> {
        let cfg = &self.inner.config;
        let mut args: Vec<OsString> = vec![
            "--scanners".into(),
            cfg.scanner_list()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
                .into(),
        ];
        let severities = cfg.severity_list();
        if !severities.is_empty() {
            args.push("--severity".into());
            args.push(
                severities
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
                    .into(),
            );
        }
        if cfg.ignore_unfixed {
            args.push("--ignore-unfixed".into());
        }
        args
    }

    async fn run_trivy(
        &self,
        args: Vec<OsString>,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<process::RunOutput, TrivyError> {
        self.run_trivy_with_env(args, &[], timeout, cancel).await
    }

    async fn run_trivy_with_env(
        &self,
        args: Vec<OsString>,
        envs: &[(&str, Option<&str>)],
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<process::RunOutput, TrivyError> {
        let cfg = &self.inner.config;
        process::run(
            &cfg.trivy_bin,
            &args,
            envs,
            timeout,
            cancel,
            cfg.stderr_tail_bytes,
        )
        .await
    }

    /// One `trivy image` run on `image` writing `format` to `output`, within the process bound.
    async fn run_image(
        &self,
        image: TrivyTarget<'_>,
        ctx: &ScanContext,
        mut extra: Vec<OsString>,
        output: &Path,
    ) -> Result<(), TrivyError> {
        let _permit = tokio::select! {
            permit = self.inner.processes.acquire() => permit.map_err(|_| TrivyError::Cancelled)?,
            () = ctx.cancel.cancelled() => return Err(TrivyError::Cancelled),
        };
        let slot = match &self.inner.layer_caches {
            Some(caches) => Some(caches.take()?),
            None => None,
        };
        let mut args = self.scan_args(slot.as_ref().map(|s| s.dir()));
        args.append(&mut extra);
        args.push("--output".into());
        args.push(output.as_os_str().to_owned());
        args.extend(image.source_args());
        let envs = image.credential_env();
        let started = Instant::now();
        let result = self
            .run_trivy_with_env(args, &envs, self.inner.config.trivy_timeout, &ctx.cancel)
            .await;
        tracing::debug!(
            request_id = %ctx.request_id,
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "trivy image run"
        );
        result.map(|_| ())
    }

    /// Scans `image`: findings and notices from the JSON report, plus the SBOM document when
    /// requested. Errors are the adapter's own; [`Scanner::scan_image`] maps them.
    pub async fn scan(
        &self,
        image: TrivyTarget<'_>,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, TrivyError> {
        let cfg = &self.inner.config;
        self.trivy_version().await?;
        let _shared = self.inner.db.lock_for_scan().await?;
        ctx.progress
            .report(ProgressEvent::phase(Phase::Scanning, "trivy image"));
        let json_path = ctx.scratch_dir().join("trivy-report.json");
        let mut extra = self.result_flags();
        extra.extend(["--format".into(), "json".into(), "--list-all-pkgs".into()]);
        self.run_image(image, ctx, extra, &json_path).await?;
        let raw = tokio::fs::read(&json_path)
            .await
            .map_err(|e| TrivyError::io(format!("reading {}", json_path.display()), e))?;
        let parsed = report::parse(&raw)?;

        let mut out = ScanFindings {
            findings: report::findings(&parsed),
            ..ScanFindings::default()
        };
        image.attribute_layers(&mut out.findings);
        if cfg.wants_db() {
            match &parsed.metadata.os {
                None => out.notices.push(Notice::new(
                    NOTICE_OS_NOT_DETECTED,
                    "Trivy detected no operating system: OS packages were not checked for vulnerabilities",
                )),
                Some(os) if os.eosl => out.notices.push(Notice::new(
                    NOTICE_OS_END_OF_LIFE,
                    format!(
                        "{} {} is past its end of life: advisories may be missing",
                        os.family, os.name
                    ),
                )),
                Some(_) => {}
            }
        }

        if ctx.wants_report(mime::SBOM_REPORT) {
            let doc = self.sbom(image, ctx).await;
            if let Err(TrivyError::Cancelled | TrivyError::Timeout(_)) = &doc {
                // The scan as a whole is out of time, not just this report type.
                return doc.map(|_| out);
            }
            out.documents.insert(
                mime::normalize(mime::SBOM_REPORT),
                doc.map_err(sidescan_sdk::Error::from),
            );
        }
        Ok(out)
    }

    /// Renders the SBOM in the media type the request's `sbom_media_type` parameter asks for
    /// (CycloneDX JSON by default, or SPDX JSON). The SBOM is the package inventory: a second
    /// `trivy image` run with `--format cyclonedx` / `spdx-json`, which does no vulnerability
    /// scan (vulnerabilities are in the vulnerability report).
    async fn sbom(
        &self,
        image: TrivyTarget<'_>,
        ctx: &ScanContext,
    ) -> Result<ReportDocument, TrivyError> {
        let params = ctx
            .report_types
            .get(&mime::normalize(mime::SBOM_REPORT))
            .cloned()
            .unwrap_or_default();
        let (media_type, format) = sbom_format(&params)?;
        let path = ctx.scratch_dir().join(format!("trivy-sbom.{format}.json"));
        self.run_image(image, ctx, vec!["--format".into(), format.into()], &path)
            .await?;
        let raw = tokio::fs::read(&path)
            .await
            .map_err(|e| TrivyError::io(format!("reading {}", path.display()), e))?;
        let mut doc = serde_json::from_slice::<serde_json::Value>(&raw)
            .map_err(|e| TrivyError::BadOutput(format!("{format} SBOM is not JSON: {e}")))?;
        // Trivy names the SBOM's subject after what it was given: this scan's private layout
        // path, or the digest-pinned reference. The caller gets the manifest digest instead
        // (stable, and it names the image).
        report::rename_artifact(&mut doc, &image.trivy_name(), image.subject());
        let content = serde_json::to_vec(&doc)
            .map_err(|e| TrivyError::BadOutput(format!("re-encoding the {format} SBOM: {e}")))?;
        Ok(ReportDocument {
            media_type: media_type.to_owned(),
            content,
        })
    }
}

/// What one scan hands Trivy: the SDK's local layout, or a reference Trivy pulls itself.
#[derive(Debug, Clone, Copy)]
pub enum TrivyTarget<'a> {
    /// `trivy image --input <layout_dir>:<layout_ref>` ([`ImageSource::Layout`]).
    Layout(&'a ImageInput),
    /// `trivy image --image-src remote <registry/repo@digest>` ([`ImageSource::Registry`]).
    Remote(&'a RemoteImage),
}

impl<'a> TrivyTarget<'a> {
    /// Names each finding's layer by this image's blob of its diff_id. Trivy reports the digest
    /// it saw when it analysed the layer, which for a layer from its cache is the blob of an
    /// earlier image: the same content, possibly compressed differently.
    fn attribute_layers(self, findings: &mut [Finding]) {
        let layers = match self {
            Self::Layout(image) => &image.layers,
            Self::Remote(image) => &image.layers,
        };
        for finding in findings {
            if let Some(layer) = layers.iter().find(|l| l.diff_id == finding.layer_diff_id) {
                finding.layer_digest.clone_from(&layer.digest);
            }
        }
    }

    /// The `trivy image` arguments naming the image.
    fn source_args(self) -> Vec<OsString> {
        match self {
            Self::Layout(_) => vec!["--input".into(), self.trivy_name().into()],
            Self::Remote(image) => {
                let mut args: Vec<OsString> = vec!["--image-src".into(), "remote".into()];
                if image.plain_http {
                    // Trivy's only way to reach a registry over plain http.
                    args.push("--insecure".into());
                }
                args.push(self.trivy_name().into());
                args
            }
        }
    }

    /// The request's credentials as Trivy's environment variables: `Some` sets one, `None`
    /// removes it, so that credentials in the adapter's own environment (meant for DB downloads)
    /// never reach the scanned image's registry. Layout scans pull nothing and change nothing.
    fn credential_env(self) -> Vec<(&'static str, Option<&'a str>)> {
        let Self::Remote(image) = self else {
            return Vec::new();
        };
        let (user, password, token) = match &image.credentials {
            RegistryCredentials::Anonymous => (None, None, None),
            RegistryCredentials::Basic { username, password } => {
                (Some(username.as_str()), Some(password.as_str()), None)
            }
            RegistryCredentials::Bearer { token } => (None, None, Some(token.as_str())),
        };
        vec![
            ("TRIVY_USERNAME", user),
            ("TRIVY_PASSWORD", password),
            ("TRIVY_REGISTRY_TOKEN", token),
        ]
    }

    /// What Trivy names the artifact in its reports.
    fn trivy_name(self) -> String {
        match self {
            Self::Layout(image) => format!("{}:{}", image.layout_dir.display(), image.layout_ref),
            Self::Remote(image) => image.reference(),
        }
    }

    /// What the caller should see as the SBOM's subject: the manifest digest.
    fn subject(&self) -> &str {
        match self {
            Self::Layout(image) if image.manifest_digest.is_empty() => &image.layout_ref,
            Self::Layout(image) => &image.manifest_digest,
            Self::Remote(image) => &image.manifest_digest,
        }
    }
}

/// The SBOM media type and Trivy `--format` for a request's SBOM parameters.
pub fn sbom_format(
    params: &BTreeMap<String, String>,
) -> Result<(&'static str, &'static str), TrivyError> {
    let wanted = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(mime::SBOM_MEDIA_TYPE_PARAMETER))
        .map(|(_, v)| mime::normalize(v.trim_matches('"')));
    match wanted.as_deref() {
        None | Some("") => Ok((mime::CYCLONEDX_JSON, "cyclonedx")),
        Some(m) if m == mime::CYCLONEDX_JSON => Ok((mime::CYCLONEDX_JSON, "cyclonedx")),
        Some(m) if m == mime::SPDX_JSON => Ok((mime::SPDX_JSON, "spdx-json")),
        Some(other) => Err(TrivyError::InvalidArgument(format!(
            "unsupported {} {other:?}: expected {} or {}",
            mime::SBOM_MEDIA_TYPE_PARAMETER,
            mime::CYCLONEDX_JSON,
            mime::SPDX_JSON
        ))),
    }
}

#[sidescan_sdk::async_trait]
impl Scanner for TrivyAdapter {
    fn info(&self) -> ScannerInfo {
        let mut capabilities = vec![Capability {
            kind: "vulnerability".into(),
            produces: vec![mime::VULNERABILITY_REPORT.into()],
            ..Capability::default()
        }];
        if self
            .inner
            .config
            .scanner_list()
            .contains(&crate::config::TrivyScanner::Secret)
        {
            capabilities.push(Capability {
                kind: "secret".into(),
                produces: vec![mime::VULNERABILITY_REPORT.into()],
                ..Capability::default()
            });
        }
        capabilities.push(Capability {
            kind: "sbom".into(),
            produces: vec![mime::SBOM_REPORT.into()],
            ..Capability::default()
        });
        ScannerInfo {
            name: "sidescan-trivy".into(),
            vendor: "sidescan".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities,
        }
    }

    fn input(&self) -> Input {
        match self.inner.config.image_source {
            ImageSource::Layout => Input::UncompressedLayout,
            ImageSource::Registry => Input::Remote,
        }
    }

    async fn properties(&self) -> BTreeMap<String, String> {
        let mut props = BTreeMap::new();
        if let Ok(v) = self.trivy_version().await {
            props.insert("trivy.version".into(), v);
        }
        props.insert(
            "trivy.scanners".into(),
            self.inner
                .config
                .scanner_list()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        if let Ok(meta) = self.db_metadata() {
            props.insert("trivy.db.version".into(), meta.version.to_string());
            props.insert("trivy.db.updated_at".into(), meta.updated_at);
            props.insert("trivy.db.next_update".into(), meta.next_update);
            props.insert("trivy.db.downloaded_at".into(), meta.downloaded_at);
        }
        props
    }

    async fn readiness(&self) -> Readiness {
        self.schedule_db_update_if_due();
        let bin = &self.inner.config.trivy_bin;
        if find_executable(bin).is_none() {
            return Readiness::NotReady(format!("trivy executable {} not found", bin.display()));
        }
        if let Err(e) = self.trivy_version().await {
            return Readiness::NotReady(e.to_string());
        }
        if let Err(e) = self.inner.db.readiness() {
            return Readiness::NotReady(e.to_string());
        }
        Readiness::Ready
    }

    async fn engine_version(&self) -> Result<String, Error> {
        let mut parts = vec![format!("trivy={}", self.trivy_version().await?)];
        if let Some(db) = self.inner.db.engine_version()? {
            parts.push(db);
        }
        let flags = self
            .result_flags()
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        parts.push(flags);
        if self.inner.config.offline_scan {
            parts.push("--offline-scan".into());
        }
        Ok(parts.join(";"))
    }

    async fn scan_image(
        &self,
        image: &ImageInput,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        Ok(self.scan(TrivyTarget::Layout(image), ctx).await?)
    }

    async fn scan_remote_image(
        &self,
        image: &RemoteImage,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        Ok(self.scan(TrivyTarget::Remote(image), ctx).await?)
    }
}

/// Resolves `bin` like a shell: a path with a `/` as is, a bare name on `PATH`. `None` when no
/// such file exists (checked on every readiness poll, so a removed binary makes the plugin
/// NotReady even after its version was remembered).
pub fn find_executable(bin: &Path) -> Option<std::path::PathBuf> {
    if bin.components().count() > 1 || bin.is_absolute() {
        return bin.is_file().then(|| bin.to_owned());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(bin))
            .find(|p| p.is_file())
    })
}
