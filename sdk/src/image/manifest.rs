//! Manifest, index and image-config documents (OCI and Docker schema 2), media types, and
//! platform matching. Only the fields the pipeline needs are parsed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::Error;
use crate::model::Platform;

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media types accepted when pulling a manifest.
pub(crate) const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// OCI image config.
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayerFormat {
    /// Plain tar.
    Tar,
    /// gzip-compressed tar (possibly several members).
    Gzip,
    /// zstd-compressed tar.
    Zstd,
    /// Foreign / non-distributable: not pulled.
    NonDistributable,
    /// Not a layer the SDK can read.
    Unsupported,
}

/// Classifies a layer media type.
pub(crate) fn layer_format(media_type: &str) -> LayerFormat {
    let mt = media_type.trim().to_ascii_lowercase();
    if mt.contains("nondistributable") || mt.contains("foreign.diff") {
        return LayerFormat::NonDistributable;
    }
    match mt.as_str() {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => LayerFormat::Tar,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => LayerFormat::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => LayerFormat::Zstd,
        _ => LayerFormat::Unsupported,
    }
}

/// A content descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    /// Media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the target.
    pub digest: String,
    /// Size of the target in bytes.
    pub size: i64,
    /// Platform (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    /// The size, refusing negative values.
    pub(crate) fn size(&self) -> Result<u64, Error> {
        u64::try_from(self.size).map_err(|_| Error::Malformed {
            what: format!("descriptor {}", self.digest),
            why: "negative size".into(),
        })
    }

    /// An annotation.
    pub(crate) fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// A platform as written in an index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlatformSpec {
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// OS.
    #[serde(default)]
    pub os: String,
    /// Variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// As the SDK's platform type.
    pub(crate) fn to_platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().unwrap_or_default(),
        }
    }
}

/// A manifest or index document.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestDoc {
    /// Must be 2.
    #[serde(default)]
    pub schema_version: u32,
    /// Media type, when the document says.
    #[serde(default)]
    pub media_type: Option<String>,
    /// Config (manifests).
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// Layers (manifests).
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    /// Entries (indexes).
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    /// The artifact type of a non-image manifest (OCI 1.1), when it declares one.
    #[serde(default)]
    pub artifact_type: Option<String>,
}

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocKind {
    /// An image (or artifact) manifest.
    Manifest,
    /// An index / manifest list.
    Index,
}

impl ManifestDoc {
    /// Parses and classifies a manifest document.
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<(Self, DocKind), Error> {
        let doc: ManifestDoc = serde_json::from_slice(bytes).map_err(|source| Error::NotJson {
            what: what.to_string(),
            expected: "manifest or index",
            source,
        })?;
        if doc.schema_version != 2 {
            return Err(Error::Malformed {
                what: what.to_string(),
                why: format!(
                    "unsupported manifest schemaVersion {} (only 2 is supported)",
                    doc.schema_version
                ),
            });
        }
        let kind = match doc.media_type.as_deref() {
            Some(OCI_INDEX) | Some(DOCKER_LIST) => DocKind::Index,
            Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => DocKind::Manifest,
            Some(other) => {
                return Err(Error::Malformed {
                    what: what.to_string(),
                    why: format!("unsupported manifest media type {other}"),
                });
            }
            None if doc.manifests.is_some() => DocKind::Index,
            None if doc.config.is_some() => DocKind::Manifest,
            None => {
                return Err(Error::Malformed {
                    what: what.to_string(),
                    why: "document is neither a manifest nor an index".into(),
                });
            }
        };
        match kind {
            DocKind::Index if doc.manifests.is_none() => Err(Error::Malformed {
                what: what.to_string(),
                why: "index without manifests".into(),
            }),
            DocKind::Manifest if doc.config.is_none() => Err(Error::Malformed {
                what: what.to_string(),
                why: "manifest without config".into(),
            }),
            _ => Ok((doc, kind)),
        }
    }

    /// The document's media type, inferred when absent.
    pub(crate) fn media_type_or(&self, kind: DocKind) -> String {
        self.media_type.clone().unwrap_or_else(|| {
            match kind {
                DocKind::Index => OCI_INDEX,
                DocKind::Manifest => OCI_MANIFEST,
            }
            .to_string()
        })
    }
}

