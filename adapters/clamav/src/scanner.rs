//! [`ClamavScanner`]: the [`Scanner`] implementation, and its flags ([`ClamavConfig`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use sha2::{Digest, Sha256};
use sidescan_proto::mime;
use sidescan_sdk::prelude::*;

use crate::client::Clamd;
use crate::error::ClamavError;
use crate::protocol::{ClamdAddr, VersionInfo};
use crate::scan::{FileScans, ScanPolicy};
use crate::signatures::{Signatures, SignaturesConfig};

/// Artifact (config / artifactType) media types advertised in `Capability.consumes`, besides
/// image manifests and indexes. clamd scans any bytes, so every blob of such an artifact is
/// scanned as one file: generic binaries, tarballs and the types ORAS and Helm push.
pub const ARTIFACT_MEDIA_TYPES: &[&str] = &[
    "application/octet-stream",
    "application/vnd.oci.empty.v1+json",
    "application/vnd.unknown.config.v1+json",
    "application/vnd.unknown.artifact.v1",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.cncf.helm.config.v1+json",
];

/// The clamd-specific flags of `sidescan-clamav` (flatten beside [`sidescan_sdk::ServerConfig`]).
#[derive(Debug, Clone, clap::Args)]
pub struct ClamavConfig {
    /// clamd address: unix:/path/to/clamd.sock or tcp://127.0.0.1:3310.
    #[arg(
        long,
        env = "SIDESCAN_CLAMD",
        default_value = "unix:/run/clamav/clamd.ctl"
    )]
    pub clamd: ClamdAddr,

    /// Concurrent connections to clamd (files scanned at once, across all scans). Keep it below
    /// clamd's MaxThreads.
    #[arg(long, env = "SIDESCAN_CLAMD_CONNECTIONS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub clamd_connections: u32,

    /// Longest clamd may stall on one file (accepting the connection or a chunk, or answering
    /// after the last byte) before the scan fails with UNAVAILABLE.
    #[arg(long, env = "SIDESCAN_FILE_TIMEOUT", default_value = "2m", value_parser = humantime::parse_duration)]
    pub file_timeout: Duration,

    /// Severity of malware findings.
    #[arg(long, env = "SIDESCAN_MALWARE_SEVERITY", default_value = "critical", value_parser = parse_severity)]
    pub malware_severity: Severity,

    /// clamd's StreamMaxLength: larger files are scanned with SCAN from a scratch copy when clamd
    /// is local, or reported as not scanned.
    #[arg(long, env = "SIDESCAN_STREAM_MAX_LENGTH", default_value = "100MiB")]
    pub stream_max_length: ByteSize,

    /// clamd's MaxFileSize: an OK for a larger file is reported as not scanned (clamd skips such
    /// files silently unless AlertExceedsMax is yes).
    #[arg(long, env = "SIDESCAN_CLAMD_MAX_FILE_SIZE", default_value = "100MiB")]
    pub clamd_max_file_size: ByteSize,

    /// Whether clamd shares this filesystem (for SCAN of large files). Default: yes for a unix:
    /// address, no for tcp://.
    #[arg(long, env = "SIDESCAN_CLAMD_LOCAL", num_args = 0..=1, default_missing_value = "true")]
    pub clamd_local: Option<bool>,

    /// Pass each file to a clamd on a Unix socket as a file descriptor (an anonymous memory file,
    /// clamd's FILDES) instead of streaming it (INSTREAM), which spares clamd its temporary copy
    /// of every file (about 2x faster). Needs a unix: address and --clamd-local not false; a
    /// clamd that refuses descriptors gets INSTREAM again. On by default; =false to stream.
    #[arg(long, env = "SIDESCAN_CLAMD_FD_PASSING", num_args = 0..=1, default_missing_value = "true",
          default_value_t = true, action = clap::ArgAction::Set)]
    pub clamd_fd_passing: bool,

    /// Timeout of PING and VERSION (health checks).
    #[arg(long, env = "SIDESCAN_CLAMD_PING_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub clamd_ping_timeout: Duration,

    /// How often the signature version is re-read from clamd (it is also re-read when clamd
    /// comes back after an outage).
    #[arg(long, env = "SIDESCAN_VERSION_REFRESH", default_value = "60s", value_parser = humantime::parse_duration)]
    pub version_refresh: Duration,

    /// clamd's DatabaseDirectory, when readable here: its files' names, sizes and times become
    /// part of the engine version (custom signatures carry no version of their own), and a change
    /// makes clamd RELOAD.
    #[arg(long, env = "SIDESCAN_CLAMD_DATABASE_DIR")]
    pub clamd_database_dir: Option<PathBuf>,

    /// After a database change and RELOAD, how long the engine version stays a one-off
    /// "reloading" key (so nothing scanned while clamd may still use its old signatures is
    /// cached under the new key) before it switches to the new database's key; the switch also
    /// waits for clamd to answer VERSION. clamd gives no signal when a RELOAD is done, so keep
    /// this above clamd's database load time.
    #[arg(long, env = "SIDESCAN_CLAMD_RELOAD_SETTLE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub clamd_reload_settle: Duration,

    /// More artifact media types to accept (repeat or comma-separate), besides the built-in list.
    #[arg(
        long = "artifact-type",
        env = "SIDESCAN_ARTIFACT_TYPES",
        value_delimiter = ','
    )]
    pub artifact_types: Vec<String>,

    /// Signature updates from a registry.
    #[command(flatten)]
    pub signatures: SignaturesConfig,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse::<Severity>().map_err(|e| e.message().to_owned())
}

