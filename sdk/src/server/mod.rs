//! The plugin server (being written).
use std::process::ExitCode;
/// Server configuration.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig;
/// Runs a plugin.
pub fn serve<S: crate::Scanner>(scanner: S) -> ExitCode { let _ = scanner; ExitCode::FAILURE }
/// Runs a plugin with a config.
pub fn serve_with<S: crate::Scanner>(scanner: S, config: ServerConfig) -> ExitCode { let _ = (scanner, config); ExitCode::FAILURE }
