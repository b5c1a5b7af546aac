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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn adapter_and_sdk_flags_do_not_clash() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "sidescan-trivy",
            "--trivy-cache-dir",
            "/var/cache/trivy",
            "--cache-dir",
            "/var/cache/sidescan",
            "--trivy-timeout",
            "2m",
            "--default-timeout",
            "5m",
            "--listen",
            "127.0.0.1:0",
        ])
        .expect("parses");
        assert_eq!(
            cli.trivy.trivy_cache_dir,
            std::path::Path::new("/var/cache/trivy")
        );
        assert_eq!(
            cli.server.cache_dir,
            std::path::Path::new("/var/cache/sidescan")
        );
    }
}