impl ClamavConfig {
    /// A configuration with every default and clamd at `addr`.
    pub fn new(addr: ClamdAddr) -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            config: ClamavConfig,
        }
        match <Only as clap::Parser>::try_parse_from(["sidescan-clamav"]) {
            Ok(only) => ClamavConfig {
                clamd: addr,
                ..only.config
            },
            // Only a bad SIDESCAN_* variable can fail here; fall back to built-in defaults.
            Err(_) => ClamavConfig {
                clamd: addr,
                clamd_connections: 4,
                file_timeout: Duration::from_secs(120),
                malware_severity: Severity::Critical,
                stream_max_length: ByteSize::mib(100),
                clamd_max_file_size: ByteSize::mib(100),
                clamd_local: None,
                clamd_fd_passing: true,
                clamd_ping_timeout: Duration::from_secs(1),
                version_refresh: Duration::from_secs(60),
                clamd_database_dir: None,
                clamd_reload_settle: Duration::from_secs(10),
                artifact_types: Vec::new(),
                signatures: SignaturesConfig::default(),
            },
        }
    }

    /// Whether clamd can open files we write (unix socket, or `--clamd-local`).
    pub fn local(&self) -> bool {
        self.clamd_local
            .unwrap_or(matches!(self.clamd, ClamdAddr::Unix(_)))
    }

    /// The flags that change what a layer's result says, as one string (e.g.
    /// `severity=critical;stream-max-length=104857600;clamd-max-file-size=104857600;local=true`);
    /// its hash is part of [`Scanner::engine_version`], so a result made under one policy is
    /// never served under another. Flags that only change how content reaches clamd (fd passing,
    /// connections, timeouts) or what is accepted (artifact types) are not in it.
    pub fn verdict_policy(&self) -> String {
        format!(
            "severity={};stream-max-length={};clamd-max-file-size={};local={}",
            self.malware_severity,
            self.stream_max_length.as_u64(),
            self.clamd_max_file_size.as_u64(),
            self.local()
        )
    }
}

#[derive(Debug, Default)]
struct EngineState {
    /// Last PING outcome (`None` before the first).
    up: Option<bool>,
    /// Whether clamd passed the limits self-check ([`crate::selfcheck`]) since it last came up.
    limits_alert: bool,
    /// The last self-check failure logged (each new reason is logged once).
    self_check_error: Option<String>,
    /// Last VERSION and when it was read.
    version: Option<(VersionInfo, Instant)>,
    /// Fingerprint of the database directory at the last refresh.
    db_fingerprint: Option<String>,
    /// A RELOAD sent for a database change that may not be done yet: when, and a unique id
    /// (wall-clock nanoseconds and process id).
    reload: Option<(Instant, String)>,
}

/// The ClamAV plugin: scans every regular file of every layer (and every blob of non-image
/// artifacts) with clamd.
#[derive(Debug)]
pub struct ClamavScanner {
    clamd: Clamd,
    policy: Arc<ScanPolicy>,
    config: ClamavConfig,
    /// Short hash of [`ClamavConfig::verdict_policy`], part of the engine version.
    policy_hash: String,
    state: Mutex<EngineState>,
    /// Signature updates from a registry (`--signatures-from`).
    signatures: Option<Arc<Signatures>>,
}

