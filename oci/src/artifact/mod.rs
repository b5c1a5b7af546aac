//! Scanner data and plugins carried as OCI artifacts: ClamAV databases ([`clamav`]), Trivy's
//! vulnerability DB in Trivy's own layout ([`trivy`]) and plugin binaries as per-platform
//! indexes ([`plugin`]); what they share is here: references ([`ArtifactRef`]), file names taken
//! from `org.opencontainers.image.title` and checked before anything is written
//! ([`check_file_name`]), manifests of files ([`files_manifest`], [`files_of`]), uploads
//! ([`push_files`]) and verified downloads into a directory ([`download`]).

pub mod clamav;
pub mod plugin;
pub mod trivy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use oci_client::manifest::OciDescriptor;
use serde_json::{Value, json};

use crate::registry::{Manifest, sha256_digest};
use crate::{Error, Registry, media};

/// Annotation holding a layer's file name.
pub const TITLE: &str = "org.opencontainers.image.title";
/// Annotation holding when an artifact was made (RFC 3339).
pub const CREATED: &str = "org.opencontainers.image.created";
/// Annotation holding an artifact's version (e.g. the ClamAV daily version).
pub const VERSION: &str = "org.opencontainers.image.version";

/// Largest file of an artifact downloaded (ClamAV's `main.cvd` is about 160 MiB).
pub const MAX_FILE_BYTES: u64 = 2 << 30;
/// Most files one artifact may carry.
pub const MAX_FILES: usize = 256;

/// `HOST[:PORT]/REPO[:TAG][@sha256:HEX]`: the first component is always the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactRef {
    /// `host[:port]`.
    pub registry: String,
    /// Repository path.
    pub repository: String,
    /// Tag (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// Pinned digest.
    pub digest: Option<String>,
}

impl ArtifactRef {
    /// The tag or digest to ask the registry for (the digest when both are given).
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Whether the registry is a loopback host (`localhost`, `127.0.0.1`, `[::1]`), spoken to
    /// over plain http as go-containerregistry and skopeo do.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => self.registry.as_str(),
        };
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    }
}

impl std::fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ArtifactRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::BadReference(format!("reference {s:?}: {why}"));
        if s.contains("://") || s.contains('@') && s.split('@').count() > 2 {
            return Err(bad("want HOST[:PORT]/REPO[:TAG][@sha256:HEX]"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("the digest must be sha256:HEX"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("the digest must be sha256: and 64 hex digits"));
                }
                (rest, Some(digest.to_ascii_lowercase()))
            }
            None => (s, None),
        };
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no registry host (want HOST[:PORT]/REPO)"))?;
        if registry.is_empty() || registry.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(bad("empty or malformed registry host"));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_string())),
            _ => (path, None),
        };
        if repository.is_empty()
            || !repository
                .split('/')
                .all(sidescan_proto::names::is_path_component)
        {
            return Err(bad("malformed repository name"));
        }
        if let Some(tag) = &tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !tag.starts_with(['.', '-']);
            if !ok {
                return Err(bad("malformed tag"));
            }
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }
}

/// Refuses a file name that could leave its directory or hide in it: empty, `.` or `..`,
/// starting with a dot, with a path separator, a NUL or another control character, or longer
/// than 255 bytes.
pub fn check_file_name(name: &str) -> Result<(), Error> {
    let why = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 255 {
        Some("is longer than 255 bytes")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.starts_with('.') {
        Some("starts with a dot (hidden, `.` or `..`)")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::Malformed(format!("file name {name:?} {why}"))),
        None => Ok(()),
    }
}

/// One file of an artifact: its name and its layer.
#[derive(Clone, Debug)]
pub struct ArtifactFile {
    /// The file name (`org.opencontainers.image.title`), checked by [`check_file_name`].
    pub name: String,
    /// The layer.
    pub descriptor: OciDescriptor,
}

