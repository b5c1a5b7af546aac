//! `sidescan-conformance`: checks that a running plugin honours the `sidescan.v1` API.
//!
//! ```text
//! sidescan-conformance --endpoint http://127.0.0.1:50051
//! sidescan-conformance list
//! sidescan-conformance --endpoint https://plugin:8443 --ca-cert ca.pem --junit results.xml
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sidescan_conformance::{Config, FixtureSource, Selection, VERSION, cases, run};
use sidescan_proto::client::TlsOptions;

/// Exit code when a case failed or the suite had errors.
const EXIT_FAILED: u8 = 1;
/// Exit code for bad usage or when the suite could not run at all.
const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "sidescan-conformance",
    version,
    about = "Checks that a scanner plugin honours the sidescan.v1 API",
    long_version = concat!(env!("CARGO_PKG_VERSION"), " (checks sidescan.v1)")
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Plugin URL: http://host:port, https://host:port or unix:/path.
    #[arg(long, env = "SIDESCAN_CONFORMANCE_ENDPOINT")]
    endpoint: Option<String>,
    /// PEM CA certificate that signed the plugin's certificate (https).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --key).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM client key for mutual TLS (with --cert).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Server name to verify instead of the endpoint's host.
    #[arg(long)]
    tls_domain: Option<String>,
    /// Run only cases matching this pattern (substring or regex); repeatable.
    #[arg(long, global = true)]
    focus: Vec<String>,
    /// Skip cases matching this pattern (substring or regex); repeatable.
    #[arg(long, global = true)]
    skip: Vec<String>,
    /// The plugin's Harbor API base URL (its --harbor-listen, or sidescan-harbor in front of
    /// it), e.g. http://127.0.0.1:8080: runs the harbor/ cases (skipped without it).
    #[arg(long, env = "SIDESCAN_CONFORMANCE_HARBOR_URL")]
    harbor_url: Option<String>,
    /// Write JUnit XML results to this file.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Bound on each case.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    case_timeout: Duration,
    /// Address the embedded fixture registry binds (default 127.0.0.1, a free port).
    #[arg(long, conflicts_with = "registry")]
    fixture_listen: Option<SocketAddr>,
    /// Registry URL given to the plugin for the embedded fixture registry (how the plugin
    /// reaches --fixture-listen), e.g. http://host.docker.internal:5000.
    #[arg(long, requires = "fixture_listen")]
    fixture_advertise: Option<String>,
    /// Push the fixtures into this real registry instead (cases needing fault injection are
    /// skipped).
    #[arg(long)]
    registry: Option<String>,
    /// User name for --registry.
    #[arg(
        long,
        requires = "registry",
        env = "SIDESCAN_CONFORMANCE_REGISTRY_USER"
    )]
    registry_user: Option<String>,
    /// Password for --registry.
    #[arg(
        long,
        requires = "registry_user",
        env = "SIDESCAN_CONFORMANCE_REGISTRY_PASSWORD",
        hide_env_values = true
    )]
    registry_password: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the cases (after --focus/--skip) with what each checks.
    List,
}

fn config(cli: &Cli, endpoint: &str) -> Result<Config, String> {
    let mut config = Config::new(endpoint);
    config.selection = Selection::new(&cli.focus, &cli.skip)?;
    config.case_timeout = cli.case_timeout;
    config.harbor_url = cli.harbor_url.clone();
    if cli.ca_cert.is_some() || cli.cert.is_some() || cli.tls_domain.is_some() {
        let mut tls = TlsOptions::from_files(
            cli.ca_cert.as_deref(),
            cli.cert.as_deref(),
            cli.key.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        tls.domain = cli.tls_domain.clone();
        config.tls = Some(tls);
    }
    config.fixtures = match (&cli.registry, cli.fixture_listen) {
        (Some(url), _) => FixtureSource::Registry {
            url: url.clone(),
            credentials: cli
                .registry_user
                .clone()
                .map(|u| (u, cli.registry_password.clone().unwrap_or_default())),
        },
        (None, Some(listen)) => FixtureSource::EmbeddedAt {
            listen,
            advertise: cli.fixture_advertise.clone(),
        },
        (None, None) => FixtureSource::Embedded,
    };
    Ok(config)
}

async fn main_async(cli: Cli) -> ExitCode {
    println!(
        "sidescan-conformance {VERSION}, checking API {}",
        sidescan_conformance::API_VERSION
    );
    if matches!(cli.command, Some(Command::List)) {
        let selection = match Selection::new(&cli.focus, &cli.skip) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        for case in cases::all() {
            if selection.selects(&case.name) {
                println!("{:<70} {}", case.name, case.description);
            }
        }
        return ExitCode::SUCCESS;
    }
    let Some(endpoint) = cli.endpoint.clone() else {
        eprintln!("error: --endpoint URL is required (or use `list`)");
        return ExitCode::from(EXIT_USAGE);
    };
    let config = match config(&cli, &endpoint) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let report = match run(&config, |r| println!("{}", r.line())).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Some(scanner) = report.metadata.as_ref().and_then(|m| m.scanner.as_ref()) {
        println!("plugin: {} {} at {endpoint}", scanner.name, scanner.version);
    }
    println!("{}", report.summary_line());
    if let Some(path) = &cli.junit
        && let Err(e) = std::fs::write(path, report.junit_xml())
    {
        eprintln!("error: writing {}: {e}", path.display());
        return ExitCode::from(EXIT_USAGE);
    }
    if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(main_async(cli)),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
