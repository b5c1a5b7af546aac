//! # sidescan-harbor
//!
//! Harbor's pluggable-scanner API v1.2 (goharbor/pluggable-scanner-spec) in front of any
//! `sidescan.v1` plugin. One implementation, two ways to run it:
//!
//! - the `sidescan-harbor` binary, which serves the API in front of a plugin in any language,
//!   reached over gRPC ([`GrpcBackend`]);
//! - this library, which a plugin process can embed with an in-process [`ScanBackend`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use sidescan_harbor::{GrpcBackend, HarborOptions, HarborService, MemoryJobStore};
//!
//! let options = HarborOptions::default();
//! let backend = GrpcBackend::new("http://127.0.0.1:50051", options.scan_timeout, options.metadata_timeout)?;
//! let service = HarborService::new(Arc::new(backend), Arc::new(MemoryJobStore::default()), options);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, sidescan_harbor::router(Arc::new(service))).await?;
//! # Ok(()) }
//! ```
//!
//! Endpoints (`openapi.yaml` beside this crate documents them exactly): `GET /api/v1/metadata`,
//! `POST /api/v1/scan` (202 with the job id at once; the scan runs in the background),
//! `GET /api/v1/scan/{id}/report` (`Accept` picks the report; 302 with `Refresh-After` while the
//! scan runs). Errors and their statuses: [`ApiError`]. Jobs: [`jobs`]. How findings, malware and
//! incomplete scans appear in Harbor's documents: the `report` module (see the README's "Use
//! with Harbor").

pub mod api;
pub mod backend;
pub mod error;
pub mod jobs;
pub mod metadata;
pub mod mime;
pub mod report;
pub mod request;
pub mod service;

pub use api::router;
pub use backend::{GrpcBackend, ScanBackend};
pub use error::ApiError;
pub use jobs::{DEFAULT_JOB_TTL, JobStore, MemoryJobStore, NatsJobStore};
pub use service::{AuthorizationType, HarborOptions, HarborService};