/// The files of a manifest's layers whose media type is `layer_type` (any when `None`): every
/// such layer must carry a safe, unique title and a size within [`MAX_FILE_BYTES`].
pub fn files_of(manifest: &Manifest, layer_type: Option<&str>) -> Result<Vec<ArtifactFile>, Error> {
    let layers: Vec<OciDescriptor> = serde_json::from_value(manifest.json["layers"].clone())
        .map_err(|e| Error::Malformed(format!("manifest {}: layers: {e}", manifest.digest)))?;
    if layers.len() > MAX_FILES {
        return Err(Error::Malformed(format!(
            "manifest {} has {} layers (at most {MAX_FILES})",
            manifest.digest,
            layers.len()
        )));
    }
    let mut files: Vec<ArtifactFile> = Vec::new();
    for layer in layers {
        if layer_type.is_some_and(|t| layer.media_type != t) {
            continue;
        }
        let name = crate::registry::annotations_of(&layer.annotations)
            .get(TITLE)
            .cloned()
            .ok_or_else(|| {
                Error::Malformed(format!("layer {} has no {TITLE} annotation", layer.digest))
            })?;
        check_file_name(&name)?;
        if layer.size < 0 || layer.size as u64 > MAX_FILE_BYTES {
            return Err(Error::TooLarge {
                what: format!("file {name}"),
                max: MAX_FILE_BYTES,
            });
        }
        if files.iter().any(|f| f.name == name) {
            return Err(Error::Malformed(format!(
                "file name {name:?} appears twice"
            )));
        }
        files.push(ArtifactFile {
            name,
            descriptor: layer,
        });
    }
    Ok(files)
}

/// The one layer of `layer_type` of `manifest` ([`files_of`]); `what` names the artifact in the
/// error when there is none or more than one.
pub fn single_file(
    manifest: &Manifest,
    layer_type: &str,
    what: &str,
) -> Result<ArtifactFile, Error> {
    let mut files = files_of(manifest, Some(layer_type))?;
    match files.len() {
        1 => Ok(files.remove(0)),
        n => Err(Error::Malformed(format!(
            "{what} {} has {n} layers of type {layer_type}, want 1",
            manifest.digest
        ))),
    }
}

/// Uploads the empty config blob (`{}`, which registries want present) to `repo` and returns
/// its descriptor (OCI 1.1 `application/vnd.oci.empty.v1+json`, with the data inline).
pub async fn push_empty_config(registry: &Registry, repo: &str) -> Result<Value, Error> {
    registry
        .push_blob(
            repo,
            Bytes::from_static(media::EMPTY_JSON_BYTES),
            media::EMPTY_JSON,
        )
        .await?;
    Ok(json!({
        "mediaType": media::EMPTY_JSON,
        "digest": sha256_digest(media::EMPTY_JSON_BYTES),
        "size": media::EMPTY_JSON_BYTES.len(),
        "data": "e30=",
    }))
}

/// An OCI image manifest with `artifact_type` (when given), `config` and `layers`.
pub fn files_manifest(
    artifact_type: Option<&str>,
    config: Value,
    layers: &[OciDescriptor],
    annotations: &BTreeMap<String, String>,
) -> Result<Bytes, Error> {
    let mut doc = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    if let Some(t) = artifact_type {
        doc["artifactType"] = json!(t);
    }
    if !annotations.is_empty() {
        doc["annotations"] = json!(annotations);
    }
    serde_json::to_vec(&doc)
        .map(Bytes::from)
        .map_err(|e| Error::Malformed(e.to_string()))
}

/// A local file to upload as one layer.
#[derive(Clone, Debug)]
pub struct LocalFile {
    /// Where it is.
    pub path: PathBuf,
    /// The name it gets in the artifact.
    pub name: String,
    /// Its layer's media type.
    pub media_type: String,
}

/// Uploads `files` (each read whole) to `repo` and returns their descriptors, titled.
/// `progress(name, bytes)` is called once per file, after its upload.
pub async fn push_files(
    registry: &Registry,
    repo: &str,
    files: &[LocalFile],
    progress: &(dyn Fn(&str, u64) + Send + Sync),
) -> Result<Vec<OciDescriptor>, Error> {
    let mut layers = Vec::with_capacity(files.len());
    for file in files {
        check_file_name(&file.name)?;
        let data = tokio::fs::read(&file.path)
            .await
            .map_err(|e| Error::Malformed(format!("cannot read {}: {e}", file.path.display())))?;
        let len = data.len() as u64;
        let mut descriptor = registry
            .push_blob(repo, Bytes::from(data), &file.media_type)
            .await?;
        descriptor.annotations = Some(BTreeMap::from([(TITLE.to_string(), file.name.clone())]));
        progress(&file.name, len);
        layers.push(descriptor);
    }
    Ok(layers)
}

