//! Trivy's vulnerability DB in Trivy's own layout (what `trivy --db-repository` pulls): config
//! `application/vnd.aquasec.trivy.config.v1+json`, one layer
//! `application/vnd.aquasec.trivy.db.layer.v1.tar+gzip` titled `db.tar.gz`, a tar.gz of
//! `trivy.db` and `metadata.json`.

use std::io::Read as _;
use std::path::Path;

use crate::Error;
use crate::artifact::{ArtifactFile, single_file};
use crate::registry::Manifest;

/// The config media type of a Trivy DB.
pub const CONFIG_TYPE: &str = "application/vnd.aquasec.trivy.config.v1+json";
/// The layer media type of a Trivy DB.
pub const LAYER_TYPE: &str = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip";
/// The layer's title.
pub const FILE_NAME: &str = "db.tar.gz";
/// The files of the archive, in order.
pub const MEMBERS: [&str; 2] = ["trivy.db", "metadata.json"];

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Malformed(format!("{what}: {e}"))
}

/// The tar.gz of `dir/trivy.db` and `dir/metadata.json` (both required; the metadata must be a
/// JSON object), with the parsed metadata.
pub fn pack(dir: &Path) -> Result<(Vec<u8>, serde_json::Value), Error> {
    let metadata_path = dir.join("metadata.json");
    let metadata_bytes =
        std::fs::read(&metadata_path).map_err(io(metadata_path.display().to_string()))?;
    let metadata: serde_json::Value = serde_json::from_slice(&metadata_bytes)
        .ok()
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| {
            Error::Malformed(format!("{} is not a JSON object", metadata_path.display()))
        })?;
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for name in MEMBERS {
        let path = dir.join(name);
        let mut file = std::fs::File::open(&path).map_err(io(path.display().to_string()))?;
        tar.append_file(name, &mut file)
            .map_err(io(format!("archiving {}", path.display())))?;
    }
    let gz = tar.into_inner().map_err(io("tar".into()))?;
    let bytes = gz.finish().map_err(io("gzip".into()))?;
    Ok((bytes, metadata))
}

/// The DB layer of a Trivy DB manifest (config type checked, exactly one DB layer).
pub fn db_layer(manifest: &Manifest) -> Result<ArtifactFile, Error> {
    let config = manifest.json["config"]["mediaType"]
        .as_str()
        .unwrap_or_default();
    if config != CONFIG_TYPE {
        return Err(Error::Malformed(format!(
            "{} is not a Trivy DB: config {config:?}, want {CONFIG_TYPE}",
            manifest.digest
        )));
    }
    single_file(manifest, LAYER_TYPE, "Trivy DB")
}

/// Extracts `trivy.db` and `metadata.json` from the tar.gz at `archive` into `dir` (each
/// through a temporary file, renamed); any other member, or a missing one, is refused.
pub fn unpack(archive: &Path, dir: &Path) -> Result<(), Error> {
    let file = std::fs::File::open(archive).map_err(io(archive.display().to_string()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut seen = Vec::new();
    let mut staged = Vec::new();
    for entry in tar.entries().map_err(io("reading the DB archive".into()))? {
        let mut entry = entry.map_err(io("reading the DB archive".into()))?;
        let path = entry.path().map_err(io("DB archive entry".into()))?;
        let name = path.to_string_lossy().trim_start_matches("./").to_string();
        if !MEMBERS.contains(&name.as_str()) || !entry.header().entry_type().is_file() {
            return Err(Error::Malformed(format!(
                "DB archive holds {name:?}: only {} as regular files are allowed",
                MEMBERS.join(" and ")
            )));
        }
        if seen.contains(&name) {
            return Err(Error::Malformed(format!("DB archive holds {name} twice")));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempfile_in(dir)
            .map_err(io(format!("temporary file in {}", dir.display())))?;
        std::io::copy(
            &mut (&mut entry).take(super::MAX_FILE_BYTES),
            tmp.as_file_mut(),
        )
        .map_err(io(format!("extracting {name}")))?;
        tmp.as_file()
            .sync_all()
            .map_err(io(format!("fsync {name}")))?;
        seen.push(name.clone());
        staged.push((tmp, name));
    }
    if seen.len() != MEMBERS.len() {
        return Err(Error::Malformed(format!(
            "DB archive lacks {}",
            MEMBERS
                .iter()
                .filter(|m| !seen.iter().any(|s| s == *m))
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for (tmp, name) in staged {
        tmp.persist(dir.join(&name))
            .map_err(|e| Error::Malformed(format!("rename of {name}: {}", e.error)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_round_trip() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("trivy.db"), b"bolt").unwrap();
        std::fs::write(src.path().join("metadata.json"), br#"{"Version":2}"#).unwrap();
        let (bytes, metadata) = pack(src.path()).unwrap();
        assert_eq!(metadata["Version"], 2);
        let out = tempfile::tempdir().unwrap();
        let archive = out.path().join("db.tar.gz");
        std::fs::write(&archive, bytes).unwrap();
        let dest = tempfile::tempdir().unwrap();
        unpack(&archive, dest.path()).unwrap();
        assert_eq!(
            std::fs::read(dest.path().join("trivy.db")).unwrap(),
            b"bolt"
        );
        std::fs::remove_file(src.path().join("metadata.json")).unwrap();
        assert!(pack(src.path()).is_err());
    }
}
