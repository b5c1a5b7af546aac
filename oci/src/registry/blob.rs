//! Blob downloads: the one `GET` (a redirect to storage followed once) behind [`Registry::blob`]
//! and the streaming [`Registry::blob_to_writer`] for blobs too large to hold in memory.

use oci_client::token_cache::RegistryOperation;
use sha2::{Digest as _, Sha256};

use super::Registry;
use crate::Error;

impl Registry {
    /// Streams blob `digest` of `repo` into `out`, refusing more than `size` bytes, and checks
    /// its size and digest at the end; `progress` gets the length of each chunk written. The
    /// caller discards `out` on error.
    pub async fn blob_to_writer<W>(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        out: &mut W,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), Error>
    where
        W: tokio::io::AsyncWrite + Unpin + Send,
    {
        use tokio::io::AsyncWriteExt as _;
        let what = format!("blob {repo}@{digest}");
        let mut response = self.blob_response(repo, digest).await?;
        let mut hash = Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Error::Http(format!("{what}: {e}")))?
        {
            written += chunk.len() as u64;
            if written > size {
                return Err(Error::TooLarge { what, max: size });
            }
            hash.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| Error::Http(format!("{what}: writing: {e}")))?;
            progress(chunk.len() as u64);
        }
        out.flush()
            .await
            .map_err(|e| Error::Http(format!("{what}: writing: {e}")))?;
        let actual = format!("sha256:{}", hex::encode(hash.finalize()));
        if actual != digest || written != size {
            return Err(Error::DigestMismatch { what, actual });
        }
        Ok(())
    }

    /// The successful response to `GET /v2/<repo>/blobs/<digest>`, one redirect followed.
    pub(super) async fn blob_response(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<reqwest::Response, Error> {
        let response = self
            .raw(
                RegistryOperation::Pull,
                repo,
                reqwest::Method::GET,
                &format!("/v2/{repo}/blobs/{digest}"),
            )
            .await?;
        // Blob GETs redirect to storage on many registries: follow one hop, without credentials.
        let response = if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Error::Malformed("blob redirect without Location".into()))?
                .to_string();
            self.http
                .get(&location)
                .send()
                .await
                .map_err(|e| Error::Http(format!("GET blob {repo}@{digest}: {e}")))?
        } else {
            response
        };
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Status {
                what: format!("GET blob {repo}@{digest}"),
                status: status.as_u16(),
            });
        }
        Ok(response)
    }
}
