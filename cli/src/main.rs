//! # sidescan
//!
//! Calls any `sidescan.v1` scanner plugin from a terminal or CI.
//!
//! ```text
//! sidescan [--plugin URL | --plugin-config FILE] [TLS flags] [--request-id ID] [--timeout D]
//!          [--max-attempts N] <COMMAND>
//!   metadata [--format table|json]
//!   health
//!   scan IMAGE [--registry URL] [--username U --password P | --token T] [--insecure]
//!              [--platform OS/ARCH[/VARIANT]] [--report-type MIME]... [--report-param K=V]...
//!              [--format table|json] [--fail-on SEVERITY [--allow-incomplete]] [--output-dir DIR]
//!              [--rpc auto|unary|stream] [--attach [--attach-format sarif|spdx|cyclonedx]...]
//! sidescan report IMAGE [--registry URL] [credentials] [--insecure] [--format table|json|sarif]
//!                 [--scanner NAME] [--fail-on SEVERITY [--allow-incomplete]]
//! ```
//!
//! - `report` needs no plugin: it reads the reports attached to IMAGE as OCI referrers
//!   (by `sidescan-watch` or `scan --attach`), the latest per scanner. With `--fail-on`, an image
//!   without any report exits 1: unscanned is not clean.
//!
//! - The plugin is `--plugin URL` (`http://host:port`, `https://host:port`, `unix:/path.sock`) or
//!   the `"default"` `VulnScanner` of a zot-style `--plugin-config` (whose `zot-addr` option is
//!   then the default `--registry`).
//! - TLS: `--ca-cert FILE` (required for https), `--cert FILE --key FILE` (mutual TLS),
//!   `--tls-domain NAME`.
//! - Retries: `UNAVAILABLE`, and `RESOURCE_EXHAUSTED` carrying the plugin's
//!   `grpc-retry-pushback-ms` (its scan queue is full), are tried again up to `--max-attempts`
//!   calls in all (default 5; 1 turns retries off), after the pushback plus exponential backoff
//!   with jitter, never past `--timeout`. Other failures, an image over a limit included, are
//!   not retried, and a retry never turns a failure into a report.
//! - Credentials also come from `SIDESCAN_REGISTRY_USERNAME`, `SIDESCAN_REGISTRY_PASSWORD`,
//!   `SIDESCAN_REGISTRY_TOKEN`; they are never printed.
//! - `--format json` prints the `ScanResponse` / `GetMetadataResponse` in the proto3 canonical
//!   JSON mapping (lowerCamelCase names, enum names, 64-bit integers as strings, RFC 3339
//!   timestamps, `bytes` in base64; default values omitted).
//! - When stderr is a terminal, `scan` calls `ScanImageStream` and shows a progress bar; otherwise
//!   it calls `ScanImage` and writes nothing to stderr but errors and the incomplete line
//!   (`--rpc` overrides). The result is the same.
//! - An incomplete report (notices in the primary report: something not scanned, scanned only in
//!   part, or left out of the response; or a requested report type that failed) never passes
//!   silently: stderr gets `incomplete: 2 notices (unsafe-path-skipped x1, file-too-large x1)`,
//!   and the JSON output's `summary.incomplete` is true (the CLI sets it from the notices when a
//!   plugin left it unset).
//!
//! ## Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done: no finding at or above `--fail-on` and the report complete (or `--allow-incomplete`), or no `--fail-on`; `health`: SERVING |
//! | 1 | `scan`, `report`: findings at or above `--fail-on` (unknown < negligible < low < medium < high < critical), or with `--fail-on` an incomplete report (notices) without `--allow-incomplete`; `report --fail-on`: also no report attached |
//! | 2 | error: bad flags (clap's usage errors too), plugin config or connection failure, any non-OK RPC status (printed as `error: <CODE>: <message>`, e.g. `error: NOT_FOUND: ...`), a requested report type that failed (`error: <CODE>: report "<mime>" failed: ...`, after the output), or `health` not SERVING |

// Doc comments of the flags are clap's help text, where `[:PORT]` means optional, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

mod args;
mod artifact;
mod attach;
mod incomplete;
mod outcome;
mod progress;
mod render;
mod request;

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::Parser;
use sidescan_proto::{
    client::{ClientOptions, PluginClient, RetryPolicy, ServingStatus, TlsOptions},
    plugin_config::PluginManager,
};

use crate::{
    args::{Cli, Command, Common, Format, RpcMode, ScanArgs},
    incomplete::{incompleteness, mark_incomplete},
    outcome::{CliError, Outcome, failed_reports, scan_outcome},
    progress::ProgressView,
    render::{canonical_json, metadata_table, save_documents, scan_table},
    request::build_scan_request,
};

/// The call timeout of `metadata` and `health` when `--timeout` is not given.
const DEFAULT_QUICK_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    // Usage errors exit 2 (clap's default); --help and --version exit 0.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return Outcome::Error.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(outcome) => outcome.into(),
        Err(err) => {
            eprintln!("{}", err.line());
            Outcome::Error.into()
        }
    }
}

