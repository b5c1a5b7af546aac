//! OCI / Docker building blocks shared by fixtures, the fake registry and the push client:
//! media types, digests, [`Blob`], [`Platform`] and [`Artifact`] (a manifest plus
//! everything it references).

use bytes::Bytes;
use serde_json::{Value, json};
use std::path::Path;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI empty descriptor (`{}`), used as config of artifacts without config.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (rare, but seen in the wild).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Every manifest media type, as an `Accept` header value.
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

pub use crate::digest::sha256_digest;

/// Whether `media_type` is an index / manifest list.
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// A content blob (config, layer or manifest bytes) with its media type and digest.
///
/// Normally `digest == sha256(data)`; hostile fixtures build blobs whose digest lies
/// (see [`Blob::with_digest`]) to exercise verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// Media type used in descriptors and `Content-Type`.
    pub media_type: String,
    /// Digest under which the blob is stored and referenced.
    pub digest: String,
    /// The bytes served for this digest.
    pub data: Bytes,
}

impl Blob {
    /// A blob whose digest is the sha256 of `data`.
    pub fn new(media_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Self {
            media_type: media_type.into(),
            digest: sha256_digest(&data),
            data,
        }
    }

    /// A blob with an explicit (possibly wrong) digest, for hostile cases.
    pub fn with_digest(
        media_type: impl Into<String>,
        digest: impl Into<String>,
        data: impl Into<Bytes>,
    ) -> Self {
        Self {
            media_type: media_type.into(),
            digest: digest.into(),
            data: data.into(),
        }
    }

    /// Length of `data`.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// Whether `digest` matches `data`.
    pub fn is_verified(&self) -> bool {
        sha256_digest(&self.data) == self.digest
    }

    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest
            .split_once(':')
            .map(|x| x.1)
            .unwrap_or(&self.digest)
    }

    /// OCI descriptor JSON `{mediaType, digest, size}`.
    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size()})
    }
}

/// An OCI platform (`os`, `architecture`, optional `variant`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// e.g. `v8`, `v7`.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`; panics on malformed input (test helper).
    pub fn parse(s: &str) -> Self {
        let mut it = s.split('/');
        let os = it.next().filter(|x| !x.is_empty()).expect("platform os");
        let architecture = it.next().expect("platform architecture");
        let variant = it.next().map(str::to_owned);
        assert!(it.next().is_none(), "platform {s:?} has too many parts");
        Self {
            os: os.into(),
            architecture: architecture.into(),
            variant,
        }
    }

    /// `linux/amd64`.
    pub fn linux_amd64() -> Self {
        Self::parse("linux/amd64")
    }

    /// `linux/arm64/v8`.
    pub fn linux_arm64_v8() -> Self {
        Self::parse("linux/arm64/v8")
    }

    /// JSON for an index entry's `platform` field.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"os": self.os, "architecture": self.architecture});
        if let Some(var) = &self.variant {
            v["variant"] = json!(var);
        }
        v
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A built layer: the (compressed) blob plus its uncompressed digest.
#[derive(Clone, Debug)]
pub struct LayerBlob {
    /// The blob as stored in the registry.
    pub blob: Blob,
    /// `sha256:` of the uncompressed tar (what `rootfs.diff_ids` lists).
    pub diff_id: String,
    /// Size of the uncompressed tar in bytes.
    pub uncompressed_size: u64,
}

/// A manifest (image, index or artifact) together with every blob and child manifest
/// it references, ready to push, serve or write as an OCI layout.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The manifest itself (its `media_type` tells image vs index).
    pub manifest: Blob,
    /// The config blob, for image manifests.
    pub config: Option<Blob>,
    /// Layer blobs, in manifest order.
    pub layers: Vec<LayerBlob>,
    /// Child artifacts referenced by an index, in index order.
    pub children: Vec<Artifact>,
    /// Platform of this manifest when it is an index entry.
    pub platform: Option<Platform>,
    /// Extra blobs to store alongside (hostile cases: blobs served under lying digests).
    pub extra_blobs: Vec<Blob>,
}

