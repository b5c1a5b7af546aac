//! `sidescan-clamav`: the ClamAV scanner plugin process. Its flags are the SDK's
//! ([`sidescan_sdk::ServerConfig`]) plus clamd's ([`sidescan_clamav::ClamavConfig`]).

use std::process::ExitCode;

use clap::Parser;
use sidescan_clamav::{ClamavConfig, ClamavScanner};

/// Command line of `sidescan-clamav`.
#[derive(Parser)]
#[command(
    name = "sidescan-clamav",
    version,
    about = "sidescan-clamav — a sidescan.v1 scanner plugin that scans images for malware with clamd"
)]
struct Cli {
    #[command(flatten)]
    clamav: ClamavConfig,
    #[command(flatten)]
    server: sidescan_sdk::ServerConfig,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    cli.clamav.signatures.insecure_registries = cli.server.insecure_registries.clone();
    sidescan_sdk::serve_with(ClamavScanner::new(cli.clamav), cli.server)
}