async fn run(cli: Cli) -> Result<Outcome, CliError> {
    // Every command but `report` and `artifact` talks to a plugin.
    let plugin = match &cli.command {
        Command::Report(_) | Command::Artifact(_) => None,
        _ => Some(resolve_plugin(&cli.common)?),
    };
    let (url, default_registry) = plugin.unwrap_or_default();
    match cli.command {
        Command::Artifact(args) => artifact::run(*args).await,
        Command::Report(args) => {
            let (text, outcome) = attach::report(&args).await?;
            emit(&text)?;
            Ok(outcome)
        }
        Command::Metadata { format } => {
            let client = connect(&cli.common, &url, Some(DEFAULT_QUICK_TIMEOUT)).await?;
            let metadata = client.metadata().await?;
            emit(&match format {
                Format::Table => metadata_table(&metadata),
                Format::Json => canonical_json(&metadata, "sidescan.v1.GetMetadataResponse")?,
            })?;
            Ok(Outcome::Done)
        }
        Command::Health => {
            let client = connect(&cli.common, &url, Some(DEFAULT_QUICK_TIMEOUT)).await?;
            let status = client.health().await?;
            emit(&format!("{status}\n"))?;
            Ok(if status == ServingStatus::Serving {
                Outcome::Done
            } else {
                Outcome::Error
            })
        }
        Command::Scan(args) => {
            // Every flag is checked before anything goes on the network.
            let request =
                build_scan_request(&args, default_registry.as_deref()).map_err(CliError::Usage)?;
            if let Some(dir) = &args.output_dir
                && dir.exists()
                && !dir.is_dir()
            {
                return Err(CliError::Usage(format!(
                    "--output-dir {} is not a directory",
                    dir.display()
                )));
            }
            let client = connect(&cli.common, &url, None).await?;
            scan(&client, request, &args).await
        }
    }
}

/// The plugin URL and, from a plugin config, the default registry URL.
fn resolve_plugin(common: &Common) -> Result<(String, Option<String>), CliError> {
    match (&common.plugin, &common.plugin_config) {
        (Some(_), Some(_)) => Err(CliError::Usage(
            "give either --plugin or --plugin-config, not both".to_string(),
        )),
        (None, None) => Err(CliError::Usage(
            "no plugin: give --plugin URL or --plugin-config FILE".to_string(),
        )),
        (Some(url), None) => Ok((url.clone(), None)),
        (None, Some(path)) => {
            let configs = sidescan_proto::plugin_config::load(path)?;
            // Only to apply the driver model; the CLI connects eagerly below.
            let manager = PluginManager::from_configs(&configs, &ClientOptions::default())?;
            let plugin = manager.default_impl().ok_or_else(|| {
                CliError::Usage(format!(
                    "{}: no VulnScanner plugin configured",
                    path.display()
                ))
            })?;
            Ok((
                plugin.client().url().to_string(),
                plugin.registry_url().map(str::to_string),
            ))
        }
    }
}

fn tls_options(common: &Common) -> Result<Option<TlsOptions>, CliError> {
    if common.cert.is_some() != common.key.is_some() {
        return Err(CliError::Usage(
            "--cert and --key go together (mutual TLS)".to_string(),
        ));
    }
    if common.ca_cert.is_none() && common.cert.is_none() && common.tls_domain.is_none() {
        return Ok(None);
    }
    let mut tls = TlsOptions::from_files(
        common.ca_cert.as_deref(),
        common.cert.as_deref(),
        common.key.as_deref(),
    )?;
    tls.domain = common.tls_domain.clone();
    Ok(Some(tls))
}

async fn connect(
    common: &Common,
    url: &str,
    default_timeout: Option<Duration>,
) -> Result<PluginClient, CliError> {
    let options = ClientOptions {
        connect_timeout: common.connect_timeout,
        timeout: common.timeout.or(default_timeout),
        tls: tls_options(common)?,
        request_id: common.request_id.clone(),
        retry: RetryPolicy::default().max_attempts(common.max_attempts),
    };
    Ok(PluginClient::connect(url, options).await?)
}

async fn scan(
    client: &PluginClient,
    request: sidescan_proto::v1::ScanRequest,
    args: &ScanArgs,
) -> Result<Outcome, CliError> {
    let terminal = std::io::stderr().is_terminal();
    let streamed = match args.rpc {
        RpcMode::Auto => terminal,
        RpcMode::Unary => false,
        RpcMode::Stream => true,
    };
    let mut response = if streamed {
        let mut view = terminal.then(ProgressView::start);
        let result = match client.scan_stream(request.clone()).await {
            Ok(stream) => {
                stream
                    .result(|p| {
                        if let Some(view) = view.as_mut() {
                            view.update(p);
                        }
                    })
                    .await
            }
            Err(err) => Err(err),
        };
        if let Some(view) = &view {
            view.finish();
        }
        match result {
            // A plugin without the streaming RPC: same result through ScanImage.
            Err(err)
                if args.rpc == RpcMode::Auto && err.code() == Some(tonic::Code::Unimplemented) =>
            {
                client.scan(request).await?
            }
            other => other?,
        }
    } else {
        client.scan(request).await?
    };

    mark_incomplete(&mut response);
    let saved = match &args.output_dir {
        Some(dir) => save_documents(&response, dir)?,
        None => Vec::new(),
    };
    emit(&match args.format {
        Format::Table => scan_table(&response, &saved),
        Format::Json => canonical_json(&response, "sidescan.v1.ScanResponse")?,
    })?;
    for line in failed_reports(&response) {
        eprintln!("{line}");
    }
    if let Some(incomplete) = incompleteness(&response) {
        eprintln!(
            "{}",
            incomplete.line(args.allow_incomplete && args.fail_on.is_some())
        );
    }
    if args.attach.attach {
        let metadata = client.metadata().await?;
        let line = attach::attach(
            &args.registry,
            &args.attach.attach_formats,
            &metadata,
            client.url(),
            &response,
        )
        .await?;
        eprintln!("{line}");
    }
    Ok(scan_outcome(
        &response,
        args.fail_on.map(|s| s.to_proto()),
        args.allow_incomplete,
    ))
}

/// Writes to stdout; a closed stdout is an error, not a panic.
fn emit(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|source| CliError::Write {
            path: PathBuf::from("<stdout>"),
            source,
        })
}