/// An image config (the parts the pipeline needs).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ImageConfig {
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// OS.
    #[serde(default)]
    pub os: String,
    /// Variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// Layer diff_ids.
    #[serde(default)]
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct RootFs {
    /// diff_ids, base layer first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    /// Parses a config blob.
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|source| Error::NotJson {
            what: what.to_string(),
            expected: "image config",
            source,
        })
    }

    /// The platform, when the config names one.
    pub(crate) fn platform(&self) -> Option<Platform> {
        if self.os.is_empty() && self.architecture.is_empty() {
            return None;
        }
        Some(Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().unwrap_or_default(),
        })
    }
}

/// Whether a config media type is an image config (anything else is a non-image artifact).
pub(crate) fn is_image_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// containerd's `platforms.Normalize`: lower case, `x86_64` is `amd64`, `aarch64` is `arm64`,
/// an arm64 `v8` variant is no variant, a plain `arm` is `arm/v7`.
fn normalize_platform(os: &str, arch: &str, variant: &str) -> (String, String, String) {
    let mut os = os.to_ascii_lowercase();
    if os == "macos" {
        os = "darwin".into();
    }
    let (arch, variant) = (arch.to_ascii_lowercase(), variant.to_ascii_lowercase());
    let (arch, variant) = match arch.as_str() {
        "i386" => ("386".to_string(), String::new()),
        "x86_64" | "x86-64" | "amd64" => (
            "amd64".to_string(),
            if variant == "v1" {
                String::new()
            } else {
                variant
            },
        ),
        "aarch64" | "arm64" => (
            "arm64".to_string(),
            match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".to_string(),
                _ => variant,
            },
        ),
        "armhf" => ("arm".to_string(), "v7".to_string()),
        "armel" => ("arm".to_string(), "v6".to_string()),
        "arm" => (
            "arm".to_string(),
            match variant.as_str() {
                "" | "7" => "v7".to_string(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            },
        ),
        _ => (arch, variant),
    };
    (os, arch, variant)
}

/// containerd's `platformVector`: the platforms a host of `p` runs, best first (`amd64/v3`,
/// `amd64/v2`, `amd64/v1`, `386`; `arm/v7` down to `arm/v5`; `arm64`, then `arm/v8` down).
fn platform_vector(p: (String, String, String)) -> Vec<(String, String, String)> {
    let (os, arch, variant) = p.clone();
    let mut vector = vec![p];
    let version = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
    match arch.as_str() {
        "amd64" => {
            if let Some(n) = version(&variant).filter(|n| *n > 1) {
                for k in (1..n).rev() {
                    vector.push((os.clone(), arch.clone(), format!("v{k}")));
                }
            }
            vector.push((os, "386".into(), String::new()));
        }
        "arm" => {
            if let Some(n) = version(&variant).filter(|n| *n > 5) {
                for k in (5..n).rev() {
                    vector.push((os.clone(), arch.clone(), format!("v{k}")));
                }
            }
        }
        "arm64" => {
            let v = if variant.is_empty() {
                "v8".into()
            } else {
                variant
            };
            vector.extend(platform_vector((os, "arm".into(), v)));
        }
        _ => {}
    }
    vector
}

/// How well an index entry suits a runtime asking for `wanted`, ranked as containerd ranks
/// candidates (`platforms.Only` and the sort in `images.Manifest`): `Some(0)` is the best
/// match, `None` means such a runtime never runs the entry. An entry without a platform
/// matches any request but ranks after every declared match.
pub(crate) fn platform_rank(wanted: &Platform, have: Option<&PlatformSpec>) -> Option<usize> {
    let Some(have) = have else {
        return Some(usize::MAX);
    };
    let want = normalize_platform(&wanted.os, &wanted.architecture, &wanted.variant);
    let have = normalize_platform(
        &have.os,
        &have.architecture,
        have.variant.as_deref().unwrap_or(""),
    );
    platform_vector(want).iter().position(|p| *p == have)
}

/// Whether an index entry declares the platform `unknown/unknown`, which no runtime selects
/// (buildx writes its attestation manifests so).
pub(crate) fn is_unknown_platform(entry: &Descriptor) -> bool {
    entry
        .platform
        .as_ref()
        .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
}

