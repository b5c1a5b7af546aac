//! `sidescan artifact push clamav-db | trivy-db | plugin`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use clap::Subcommand;
use sidescan_oci::artifact::plugin::{self, Platform};
use sidescan_oci::artifact::{
    ArtifactRef, CREATED, LocalFile, VERSION, clamav, files_manifest, push_empty_config,
    push_files, trivy,
};
use sidescan_oci::{Registry, media};

use super::progress::Transfer;
use super::{ArtifactError, RegistryFlags, connect};

/// What to push.
#[derive(Debug, Subcommand)]
pub(crate) enum PushCommand {
    /// A ClamAV database (main.cvd, daily.cld, *.hdb, *.ndb, ...), one layer per file; prints
    /// the digest. The adapter reads it with --signatures-from.
    ClamavDb {
        /// HOST[:PORT]/REPO:TAG.
        reference: ArtifactRef,
        /// The database files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Version annotation (default: the daily database's version from its header).
        #[arg(long)]
        version: Option<String>,
    },
    /// Trivy's vulnerability DB in Trivy's layout, from a directory holding trivy.db and
    /// metadata.json (Trivy's cache `db/` directory); `trivy --db-repository` reads it.
    TrivyDb {
        /// HOST[:PORT]/REPO:TAG.
        reference: ArtifactRef,
        /// Directory with trivy.db and metadata.json.
        dir: PathBuf,
    },
    /// A plugin binary per platform, as an image index: --platform linux/amd64 BIN
    /// [--platform linux/arm64 BIN2 ...].
    Plugin {
        /// HOST[:PORT]/REPO:TAG.
        reference: ArtifactRef,
        /// OS/ARCH[/VARIANT] and the binary for it (repeat per platform).
        #[arg(long = "platform", num_args = 2, value_names = ["OS/ARCH", "BINARY"],
              required = true)]
        platforms: Vec<String>,
    },
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn tag_of(reference: &ArtifactRef) -> Result<&str, ArtifactError> {
    match (&reference.tag, &reference.digest) {
        (Some(tag), None) => Ok(tag),
        _ => Err(ArtifactError::Refused(format!(
            "push needs a tag and no digest: {reference}"
        ))),
    }
}

/// Runs one push.
pub(crate) async fn run(command: PushCommand, flags: &RegistryFlags) -> Result<(), ArtifactError> {
    let (reference, digest) = match command {
        PushCommand::ClamavDb {
            reference,
            files,
            version,
        } => {
            let digest = push_clamav(&reference, &files, version, flags).await?;
            (reference, digest)
        }
        PushCommand::TrivyDb { reference, dir } => {
            let digest = push_trivy(&reference, &dir, flags).await?;
            (reference, digest)
        }
        PushCommand::Plugin {
            reference,
            platforms,
        } => {
            let digest = push_plugin(&reference, &platforms, flags).await?;
            (reference, digest)
        }
    };
    println!("{}/{}@{digest}", reference.registry, reference.repository);
    Ok(())
}

fn file_name(path: &Path) -> Result<String, ArtifactError> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| ArtifactError::Refused(format!("{} has no file name", path.display())))
}

/// Uploads `files` with one bar over all of them.
async fn upload(
    registry: &Registry,
    repo: &str,
    files: &[LocalFile],
) -> Result<Vec<oci_client::manifest::OciDescriptor>, ArtifactError> {
    let mut total = 0;
    for file in files {
        let meta = std::fs::metadata(&file.path)
            .map_err(ArtifactError::io(format!("{}", file.path.display())))?;
        if !meta.is_file() {
            return Err(ArtifactError::Refused(format!(
                "{} is not a regular file",
                file.path.display()
            )));
        }
        total += meta.len();
    }
    let bar = Transfer::new("uploading", total);
    let layers = push_files(registry, repo, files, &|_, n| bar.advance(n)).await?;
    bar.done();
    Ok(layers)
}

