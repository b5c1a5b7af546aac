//! Talking to a registry: one [`transport::Transport`] per (registry, protocol, credential set),
//! bounded retries with backoff for idempotent GETs, error mapping to status codes (oci-client's
//! error type is the vocabulary), capped manifest reads and verified streaming blob downloads.
//! Registry bodies are never quoted in errors: messages name the registry, the status and the
//! OCI error codes only.

mod transport;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use super::auth::Credentials;
use super::manifest;
use super::reference::{ImageRef, Target, digest_hex};
use crate::error::Error;
use crate::image::error::Error as ImageError;
use crate::metrics::{Metrics, Pulled};
use transport::{Failure, Transport};

/// Attempts per idempotent request (first try included).
const ATTEMPTS: u32 = 4;
/// First backoff; doubled per retry.
const BACKOFF: Duration = Duration::from_millis(200);
/// Clients kept for reuse (token caches and connection pools).
const MAX_CLIENTS: usize = 64;

type ClientKey = (String, bool, [u8; 32]);

/// [`Transport`]s keyed by registry, protocol and a hash of the credentials (a transport caches
/// tokens for its credentials, so credential sets never share one).
pub(crate) struct ClientPool {
    clients: Mutex<HashMap<ClientKey, (Arc<Transport>, Instant)>>,
    metrics: Arc<Metrics>,
    allowed: Arc<[String]>,
}

impl std::fmt::Debug for ClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPool").finish_non_exhaustive()
    }
}

impl ClientPool {
    /// An empty pool whose sessions count the bytes they pull in `metrics` and follow redirects
    /// and token realms only to `allowed` hosts (normalised; empty: any).
    pub(crate) fn new(metrics: Arc<Metrics>, allowed: Vec<String>) -> Self {
        Self {
            clients: Mutex::default(),
            metrics,
            allowed: allowed.into(),
        }
    }

    /// The session for this target and credential set.
    pub(crate) fn session(&self, target: &Target, creds: &Credentials) -> Result<Session, Error> {
        let key = (target.image.registry.clone(), target.plain_http, creds.key);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let client = match clients.get_mut(&key) {
            Some((client, used)) => {
                *used = Instant::now();
                client.clone()
            }
            None => {
                if clients.len() >= MAX_CLIENTS
                    && let Some(oldest) = clients
                        .iter()
                        .min_by_key(|(_, (_, used))| *used)
                        .map(|(k, _)| k.clone())
                {
                    clients.remove(&oldest);
                }
                let client = Arc::new(Transport::new(
                    &target.image.registry,
                    target.plain_http,
                    creds.auth.clone(),
                    self.allowed.clone(),
                    concat!("sidescan-sdk/", env!("CARGO_PKG_VERSION")),
                )?);
                clients.insert(key, (client.clone(), Instant::now()));
                client
            }
        };
        let source = format!(
            "{}://{}",
            if target.plain_http { "http" } else { "https" },
            target.image.registry
        );
        Ok(Session {
            client,
            source,
            anonymous: creds.is_anonymous(),
            image: target.image.clone(),
            metrics: self.metrics.clone(),
        })
    }
}

/// One scan's view of a registry: client, credentials, repository.
#[derive(Clone)]
pub(crate) struct Session {
    client: Arc<Transport>,
    /// `scheme://registry`: only requests to the same registry share a blob download (see the
    /// blob cache), so a stalling registry stalls nobody else.
    source: String,
    anonymous: bool,
    image: ImageRef,
    metrics: Arc<Metrics>,
}

impl Session {
    /// The blob cache's single-flight source key of this session.
    pub(crate) fn source_key(&self) -> &str {
        &self.source
    }

    /// `host/repo`, for messages.
    pub(crate) fn repo_name(&self) -> String {
        format!("{}/{}", self.image.registry, self.image.repository)
    }

