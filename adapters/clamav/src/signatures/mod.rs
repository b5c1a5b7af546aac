//! ClamAV signatures from an OCI registry (`--signatures-from REF --signatures-dir DIR`): the
//! artifact format is `sidescan_oci::artifact::clamav`'s. Every `--signatures-interval` the tag
//! is resolved; when its digest changed, every file is downloaded and verified into
//! `DIR/.staging`, put in place ([`files::SignatureDir::swap`]), clamd is sent `RELOAD`, and the
//! new set counts as loaded only once clamd detects the set's own probe signature
//! ([`files::probe`]; clamd's `VERSION` does not change for custom databases and a failed
//! `RELOAD` keeps the old set). Until then the engine version is a one-off "updating" key, so
//! nothing scanned meanwhile is cached; afterwards it names the new artifact, so no result of the
//! old signatures is served. A download, digest, name or load failure puts the old files back
//! (and reloads them); a registry outage changes nothing. The cycle is in `update.rs`.

// Doc comments of the flags are clap's help text, where `[:PORT]` means optional, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

pub mod files;
mod update;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, SystemTime};

use sidescan_oci::CredentialSources;
use sidescan_oci::artifact::ArtifactRef;

use crate::client::Clamd;
use crate::error::ClamavError;
pub use files::{Installed, PROBE_FILE, probe};

/// The flags of signature updates from a registry (flattened into [`crate::ClamavConfig`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SignaturesConfig {
    /// Keep clamd's signatures in step with this ClamAV database artifact
    /// (HOST[:PORT]/REPO:TAG, pushed with `sidescan artifact push clamav-db`); needs
    /// --signatures-dir.
    #[arg(
        long,
        env = "SIDESCAN_SIGNATURES_FROM",
        value_name = "REF",
        requires = "signatures_dir"
    )]
    pub signatures_from: Option<ArtifactRef>,

    /// clamd's DatabaseDirectory (shared with clamd), which the plugin then owns: files not in
    /// the artifact are removed.
    #[arg(
        long,
        env = "SIDESCAN_SIGNATURES_DIR",
        value_name = "DIR",
        requires = "signatures_from",
        conflicts_with = "clamd_database_dir"
    )]
    pub signatures_dir: Option<PathBuf>,

    /// How often the artifact's tag is resolved.
    #[arg(long, env = "SIDESCAN_SIGNATURES_INTERVAL", default_value = "1h",
          value_parser = humantime::parse_duration)]
    pub signatures_interval: Duration,

    /// How long clamd may take to load a new set after RELOAD before it counts as refused (and
    /// the old files are put back).
    #[arg(long, env = "SIDESCAN_SIGNATURES_RELOAD_TIMEOUT", default_value = "5m",
          value_parser = humantime::parse_duration)]
    pub signatures_reload_timeout: Duration,

    /// Health is NOT_SERVING once the installed signatures are older than this (by the
    /// artifact's creation time), i.e. when updates stopped arriving.
    #[arg(long, env = "SIDESCAN_MAX_SIGNATURE_AGE", value_parser = humantime::parse_duration)]
    pub max_signature_age: Option<Duration>,

    /// User name for the signatures' registry (with --registry-password).
    #[arg(long, env = "SIDESCAN_REGISTRY_USERNAME", hide_env_values = true)]
    pub registry_username: Option<String>,

    /// Password for the signatures' registry; prefer the environment variable.
    #[arg(long, env = "SIDESCAN_REGISTRY_PASSWORD", hide_env_values = true)]
    pub registry_password: Option<Secret>,

    /// Bearer token for the signatures' registry.
    #[arg(long, env = "SIDESCAN_REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<Secret>,

    /// Auth file (containers-auth.json or docker config.json) searched before the standard ones
    /// for the signatures' registry.
    #[arg(long, env = "SIDESCAN_REGISTRY_AUTHFILE", value_name = "FILE")]
    pub registry_authfile: Option<PathBuf>,

    /// Registries spoken to over plain http (the server's `--insecure-registry`; loopback
    /// hosts always are).
    #[arg(skip)]
    pub insecure_registries: Vec<String>,
}