async fn push_clamav(
    reference: &ArtifactRef,
    paths: &[PathBuf],
    version: Option<String>,
    flags: &RegistryFlags,
) -> Result<String, ArtifactError> {
    let tag = tag_of(reference)?;
    let mut files = Vec::new();
    for path in paths {
        let name = file_name(path)?;
        clamav::check_database_file_name(&name)?;
        if files.iter().any(|f: &LocalFile| f.name == name) {
            return Err(ArtifactError::Refused(format!("{name} given twice")));
        }
        files.push(LocalFile {
            path: path.clone(),
            name,
            media_type: clamav::LAYER_TYPE.into(),
        });
    }
    let version = version.or_else(|| {
        files
            .iter()
            .find(|f| f.name.starts_with("daily."))
            .and_then(|f| read_head(&f.path))
            .and_then(|head| clamav::cvd_version(&head))
    });
    let registry = connect(reference, flags)?;
    let layers = upload(&registry, &reference.repository, &files).await?;
    let mut annotations = BTreeMap::from([(CREATED.to_string(), now())]);
    if let Some(v) = version {
        annotations.insert(VERSION.into(), v);
    }
    let body = files_manifest(
        Some(clamav::ARTIFACT_TYPE),
        push_empty_config(&registry, &reference.repository).await?,
        &layers,
        &annotations,
    )?;
    Ok(registry
        .push_manifest(&reference.repository, tag, body, media::OCI_MANIFEST)
        .await?)
}

fn read_head(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut head = vec![0; 512];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    head.truncate(n);
    Some(head)
}

async fn push_trivy(
    reference: &ArtifactRef,
    dir: &Path,
    flags: &RegistryFlags,
) -> Result<String, ArtifactError> {
    let tag = tag_of(reference)?;
    let (archive, metadata) = trivy::pack(dir)?;
    let registry = connect(reference, flags)?;
    let repo = &reference.repository;
    let bar = Transfer::new("uploading", archive.len() as u64);
    let config = registry
        .push_blob(repo, Bytes::from_static(b"{}"), trivy::CONFIG_TYPE)
        .await?;
    let len = archive.len() as u64;
    let mut layer = registry
        .push_blob(repo, Bytes::from(archive), trivy::LAYER_TYPE)
        .await?;
    bar.advance(len);
    bar.done();
    layer.annotations = Some(BTreeMap::from([(
        sidescan_oci::artifact::TITLE.to_string(),
        trivy::FILE_NAME.to_string(),
    )]));
    let mut annotations = BTreeMap::from([(CREATED.to_string(), now())]);
    if let Some(updated) = metadata["UpdatedAt"].as_str() {
        annotations.insert(VERSION.into(), updated.to_string());
    }
    let config = serde_json::to_value(&config)
        .map_err(|e| ArtifactError::Refused(format!("config descriptor: {e}")))?;
    let body = files_manifest(None, config, &[layer], &annotations)?;
    Ok(registry
        .push_manifest(repo, tag, body, media::OCI_MANIFEST)
        .await?)
}

async fn push_plugin(
    reference: &ArtifactRef,
    pairs: &[String],
    flags: &RegistryFlags,
) -> Result<String, ArtifactError> {
    let tag = tag_of(reference)?;
    let mut platforms: Vec<(Platform, PathBuf)> = Vec::new();
    for pair in pairs.chunks(2) {
        let [platform, binary] = pair else {
            return Err(ArtifactError::Refused(
                "--platform takes OS/ARCH and a binary".into(),
            ));
        };
        let platform: Platform = platform.parse()?;
        if platforms.iter().any(|(p, _)| *p == platform) {
            return Err(ArtifactError::Refused(format!(
                "platform {platform} given twice"
            )));
        }
        platforms.push((platform, PathBuf::from(binary)));
    }
    let registry = connect(reference, flags)?;
    let repo = &reference.repository;
    let created = now();
    let mut entries = Vec::new();
    for (platform, path) in platforms {
        let file = LocalFile {
            name: file_name(&path)?,
            path,
            media_type: plugin::LAYER_TYPE.into(),
        };
        let layers = upload(&registry, repo, &[file]).await?;
        let annotations = BTreeMap::from([(CREATED.to_string(), created.clone())]);
        let body = files_manifest(
            Some(plugin::ARTIFACT_TYPE),
            push_empty_config(&registry, repo).await?,
            &layers,
            &annotations,
        )?;
        let size = body.len() as i64;
        let digest = sidescan_oci::registry::sha256_digest(&body);
        registry
            .push_manifest(repo, &digest, body, media::OCI_MANIFEST)
            .await?;
        let descriptor = oci_client::manifest::OciDescriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest,
            size,
            ..Default::default()
        };
        entries.push((platform, descriptor));
    }
    let index = plugin::index(&entries, &created)?;
    Ok(registry
        .push_manifest(repo, tag, Bytes::from(index), media::OCI_INDEX)
        .await?)
}