/// Downloads `file` of `repo` into `dir/<name>` through a temporary file in `dir` (removed on
/// any error), verifying size and digest, and fsyncs it; returns the path.
pub async fn download(
    registry: &Registry,
    repo: &str,
    file: &ArtifactFile,
    dir: &Path,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<PathBuf, Error> {
    check_file_name(&file.name)?;
    let io = |what: &str, e: std::io::Error| Error::Malformed(format!("{what}: {e}"));
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(dir)
        .map_err(|e| io(&format!("temporary file in {}", dir.display()), e))?;
    let (std_file, tmp_path) = tmp.into_parts();
    let mut out = tokio::fs::File::from_std(std_file);
    registry
        .blob_to_writer(
            repo,
            &file.descriptor.digest,
            file.descriptor.size.max(0) as u64,
            &mut out,
            progress,
        )
        .await?;
    out.sync_all()
        .await
        .map_err(|e| io(&format!("fsync of {}", file.name), e))?;
    drop(out);
    let target = dir.join(&file.name);
    tmp_path
        .persist(&target)
        .map_err(|e| io(&format!("rename to {}", target.display()), e.error))?;
    Ok(target)
}

/// The names of the regular files of `dir` that do not start with a dot, sorted.
pub fn visible_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.file_type()?.is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// What kind of artifact a manifest or index is, by its types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A ClamAV database ([`clamav::ARTIFACT_TYPE`]).
    ClamavDatabase,
    /// Trivy's vulnerability DB ([`trivy::CONFIG_TYPE`]).
    TrivyDatabase,
    /// A plugin (index or manifest of [`plugin::ARTIFACT_TYPE`]).
    Plugin,
    /// A container image.
    Image,
    /// Anything else, with its type.
    Other(String),
}

impl Kind {
    /// The kind of `manifest`.
    pub fn of(manifest: &Manifest) -> Self {
        let artifact_type = manifest.json["artifactType"].as_str().unwrap_or_default();
        let config = manifest.json["config"]["mediaType"]
            .as_str()
            .unwrap_or_default();
        if artifact_type == clamav::ARTIFACT_TYPE {
            Self::ClamavDatabase
        } else if config == trivy::CONFIG_TYPE {
            Self::TrivyDatabase
        } else if artifact_type == plugin::ARTIFACT_TYPE
            || (manifest.is_index()
                && manifest.json["manifests"][0]["artifactType"] == plugin::ARTIFACT_TYPE)
        {
            Self::Plugin
        } else if media::not_an_image(&manifest.media_type, &manifest.json).is_none() {
            Self::Image
        } else if !artifact_type.is_empty() {
            Self::Other(artifact_type.to_string())
        } else {
            Self::Other(format!("config {config}"))
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClamavDatabase => f.write_str("ClamAV database"),
            Self::TrivyDatabase => f.write_str("Trivy vulnerability DB"),
            Self::Plugin => f.write_str("sidescan plugin"),
            Self::Image => f.write_str("container image"),
            Self::Other(t) => write!(f, "other artifact ({t})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let r: ArtifactRef = "127.0.0.1:5000/mirror/clamav:db".parse().unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "mirror/clamav");
        assert_eq!(r.reference(), "db");
        let r: ArtifactRef = "localhost/a/b".parse().unwrap();
        assert_eq!(r.reference(), "latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r: ArtifactRef = format!("h:1/r:t@{d}").parse().unwrap();
        assert_eq!((r.tag.as_deref(), r.reference()), (Some("t"), d.as_str()));
        for bad in [
            "noslash",
            "http://h/r",
            "h/R",
            "h/r:",
            "h/r@sha256:12",
            "h/r:t@md5:x",
            "/r",
        ] {
            assert!(bad.parse::<ArtifactRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn unsafe_file_names_refused() {
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a\nb", "a\0b",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        check_file_name("daily.cld").unwrap();
        assert!(check_file_name(&"x".repeat(256)).is_err());
    }
}
