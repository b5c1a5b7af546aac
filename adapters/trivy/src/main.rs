//! `sidescan-trivy`: the Trivy scanner plugin binary. Its own flags (`--trivy-*`, `SIDESCAN_TRIVY_*`)
//! plus every flag of the SDK server.

use std::process::ExitCode;

use clap::Parser;
use sidescan_trivy::{TrivyAdapter, TrivyConfig};

/// Command line: the adapter's flags and the SDK's.
#[derive(Parser)]
#[command(
    name = "sidescan-trivy",
    version,
    about = "sidescan.v1 scanner plugin running Trivy"
)]
struct Cli {
    #[command(flatten)]
    trivy: TrivyConfig,
    #[command(flatten)]
    server: sidescan_sdk::ServerConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    sidescan_sdk::serve_with(TrivyAdapter::new(cli.trivy), cli.server)
}
