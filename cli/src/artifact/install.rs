//! `sidescan artifact install REF DIR [--digest D]`: the plugin binary for this platform,
//! verified, written executable into DIR atomically (downloaded into a temporary directory in
//! DIR, made executable, renamed); a pinned digest that differs is refused before any download.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use sidescan_oci::artifact::ArtifactRef;
use sidescan_oci::artifact::plugin::{self, Platform};

use super::pull::{create_dir, fetch_all, scratch_dir};
use super::{ArtifactError, RegistryFlags, connect, resolve};

/// Runs `install`.
pub(crate) async fn run(
    reference: &ArtifactRef,
    dir: &Path,
    pinned: Option<&str>,
    flags: &RegistryFlags,
) -> Result<(), ArtifactError> {
    let registry = connect(reference, flags)?;
    let top = resolve(&registry, reference).await?;
    if let Some(pinned) = pinned
        && top.digest != pinned
    {
        return Err(ArtifactError::Refused(format!(
            "{reference} resolves to {}, not the pinned {pinned}: refusing to install",
            top.digest
        )));
    }
    let repo = &reference.repository;
    let manifest = if top.is_index() {
        let host = Platform::host();
        let platforms = plugin::platforms(&top)?;
        let Some((_, digest)) = platforms.iter().find(|(p, _)| host.runs(p)) else {
            let offered: Vec<String> = platforms.iter().map(|(p, _)| p.to_string()).collect();
            return Err(ArtifactError::Refused(format!(
                "{reference} has no binary for {host} (it has {})",
                offered.join(", ")
            )));
        };
        resolve(
            &registry,
            &ArtifactRef {
                digest: Some(digest.clone()),
                ..reference.clone()
            },
        )
        .await?
    } else {
        top.clone()
    };
    let binary = plugin::binary(&manifest)?;
    create_dir(dir)?;
    let scratch = scratch_dir(dir)?;
    fetch_all(
        &registry,
        repo,
        std::slice::from_ref(&binary),
        scratch.path(),
    )
    .await?;
    let staged = scratch.path().join(&binary.name);
    let target = dir.join(&binary.name);
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))
        .map_err(ArtifactError::io(format!("chmod {}", staged.display())))?;
    std::fs::rename(&staged, &target)
        .map_err(ArtifactError::io(format!("rename to {}", target.display())))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ArtifactError::io(format!("fsync {}", dir.display())))?;
    println!("{} {}", target.display(), top.digest);
    Ok(())
}
