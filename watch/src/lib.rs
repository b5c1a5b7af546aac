//! # sidescan-watch
//!
//! Scan on push. Registry events come in ([`event`]: CNCF distribution notifications, zot's
//! CloudEvents over HTTP in binary or structured mode, or over NATS ([`nats`])), each pushed
//! image waits in a bounded queue ([`queue`]), workers ([`worker`]) scan it with every plugin
//! that has no current report and attach the reports to the image as OCI referrers
//! (`sidescan_oci::referrers`), and a CloudEvent announces each finished scan ([`emit`]). The
//! registry is the state: a restarted watcher finds what is reported by reading referrers, and
//! the reconcile loop ([`reconcile`]) catches what events missed.

pub mod args;
pub mod emit;
pub mod event;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod plugins;
pub mod queue;
pub mod reconcile;
pub mod run;
pub mod watcher;
pub mod worker;
