//! End-to-end tests: real plugin processes on real sockets, a real registry, real scanners.
//! One test binary with shared helpers from `sidescan_testkit`; module names say what broke.

mod artifacts;
mod clamav;
mod fail_closed;
mod hostile;
mod load;
mod logs;
mod metrics;
mod registry;
mod registry_limits;
mod scan;
mod server;
mod shared_cache;
mod signatures;
mod support;
mod zot;
