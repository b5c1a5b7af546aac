//! # sidescan-oci
//!
//! The registry side of sidescan, shared by `sidescan-watch`, the `sidescan` CLI and the
//! adapters: registry credentials found where skopeo, podman and docker keep them
//! ([`credentials`]), a client for manifests, small blobs, tags, the catalog and deletes
//! ([`registry`]), OCI referrers through the API or the tag schema ([`referrers`]), the report
//! artifact format ([`report`]) with its SARIF rendering ([`sarif`]), and media types
//! ([`media`]). Errors are named by cause ([`Error`]).

pub mod artifact;
pub mod credentials;
mod error;
pub mod media;
pub mod referrers;
pub mod registry;
pub mod report;
pub mod sarif;

pub use credentials::{CredentialSources, Credentials};
pub use error::Error;
pub use registry::Registry;
