//! [`FileScans`]: scans a sequence of files (a layer's entries, an artifact's blobs) with clamd,
//! several at a time, without unpacking them to disk.
//!
//! Files arrive one after the other (a layer is a tar stream). For each file [`FileScans::submit`]
//! takes a connection slot, starts a task that streams to clamd (`INSTREAM`), and feeds that task
//! the file's content in 1 MiB chunks through a bounded channel; it returns once the file has been
//! read, while clamd is still scanning it, so the next file's scan overlaps. Memory is bounded by
//! `connections x (CHANNEL_DEPTH + 1) x 1 MiB`.
//!
//! With fd passing on and clamd on a Unix socket (see [`Clamd::with_fd_passing`]) each file is
//! instead copied into an anonymous memory file whose descriptor is passed to clamd (`FILDES`):
//! clamd scans it in place rather than first writing the stream to its own temporary file.
//!
//! A file larger than clamd's `StreamMaxLength` is written to the scan's scratch directory and
//! scanned with `SCAN /path` when clamd is local; otherwise it gets a `file-too-large` notice.
//! Nothing that was not scanned passes as clean. What depends only on the content and the
//! configuration (a size or recursion limit, encrypted content) becomes a [`Notice`], which the
//! SDK may cache with the layer's result. What may come out differently next time fails the
//! batch instead, so that no cached result ever carries it and the caller can retry: a clamd
//! `... ERROR` about one file (out of memory, temporary files, unreadable input) and clamd's
//! `MaxScanTime` limit (load-dependent) are UNAVAILABLE; an `INSTREAM size limit exceeded` reply
//! (clamd's `StreamMaxLength` is below `--stream-max-length`) is FAILED_PRECONDITION.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sidescan_sdk::model::notice_codes;
use sidescan_sdk::{Finding, FindingKind, Notice, ScanContext, ScanFindings, Severity};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{CHUNK_SIZE, Clamd};
use crate::error::ClamavError;
use crate::reply::{LIMITS_EXCEEDED_PREFIX, Verdict};

/// Notice code of a file clamd could not look into because it is encrypted
/// (`Heuristics.Encrypted.*`, clamd with `AlertEncrypted yes`).
pub const ENCRYPTED_NOTICE: &str = "encrypted";

/// Chunks queued per in-flight file, beyond the one being written.
pub const CHANNEL_DEPTH: usize = 2;

/// How files are scanned and how verdicts become findings and notices.
#[derive(Debug, Clone)]
pub struct ScanPolicy {
    /// Longest stream clamd accepts (its `StreamMaxLength`); larger files go to `SCAN` or get a
    /// notice.
    pub stream_max_length: u64,
    /// clamd's `MaxFileSize`: an `OK` for a larger file is not trusted (clamd skips such files
    /// silently unless `AlertExceedsMax yes`) and becomes a notice.
    pub max_file_size: u64,
    /// clamd shares our filesystem, so large files can be scanned with `SCAN /path`.
    pub local_scan: bool,
    /// Severity of malware findings.
    pub severity: Severity,
}

/// What one file's scan produced.
#[derive(Debug)]
struct FileResult {
    path: String,
    size: u64,
    verdict: Verdict,
}

/// A batch of file scans sharing one scan context (one layer or one artifact blob).
#[derive(Debug)]
pub struct FileScans {
    clamd: Clamd,
    policy: Arc<ScanPolicy>,
    scratch_dir: PathBuf,
    cancel: CancellationToken,
    layer_digest: String,
    tasks: JoinSet<Result<FileResult, ClamavError>>,
    out: ScanFindings,
    scratch_seq: u64,
}

impl FileScans {
    /// A batch using `clamd`'s pool, the scratch directory and cancel token of `ctx`.
    pub fn new(clamd: Clamd, policy: Arc<ScanPolicy>, ctx: &ScanContext) -> Self {
        Self {
            clamd,
            policy,
            scratch_dir: ctx.scratch_dir().to_path_buf(),
            cancel: ctx.cancel.clone(),
            layer_digest: String::new(),
            tasks: JoinSet::new(),
            out: ScanFindings::default(),
            scratch_seq: 0,
        }
    }

    /// Sets the layer (or blob) digest put on findings and notices.
    pub fn with_layer_digest(mut self, digest: impl Into<String>) -> Self {
        self.layer_digest = digest.into();
        self
    }