impl ClamavScanner {
    /// A scanner with `config`. Does not contact clamd: readiness does.
    pub fn new(config: ClamavConfig) -> Self {
        let clamd = Clamd::new(
            config.clamd.clone(),
            config.clamd_connections as usize,
            config.file_timeout,
            config.clamd_ping_timeout,
        )
        .with_fd_passing(config.local() && config.clamd_fd_passing);
        let policy = Arc::new(ScanPolicy {
            stream_max_length: config.stream_max_length.as_u64(),
            max_file_size: config.clamd_max_file_size.as_u64(),
            local_scan: config.local(),
            severity: config.malware_severity,
        });
        let policy_hash = hex::encode(&Sha256::digest(config.verdict_policy().as_bytes())[..4]);
        let signatures = Signatures::new(&config.signatures, clamd.clone());
        Self {
            clamd,
            policy,
            config,
            policy_hash,
            state: Mutex::new(EngineState::default()),
            signatures,
        }
    }

    /// The clamd client (and its connection pool).
    pub fn clamd(&self) -> &Clamd {
        &self.clamd
    }

    /// A new batch of file scans for `ctx` (what [`Scanner::scan_layer`] uses).
    pub fn file_scans(&self, ctx: &ScanContext) -> FileScans {
        FileScans::new(self.clamd.clone(), Arc::clone(&self.policy), ctx)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, EngineState> {
        // The state is plain data; a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current VERSION, re-read when stale, after an outage, or when `force`.
    async fn current_version(&self, force: bool) -> Result<VersionInfo, ClamavError> {
        if !force {
            let state = self.state();
            if let Some((v, at)) = &state.version
                && at.elapsed() < self.config.version_refresh
            {
                return Ok(v.clone());
            }
        }
        let version = self.clamd.version().await;
        let mut state = self.state();
        match version {
            Ok(v) => {
                state.version = Some((v.clone(), Instant::now()));
                Ok(v)
            }
            Err(e) => {
                state.version = None;
                Err(e)
            }
        }
    }

    /// Refreshes the database fingerprint; sends RELOAD when it changed since the last look.
    async fn refresh_db_fingerprint(&self) -> Option<String> {
        let dir = self.config.clamd_database_dir.clone()?;
        let fingerprint = tokio::task::spawn_blocking(move || db_fingerprint(&dir))
            .await
            .ok()
            .flatten()?;
        let changed = {
            let mut state = self.state();
            let previous = state.db_fingerprint.replace(fingerprint.clone());
            previous.is_some_and(|p| p != fingerprint)
        };
        if changed {
            tracing::info!("clamd database directory changed: asking clamd to RELOAD");
            {
                // Until the reload is known done, the key is a one-off: results of scans that
                // clamd may still run with its old signatures are never stored under the new
                // database's key.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let id = format!("{nanos}.{}", std::process::id());
                self.state().reload = Some((Instant::now(), id));
            }
            if let Err(e) = self.clamd.reload().await {
                tracing::warn!(error = %e, "clamd RELOAD failed");
            }
        }
        Some(fingerprint)
    }

    /// `None` once the last RELOAD is taken as done (the settle time passed and clamd answers
    /// VERSION), else the id of the RELOAD still settling.
    async fn pending_reload(&self) -> Option<String> {
        let (sent, n) = self.state().reload.clone()?;
        if sent.elapsed() < self.config.clamd_reload_settle || self.clamd.version().await.is_err() {
            return Some(n);
        }
        let mut state = self.state();
        if state.reload.as_ref().is_some_and(|(_, m)| *m == n) {
            state.reload = None;
            tracing::info!("clamd reload settled: switching to the new database's cache key");
        }
        state.reload.as_ref().map(|(_, m)| m.clone())
    }
}

impl ClamavScanner {
    /// Runs the limits self-check ([`crate::selfcheck`]) and records its outcome; logs each new
    /// failure reason once.
    async fn self_check(&self) -> Result<(), String> {
        let outcome = crate::selfcheck::check_limits_alert(&self.clamd).await;
        let mut state = self.state();
        match &outcome {
            Ok(()) => {
                state.limits_alert = true;
                if state.self_check_error.take().is_some() {
                    tracing::info!("clamd self-check passed: it alerts on exceeded limits");
                }
            }
            Err(reason) => {
                if state.self_check_error.as_ref() != Some(reason) {
                    tracing::error!(clamd = %self.clamd.addr(), %reason, "clamd self-check failed: not serving");
                    state.self_check_error = Some(reason.clone());
                }
            }
        }
        outcome
    }
}

/// Names, sizes and modification times of the files of a database directory, hashed.
fn db_fingerprint(dir: &std::path::Path) -> Option<String> {
    let mut files: Vec<(String, u64, u128)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            if !meta.is_file() {
                return None;
            }
            let mtime = meta
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_nanos();
            Some((
                e.file_name().to_string_lossy().into_owned(),
                meta.len(),
                mtime,
            ))
        })
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    for (name, len, mtime) in &files {
        hash.update(format!("{name}\0{len}\0{mtime}\n").as_bytes());
    }
    Some(hex::encode(&hash.finalize()[..6]))
}

