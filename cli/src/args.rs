//! Command-line flags (clap derive).

use std::{fmt, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use sidescan_proto::client::DEFAULT_MAX_ATTEMPTS;
use sidescan_proto::v1::{Platform, Severity};

/// Exit codes, shown after `--help`.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  done: no finding at or above --fail-on and the report complete (or --allow-incomplete),
     or no --fail-on; health: SERVING
  1  scan, report: findings at or above --fail-on, or with --fail-on an incomplete report
     (notices: something not scanned or left out) without --allow-incomplete; report: with
     --fail-on, also an image without any report
  2  error: bad flags, plugin config, connection or registry failure, any non-OK RPC status
     (printed as `error: <CODE>: <message>` on stderr, e.g. `error: NOT_FOUND: ...`),
     a requested report type that failed, or health not SERVING";

/// Call a sidescan.v1 scanner plugin: describe it, check its health, or scan an image; or read
/// the reports attached to an image in its registry.
#[derive(Debug, Parser)]
#[command(name = "sidescan", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// Connection flags shared by every subcommand.
    #[command(flatten)]
    pub common: Common,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by every subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Plugin connection (any subcommand)")]
pub(crate) struct Common {
    /// Plugin URL: http://HOST:PORT, https://HOST:PORT or unix:/PATH/TO.sock.
    #[arg(long, global = true, value_name = "URL")]
    pub plugin: Option<String>,

    /// zot-style plugin_config.json (a file, a JSON array, or a directory of *.json): the
    /// "default" VulnScanner is called and its `zot-addr` option is the default --registry.
    #[arg(long, global = true, value_name = "FILE")]
    pub plugin_config: Option<PathBuf>,

    /// PEM CA certificate that signed the plugin's certificate (required for https://).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// PEM client certificate for mutual TLS (with --key).
    #[arg(long, global = true, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// PEM private key of --cert.
    #[arg(long, global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Server name to verify in the plugin's certificate instead of the URL's host.
    #[arg(long, global = true, value_name = "NAME")]
    pub tls_domain: Option<String>,

    /// Sent as x-request-id metadata with each call.
    #[arg(long, global = true, value_name = "ID")]
    pub request_id: Option<String>,

    /// Deadline of each call, e.g. 30s, 5m (sent to the plugin as the gRPC deadline).
    /// Default: none for scan (the plugin's own default applies), 30s otherwise.
    #[arg(long, global = true, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,

    /// Bound on connecting to the plugin.
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s",
          value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Attempts per call, the first included (1: no retries). UNAVAILABLE, and
    /// RESOURCE_EXHAUSTED carrying the plugin's retry pushback (its scan queue is full), are
    /// retried with exponential backoff and jitter after that pushback, within --timeout.
    #[arg(long, global = true, value_name = "N", default_value_t = DEFAULT_MAX_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the plugin's name, version, API version, capabilities, features, limits and
    /// properties.
    #[command(after_help = EXIT_CODES)]
    Metadata {
        /// Output format (json: the GetMetadataResponse in the proto3 JSON mapping).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Check the plugin's health (grpc.health.v1 for sidescan.v1.Scan): prints SERVING or
    /// NOT_SERVING; exit 0 only when SERVING.
    #[command(after_help = EXIT_CODES)]
    Health,
    /// Scan an image and print the report.
    #[command(after_help = EXIT_CODES)]
    Scan(Box<ScanArgs>),
    /// Print the reports attached to an image in its registry (latest per scanner), without
    /// scanning and without a plugin.
    #[command(after_help = EXIT_CODES)]
    Report(Box<crate::attach::ReportArgs>),
    /// Scanner data and plugins in a registry: push, pull, inspect, install.
    Artifact(Box<crate::artifact::ArtifactArgs>),
}

/// A string that is never printed (passwords, tokens).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

pub(crate) fn secret(s: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret(s.to_string()))
}

/// Flags of `scan`.
#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Image reference: HOST[:PORT]/REPO[:TAG][@DIGEST], or REPO[:TAG][@DIGEST] relative to
    /// --registry.
    pub image: String,

    /// Where IMAGE lives and how to authenticate (`--registry` defaults to the plugin config's
    /// zot-addr option, else the host of IMAGE).
    #[command(flatten)]
    pub registry: crate::attach::RegistryFlags,

    /// Platform of an image index to scan: OS/ARCH[/VARIANT], e.g. linux/arm64/v8.
    /// Default: every platform of the index.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    pub platform: Option<Platform>,

    /// Report type to produce besides the primary report (repeatable): a MIME type, or one of
    /// the aliases vulnerability, malware, sbom.
    #[arg(long = "report-type", value_name = "MIME")]
    pub report_types: Vec<String>,

    /// Parameter for every --report-type (repeatable), e.g. sbom_media_type=application/spdx+json.
    #[arg(long = "report-param", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub report_params: Vec<(String, String)>,

    /// Output format (json: the ScanResponse in the proto3 JSON mapping).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Exit 1 when a finding has this severity or a higher one
    /// (unknown < negligible < low < medium < high < critical), and also when the report is
    /// incomplete (it has notices: something not scanned or left out).
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<SeverityArg>,

    /// With --fail-on, do not fail on an incomplete report alone; the `incomplete: ...` line is
    /// still printed on stderr.
    #[arg(long)]
    pub allow_incomplete: bool,

    /// Save each typed report document (--report-type) to a file in this directory.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,

    /// Which RPC to call: auto streams with a progress bar when stderr is a terminal and calls
    /// ScanImage otherwise. The result is the same either way.
    #[arg(long, value_enum, default_value_t = RpcMode::Auto)]
    pub rpc: RpcMode,

    /// Attaching the report to the image (for CI).
    #[command(flatten)]
    pub attach: crate::attach::AttachFlags,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable tables.
    Table,
    /// The response message in the proto3 canonical JSON mapping.
    Json,
}