    /// Scans the file at `path` (inside the image) of `size` bytes, reading its content from
    /// `content`. Returns once the content has been read and handed over; the verdict is
    /// collected by [`FileScans::finish`]. Fails early when an earlier file's scan failed
    /// (clamd down), or when the scan is cancelled.
    pub async fn submit<R>(&mut self, path: &str, size: u64, content: R) -> Result<(), ClamavError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let cancel = self.cancel.clone();
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(ClamavError::Cancelled),
            result = self.submit_inner(path, size, content) => result,
        }
    }

    async fn submit_inner<R>(
        &mut self,
        path: &str,
        size: u64,
        mut content: R,
    ) -> Result<(), ClamavError>
    where
        R: AsyncRead + Unpin + Send,
    {
        self.reap_finished()?;
        if size == 0 {
            return Ok(());
        }
        if size > self.policy.stream_max_length && !self.policy.local_scan {
            self.out.notices.push(self.notice(
                notice_codes::FILE_TOO_LARGE,
                format!(
                    "not scanned: larger than {} bytes",
                    self.policy.stream_max_length
                ),
                path,
            ));
            return Ok(());
        }
        let slot = self.clamd.acquire().await?;
        let clamd = self.clamd.clone();
        let owned_path = path.to_owned();
        if size > self.policy.stream_max_length {
            // Too long for INSTREAM, and clamd shares our filesystem: SCAN a scratch copy.
            let file = self.write_scratch(path, &mut content).await?;
            self.tasks.spawn(async move {
                let verdict = clamd.scan_path(&file).await;
                let _ = tokio::fs::remove_file(&file).await;
                drop(slot);
                Ok(FileResult {
                    path: owned_path,
                    size,
                    verdict: verdict?,
                })
            });
            return Ok(());
        }
        if self.clamd.fd_passing() {
            // clamd is on a Unix socket: hand it the content as a descriptor of an anonymous
            // memory file (FILDES), sparing it the copy into its own temporary file.
            let file = write_memfd(path, &mut content).await?;
            self.tasks.spawn(async move {
                let verdict = clamd.scan_file(file).await;
                drop(slot);
                Ok(FileResult {
                    path: owned_path,
                    size,
                    verdict: verdict?,
                })
            });
            return Ok(());
        }
        let (tx, rx) = mpsc::channel::<Vec<u8>>(CHANNEL_DEPTH);
        self.tasks.spawn(async move {
            let verdict = clamd.scan_stream(rx).await;
            drop(slot);
            Ok(FileResult {
                path: owned_path,
                size,
                verdict: verdict?,
            })
        });
        loop {
            let chunk = read_chunk(&mut content)
                .await
                .map_err(|source| ClamavError::Read {
                    path: path.to_owned(),
                    source,
                })?;
            if chunk.is_empty() {
                break;
            }
            if tx.send(chunk).await.is_err() {
                // clamd answered before the end (size limit, error) or the task failed: the
                // verdict or error is collected in finish; the rest of the content is skipped.
                break;
            }
        }
        Ok(())
    }

    /// Copies `content` to a new file in the scratch directory that clamd can read.
    async fn write_scratch<R>(
        &mut self,
        path: &str,
        content: &mut R,
    ) -> Result<PathBuf, ClamavError>
    where
        R: AsyncRead + Unpin + Send,
    {
        let err = |source| ClamavError::Scratch {
            path: path.to_owned(),
            source,
        };
        self.scratch_seq += 1;
        let dir = tokio::fs::canonicalize(&self.scratch_dir)
            .await
            .map_err(err)?;
        make_traversable(&dir).await;
        let file_path = dir.join(format!(
            "clamav-{}-{}",
            std::process::id(),
            self.scratch_seq
        ));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file_path)
            .await
            .map_err(err)?;
        let copied = async {
            loop {
                let chunk = read_chunk(content)
                    .await
                    .map_err(|source| ClamavError::Read {
                        path: path.to_owned(),
                        source,
                    })?;
                if chunk.is_empty() {
                    break;
                }
                file.write_all(&chunk).await.map_err(err)?;
            }
            file.flush().await.map_err(err)?;
            set_mode(&file_path, 0o644).await.map_err(err)
        }
        .await;
        if let Err(e) = copied {
            let _ = tokio::fs::remove_file(&file_path).await;
            return Err(e);
        }
        Ok(file_path)
    }

    /// Collects the verdicts of scans that have already finished; fails fast on an error.
    fn reap_finished(&mut self) -> Result<(), ClamavError> {
        while let Some(joined) = self.tasks.try_join_next() {
            let result = joined.map_err(|e| ClamavError::Internal(format!("scan task: {e}")))??;
            self.record(result)?;
        }
        Ok(())
    }

    /// Waits for every file's verdict and returns the findings and notices. The first clamd
    /// failure, or per-file verdict that may be transient (see the module doc), fails the batch
    /// (the other scans are aborted).
    pub async fn finish(mut self) -> Result<ScanFindings, ClamavError> {
        loop {
            let next = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(ClamavError::Cancelled),
                next = self.tasks.join_next() => next,
            };
            let Some(joined) = next else { break };
            let result = joined.map_err(|e| ClamavError::Internal(format!("scan task: {e}")))??;
            self.record(result)?;
        }
        Ok(self.out)
    }

    fn notice(&self, code: &str, message: String, path: &str) -> Notice {
        let mut notice = Notice::new(code, message).at_path(path);
        notice.layer_digest = self.layer_digest.clone();
        notice
    }

    /// Turns one verdict into findings or notices; fails on a verdict that must not be cached.
    fn record(&mut self, result: FileResult) -> Result<(), ClamavError> {
        let FileResult {
            path,
            size,
            verdict,
        } = result;
        match verdict {
            Verdict::Clean if size > self.policy.max_file_size => {
                let n = self.notice(
                    notice_codes::FILE_TOO_LARGE,
                    format!(
                        "not scanned: larger than {} bytes (clamd's MaxFileSize skips such files silently; set AlertExceedsMax yes)",
                        self.policy.max_file_size
                    ),
                    &path,
                );
                self.out.notices.push(n);
            }
            Verdict::Clean => {}
            Verdict::Found(signatures) => {
                for signature in signatures {
                    let mut finding =
                        Finding::new(FindingKind::Malware, &signature, self.policy.severity)
                            .at_path(&path)
                            .with_title(format!("ClamAV signature {signature} matched"));
                    finding.layer_digest = self.layer_digest.clone();
                    finding
                        .vendor_attributes
                        .insert("clamav.signature".into(), signature);
                    self.out.findings.push(finding);
                }
            }
            Verdict::LimitExceeded(signature) if signature.ends_with(".MaxScanTime") => {
                // How long a scan takes depends on clamd's load: the next try may finish.
                return Err(ClamavError::FileError {
                    path,
                    message: format!("scan stopped at clamd's MaxScanTime limit ({signature})"),
                });
            }
            Verdict::LimitExceeded(signature) => {
                let size_limit =
                    signature.ends_with(".MaxFileSize") || signature.ends_with(".MaxScanSize");
                let code = if size_limit {
                    notice_codes::FILE_TOO_LARGE
                } else {
                    notice_codes::SCAN_ERROR
                };
                let limit = signature
                    .strip_prefix(LIMITS_EXCEEDED_PREFIX)
                    .map_or(signature.as_str(), |s| s.trim_start_matches('.'));
                let n = self.notice(
                    code,
                    format!("not fully scanned: clamd stopped at its {limit} limit ({signature})"),
                    &path,
                );
                self.out.notices.push(n);
            }
            Verdict::Encrypted(signature) => {
                let n = self.notice(
                    ENCRYPTED_NOTICE,
                    format!("not scanned: encrypted, clamd cannot look inside ({signature})"),
                    &path,
                );
                self.out.notices.push(n);
            }
            Verdict::StreamTooLong => {
                // clamd's StreamMaxLength is below ours: a configuration error, fixed without
                // any change of the engine version, so never cached as a notice.
                return Err(ClamavError::StreamLimit {
                    path,
                    size,
                    limit: self.policy.stream_max_length,
                });
            }
            Verdict::Error(message) => {
                // clamd's per-file errors are about its environment (memory, temporary files,
                // reading the input), not about the content: the next try may succeed.
                return Err(ClamavError::FileError { path, message });
            }
        }
        Ok(())
    }
}