/// A password or token: never in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl SignaturesConfig {
    fn credential_sources(&self) -> CredentialSources {
        CredentialSources {
            username: self.registry_username.clone(),
            password: self.registry_password.as_ref().map(|s| s.0.clone()),
            token: self.registry_token.as_ref().map(|s| s.0.clone()),
            auth_file: self.registry_authfile.clone(),
            no_standard_files: false,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// The set clamd is known to serve.
    current: Option<Installed>,
    /// While clamd may be between two sets: a one-off id for the engine version.
    updating: Option<String>,
    /// The last failure (update, registry, load), for health and metadata.
    last_error: Option<String>,
    /// An artifact digest that failed to install: not retried until the tag moves.
    refused: Option<String>,
    /// When the tag was last resolved successfully.
    last_check: Option<SystemTime>,
}

/// Signature updates from a registry, shared by the scanner and its background task.
#[derive(Debug)]
pub struct Signatures {
    config: SignaturesConfig,
    reference: ArtifactRef,
    dir: files::SignatureDir,
    clamd: Clamd,
    state: Mutex<State>,
    started: Once,
}

impl Signatures {
    /// Updates per `config` for the clamd behind `clamd`; `None` without `--signatures-from`.
    pub fn new(config: &SignaturesConfig, clamd: Clamd) -> Option<Arc<Self>> {
        let (Some(reference), Some(dir)) = (&config.signatures_from, &config.signatures_dir) else {
            return None;
        };
        Some(Arc::new(Self {
            config: config.clone(),
            reference: reference.clone(),
            dir: files::SignatureDir::new(dir.clone()),
            clamd,
            state: Mutex::new(State::default()),
            started: Once::new(),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the background updates (once; needs a tokio runtime).
    pub fn start(self: &Arc<Self>) {
        self.started.call_once(|| {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.run().await });
        });
    }

    /// The signatures' part of the engine version: the artifact's digest, plus a one-off id
    /// while clamd may be between two sets. An error while no set is known to be loaded.
    pub fn engine_key(&self) -> Result<String, ClamavError> {
        let state = self.state();
        let current = state.current.as_ref().ok_or_else(|| {
            ClamavError::Signatures(format!("no signatures from {} loaded yet", self.reference))
        })?;
        let mut key = format!("sig.{}", short(&current.digest));
        if let Some(id) = &state.updating {
            key.push_str(".updating.");
            key.push_str(id);
        }
        Ok(key)
    }

    /// Why the plugin must not serve: no set loaded yet, or the set is older than
    /// `--max-signature-age`.
    pub fn not_ready(&self) -> Option<String> {
        let state = self.state();
        let Some(current) = &state.current else {
            let why = state
                .last_error
                .as_deref()
                .unwrap_or("first update running");
            return Some(format!(
                "no signatures from {} loaded yet: {why}",
                self.reference
            ));
        };
        let max = self.config.max_signature_age?;
        let age = age(current)?;
        (age > max).then(|| {
            format!(
                "signatures {} are {} old, more than --max-signature-age {}",
                short(&current.digest),
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(max)
            )
        })
    }

    /// Metadata properties: source, digest, version, time, status.
    pub fn properties(&self) -> BTreeMap<String, String> {
        let mut props = BTreeMap::new();
        props.insert(
            "clamav.signatures.source".into(),
            self.reference.to_string(),
        );
        let stale = self.not_ready();
        let state = self.state();
        if let Some(current) = &state.current {
            props.insert("clamav.signatures.digest".into(), current.digest.clone());
            if let Some(v) = &current.version {
                props.insert("clamav.signatures.version".into(), v.clone());
            }
            if let Some(t) = &current.created {
                props.insert("clamav.signatures.time".into(), t.clone());
            }
            props.insert(
                "clamav.signatures.installed".into(),
                current.installed_at.clone(),
            );
        }
        if let Some(t) = state.last_check {
            props.insert(
                "clamav.signatures.checked".into(),
                humantime::format_rfc3339_seconds(t).to_string(),
            );
        }
        let status = match (&stale, &state.updating) {
            (Some(why), _) => format!("not serving: {why}"),
            (None, Some(_)) => "updating".into(),
            (None, None) => "current".into(),
        };
        props.insert("clamav.signatures.status".into(), status);
        if let Some(e) = &state.last_error {
            props.insert("clamav.signatures.last_error".into(), e.clone());
        }
        props
    }
}

/// How old `installed` is: since its artifact was created, else since it was installed.
fn age(installed: &Installed) -> Option<Duration> {
    let at = installed
        .created
        .as_deref()
        .unwrap_or(&installed.installed_at);
    let t = humantime::parse_rfc3339_weak(at).ok()?;
    Some(SystemTime::now().duration_since(t).unwrap_or_default())
}

/// The first 12 hex digits of a digest.
fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        clamav: crate::ClamavConfig,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["sidescan-clamav"][..], args].concat())
    }

    #[test]
    fn flags_go_together_and_secrets_stay_hidden() {
        let from = ["--signatures-from", "127.0.0.1:5000/mirror/clamav:db"];
        let dir = ["--signatures-dir", "/var/lib/clamav"];
        assert!(
            parse(&from).is_err(),
            "--signatures-from needs --signatures-dir"
        );
        assert!(
            parse(&dir).is_err(),
            "--signatures-dir needs --signatures-from"
        );
        assert!(parse(&["--signatures-from", "no-host", dir[0], dir[1]]).is_err());
        let both = [&from[..], &dir[..], &["--clamd-database-dir", "/x"]].concat();
        assert!(
            parse(&both).is_err(),
            "the adapter owns the directory alone"
        );
        let cli = parse(&[&from[..], &dir[..], &["--registry-password", "hunter2"]].concat())
            .expect("valid flags");
        let config = &cli.clamav.signatures;
        assert_eq!(config.signatures_interval, Duration::from_secs(3600));
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn engine_key_fails_closed_until_a_set_is_loaded() {
        let cli = parse(&[
            "--signatures-from",
            "127.0.0.1:5000/mirror/clamav:db",
            "--signatures-dir",
            "/nonexistent",
        ])
        .expect("valid flags");
        let clamd = Clamd::new(
            "tcp://127.0.0.1:1".parse().expect("address"),
            1,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let signatures = Signatures::new(&cli.clamav.signatures, clamd).expect("configured");
        assert!(signatures.engine_key().is_err());
        assert!(signatures.not_ready().is_some());
        signatures.state().current = Some(Installed {
            digest: "sha256:0123456789abcdef".into(),
            version: None,
            created: Some("2020-01-01T00:00:00Z".into()),
            installed_at: "2020-01-01T00:00:00Z".into(),
            files: vec![],
        });
        assert_eq!(signatures.engine_key().unwrap(), "sig.0123456789ab");
        signatures.state().updating = Some("x".into());
        assert_eq!(
            signatures.engine_key().unwrap(),
            "sig.0123456789ab.updating.x"
        );
        assert!(signatures.not_ready().is_none(), "no --max-signature-age");
    }
}
