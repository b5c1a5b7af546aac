//! sidescan on NATS.
//!
//! - [`ConnectArgs`]: the `--nats*` flags every NATS-using program takes (`sidescan-watch`, and
//!   every plugin through the SDK), and [`connect`] from them, so a credentials file, a token, a
//!   user and password or a TLS CA work the same everywhere (the options of zot's NATS sink).
//! - [`bucket`]: JetStream key-value buckets and object stores, created as the streams they are
//!   (Debian's nats-server 2.9 answers the account-info query async-nats' own helpers make first
//!   in a form async-nats cannot parse).

pub mod bucket;
mod connect;

pub use connect::{ConnectArgs, connect, redact_url};