/// Copies `content` into a new anonymous memory file (`memfd_create`; it lives in the page cache
/// and disappears with its last descriptor).
async fn write_memfd<R>(path: &str, content: &mut R) -> Result<std::fs::File, ClamavError>
where
    R: AsyncRead + Unpin + Send,
{
    use std::io::Write;
    let err = |source: std::io::Error| ClamavError::Scratch {
        path: path.to_owned(),
        source,
    };
    let fd = rustix::fs::memfd_create("sidescan-clamav", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| err(e.into()))?;
    let mut file = std::fs::File::from(fd);
    loop {
        let chunk = read_chunk(content)
            .await
            .map_err(|source| ClamavError::Read {
                path: path.to_owned(),
                source,
            })?;
        if chunk.is_empty() {
            break;
        }
        // A copy into the page cache: memory speed, no disk.
        file.write_all(&chunk).map_err(err)?;
    }
    Ok(file)
}

/// Reads up to [`CHUNK_SIZE`] bytes; empty at the end of the content.
async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Vec<u8>> {
    let mut chunk = Vec::with_capacity(CHUNK_SIZE);
    while chunk.len() < CHUNK_SIZE {
        let n = (&mut *reader)
            .take((CHUNK_SIZE - chunk.len()) as u64)
            .read_to_end(&mut chunk)
            .await?;
        if n == 0 {
            break;
        }
    }
    Ok(chunk)
}

/// Lets other users (clamd often runs as user `clamav`) reach files in `dir` without listing it.
async fn make_traversable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = tokio::fs::metadata(dir).await {
        let mode = meta.permissions().mode();
        if mode & 0o011 != 0o011 {
            let _ = set_mode(dir, (mode & 0o7777) | 0o011).await;
        }
    }
}

async fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await
}
