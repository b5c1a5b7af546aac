//! # sidescan-trivy
//!
//! A `sidescan.v1` scanner plugin that runs [Trivy](https://trivy.dev) on whole images: known
//! vulnerabilities of OS and language packages, hard-coded secrets (`--scanners secret`), and an
//! SBOM (CycloneDX or SPDX JSON) on request.
//!
//! ## How a scan runs
//!
//! The SDK pulls and verifies the image and hands [`TrivyAdapter`] a local OCI layout
//! ([`sidescan_sdk::ImageInput`]); the adapter runs
//! `trivy image --input <layout_dir>:<layout_ref> --format json ...` fully offline
//! (`--skip-db-update --skip-java-db-update --skip-check-update --skip-version-check
//! --disable-telemetry`, in-memory layer cache) and maps Trivy's JSON to
//! [`sidescan_sdk::Finding`]s ([`report`]). An SBOM request runs Trivy a second time with
//! `--format cyclonedx` or `--format spdx-json`, chosen by the request's `sbom_media_type`.
//!
//! **Open decision, to be settled by the benchmark:** scanning the SDK's verified layout (what this
//! crate does: one download path, digests and diff_ids verified, blob cache shared with every other
//! plugin, no registry credentials handed to Trivy) versus letting Trivy pull the image itself
//! (`--image-src remote`: no local layout written, but Trivy's own unverified pull and its own
//! credentials). The benchmark (BENCHMARKS.md, once the SDK's image pipeline is merged) measures
//! both on the same images; until then the layout path is the default because it keeps every
//! byte Trivy reads verified.
//!
//! ## The DB
//!
//! Scans never touch the network or update the DB. The DB lives in
//! `<--trivy-cache-dir>/db`; [`TrivyAdapter`] is NotReady while it is missing or unusable
//! ([`db::check`]), and can download a fresh one in the background (`trivy image
//! --download-db-only` into a staging directory, swapped in while no scan runs; never two at
//! once). The DB's `UpdatedAt` is part of [`Scanner::engine_version`](sidescan_sdk::Scanner), so
//! the SDK's result cache never serves a result computed on an older DB.
//!
//! ## Processes
//!
//! At most `--max-trivy-processes` Trivy processes run at once. Each runs in its own process group;
//! a timeout (`--trivy-timeout`), a cancelled scan, or a dropped scan kills the whole group
//! ([`process`]). Errors are [`TrivyError`]s, mapped to status codes in one place
//! (`From<TrivyError> for sidescan_sdk::Error`).

pub mod config;
pub mod db;
pub mod error;
pub mod process;
pub mod report;
pub mod scanner;

pub use config::{TrivyConfig, TrivyScanner, TrivySeverity};
pub use error::TrivyError;
pub use scanner::{DbUpdate, TrivyAdapter};
