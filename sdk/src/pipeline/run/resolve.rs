//! Resolution: the reference to the image manifests to scan, through nested indexes, with the
//! platform chosen as containerd chooses it.

use std::collections::HashSet;

use futures::future::BoxFuture;

use super::{Leaf, Run, blob_digest};
use crate::error::Error;
use crate::image::error::Error as ImageError;
use crate::image::manifest::{
    DOCKER_LIST, Descriptor, DocKind, ManifestDoc, OCI_INDEX, has_image_layers,
    is_unknown_platform, platform_rank,
};

/// The manifest a reference names and the image manifests chosen from it.
pub(super) struct Resolved {
    /// Digest of the manifest or index the reference names.
    pub(super) digest: String,
    /// Its media type.
    pub(super) media_type: String,
    /// Whether it is an index.
    pub(super) is_index: bool,
    /// The image (or artifact) manifests to scan: the manifest itself, or those chosen from the
    /// index (one with a requested platform).
    pub(super) leaves: Vec<Leaf>,
}

impl Run<'_> {
    /// Fetches the manifest the reference names and, for an index, the image manifests it lists,
    /// keeping only the best match for the requested platform.
    pub(super) async fn resolve(&self) -> Result<Resolved, Error> {
        let image = &self.target.image;
        let reference = match (&image.digest, &image.tag) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        let (bytes, digest) = self
            .session
            .fetch_manifest(&reference, self.limits().max_manifest_bytes, &self.cancel)
            .await?;
        let (doc, kind) = ManifestDoc::parse(&bytes, &image.to_string())?;
        let media_type = doc.media_type_or(kind);
        let mut leaves = Vec::new();
        let is_index = kind == DocKind::Index;
        if is_index {
            let mut path = vec![digest.clone()];
            let mut seen = HashSet::new();
            self.collect(&doc, 1, &mut path, &mut seen, &mut leaves)
                .await?;
            if leaves.is_empty() {
                return Err(match &self.platform {
                    Some(p) => Error::failed_precondition(format!(
                        "platform {p} is not in the index {image}; available: {}",
                        available_platforms(&doc)
                    )),
                    None => Error::failed_precondition(format!("index {image} lists no images")),
                });
            }
        } else {
            leaves.push(Leaf {
                digest: digest.clone(),
                bytes,
                doc,
                media_type: media_type.clone(),
                index_platform: None,
            });
        }
        Ok(Resolved {
            digest,
            media_type,
            is_index,
            leaves,
        })
    }

    /// Collects the image manifests of an index (recursively), honouring the requested platform.
    ///
    /// With a platform, the choice is containerd's (`images.Manifest` with a limit of one): at
    /// each index level the entries whose platform matches (child indexes included; an entry
    /// without a platform matches but ranks last) are ordered by rank, stably, and only the
    /// first is followed, with no fallback to the others. Without a platform, every entry is
    /// followed and each index or image is visited once.
    fn collect<'s>(
        &'s self,
        index: &'s ManifestDoc,
        depth: u32,
        path: &'s mut Vec<String>,
        seen: &'s mut HashSet<String>,
        leaves: &'s mut Vec<Leaf>,
    ) -> BoxFuture<'s, Result<(), Error>> {
        Box::pin(async move {
            let limits = *self.limits();
            let entries = index.manifests.as_deref().unwrap_or_default();
            if limits.max_index_entries > 0 && entries.len() > limits.max_index_entries as usize {
                return Err(ImageError::Limit {
                    what: format!("index lists {} entries", entries.len()),
                    max: u64::from(limits.max_index_entries),
                }
                .into());
            }
            // Choose as a runtime chooses: by platform alone (annotations such as
            // `vnd.docker.reference.type` do not count), ranked like containerd.
            let chosen: Vec<&Descriptor> = match &self.platform {
                Some(wanted) => {
                    let mut ranked: Vec<(&Descriptor, usize)> = entries
                        .iter()
                        .filter_map(|e| platform_rank(wanted, e.platform.as_ref()).map(|r| (e, r)))
                        .collect();
                    ranked.sort_by_key(|(_, rank)| *rank); // stable: the first of equals
                    ranked.into_iter().take(1).map(|(e, _)| e).collect()
                }
                None => entries.iter().collect(),
            };
            for entry in chosen {
                let (digest, size) = blob_digest(entry, "index entry")?;
                if path.contains(&digest) {
                    return Err(Error::invalid_argument(format!(
                        "index loop: {digest} contains itself"
                    )));
                }
                if !seen.insert(digest.clone()) {
                    continue; // an index or image already collected
                }
                if limits.max_manifest_bytes > 0 && size > limits.max_manifest_bytes {
                    return Err(ImageError::Limit {
                        what: format!("manifest {digest} is {size} bytes"),
                        max: limits.max_manifest_bytes,
                    }
                    .into());
                }
                let (bytes, got) = self
                    .session
                    .fetch_manifest(&digest, limits.max_manifest_bytes, &self.cancel)
                    .await?;
                if bytes.len() as u64 != size {
                    return Err(Error::data_loss(format!(
                        "manifest {got} is {} bytes but the index says {size}",
                        bytes.len()
                    )));
                }
                let (doc, kind) = ManifestDoc::parse(&bytes, &format!("manifest {digest}"))?;
                // The descriptor says what it points at; a runtime refuses a document of another
                // kind, so the scan does too (it would otherwise follow what a runtime skips).
                let declared_index =
                    entry.media_type == OCI_INDEX || entry.media_type == DOCKER_LIST;
                if declared_index != (kind == DocKind::Index) {
                    return Err(Error::data_loss(format!(
                        "index entry {digest} is declared {:?} but is {}",
                        entry.media_type,
                        if kind == DocKind::Index {
                            "an index"
                        } else {
                            "an image manifest"
                        }
                    )));
                }
                match kind {
                    DocKind::Index => {
                        if limits.max_index_depth > 0 && depth + 1 > limits.max_index_depth {
                            return Err(Error::resource_exhausted(format!(
                                "indexes nested deeper than {} levels",
                                limits.max_index_depth
                            )));
                        }
                        path.push(digest);
                        self.collect(&doc, depth + 1, path, seen, leaves).await?;
                        path.pop();
                    }
                    DocKind::Manifest => {
                        // With every platform asked for, an `unknown/unknown` entry that is
                        // not an image (buildx attestations: in-toto layers) has nothing a
                        // runtime runs; one with image layers can still be run by digest and
                        // is scanned like any other.
                        if self.platform.is_none()
                            && is_unknown_platform(entry)
                            && !has_image_layers(doc.layers.as_deref().unwrap_or_default())
                        {
                            continue;
                        }
                        if limits.max_index_entries > 0
                            && leaves.len() >= limits.max_index_entries as usize
                        {
                            return Err(Error::resource_exhausted(format!(
                                "indexes name more than {} images",
                                limits.max_index_entries
                            )));
                        }
                        let media_type = doc.media_type_or(kind);
                        leaves.push(Leaf {
                            digest,
                            bytes,
                            doc,
                            media_type,
                            index_platform: entry.platform.clone(),
                        });
                    }
                }
            }
            Ok(())
        })
    }
}

fn available_platforms(index: &ManifestDoc) -> String {
    let list: Vec<String> = index
        .manifests
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|e| !is_unknown_platform(e))
        .filter_map(|e| e.platform.as_ref().map(|p| p.to_platform().to_string()))
        .collect();
    if list.is_empty() {
        "none declared".into()
    } else {
        list.join(", ")
    }
}
