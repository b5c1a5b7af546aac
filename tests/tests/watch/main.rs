//! End-to-end tests of `sidescan-watch`: a real docker-registry with notifications, real
//! plugins (the test plugin and the ClamAV adapter with a real clamd), a real nats-server,
//! pushes with skopeo, reports read back from the registry.

mod auth;
mod cli;
mod events;
mod push;
mod state;
mod support;
