//! What the SDK hands a plugin to scan: layers as streams of entries, whole images as a verified
//! OCI layout (and optionally an unpacked rootfs), a resolved image reference for engines that
//! pull images themselves, and blobs of non-image artifacts.

use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, ReadBuf};

use crate::error::Error;
use crate::model::Platform;

/// Descriptor facts about one layer of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Position in the manifest, 0 = base layer.
    pub index: usize,
    /// Digest of the compressed blob.
    pub digest: String,
    /// Digest of the uncompressed tar (from the image config's `rootfs.diff_ids`).
    pub diff_id: String,
    /// Media type of the blob.
    pub media_type: String,
    /// Size of the compressed blob in bytes.
    pub size: u64,
}

/// The type of a layer entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its content is readable from the entry.
    File,
    /// A directory.
    Directory,
    /// A symbolic link; see [`Entry::link_target`].
    Symlink,
    /// A hard link to an earlier entry of the same layer; see [`Entry::link_target`].
    Hardlink,
    /// `.wh.NAME`: deletes NAME of lower layers. `path` is the deleted path.
    Whiteout,
    /// `.wh..wh..opq`: hides the lower layers' content of the directory `path`.
    OpaqueWhiteout,
}

/// One entry of a layer, in archive order. For [`EntryKind::File`] it is an [`AsyncRead`] of the
/// file's content; reading is optional (unread content is skipped).
pub struct Entry {
    /// Absolute, normalised path inside the image, e.g. `/etc/passwd`.
    pub path: String,
    /// Entry type.
    pub kind: EntryKind,
    /// Content size in bytes (files only; 0 otherwise).
    pub size: u64,
    /// Unix permission bits.
    pub mode: u32,
    /// Target of a symlink or hard link.
    pub link_target: Option<String>,
    pub(crate) body: Pin<Box<dyn AsyncRead + Send>>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("size", &self.size)
            .field("mode", &self.mode)
            .field("link_target", &self.link_target)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for Entry {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.body.as_mut().poll_read(cx, buf)
    }
}

/// Source of a layer's entries (implemented by the image pipeline).
pub(crate) trait EntrySource: Send {
    /// The next entry, or `None` at the end of the layer.
    fn next_entry(&mut self) -> BoxFuture<'_, Result<Option<Entry>, Error>>;
}

/// One layer being scanned: its descriptor and a stream of its entries, read straight from the
/// verified blob without unpacking to disk.
pub struct Layer {
    /// Descriptor facts.
    pub info: LayerInfo,
    pub(crate) entries: Box<dyn EntrySource>,
}

impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layer")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Layer {
    /// The next entry, or `None` after the last. Errors carry their status code: a corrupt or
    /// over-limit layer ends the scan.
    pub async fn next_entry(&mut self) -> Result<Option<Entry>, Error> {
        self.entries.next_entry().await
    }
}

/// A whole image, pulled and verified, for [`crate::Input::WholeImage`] and
/// [`crate::Input::UncompressedLayout`] scanners.
#[derive(Debug, Clone)]
pub struct ImageInput {
    /// OCI image layout directory holding exactly this image (`oci-layout`, `index.json`, blobs).
    pub layout_dir: PathBuf,
    /// The `org.opencontainers.image.ref.name` of the image in the layout: pass
    /// `layout_dir:layout_ref` to tools such as `trivy image --input`.
    pub layout_ref: String,
    /// The unpacked root filesystem, when the scanner asked for one.
    pub rootfs: Option<PathBuf>,
    /// Image manifest digest, as in the registry (with [`crate::Input::UncompressedLayout`] the
    /// layout's own manifest differs from it).
    pub manifest_digest: String,
    /// Image config digest.
    pub config_digest: String,
    /// Layers, base first, as in the registry: blob digests and diff_ids.
    pub layers: Vec<LayerInfo>,
    /// Platform of the image, from its config.
    pub platform: Option<Platform>,
}

/// An image the SDK resolved but did not download, for [`crate::Input::Remote`] scanners: the
/// engine pulls it itself, by digest, with the caller's credentials.
///
/// The SDK has checked the request (allowlist, reference), fetched and verified the manifest (and
/// chosen the platform of an index), fetched and verified the config, and applied the
/// compressed-size limit to the manifest's declared sizes. It has *not* read the layers: their
/// digests, diff_ids and uncompressed limits are the engine's to check.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// Registry `host[:port]` (Docker Hub is `index.docker.io`).
    pub registry: String,
    /// Repository path, e.g. `library/alpine`.
    pub repository: String,
    /// Digest of the image manifest to scan (one platform's manifest, never an index).
    pub manifest_digest: String,
    /// The registry speaks plain http (the request said so); otherwise https with verified TLS.
    pub plain_http: bool,
    /// The caller's registry credentials. Pass them to the engine out of band (environment or
    /// stdin), never on a command line, and never log them.
    pub credentials: RegistryCredentials,
    /// Image config digest.
    pub config_digest: String,
    /// Layers, base first, as the manifest and config describe them.
    pub layers: Vec<LayerInfo>,
    /// Platform of the image, from its config.
    pub platform: Option<Platform>,
}

impl RemoteImage {
    /// `registry/repository@digest`: the digest-pinned reference to hand the engine, so it scans
    /// exactly the manifest the SDK resolved even if the tag moves meanwhile.
    pub fn reference(&self) -> String {
        format!(
            "{}/{}@{}",
            self.registry, self.repository, self.manifest_digest
        )
    }
}

/// Registry credentials of a scan, for [`RemoteImage`]. `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryCredentials {
    /// No credentials: pull anonymously.
    Anonymous,
    /// A user name and password (the registry's token exchange is the engine's to do).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token to send as is.
    Bearer {
        /// The token.
        token: String,
    },
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Anonymous => "Anonymous",
            Self::Basic { .. } => "Basic(<redacted>)",
            Self::Bearer { .. } => "Bearer(<redacted>)",
        })
    }
}

/// One blob of a non-image OCI artifact, readable as a verified stream.
pub struct ArtifactBlob {
    /// Digest of the blob.
    pub digest: String,
    /// Media type from the manifest.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// `org.opencontainers.image.title` annotation, if any (often the file name).
    pub title: Option<String>,
    pub(crate) body: Pin<Box<dyn AsyncRead + Send>>,
}

impl fmt::Debug for ArtifactBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactBlob")
            .field("digest", &self.digest)
            .field("media_type", &self.media_type)
            .field("size", &self.size)
            .field("title", &self.title)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for ArtifactBlob {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.body.as_mut().poll_read(cx, buf)
    }
}
