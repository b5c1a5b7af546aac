//! Plugins as OCI artifacts (as falcoctl distributes them): an image index with one entry per
//! platform (`platform.os`, `platform.architecture`, `platform.variant`), each entry a manifest
//! with `artifactType: application/vnd.sidescan.plugin.v1`, the empty config and one layer
//! `application/vnd.sidescan.plugin.binary.v1` titled with the binary's file name.

use std::collections::BTreeMap;

use oci_client::manifest::OciDescriptor;
use serde_json::{Value, json};

use crate::Error;
use crate::artifact::{ArtifactFile, CREATED, single_file};
use crate::media;
use crate::registry::Manifest;

/// The artifact type of each per-platform plugin manifest (and of the index).
pub const ARTIFACT_TYPE: &str = "application/vnd.sidescan.plugin.v1";
/// The media type of a plugin binary.
pub const LAYER_TYPE: &str = "application/vnd.sidescan.plugin.binary.v1";

/// `os/arch[/variant]` in Go's names (`linux/amd64`, `linux/arm64/v8`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Platform {
    /// `linux`, `darwin`...
    pub os: String,
    /// `amd64`, `arm64`...
    pub architecture: String,
    /// `v8`, `v7`... when given.
    pub variant: Option<String>,
}

impl std::str::FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric());
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Self {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: Some((*variant).into()),
            }),
            _ => Err(Error::BadReference(format!(
                "platform {s:?}: want OS/ARCH[/VARIANT], e.g. linux/amd64"
            ))),
        }
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

impl Platform {
    /// The platform this program runs on, in Go's names.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Self {
            os: std::env::consts::OS.into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Whether an index entry's platform runs here: same OS and architecture; a variant only
    /// matters when both name one (`arm64` and `arm64/v8` are the same machine).
    pub fn runs(&self, entry: &Platform) -> bool {
        self.os == entry.os
            && self.architecture == entry.architecture
            && (self.variant.is_none() || entry.variant.is_none() || self.variant == entry.variant)
    }

    fn json(&self) -> Value {
        let mut v = json!({"os": self.os, "architecture": self.architecture});
        if let Some(variant) = &self.variant {
            v["variant"] = json!(variant);
        }
        v
    }
}

/// The index over per-platform manifests (`(platform, manifest descriptor)`), annotated with
/// its creation time.
pub fn index(entries: &[(Platform, OciDescriptor)], created: &str) -> Result<Vec<u8>, Error> {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(platform, d)| {
            json!({
                "mediaType": d.media_type, "digest": d.digest, "size": d.size,
                "artifactType": ARTIFACT_TYPE, "platform": platform.json(),
            })
        })
        .collect();
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "artifactType": ARTIFACT_TYPE,
        "manifests": manifests,
        "annotations": BTreeMap::from([(CREATED, created)]),
    });
    serde_json::to_vec(&doc).map_err(|e| Error::Malformed(e.to_string()))
}

/// The platforms of a plugin index and their manifest digests.
pub fn platforms(index: &Manifest) -> Result<Vec<(Platform, String)>, Error> {
    let entries = index.json["manifests"]
        .as_array()
        .ok_or_else(|| Error::Malformed(format!("{} is not an index", index.digest)))?;
    entries
        .iter()
        .map(|e| {
            let p = &e["platform"];
            let platform = Platform {
                os: p["os"].as_str().unwrap_or_default().into(),
                architecture: p["architecture"].as_str().unwrap_or_default().into(),
                variant: p["variant"].as_str().map(str::to_string),
            };
            let digest = e["digest"].as_str().unwrap_or_default().to_string();
            if platform.os.is_empty() || platform.architecture.is_empty() || digest.is_empty() {
                return Err(Error::Malformed(format!(
                    "index {} has an entry without a platform or digest",
                    index.digest
                )));
            }
            Ok((platform, digest))
        })
        .collect()
}

/// The binary of a per-platform plugin manifest (artifact type checked, exactly one binary).
pub fn binary(manifest: &Manifest) -> Result<ArtifactFile, Error> {
    let t = manifest.json["artifactType"].as_str().unwrap_or_default();
    if t != ARTIFACT_TYPE {
        return Err(Error::Malformed(format!(
            "{} is not a sidescan plugin: artifactType {t:?}, want {ARTIFACT_TYPE}",
            manifest.digest
        )));
    }
    single_file(manifest, LAYER_TYPE, "plugin manifest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/../x".parse::<Platform>().is_err());
        let host: Platform = "linux/arm64".parse().unwrap();
        assert!(host.runs(&p));
        assert!(!host.runs(&"linux/amd64".parse().unwrap()));
    }
}