/// Which scan RPC to call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RpcMode {
    /// ScanImageStream when stderr is a terminal, ScanImage otherwise.
    Auto,
    /// Always ScanImage.
    Unary,
    /// Always ScanImageStream (a progress bar only when stderr is a terminal).
    Stream,
}

/// `--fail-on` values (Harbor's severities).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum SeverityArg {
    /// Unknown.
    Unknown,
    /// Negligible.
    Negligible,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl SeverityArg {
    /// The proto severity.
    pub(crate) fn to_proto(self) -> Severity {
        match self {
            SeverityArg::Unknown => Severity::Unknown,
            SeverityArg::Negligible => Severity::Negligible,
            SeverityArg::Low => Severity::Low,
            SeverityArg::Medium => Severity::Medium,
            SeverityArg::High => Severity::High,
            SeverityArg::Critical => Severity::Critical,
        }
    }
}

fn platform_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses `OS/ARCH[/VARIANT]`.
pub(crate) fn parse_platform(text: &str) -> Result<Platform, String> {
    let parts: Vec<&str> = text.split('/').collect();
    if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| platform_part(p)) {
        return Err(format!(
            "invalid platform {text:?}: expected OS/ARCH[/VARIANT] (letters, digits, '.', '_', '-'), \
             e.g. linux/amd64 or linux/arm64/v8"
        ));
    }
    Ok(Platform {
        os: parts[0].to_string(),
        architecture: parts[1].to_string(),
        variant: parts.get(2).map(|v| v.to_string()).unwrap_or_default(),
    })
}

/// Parses `KEY=VALUE` (the key non-empty).
pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("invalid parameter {text:?}: expected KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn platforms() {
        let p = parse_platform("linux/arm64/v8").expect("valid");
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_str()),
            ("linux", "arm64", "v8")
        );
        let p = parse_platform("linux/amd64").expect("valid");
        assert_eq!(p.variant, "");
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux//v8",
            "linux/am d64",
            "",
        ] {
            assert!(parse_platform(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_value("sbom_media_type=application/spdx+json"),
            Ok(("sbom_media_type".into(), "application/spdx+json".into()))
        );
        assert_eq!(parse_key_value("k="), Ok(("k".into(), String::new())));
        assert!(parse_key_value("=v").is_err());
        assert!(parse_key_value("novalue").is_err());
    }

    #[test]
    fn bad_flags_are_usage_errors_with_exit_code_2() {
        for argv in [
            vec!["sidescan", "scan", "app:1", "--platform", "linux"],
            vec!["sidescan", "scan", "app:1", "--fail-on", "severe"],
            vec!["sidescan", "scan", "app:1", "--timeout", "soon"],
            vec!["sidescan", "scan"],
            vec!["sidescan", "frobnicate"],
        ] {
            let err = Cli::try_parse_from(&argv).expect_err("usage error");
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "sidescan",
            "scan",
            "app:1",
            "--plugin",
            "http://127.0.0.1:1",
            "--timeout",
            "5m",
            "--request-id",
            "r1",
        ])
        .expect("parses");
        assert_eq!(cli.common.plugin.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(cli.common.timeout, Some(Duration::from_secs(300)));
        assert_eq!(cli.common.request_id.as_deref(), Some("r1"));
    }

    #[test]
    fn secrets_are_hidden_from_help_and_debug() {
        let help = Cli::command()
            .find_subcommand_mut("scan")
            .expect("scan")
            .render_long_help()
            .to_string();
        assert!(help.contains("SIDESCAN_REGISTRY_PASSWORD"));
        assert!(format!("{:?}", Secret("hunter2".into())) == "<redacted>");
    }
}