/// Whether a manifest is an image: some layer has an image layer media type (tar, compressed
/// or not, non-distributable included), whatever its config media type says.
pub(crate) fn has_image_layers(layers: &[Descriptor]) -> bool {
    layers
        .iter()
        .any(|l| layer_format(&l.media_type) != LayerFormat::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_layers() {
        assert_eq!(
            layer_format("application/vnd.oci.image.layer.v1.tar+gzip"),
            LayerFormat::Gzip
        );
        assert_eq!(
            layer_format("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            LayerFormat::Gzip
        );
        assert_eq!(
            layer_format("application/vnd.oci.image.layer.v1.tar+zstd"),
            LayerFormat::Zstd
        );
        assert_eq!(
            layer_format("application/vnd.oci.image.layer.v1.tar"),
            LayerFormat::Tar
        );
        assert_eq!(
            layer_format("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            LayerFormat::NonDistributable
        );
        assert_eq!(
            layer_format("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            LayerFormat::NonDistributable
        );
        assert_eq!(
            layer_format("application/x-whatever"),
            LayerFormat::Unsupported
        );
    }

    #[test]
    fn platforms_rank_as_containerd_ranks_them() {
        let spec = |os: &str, arch: &str, variant: Option<&str>| PlatformSpec {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
        };
        let arm = |wanted: &str, variant: Option<&str>| {
            platform_rank(
                &wanted.parse().unwrap(),
                Some(&spec("linux", "arm", variant)),
            )
        };
        // a plain `linux/arm` request is arm/v7: v7 first, then v6, v5; never v8
        assert_eq!(arm("linux/arm", Some("v7")), Some(0));
        assert_eq!(arm("linux/arm", None), Some(0));
        assert_eq!(arm("linux/arm", Some("v6")), Some(1));
        assert_eq!(arm("linux/arm", Some("v5")), Some(2));
        assert_eq!(arm("linux/arm", Some("v8")), None);
        assert_eq!(arm("linux/arm/v6", Some("v7")), None);
        // arm64 hosts run arm/v8..v5 after arm64 itself; amd64 hosts run 386 last
        assert_eq!(arm("linux/arm64", Some("v7")), Some(2));
        let amd = |wanted: &str, arch: &str, variant: Option<&str>| {
            platform_rank(
                &wanted.parse().unwrap(),
                Some(&spec("linux", arch, variant)),
            )
        };
        assert_eq!(amd("linux/amd64", "x86_64", None), Some(0));
        assert_eq!(amd("linux/amd64", "amd64", Some("v1")), Some(0));
        assert_eq!(amd("linux/amd64", "386", None), Some(1));
        assert_eq!(amd("linux/amd64/v3", "amd64", Some("v2")), Some(1));
        assert_eq!(amd("linux/amd64", "amd64", Some("v2")), None);
        assert_eq!(amd("linux/amd64", "unknown", None), None);
        assert_eq!(
            platform_rank(
                &"linux/amd64".parse().unwrap(),
                Some(&spec("windows", "amd64", None))
            ),
            None
        );
        // no declared platform: any runtime may run it, after every declared match
        assert_eq!(
            platform_rank(&"linux/s390x".parse().unwrap(), None),
            Some(usize::MAX)
        );
    }

    #[test]
    fn parses_manifests_and_indexes() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":2},"layers":[]}"#;
        let (_, kind) = ManifestDoc::parse(m, "m").unwrap();
        assert_eq!(kind, DocKind::Manifest);
        let i = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"x","digest":"sha256:bb","size":3,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;
        let (doc, kind) = ManifestDoc::parse(i, "i").unwrap();
        assert_eq!(kind, DocKind::Index);
        let p = doc.manifests.unwrap()[0].platform.clone().unwrap();
        let rank = |wanted: &str| platform_rank(&wanted.parse().unwrap(), Some(&p));
        assert_eq!(rank("linux/arm64"), Some(0));
        assert_eq!(rank("linux/arm64/v8"), Some(0));
        assert_eq!(rank("linux/amd64"), None);
        assert_eq!(rank("linux/arm64/v7"), None);
        for bad in [
            &b"{}"[..],
            b"not json",
            br#"{"schemaVersion":1}"#,
            br#"{"schemaVersion":2,"mediaType":"text/plain"}"#,
        ] {
            assert_eq!(
                crate::Error::from(ManifestDoc::parse(bad, "x").unwrap_err()).code(),
                tonic::Code::FailedPrecondition
            );
        }
    }
}