#[sidescan_sdk::async_trait]
impl Scanner for ClamavScanner {
    fn info(&self) -> ScannerInfo {
        let mut consumes: Vec<String> = [
            mime::OCI_MANIFEST,
            mime::OCI_INDEX,
            mime::DOCKER_MANIFEST,
            mime::DOCKER_MANIFEST_LIST,
        ]
        .into_iter()
        .chain(ARTIFACT_MEDIA_TYPES.iter().copied())
        .map(str::to_owned)
        .collect();
        for extra in &self.config.artifact_types {
            if !extra.trim().is_empty() && !consumes.contains(extra) {
                consumes.push(extra.trim().to_owned());
            }
        }
        ScannerInfo {
            name: "sidescan-clamav".into(),
            vendor: "sidescan".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![Capability {
                kind: "malware".into(),
                consumes,
                produces: vec![mime::MALWARE_REPORT.into()],
            }],
        }
    }

    fn input(&self) -> Input {
        Input::PerLayer
    }

    async fn properties(&self) -> BTreeMap<String, String> {
        let mut props = BTreeMap::new();
        if let Ok(v) = self.current_version(false).await {
            props.insert("clamav.version".into(), v.engine);
            props.insert("clamav.signature_version".into(), v.signatures);
            props.insert("clamav.signature_date".into(), v.signature_date);
        }
        if let Some(signatures) = &self.signatures {
            props.extend(signatures.properties());
        }
        props
    }

    async fn readiness(&self) -> Readiness {
        if let Some(signatures) = &self.signatures {
            signatures.start();
        }
        match self.clamd.ping().await {
            Err(e) => {
                let mut state = self.state();
                if state.up != Some(false) {
                    tracing::warn!(error = %e, "clamd is not answering");
                }
                state.up = Some(false);
                // clamd may come back with other signatures and another configuration: re-read
                // VERSION and re-run the self-check then.
                state.version = None;
                state.limits_alert = false;
                Readiness::NotReady(format!("clamd not answering PING: {e}"))
            }
            Ok(()) => {
                let recovered = {
                    let mut state = self.state();
                    let recovered = state.up != Some(true);
                    state.up = Some(true);
                    recovered
                };
                if recovered {
                    tracing::info!(clamd = %self.clamd.addr(), "clamd answers PING");
                }
                if !self.state().limits_alert
                    && let Err(reason) = self.self_check().await
                {
                    return Readiness::NotReady(reason);
                }
                // Best effort: engine_version re-reads it on demand anyway.
                let _ = self.current_version(recovered).await;
                self.refresh_db_fingerprint().await;
                match self.signatures.as_ref().and_then(|s| s.not_ready()) {
                    Some(why) => Readiness::NotReady(why),
                    None => Readiness::Ready,
                }
            }
        }
    }

    async fn engine_version(&self) -> Result<String, Error> {
        let version = self.current_version(false).await?;
        let mut key = version.key();
        key.push_str("+policy.");
        key.push_str(&self.policy_hash);
        if let Some(signatures) = &self.signatures {
            key.push('+');
            key.push_str(&signatures.engine_key()?);
        }
        let known = self.state().db_fingerprint.clone();
        let fingerprint = match known {
            Some(f) => Some(f),
            None => self.refresh_db_fingerprint().await,
        };
        if let Some(f) = fingerprint {
            key.push_str("+db.");
            key.push_str(&f);
            if let Some(n) = self.pending_reload().await {
                key.push_str(".reloading.");
                key.push_str(&n);
            }
        }
        Ok(key)
    }

    async fn scan_layer(
        &self,
        layer: &mut Layer,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        let mut scans = self
            .file_scans(ctx)
            .with_layer_digest(layer.info.digest.clone());
        loop {
            let next = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Err(ClamavError::Cancelled.into()),
                next = layer.next_entry() => next?,
            };
            let Some(mut entry) = next else { break };
            if entry.kind != EntryKind::File {
                continue;
            }
            let path = entry.path.clone();
            let size = entry.size;
            scans.submit(&path, size, &mut entry).await?;
        }
        Ok(scans.finish().await?)
    }

    async fn scan_artifact_blob(
        &self,
        blob: &mut ArtifactBlob,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        let mut scans = self.file_scans(ctx).with_layer_digest(blob.digest.clone());
        let path = blob.title.clone().unwrap_or_else(|| blob.digest.clone());
        let size = blob.size;
        scans.submit(&path, size, &mut *blob).await?;
        Ok(scans.finish().await?)
    }
}
