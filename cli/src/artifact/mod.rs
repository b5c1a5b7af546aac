//! `sidescan artifact`: scanner data and plugins in a registry, for sites that mirror them
//! (`push clamav-db`, `push trivy-db`, `push plugin`, `pull`, `inspect`, `install`). The formats
//! are `sidescan_oci::artifact`'s; what `push` writes, `pull`, `install` and the adapters read.
//! Credentials come from the flags, `SIDESCAN_REGISTRY_*`, `--authfile`, then the files skopeo,
//! podman, oras and docker use. Errors are printed as `error: ...` and exit 2.

mod inspect;
mod install;
mod progress;
mod pull;
mod push;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use sidescan_oci::artifact::ArtifactRef;
use sidescan_oci::{CredentialSources, Registry};

use crate::args::Secret;
use crate::outcome::{CliError, Outcome};

/// Flags of `sidescan artifact`.
#[derive(Debug, Args)]
pub(crate) struct ArtifactArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ArtifactCommand,

    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// How to reach and log in to the registry.
#[derive(Debug, Args)]
#[command(next_help_heading = "Registry access")]
pub(crate) struct RegistryFlags {
    /// Registry user name (with --password).
    #[arg(
        long,
        global = true,
        env = "SIDESCAN_REGISTRY_USERNAME",
        hide_env_values = true
    )]
    pub username: Option<String>,

    /// Registry password; prefer the environment variable.
    #[arg(long, global = true, env = "SIDESCAN_REGISTRY_PASSWORD", hide_env_values = true,
          value_parser = crate::args::secret)]
    pub password: Option<Secret>,

    /// Registry bearer token.
    #[arg(long, global = true, env = "SIDESCAN_REGISTRY_TOKEN", hide_env_values = true,
          value_parser = crate::args::secret)]
    pub token: Option<Secret>,

    /// Auth file (containers-auth.json or docker config.json) searched before the standard ones.
    #[arg(long, global = true, value_name = "FILE")]
    pub authfile: Option<PathBuf>,

    /// Speak plain http to the registry (loopback registries always are).
    #[arg(long, global = true)]
    pub insecure: bool,
}

/// Subcommands of `sidescan artifact`.
#[derive(Debug, Subcommand)]
pub(crate) enum ArtifactCommand {
    /// Push scanner data or a plugin.
    #[command(subcommand)]
    Push(push::PushCommand),
    /// Download an artifact's files into DIR: a ClamAV database's files, a Trivy DB's trivy.db
    /// and metadata.json, a plugin's binary for this platform.
    Pull {
        /// HOST[:PORT]/REPO[:TAG][@DIGEST].
        reference: ArtifactRef,
        /// Target directory (created when missing); nothing is written outside it.
        dir: PathBuf,
    },
    /// Say what an artifact is: its type, files, digests, sizes and age.
    Inspect {
        /// HOST[:PORT]/REPO[:TAG][@DIGEST].
        reference: ArtifactRef,
    },
    /// Install a plugin: the binary for this platform, verified, written executable into DIR
    /// atomically.
    Install {
        /// HOST[:PORT]/REPO[:TAG][@DIGEST].
        reference: ArtifactRef,
        /// Target directory (created when missing).
        dir: PathBuf,
        /// Refuse unless the reference resolves to this digest (sha256:HEX).
        #[arg(long, value_name = "DIGEST")]
        digest: Option<String>,
    },
}

/// Why a `sidescan artifact` command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArtifactError {
    /// The registry or the artifact.
    #[error(transparent)]
    Oci(#[from] sidescan_oci::Error),
    /// A local file or directory.
    #[error("{what}: {source}")]
    Io {
        /// What was done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The artifact is not what the command needs, or the input is not usable.
    #[error("{0}")]
    Refused(String),
}

impl ArtifactError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// Runs `sidescan artifact ...`; errors are printed here (exit 2).
pub(crate) async fn run(args: ArtifactArgs) -> Result<Outcome, CliError> {
    let flags = &args.registry;
    let result = match args.command {
        ArtifactCommand::Push(push) => push::run(push, flags).await,
        ArtifactCommand::Pull { reference, dir } => pull::run(&reference, &dir, flags).await,
        ArtifactCommand::Inspect { reference } => inspect::run(&reference, flags).await,
        ArtifactCommand::Install {
            reference,
            dir,
            digest,
        } => install::run(&reference, &dir, digest.as_deref(), flags).await,
    };
    match result {
        Ok(()) => Ok(Outcome::Done),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(Outcome::Error)
        }
    }
}

/// A client for the registry of `reference`.
fn connect(reference: &ArtifactRef, flags: &RegistryFlags) -> Result<Registry, ArtifactError> {
    let sources = CredentialSources {
        username: flags.username.clone(),
        password: flags.password.as_ref().map(|s| s.0.clone()),
        token: flags.token.as_ref().map(|s| s.0.clone()),
        auth_file: flags.authfile.clone(),
        no_standard_files: false,
    };
    let creds = sources.resolve(&reference.registry, Some(&reference.repository))?;
    let insecure = flags.insecure || reference.is_loopback();
    Ok(Registry::new(&reference.registry, creds, insecure)?)
}

/// The manifest `reference` names, or a not-found error.
async fn resolve(
    registry: &Registry,
    reference: &ArtifactRef,
) -> Result<sidescan_oci::registry::Manifest, ArtifactError> {
    registry
        .manifest(&reference.repository, reference.reference())
        .await?
        .ok_or_else(|| ArtifactError::Refused(format!("{reference} does not exist")))
}