    /// Pulls a manifest or index by tag or digest, verifying its digest (when pulled by digest)
    /// and its size. Returns the bytes and their digest.
    pub(crate) async fn fetch_manifest(
        &self,
        reference: &str,
        max_bytes: u64,
        cancel: &CancellationToken,
    ) -> Result<(Vec<u8>, String), Error> {
        let what = format!("manifest {reference} of {}", self.repo_name());
        let (body, header) = retry(cancel, &what, || async {
            self.client
                .manifest(
                    &self.image.repository,
                    reference,
                    manifest::ACCEPTED,
                    max_bytes,
                )
                .await
                .map_err(|f| self.fail(f, &what).0)
        })
        .await?;
        self.metrics.pulled(Pulled::Manifest, body.len() as u64);
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        if reference.starts_with("sha256:") && digest != reference {
            return Err(ImageError::DigestMismatch {
                what,
                expected: reference.to_string(),
                actual: digest,
            }
            .into());
        }
        if let Some(h) = header.filter(|h| h.starts_with("sha256:"))
            && h != digest
        {
            return Err(ImageError::DigestMismatch {
                what,
                expected: format!("its Docker-Content-Digest {h}"),
                actual: digest,
            }
            .into());
        }
        Ok((body.to_vec(), digest))
    }

    /// Downloads blob `digest` of `size` bytes into `dest` (created or truncated), hashing while
    /// writing on a blocking thread; resumes with a Range request after transient errors.
    /// On return `dest` holds exactly the verified content.
    pub(crate) async fn download_blob(
        &self,
        digest: &str,
        size: u64,
        dest: &Path,
        cancel: &CancellationToken,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), Error> {
        let what = format!("blob {digest} of {}", self.repo_name());
        let file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(dest)
        }
        .map_err(|source| ImageError::Storage {
            context: format!("cannot create {}", dest.display()),
            source,
        })?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<WriterMsg>(32);
        let writer = tokio::task::spawn_blocking(move || write_and_hash(file, rx));
        let mut received: u64 = 0;
        let mut attempt = 0;
        let outcome: Result<(), Error> = loop {
            attempt += 1;
            let result = self
                .stream_once(digest, size, &mut received, &tx, cancel, progress, &what)
                .await;
            match result {
                Ok(()) => break Ok(()),
                Err((err, retryable)) if retryable && attempt < ATTEMPTS => {
                    tracing::debug!(%what, attempt, error = %err, "retrying blob download");
                    if sleep_or_cancel(BACKOFF * 2u32.pow(attempt - 1), cancel).await {
                        break Err(cancelled());
                    }
                }
                Err((err, _)) => break Err(err),
            }
        };
        drop(tx);
        let written = writer
            .await
            .map_err(|e| Error::internal(format!("blob writer thread failed: {e}")))?
            .map_err(|source| ImageError::Storage {
                context: format!("cannot write {}", dest.display()),
                source,
            });
        outcome?;
        let (actual, count) = written?;
        if count != size {
            return Err(ImageError::SizeMismatch {
                what,
                expected: size,
                actual: count,
            }
            .into());
        }
        if actual != digest_hex(digest) {
            return Err(ImageError::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual: format!("sha256:{actual}"),
            }
            .into());
        }
        Ok(())
    }

    /// One GET (resuming at `received`). Errors carry whether a retry may help.
    #[allow(clippy::too_many_arguments)]
    async fn stream_once(
        &self,
        digest: &str,
        size: u64,
        received: &mut u64,
        tx: &std::sync::mpsc::SyncSender<WriterMsg>,
        cancel: &CancellationToken,
        progress: &(dyn Fn(u64) + Send + Sync),
        what: &str,
    ) -> Result<(), (Error, bool)> {
        // Always ask for a range: after an error the download resumes where it stopped.
        let response = tokio::select! {
            r = self.client.blob(&self.image.repository, digest, *received) => r,
            () = cancel.cancelled() => return Err((cancelled(), false)),
        };
        let response = response.map_err(|f| self.fail(f, what))?;
        if response.status() == reqwest::StatusCode::OK && *received > 0 {
            // The registry ignored the range: start over.
            tx.send(WriterMsg::Reset)
                .map_err(|_| (writer_gone(), false))?;
            *received = 0;
        }
        let mut stream = response.bytes_stream();
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                () = cancel.cancelled() => return Err((cancelled(), false)),
            };
            match next {
                None => break,
                Some(Ok(chunk)) => {
                    // The one place blob bytes arrive from a registry (retried ranges included).
                    self.metrics.pulled(Pulled::Blob, chunk.len() as u64);
                    *received += chunk.len() as u64;
                    if *received > size {
                        return Err((
                            Error::data_loss(format!(
                                "{what}: registry sent more than the descriptor's {size} bytes"
                            )),
                            false,
                        ));
                    }
                    tx.send(WriterMsg::Data(chunk))
                        .map_err(|_| (writer_gone(), false))?;
                    progress(*received);
                }
                Some(Err(e)) => {
                    if *received == size {
                        // The whole content arrived; our hash decides after the writer finishes.
                        break;
                    }
                    // Without the URL: a redirect target may carry a signature.
                    let e = e.without_url();
                    return Err((
                        Error::unavailable(format!("{what}: download interrupted: {e}")),
                        true,
                    ));
                }
            }
        }
        if *received < size {
            return Err((
                Error::unavailable(format!(
                    "{what}: download ended after {} of {size} bytes",
                    *received
                )),
                true,
            ));
        }
        Ok(())
    }

    /// Maps a failure to the SDK's status codes, and whether a retry may help.
    fn fail(&self, f: Failure, what: &str) -> (Error, bool) {
        match f {
            Failure::Oci(e) => {
                let retryable = is_retryable(&e);
                (map_oci_error(e, what, self.anonymous), retryable)
            }
            Failure::Refused(e) => (with_context(&e, what), false),
        }
    }
}

