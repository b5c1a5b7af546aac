//! Non-image artifacts: a manifest without image layers whose type a plugin's capabilities
//! consume, scanned blob by blob with [`Scanner::scan_artifact_blob`](crate::Scanner::scan_artifact_blob).

use std::sync::Arc;

use super::{Leaf, Run, blob_digest};
use crate::error::Error;
use crate::image::manifest::Descriptor;
use crate::input::ArtifactBlob;
use crate::model::ScanFindings;
use crate::pipeline::progress::Progress;

impl Run<'_> {
    /// Scans a non-image artifact blob by blob, if the plugin's capabilities consume its type
    /// (its `artifactType`, or else its config media type).
    pub(super) async fn scan_artifact(
        &self,
        leaf: &Leaf,
        config_media_type: &str,
        blobs: &[Descriptor],
    ) -> Result<ScanFindings, Error> {
        // An artifact is scanned only by a plugin whose capabilities consume its type.
        let artifact_type = leaf
            .doc
            .artifact_type
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or(config_media_type);
        let consumed = self.scanner.info().capabilities.iter().any(|c| {
            c.consumes
                .iter()
                .any(|t| t == artifact_type || t == config_media_type)
        });
        if !consumed {
            return Err(Error::failed_precondition(format!(
                "{} is an artifact of type {artifact_type}, which this plugin's capabilities \
                 do not consume",
                leaf.digest
            )));
        }
        let total: u64 = blobs.iter().map(|b| b.size.max(0) as u64).sum();
        let progress = Arc::new(Progress::new(self.ctx.progress.clone(), total, blobs.len()));
        let mut out = ScanFindings::default();
        for desc in blobs {
            let (digest, size) = blob_digest(desc, "artifact blob")?;
            let handle = self.fetch_verified(&digest, size, &progress).await?;
            let file = tokio::fs::File::open(handle.path())
                .await
                .map_err(|e| Error::internal(format!("cannot open cached blob {digest}: {e}")))?;
            let mut blob = ArtifactBlob {
                digest: digest.clone(),
                media_type: desc.media_type.clone(),
                size,
                title: desc
                    .annotation("org.opencontainers.image.title")
                    .map(str::to_string),
                body: Box::pin(file),
            };
            progress.scanning(format!(
                "scanning artifact blob {digest} of {}",
                leaf.digest
            ));
            let mut f = self
                .scanner
                .scan_artifact_blob(&mut blob, &self.ctx)
                .await?;
            for finding in &mut f.findings {
                if finding.layer_digest.is_empty() {
                    finding.layer_digest = digest.clone();
                }
            }
            out.extend(f);
            progress.layer_done();
        }
        Ok(out)
    }
}
