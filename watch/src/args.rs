//! Command-line flags (each with an environment variable).

// Doc comments of the flags are clap's help text, where `[:PORT]` means optional, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Scan on push: registry events in, every plugin scans the pushed image, reports attached to
/// the image in the registry as OCI referrers.
#[derive(Parser, Debug)]
#[command(name = "sidescan-watch", version)]
pub struct Args {
    /// Address of the HTTP endpoint: POST /events, GET /healthz, /livez, /metrics.
    #[arg(long, env = "SIDESCAN_WATCH_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: String,

    /// Write the bound address to this file once listening (for --listen with port 0).
    #[arg(long, value_name = "FILE")]
    pub listen_addr_file: Option<PathBuf>,

    /// The registry whose events are received: http(s)://HOST[:PORT]. Images are read and
    /// reports written here, whatever host an event names.
    #[arg(
        long,
        env = "SIDESCAN_WATCH_REGISTRY",
        value_name = "URL",
        required_unless_present = "check_health"
    )]
    pub registry: Option<String>,

    /// Speak plain http to the registry even when --registry says https.
    #[arg(long)]
    pub insecure_registry: bool,

    /// Registry user name (with --password). Also used by the plugins to pull.
    #[arg(long, env = "SIDESCAN_REGISTRY_USERNAME", hide_env_values = true)]
    pub username: Option<String>,

    /// Registry password; prefer the environment variable.
    #[arg(long, env = "SIDESCAN_REGISTRY_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Registry bearer token.
    #[arg(long, env = "SIDESCAN_REGISTRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// A containers auth.json / docker config.json, searched before the standard ones
    /// ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json).
    #[arg(long, env = "REGISTRY_AUTH_FILE", value_name = "FILE")]
    pub authfile: Option<PathBuf>,

    /// A sidescan.v1 plugin to scan with (repeatable: every plugin scans every image):
    /// http://HOST:PORT, https://HOST:PORT or unix:/PATH.
    #[arg(
        long = "plugin",
        env = "SIDESCAN_WATCH_PLUGINS",
        value_delimiter = ',',
        required_unless_present = "check_health",
        value_name = "URL"
    )]
    pub plugins: Vec<String>,

    /// PEM CA certificate of https:// plugins.
    #[arg(long, value_name = "FILE")]
    pub plugin_ca: Option<PathBuf>,

    /// Images scanned at once.
    #[arg(long, env = "SIDESCAN_WATCH_CONCURRENCY", default_value_t = 2)]
    pub concurrency: usize,

    /// Images waiting in the queue; beyond it events are refused with 503 (the registry retries).
    #[arg(long, default_value_t = 1000)]
    pub queue_size: usize,

    /// Deadline of one scan.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub scan_timeout: Duration,

    /// Attempts per image when the plugin or the registry is unavailable (with backoff).
    #[arg(long, default_value_t = 5)]
    pub attempts: u32,

    /// Also attach these documents (repeatable): sarif, spdx, cyclonedx (the SBOMs only from
    /// plugins that produce them).
    #[arg(long = "attach-format", value_enum, value_delimiter = ',')]
    pub attach_formats: Vec<AttachFormat>,

    /// Walk the registry's catalog this often for images without a current report (missed
    /// events, new engine versions). Off by default.
    #[arg(long, env = "SIDESCAN_WATCH_RECONCILE_INTERVAL", value_parser = humantime::parse_duration)]
    pub reconcile_interval: Option<Duration>,

    /// POST a CloudEvent (dev.sidescan.image.scanned) here for every finished scan.
    #[arg(long, env = "SIDESCAN_WATCH_EMIT", value_name = "URL")]
    pub emit: Option<String>,

    /// --nats and its credentials: subscribe to structured CloudEvents there (zot's NATS sink),
    /// or with --nats-stream share a durable JetStream work queue.
    #[command(flatten)]
    pub nats: sidescan_nats::ConnectArgs,

    /// With --nats: the subject zot's NATS sink publishes on (its `channel`), subscribed to; or,
    /// with --nats-stream, the subject of the durable job queue every watcher shares.
    #[arg(long, default_value = "zot.events", requires = "nats")]
    pub nats_subject: String,

    /// Use a durable JetStream work queue of this name on --nats (created if missing, capturing
    /// --nats-subject) instead of the in-process queue: any number of watchers share it.
    #[arg(long, env = "SIDESCAN_NATS_STREAM", requires = "nats")]
    pub nats_stream: Option<String>,

    /// The durable pull consumer every watcher pulls from.
    #[arg(long, default_value = "sidescan-watch", requires = "nats_stream")]
    pub nats_consumer: String,

    /// Replicas of the stream (in a NATS cluster).
    #[arg(long, default_value_t = 1, requires = "nats_stream")]
    pub nats_replicas: usize,

    /// Keep the stream in memory instead of files (jobs do not survive a server restart).
    #[arg(long, requires = "nats_stream")]
    pub nats_memory_storage: bool,

    /// Deliveries of a failing job before it goes to --nats-dead-letter.
    #[arg(long, default_value_t = 5, requires = "nats_stream")]
    pub nats_max_deliver: i64,

    /// Time a delivered job may go without an ack or a progress signal before JetStream
    /// delivers it again (progress is sent every third of it while a scan runs).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, requires = "nats_stream")]
    pub nats_ack_wait: Duration,

    /// Subject dead jobs are published to, with their last error.
    #[arg(long, default_value = "sidescan.dead", requires = "nats_stream")]
    pub nats_dead_letter: String,

    /// Window in which the same image published twice is one job.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration, requires = "nats_stream")]
    pub nats_duplicate_window: Duration,

    /// Accept events only from these addresses (repeatable). Default: any.
    #[arg(long = "allow-event-source", value_delimiter = ',', value_name = "IP")]
    pub allow_event_sources: Vec<IpAddr>,

    /// Largest event body.
    #[arg(long, default_value = "1MiB")]
    pub max_event_bytes: bytesize::ByteSize,

    /// Time allowed to send one event request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub event_timeout: Duration,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Do not run: ask the watcher at this URL for its readiness (GET URL/healthz) and exit 0
    /// when ready, 1 when not (a container HEALTHCHECK without curl).
    #[arg(long, value_name = "URL")]
    pub check_health: Option<String>,
}

/// Extra documents attached beside the sidescan report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AttachFormat {
    /// SARIF 2.1.0 (application/sarif+json).
    Sarif,
    /// SPDX JSON SBOM.
    Spdx,
    /// CycloneDX JSON SBOM.
    Cyclonedx,
}

impl AttachFormat {
    /// The report format.
    pub fn format(self) -> sidescan_oci::report::Format {
        use sidescan_oci::report::Format;
        match self {
            Self::Sarif => Format::Sarif,
            Self::Spdx => Format::Spdx,
            Self::Cyclonedx => Format::CycloneDx,
        }
    }
}

/// Log formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}
