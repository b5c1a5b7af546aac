//! # sidescan-proto
//!
//! The `sidescan.v1` API shared by registries (hosts) and scanner plugins: the generated protobuf
//! messages and gRPC stubs ([`v1`]), the encoded descriptor set ([`FILE_DESCRIPTOR_SET`]), well-known
//! report MIME types ([`mime`]), the proto3 JSON mapping ([`json`]), and a small typed client for hosts ([`client`]) with a loader for
//! zot-style `plugin_config.json` files ([`plugin_config`]).
//!
//! A host that only calls plugins depends on this crate alone.

pub mod client;
pub mod json;
pub mod mime;
pub mod names;
pub mod plugin_config;

/// Generated code for the `sidescan.v1` protobuf package.
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    rustdoc::invalid_html_tags
)]
pub mod v1 {
    tonic::include_proto!("sidescan.v1");
}

/// Generated code for zot's scanner-plugin protocol (`package scan`, `proto/scan/scan.proto`):
/// the service zot's plugin branch calls as `/scan.Scan/Scan`. Every SDK plugin serves it beside
/// `sidescan.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod zot {
    tonic::include_proto!("scan");
}

/// The encoded `FileDescriptorSet` of zot's `scan` package (with its imports), for reflection.
pub const ZOT_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/zot_scan_descriptor.bin"));

/// Fully qualified name of zot's Scan service.
pub const ZOT_SCAN_SERVICE_NAME: &str = "scan.Scan";

/// The encoded `FileDescriptorSet` of `sidescan.v1` (with its imports), for gRPC server reflection
/// and for rendering messages in the proto3 canonical JSON mapping.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sidescan_v1_descriptor.bin"));

/// The API version string a plugin reports in `GetMetadataResponse.api_version`.
pub const API_VERSION: &str = "sidescan.v1";

/// The `GetMetadataResponse.properties` key under which SDK plugins report the engine version
/// their results are keyed by (signature or DB version and scan policy). Hosts that keep
/// results, such as `sidescan-watch`, treat a change as "rescan".
pub const ENGINE_VERSION_PROPERTY: &str = "sidescan.engine_version";

/// Fully qualified name of the Scan service, as used by health checks and reflection.
pub const SCAN_SERVICE_NAME: &str = "sidescan.v1.Scan";