/// `e` with its message prefixed by `what` (same code).
fn with_context(e: &Error, what: &str) -> Error {
    let m = format!("{what}: {}", e.message());
    match e {
        Error::InvalidArgument(_) => Error::InvalidArgument(m),
        Error::NotFound(_) => Error::NotFound(m),
        Error::Unauthenticated(_) => Error::Unauthenticated(m),
        Error::PermissionDenied(_) => Error::PermissionDenied(m),
        Error::Unavailable(_) => Error::Unavailable(m),
        Error::DataLoss(_) => Error::DataLoss(m),
        Error::FailedPrecondition(_) => Error::FailedPrecondition(m),
        Error::ResourceExhausted(_) => Error::ResourceExhausted(m),
        Error::DeadlineExceeded(_) => Error::DeadlineExceeded(m),
        Error::Cancelled(_) => Error::Cancelled(m),
        Error::Internal(_) => Error::Internal(m),
    }
}

enum WriterMsg {
    Data(bytes::Bytes),
    Reset,
}

fn write_and_hash(
    mut file: std::fs::File,
    rx: std::sync::mpsc::Receiver<WriterMsg>,
) -> std::io::Result<(String, u64)> {
    use std::io::Seek as _;
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    while let Ok(msg) = rx.recv() {
        match msg {
            WriterMsg::Data(chunk) => {
                hasher.update(&chunk);
                file.write_all(&chunk)?;
                count += chunk.len() as u64;
            }
            WriterMsg::Reset => {
                file.set_len(0)?;
                file.seek(std::io::SeekFrom::Start(0))?;
                hasher = Sha256::new();
                count = 0;
            }
        }
    }
    file.flush()?;
    Ok((hex::encode(hasher.finalize()), count))
}

fn writer_gone() -> Error {
    Error::internal("blob writer stopped early")
}

fn cancelled() -> Error {
    ImageError::Cancelled.into()
}

/// Sleeps, returning true if cancelled first.
pub(crate) async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = cancel.cancelled() => true,
    }
}

/// Runs `op` up to [`ATTEMPTS`] times while it fails with UNAVAILABLE.
async fn retry<T, F, Fut>(cancel: &CancellationToken, what: &str, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = tokio::select! {
            r = op() => r,
            () = cancel.cancelled() => return Err(cancelled()),
        };
        match result {
            Err(Error::Unavailable(msg)) if attempt < ATTEMPTS => {
                tracing::debug!(%what, attempt, error = %msg, "retrying");
                if sleep_or_cancel(BACKOFF * 2u32.pow(attempt - 1), cancel).await {
                    return Err(cancelled());
                }
            }
            other => return other,
        }
    }
}