impl Artifact {
    /// An artifact from just a manifest (no blobs), e.g. for raw/bogus manifests.
    pub fn from_manifest(manifest: Blob) -> Self {
        Self {
            manifest,
            config: None,
            layers: vec![],
            children: vec![],
            platform: None,
            extra_blobs: vec![],
        }
    }

    /// Digest of the top manifest.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Media type of the top manifest.
    pub fn media_type(&self) -> &str {
        &self.manifest.media_type
    }

    /// Whether the top manifest is an index / manifest list.
    pub fn is_index(&self) -> bool {
        is_index_media_type(&self.manifest.media_type)
    }

    /// The top manifest parsed as JSON (panics if it is not JSON).
    pub fn manifest_json(&self) -> Value {
        serde_json::from_slice(&self.manifest.data).expect("manifest is JSON")
    }

    /// The child for `platform` (index artifacts).
    pub fn child_for(&self, platform: &Platform) -> Option<&Artifact> {
        self.children
            .iter()
            .find(|c| c.platform.as_ref() == Some(platform))
    }

    /// Every non-manifest blob (config, layers, extras) of this artifact and its
    /// children, deduplicated by digest, in a stable order.
    pub fn all_blobs(&self) -> Vec<&Blob> {
        let mut out: Vec<&Blob> = vec![];
        self.collect_blobs(&mut out);
        out
    }

    fn collect_blobs<'a>(&'a self, out: &mut Vec<&'a Blob>) {
        for c in &self.children {
            c.collect_blobs(out);
        }
        let own = self
            .config
            .iter()
            .chain(self.layers.iter().map(|l| &l.blob))
            .chain(self.extra_blobs.iter());
        for b in own {
            if !out.iter().any(|o| o.digest == b.digest) {
                out.push(b);
            }
        }
    }

    /// Every manifest, children before parents (push order), top manifest last,
    /// deduplicated by digest.
    pub fn all_manifests(&self) -> Vec<&Blob> {
        let mut out: Vec<&Blob> = vec![];
        self.collect_manifests(&mut out);
        out
    }

    fn collect_manifests<'a>(&'a self, out: &mut Vec<&'a Blob>) {
        for c in &self.children {
            c.collect_manifests(out);
        }
        if !out.iter().any(|o| o.digest == self.manifest.digest) {
            out.push(&self.manifest);
        }
    }

    /// Sum of the sizes of all blobs and manifests.
    pub fn total_size(&self) -> u64 {
        self.all_blobs().iter().map(|b| b.size()).sum::<u64>()
            + self.all_manifests().iter().map(|b| b.size()).sum::<u64>()
    }

    /// Writes (or adds to) an OCI image layout in `dir`: `oci-layout`, `blobs/sha256/*`
    /// and an `index.json` entry for the top manifest annotated with
    /// `org.opencontainers.image.ref.name = tag`, so `skopeo copy oci:DIR:TAG ...`,
    /// `umoci unpack --image DIR:TAG` and `trivy image --input DIR:TAG` work.
    /// An existing entry with the same tag is replaced.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) -> std::io::Result<()> {
        let blobs_dir = dir.join("blobs");
        std::fs::create_dir_all(&blobs_dir)?;
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        for b in self.all_blobs().into_iter().chain(self.all_manifests()) {
            let (alg, hex) = b.digest.split_once(':').unwrap_or(("sha256", &b.digest));
            let alg_dir = blobs_dir.join(alg);
            std::fs::create_dir_all(&alg_dir)?;
            std::fs::write(alg_dir.join(hex), &b.data)?;
        }
        let index_path = dir.join("index.json");
        let mut index: Value = match std::fs::read(&index_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(std::io::Error::other)?,
            Err(_) => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
        };
        let manifests = index["manifests"].as_array_mut().expect("manifests array");
        manifests.retain(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"].as_str() != Some(tag)
        });
        let mut desc = self.manifest.descriptor();
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        manifests.push(desc);
        std::fs::write(
            index_path,
            serde_json::to_vec_pretty(&index).map_err(std::io::Error::other)?,
        )
    }
}
