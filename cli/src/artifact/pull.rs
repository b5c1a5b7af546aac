//! `sidescan artifact pull REF DIR`: an artifact's files into DIR, each verified and written
//! through a temporary file in DIR; nothing is written outside it.

use std::path::Path;

use sidescan_oci::Registry;
use sidescan_oci::artifact::{
    ArtifactFile, ArtifactRef, Kind, clamav::Database, download, files_of, trivy,
};

use super::progress::Transfer;
use super::{ArtifactError, RegistryFlags, connect, resolve};

/// Runs `pull`.
pub(crate) async fn run(
    reference: &ArtifactRef,
    dir: &Path,
    flags: &RegistryFlags,
) -> Result<(), ArtifactError> {
    let registry = connect(reference, flags)?;
    let manifest = resolve(&registry, reference).await?;
    let kind = Kind::of(&manifest);
    match &kind {
        Kind::Plugin => return super::install::run(reference, dir, None, flags).await,
        Kind::Image => {
            return Err(ArtifactError::Refused(format!(
                "{reference} is a container image, not an artifact (use skopeo copy)"
            )));
        }
        _ => {}
    }
    create_dir(dir)?;
    let repo = &reference.repository;
    match kind {
        Kind::ClamavDatabase => {
            let db = Database::parse(&manifest)?;
            fetch_all(&registry, repo, &db.files, dir).await?;
            for file in &db.files {
                println!("{}", dir.join(&file.name).display());
            }
        }
        Kind::TrivyDatabase => {
            let layer = trivy::db_layer(&manifest)?;
            let scratch = tempfile::Builder::new()
                .prefix(".pull-")
                .tempdir_in(dir)
                .map_err(ArtifactError::io(format!(
                    "temporary directory in {}",
                    dir.display()
                )))?;
            fetch_all(
                &registry,
                repo,
                std::slice::from_ref(&layer),
                scratch.path(),
            )
            .await?;
            trivy::unpack(&scratch.path().join(&layer.name), dir)?;
            for name in trivy::MEMBERS {
                println!("{}", dir.join(name).display());
            }
        }
        _ => {
            let files = files_of(&manifest, None)?;
            if files.is_empty() {
                return Err(ArtifactError::Refused(format!(
                    "{reference} has no titled files ({kind})"
                )));
            }
            fetch_all(&registry, repo, &files, dir).await?;
            for file in &files {
                println!("{}", dir.join(&file.name).display());
            }
        }
    }
    Ok(())
}

/// `dir`, created when missing.
pub(super) fn create_dir(dir: &Path) -> Result<(), ArtifactError> {
    std::fs::create_dir_all(dir).map_err(ArtifactError::io(format!("create {}", dir.display())))
}

/// A temporary directory inside `dir` (removed when dropped), so that downloads land on the
/// same filesystem as their final names and nothing is written outside `dir`.
pub(super) fn scratch_dir(dir: &Path) -> Result<tempfile::TempDir, ArtifactError> {
    tempfile::Builder::new()
        .prefix(".sidescan-")
        .tempdir_in(dir)
        .map_err(ArtifactError::io(format!(
            "temporary directory in {}",
            dir.display()
        )))
}

/// Downloads `files` into `dir` with one bar over all of them.
pub(super) async fn fetch_all(
    registry: &Registry,
    repo: &str,
    files: &[ArtifactFile],
    dir: &Path,
) -> Result<(), ArtifactError> {
    let total = files.iter().map(|f| f.descriptor.size.max(0) as u64).sum();
    let bar = Transfer::new("downloading", total);
    for file in files {
        download(registry, repo, file, dir, &|n| bar.advance(n)).await?;
    }
    bar.done();
    Ok(())
}
