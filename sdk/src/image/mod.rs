//! Building blocks of the image pipeline ([`crate::pipeline`] drives them):
//!
//! - [`reference`]: parse and normalise references; combine `image` with `registry_url`;
//! - [`auth`]: `Authorization` values to `oci-client` credentials (never logged);
//! - [`registry`]: one `oci-client` per credential set, retries, status-code mapping, verified
//!   streaming downloads;
//! - [`manifest`]: manifests, indexes, configs, media types, platforms;
//! - [`cache`]: the content-addressed blob cache (LRU, single-flight, restart-safe) and the
//!   per-layer result cache;
//! - [`layer`]: decode chain with digest, diff_id and limit checks; the streaming entry walk;
//! - [`unpack`]: rootfs unpacking with whiteouts and no path escapes;
//! - [`layout`]: OCI image layouts for whole-image scanners;
//! - [`error`]: the errors above, named by cause, and their one mapping to the SDK's [`crate::Error`].
//!
//! Architecture Invariant: no layer content reaches a plugin before its blob digest was verified,
//! and no finding derived from a layer survives a diff_id mismatch (the scan fails with DATA_LOSS).

pub(crate) mod auth;
pub(crate) mod cache;
pub(crate) mod error;
pub(crate) mod layer;
pub(crate) mod layout;
pub(crate) mod manifest;
pub(crate) mod reference;
pub(crate) mod registry;
pub(crate) mod unpack;
