//! `sidescan artifact inspect REF`: what an artifact is, its files, digests, sizes and age.

use std::fmt::Write as _;
use std::time::SystemTime;

use sidescan_oci::artifact::{ArtifactRef, CREATED, Kind, VERSION, files_of, plugin};

use super::{ArtifactError, RegistryFlags, connect, resolve};

/// Runs `inspect`.
pub(crate) async fn run(
    reference: &ArtifactRef,
    flags: &RegistryFlags,
) -> Result<(), ArtifactError> {
    let registry = connect(reference, flags)?;
    let manifest = resolve(&registry, reference).await?;
    let mut out = String::new();
    let _ = writeln!(out, "reference: {reference}");
    let _ = writeln!(out, "digest:    {}", manifest.digest);
    let _ = writeln!(out, "kind:      {}", Kind::of(&manifest));
    let annotations = &manifest.json["annotations"];
    if let Some(version) = annotations[VERSION].as_str() {
        let _ = writeln!(out, "version:   {version}");
    }
    if let Some(created) = annotations[CREATED].as_str() {
        let age = humantime::parse_rfc3339_weak(created)
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| {
                let secs = std::time::Duration::from_secs(d.as_secs());
                format!(" ({} ago)", humantime::format_duration(secs))
            })
            .unwrap_or_default();
        let _ = writeln!(out, "created:   {created}{age}");
    }
    if manifest.is_index() {
        let _ = writeln!(out, "platforms:");
        for (platform, digest) in plugin::platforms(&manifest)? {
            let _ = writeln!(out, "  {platform:<16} {digest}");
        }
    } else {
        let _ = writeln!(out, "files:");
        for file in files_of(&manifest, None)? {
            let d = &file.descriptor;
            let _ = writeln!(
                out,
                "  {:<24} {:>12} {} {}",
                file.name, d.size, d.digest, d.media_type
            );
        }
    }
    print!("{out}");
    Ok(())
}
