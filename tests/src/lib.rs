//! Test helpers for sidescan: real registries and fault-injecting fake ones,
//! deterministic fixture images, a hostile corpus, and process helpers.
//!
//! Everything listens on 127.0.0.1 only. A missing external program is a panic naming
//! its install command ([`tool::require`]), never a skip.

pub mod client;
pub mod fake_registry;
pub mod fixtures;
pub mod hostile;
pub mod oci;
pub mod process;
pub mod registry;
mod server;
pub mod tool;
