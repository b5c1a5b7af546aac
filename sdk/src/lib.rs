//! # sidescan-sdk
//!
//! Build a `sidescan.v1` scanner plugin by implementing one trait, [`Scanner`], and calling
//! [`serve`] from `main`. The SDK owns everything else: flags and environment, logging, TLS, health
//! and reflection, the concurrency limit and queue, deadlines, graceful shutdown, and the image
//! pipeline (pull from any OCI registry, verify, cache, unpack safely).
//!
//! ```no_run
//! use sidescan_sdk::prelude::*;
//!
//! struct Nothing;
//!
//! #[sidescan_sdk::async_trait]
//! impl Scanner for Nothing {
//!     fn info(&self) -> ScannerInfo {
//!         ScannerInfo {
//!             name: "nothing".into(),
//!             vendor: "example".into(),
//!             version: "0.1.0".into(),
//!             capabilities: vec![Capability {
//!                 kind: "vulnerability".into(),
//!                 produces: vec![mime::VULNERABILITY_REPORT.into()],
//!                 ..Capability::default()
//!             }],
//!         }
//!     }
//!     fn input(&self) -> Input {
//!         Input::PerLayer
//!     }
//!     async fn scan_layer(&self, layer: &mut Layer, _ctx: &ScanContext) -> Result<ScanFindings, Error> {
//!         while let Some(_entry) = layer.next_entry().await? {}
//!         Ok(ScanFindings::default())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     sidescan_sdk::serve(Nothing)
//! }
//! ```

pub mod archive;
pub mod context;
pub(crate) mod convert;
pub mod error;
mod image;
pub mod input;
pub mod limits;
mod metrics;
pub mod model;
// Not part of the plugin API: the pipeline is public, hidden, for the SDK's and the workspace's
// end-to-end tests and benchmarks, which drive it without a gRPC server. Its items may change in
// any release.
#[doc(hidden)]
pub mod pipeline;
pub mod plugin;
pub(crate) mod report;
pub mod server;

pub use async_trait::async_trait;
pub use context::{Phase, ProgressEvent, ProgressSink, ScanContext};
pub use error::{Error, Result};
pub use input::{
    ArtifactBlob, Entry, EntryKind, ImageInput, Layer, LayerInfo, RegistryCredentials, RemoteImage,
};
pub use limits::Limits;
pub use model::{Finding, FindingKind, Notice, Platform, ReportDocument, ScanFindings, Severity};
pub use plugin::{Capability, Input, Readiness, Scanner, ScannerInfo};
pub use server::{ServerConfig, serve, serve_with};

/// Everything a plugin's source file usually needs.
pub mod prelude {
    pub use crate::{
        ArtifactBlob, Capability, Entry, EntryKind, Error, Finding, FindingKind, ImageInput, Input,
        Layer, LayerInfo, Notice, Platform, Readiness, ScanContext, ScanFindings, Scanner,
        ScannerInfo, Severity,
    };
    pub use sidescan_proto::mime;
}
