//! Test helpers for sidescan: real registries and fault-injecting fake ones,
//! deterministic fixture images, a hostile corpus, and process helpers.
//!
//! A leaf crate: it speaks `sidescan-proto` types and plain HTTP, never the SDK, so that the
//! conformance suite can depend on it normally and the SDK, the adapters and the e2e tests
//! (`sidescan-tests`) as a dev-dependency.
//!
//! Everything listens on 127.0.0.1 only. A missing external program is a panic naming
//! its install command ([`tool::require`]), never a skip.
//!
//! | module | what |
//! |---|---|
//! | [`registry`] | [`registry::Registry`]: a real `docker-registry` process (anonymous, htpasswd, bearer token with an in-process [`registry::TokenServer`]) |
//! | [`fake_registry`] | [`fake_registry::FakeRegistry`]: in-memory OCI 1.1 registry (pull, verified push, delete, the referrers API, switchable off) with faults (wrong bytes, truncation, 5xx N times, stalls, dribble, 401/403/404) and request counters |
//! | [`fixtures`] | deterministic [`fixtures::Layer`]s, [`fixtures::Image`]s, [`fixtures::Index`]es and ready-made images (clean, EICAR, whiteouts, multi-arch, secret, Docker, zstd, Falco artifact, large file, EICAR in a zip) |
//! | [`hostile`] | the hostile corpus: each [`hostile::HostileCase`] has a name, a description and the [`hostile::Expected`] outcome |
//! | [`grpc`] | [`grpc::RawCodec`]: gRPC calls with raw protobuf bytes (unknown fields, reflection-only methods) |
//! | [`digest`] | [`digest::sha256_digest`] (the one `sha256:<hex>` formatter) and [`digest::HashWriter`] |
//! | [`random`] | [`random::PseudoRandom`], deterministic bytes (splitmix64) |
//! | [`oci`] | [`oci::Blob`], [`oci::Artifact`] (push / serve / write as OCI layout), [`oci::Platform`], media types |
//! | [`clamd`] | [`clamd::ClamdProcess`]: a real clamd on a Unix socket and 127.0.0.1 with test signatures (EICAR hash, a body marker) written in its temp dir |
//! | [`client`] | [`client::RegistryClient`]: push and read back, raw/bogus uploads, Basic and Bearer token flow |
//! | [`harbor`] | a client calling Harbor's scanner-adapter API as Harbor does (version=1.0 types, 5 s timeout, no redirects, polling after 2 s then `Refresh-After`) |
//! | [`plugin`] | [`plugin::PluginProcess`]: a plugin binary of this workspace on 127.0.0.1 or a Unix socket, stopped by PID; its metrics endpoint |
//! | [`metrics`] | [`metrics::Scrape`]: a parsed Prometheus / OpenMetrics text scrape, looked up by name and labels |
//! | [`process`] | [`process::ChildGuard`] (SIGTERM, 3 s, SIGKILL on drop), [`process::free_port`], [`process::wait_for_tcp`] |
//! | [`tool`] | [`tool::require`] and shortcuts for docker-registry, skopeo, umoci, htpasswd, clamd |
//!
//! ```no_run
//! use sidescan_testkit::{fake_registry::{FakeRegistry, Fault, Match}, fixtures, registry::{Auth, Registry}};
//! # async fn demo() {
//! let reg = Registry::start(Auth::htpasswd());
//! let img = fixtures::eicar_top_layer();
//! reg.push(&img, "team/app", "v1").await;
//! // A scan request would use: reg.image_ref("team/app", "v1"), reg.authorization().
//!
//! let fake = FakeRegistry::start();
//! fake.add("team/app", "v1", &img);
//! fake.inject_times(Match::Digest(img.layers[1].blob.digest.clone()), Fault::Status(503), 2);
//! // ... scan, then: assert_eq!(fake.blob_gets(&img.layers[1].blob.digest), 3);
//! # }
//! ```

pub mod clamd;
pub mod client;
pub mod digest;
pub mod fake_registry;
pub mod fixtures;
pub mod grpc;
pub mod harbor;
pub mod hostile;
pub mod metrics;
pub mod nats;
pub mod oci;
pub mod plugin;
pub mod process;
pub mod random;
pub mod registry;
mod server;
pub mod tool;
pub mod watch;
