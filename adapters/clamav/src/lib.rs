//! # sidescan-clamav
//!
//! A `sidescan.v1` scanner plugin that scans images for malware with clamd (ClamAV). It is a
//! per-layer scanner ([`sidescan_sdk::Input::PerLayer`]): the SDK pulls and verifies each layer
//! and streams its entries; every regular file is streamed to clamd (`INSTREAM`) over a bounded
//! pool of connections, several files at a time, without unpacking anything to disk. With
//! `--clamd-fd-passing` and clamd on a Unix socket, each file is instead copied into an anonymous
//! memory file (`memfd_create`) whose descriptor is passed to clamd (`FILDES`), sparing clamd its
//! own temporary copy of every stream; a clamd that refuses descriptors gets `INSTREAM`.
//! Results are cached by the SDK per layer digest and [`ClamavScanner`]'s engine version (clamd's
//! engine and signature version, and a hash of the verdict flags), so a signature update invalidates them. After a change of
//! `--clamd-database-dir` (which makes the plugin send `RELOAD`) the engine version is a one-off
//! "reloading" key until `--clamd-reload-settle` has passed and clamd answers `VERSION`, so results
//! of scans clamd may still run with its old signatures are never cached under the new key.
//!
//! - [`protocol`]: the clamd wire protocol, written directly on tokio (the `clamav-client` crate
//!   has no `SCAN` and loses clamd's size-limit reply to a broken pipe);
//! - [`client`]: [`Clamd`], the pooled client with timeouts;
//! - [`scan`]: [`FileScans`], concurrent per-file scanning and verdict mapping;
//! - [`scanner`]: [`ClamavScanner`], the [`sidescan_sdk::Scanner`] implementation, and its flags
//!   [`ClamavConfig`];
//! - [`reply`]: parsing clamd's replies into [`Verdict`]s;
//! - [`selfcheck`]: the startup check that clamd alerts on exceeded limits;
//! - [`signatures`]: signatures from an OCI registry (`--signatures-from`), swapped atomically
//!   and confirmed loaded before the engine version names them;
//! - [`error`]: [`ClamavError`], mapped into [`sidescan_sdk::Error`] in one place.
//!
//! ## What is never reported clean
//!
//! - files larger than `--stream-max-length` (clamd's `StreamMaxLength`): scanned with
//!   `SCAN /path` from a copy in the scan's scratch directory when clamd shares the filesystem
//!   (a `unix:` address or `--clamd-local`), otherwise a `file-too-large` notice;
//! - an `INSTREAM size limit exceeded` reply: a `file-too-large` notice;
//! - `Heuristics.Limits.Exceeded.*` alerts (clamd with `AlertExceedsMax yes`, required): a
//!   notice, not a malware finding;
//! - `Heuristics.Encrypted.*` alerts (clamd with `AlertEncrypted yes`, recommended): an
//!   `encrypted` notice;
//! - an `OK` for a file larger than `--clamd-max-file-size` (clamd's `MaxFileSize`, which clamd
//!   skips silently without `AlertExceedsMax yes`): a `file-too-large` notice.
//!
//! ## What is never cached
//!
//! Verdicts that may differ next time fail the scan, so no cached layer result carries them: a
//! clamd `... ERROR` about one file and the `MaxScanTime` alert are UNAVAILABLE, an
//! `INSTREAM size limit exceeded` reply is FAILED_PRECONDITION (see [`scan`]). The flags that
//! change verdicts are part of the engine version ([`ClamavConfig::verdict_policy`]).
//!
//! A clamd that is down, dies mid-scan or hangs past `--file-timeout` fails the scan with
//! UNAVAILABLE; readiness (and so gRPC health) follows clamd's `PING` and the [`selfcheck`]: a
//! clamd that answers `OK` for content over its limits (no `AlertExceedsMax yes`) is not ready.
//!
//! ## clamd configuration
//!
//! Required: `AlertExceedsMax yes`. Recommended `clamd.conf` lines: `AlertEncrypted yes`; `StreamMaxLength`, `MaxFileSize` equal
//! to this plugin's `--stream-max-length` and `--clamd-max-file-size`; `MaxThreads` above
//! `--clamd-connections` times the number of plugin replicas. For the `SCAN` fallback clamd must
//! be able to read the plugin's scratch directory (`--scratch-dir`): the plugin makes its scan
//! directories traversable (`o+x`) and its copies world-readable for clamd's `clamav` user.
//!
//! ## Artifacts
//!
//! Non-image OCI artifacts whose type is in [`scanner::ARTIFACT_MEDIA_TYPES`] (or added with
//! `--artifact-type`) are scanned blob by blob, each blob as one file (clamd unpacks archives
//! itself); the finding's path is the blob's `org.opencontainers.image.title`, or its digest.

pub mod client;
pub mod error;
pub mod protocol;
pub mod reply;
pub mod scan;
pub mod scanner;
pub mod selfcheck;
pub mod signatures;

pub use client::Clamd;
pub use error::ClamavError;
pub use protocol::{ClamdAddr, Verdict, VersionInfo};
pub use scan::{FileScans, ScanPolicy};
pub use scanner::{ClamavConfig, ClamavScanner};