fn is_retryable(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => true,
        OciDistributionError::ServerError { code, .. } => {
            *code >= 500 || *code == 429 || *code == 408
        }
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| e.code == OciErrorCode::Toomanyrequests),
        _ => false,
    }
}

/// Maps an oci-client error to a status code. UNAVAILABLE is what [`retry`] retries, so only
/// transient failures map to it.
pub(crate) fn map_oci_error(e: OciDistributionError, what: &str, anonymous: bool) -> Error {
    let unauthenticated = || {
        if anonymous {
            Error::Unauthenticated(format!(
                "{what}: the registry requires credentials (HTTP 401)"
            ))
        } else {
            Error::Unauthenticated(format!(
                "{what}: the registry refused the credentials (HTTP 401)"
            ))
        }
    };
    match e {
        OciDistributionError::UnauthorizedError { .. } => unauthenticated(),
        OciDistributionError::AuthenticationFailure(_) => Error::Unauthenticated(format!(
            "{what}: the registry's token service refused the credentials"
        )),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            // The codes only: the messages are the registry's text.
            let text: Vec<String> = envelope
                .errors
                .iter()
                .map(|e| format!("{:?}", e.code))
                .collect();
            let text = text.join(", ");
            let has = |c: OciErrorCode| codes.contains(&&c);
            if has(OciErrorCode::Unauthorized) {
                unauthenticated()
            } else if has(OciErrorCode::Denied) {
                Error::PermissionDenied(format!("{what}: the registry denied access ({text})"))
            } else if has(OciErrorCode::ManifestUnknown)
                || has(OciErrorCode::BlobUnknown)
                || has(OciErrorCode::NameUnknown)
                || has(OciErrorCode::NotFound)
                || has(OciErrorCode::ManifestBlobUnknown)
            {
                Error::not_found(format!("{what}: not found ({text})"))
            } else if has(OciErrorCode::NameInvalid) || has(OciErrorCode::TagInvalid) {
                Error::invalid_argument(format!("{what}: the registry rejected the name ({text})"))
            } else if has(OciErrorCode::Toomanyrequests) {
                Error::unavailable(format!("{what}: rate limited by the registry ({text})"))
            } else if has(OciErrorCode::Unsupported) {
                Error::failed_precondition(format!("{what}: unsupported by the registry ({text})"))
            } else {
                Error::unavailable(format!("{what}: registry error ({text})"))
            }
        }
        OciDistributionError::ServerError { code, .. } => {
            // Never the body: a hostile registry would write into our callers' errors.
            match code {
                401 => unauthenticated(),
                403 => Error::PermissionDenied(format!(
                    "{what}: the registry denied access (HTTP 403)"
                )),
                404 => Error::not_found(format!("{what}: not found (HTTP 404)")),
                400 => Error::invalid_argument(format!(
                    "{what}: the registry rejected the request (HTTP 400)"
                )),
                406 | 415 => Error::failed_precondition(format!(
                    "{what}: the registry cannot serve a supported media type (HTTP {code})"
                )),
                _ => Error::unavailable(format!("{what}: registry answered HTTP {code}")),
            }
        }
        OciDistributionError::RequestError(err) => {
            let kind = if err.is_connect() {
                "cannot connect"
            } else if err.is_timeout() {
                "timed out"
            } else {
                "request failed"
            };
            // reqwest's Display includes the URL (never credentials) and the cause chain.
            let mut msg = format!("{what}: {kind}: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            Error::unavailable(msg)
        }
        OciDistributionError::IoError(err) => Error::unavailable(format!("{what}: {err}")),
        OciDistributionError::DigestError(err) => {
            Error::data_loss(format!("{what}: content does not match its digest ({err})"))
        }
        OciDistributionError::UrlParseError(err) => {
            Error::invalid_argument(format!("{what}: {err}"))
        }
        OciDistributionError::SpecViolationError(err) => Error::unavailable(format!(
            "{what}: registry violates the distribution spec: {err}"
        )),
        other => Error::failed_precondition(format!("{what}: {other}")),
    }
}

#[cfg(test)]
mod tests;
