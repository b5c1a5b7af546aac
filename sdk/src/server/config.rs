//! The SDK's command-line flags and environment variables ([`ServerConfig`]).

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use clap::{Args, ValueEnum};

use crate::limits::Limits;
use crate::pipeline::PipelineOptions;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP `host:port`.
    Tcp(String),
    /// A Unix domain socket path (`unix:/path`).
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/sidescan.sock".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(s.to_owned()))
            }
            _ => Err(format!(
                "invalid listen address {s:?}: expected host:port (e.g. 127.0.0.1:50051) or unix:/path"
            )),
        }
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => f.write_str(addr),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every flag a plugin built on the SDK understands. Each has an environment variable
/// (`SIDESCAN_*`); flags win over the environment.
///
/// Plugins with flags of their own flatten this into their parser:
///
/// ```
/// #[derive(clap::Parser)]
/// struct Cli {
///     /// The engine's address.
///     #[arg(long)]
///     engine: String,
///     #[command(flatten)]
///     server: sidescan_sdk::ServerConfig,
/// }
/// ```
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// Address to serve on: host:port, or unix:/path for a Unix socket.
    #[arg(long, env = "SIDESCAN_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: ListenAddr,

    /// PEM certificate chain for TLS (with --tls-key). Without it the server speaks plaintext.
    #[arg(long, env = "SIDESCAN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for TLS.
    #[arg(long, env = "SIDESCAN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: when set, clients must present a certificate signed by it (mTLS).
    #[arg(long, env = "SIDESCAN_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Scans that run at once.
    #[arg(long, env = "SIDESCAN_MAX_CONCURRENT_SCANS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_scans: u32,

    /// Scans that may wait for a slot; one more is refused with RESOURCE_EXHAUSTED and a retry
    /// pushback. The default is sized in BENCHMARKS.md (32 concurrent callers on 4 slots).
    #[arg(long, env = "SIDESCAN_MAX_QUEUED_SCANS", default_value_t = 64)]
    pub max_queued_scans: u32,

    /// Timeout of a scan whose caller set no deadline.
    #[arg(long, env = "SIDESCAN_DEFAULT_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub default_timeout: Duration,

    /// Upper bound on any scan, whatever deadline the caller sets.
    #[arg(long, env = "SIDESCAN_MAX_TIMEOUT", default_value = "30m", value_parser = humantime::parse_duration)]
    pub max_timeout: Duration,

    /// On SIGTERM/SIGINT, how long in-flight scans may finish before the server exits anyway.
    #[arg(long, env = "SIDESCAN_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How often the plugin's readiness is polled for grpc.health.v1.
    #[arg(long, env = "SIDESCAN_HEALTH_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_interval: Duration,

    /// Log format.
    #[arg(long, env = "SIDESCAN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log level or filter (e.g. info, debug, sidescan_sdk=debug). RUST_LOG overrides it.
    #[arg(long, env = "SIDESCAN_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Blob and layer-result cache directory (kept across restarts).
    #[arg(long, env = "SIDESCAN_CACHE_DIR", default_value_os_t = default_cache_dir())]
    pub cache_dir: PathBuf,

    /// Size cap of the blob cache; least recently used blobs are evicted past it.
    #[arg(long, env = "SIDESCAN_CACHE_MAX_SIZE", default_value = "10GiB")]
    pub cache_max_size: ByteSize,

    /// Parent directory of per-scan scratch directories (each removed after its scan).
    #[arg(long, env = "SIDESCAN_SCRATCH_DIR", default_value_os_t = std::env::temp_dir())]
    pub scratch_dir: PathBuf,

    /// Registries (host or host:port) the plugin may pull from, follow redirects to and get tokens
    /// from; repeat or comma-separate. Default: any.
    #[arg(
        long = "allow-registry",
        env = "SIDESCAN_ALLOWED_REGISTRIES",
        value_delimiter = ','
    )]
    pub allowed_registries: Vec<String>,

    /// Registries (`host[:port]`) pulled over plain http when a zot-protocol request
    /// (`/scan.Scan/Scan`) names them without a scheme; loopback hosts always are. Repeat or
    /// comma-separate.
    #[arg(
        long = "insecure-registry",
        env = "SIDESCAN_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,

    /// Largest total compressed size of one image (0: no limit).
    #[arg(long, env = "SIDESCAN_MAX_IMAGE_SIZE", default_value = "8GiB")]
    pub max_image_size: ByteSize,

    /// Largest total uncompressed size of one image (0: no limit).
    #[arg(long, env = "SIDESCAN_MAX_UNCOMPRESSED_SIZE", default_value = "16GiB")]
    pub max_uncompressed_size: ByteSize,

    /// Most entries (files, directories, links) in one image (0: no limit).
    #[arg(long, env = "SIDESCAN_MAX_ENTRIES", default_value_t = 1_000_000)]
    pub max_entries: u64,

    /// Largest single file (0: no limit).
    #[arg(long, env = "SIDESCAN_MAX_FILE_SIZE", default_value = "4GiB")]
    pub max_file_size: ByteSize,

    /// Largest uncompressed/compressed ratio of one layer (0: no limit).
    #[arg(long, env = "SIDESCAN_MAX_COMPRESSION_RATIO", default_value_t = 200)]
    pub max_compression_ratio: u32,

    /// Write the bound address (host:port or unix:/path) to this file once serving; useful with
    /// port 0 in scripts and tests.
    #[arg(long, env = "SIDESCAN_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,

    /// Most entries in one image index, and most images all the indexes of one request may
    /// name (0: no limit). Every other limit counts the images of an index together.
    #[arg(long, env = "SIDESCAN_MAX_INDEX_ENTRIES", default_value_t = 64)]
    pub max_index_entries: u32,

    /// Largest manifest or index document.
    #[arg(long, env = "SIDESCAN_MAX_MANIFEST_SIZE", default_value = "4MiB")]
    pub max_manifest_size: ByteSize,

    /// Serve Harbor's pluggable-scanner API v1.2 (`/api/v1`) over HTTP on this host:port, with the
    /// gRPC port's TLS / mTLS settings. Off when not given.
    #[arg(long, env = "SIDESCAN_HARBOR_LISTEN", value_name = "ADDR")]
    pub harbor_listen: Option<String>,

    /// Write the bound Harbor API address (host:port) to this file once serving; useful with
    /// --harbor-listen 127.0.0.1:0. Written before --addr-file.
    #[arg(long, env = "SIDESCAN_HARBOR_ADDR_FILE", requires = "harbor_listen")]
    pub harbor_addr_file: Option<PathBuf>,

    /// The registry credentials Harbor is told to send (metadata property
    /// `harbor.scanner-adapter/registry-authorization-type`): `basic` (a robot account) or
    /// `bearer` (a pull token Harbor fetches).
    #[arg(long, env = "SIDESCAN_HARBOR_REGISTRY_AUTHORIZATION", default_value = "basic", value_parser = ["basic", "bearer"])]
    pub harbor_registry_authorization: String,

    /// How long a finished Harbor job's reports are kept; then its id answers 404 and Harbor
    /// scans again (cheaply: the result caches answer).
    #[arg(long, env = "SIDESCAN_HARBOR_JOB_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub harbor_job_ttl: Duration,

    /// --nats and its credentials (SIDESCAN_NATS_URL, ...): the layer and image result caches
    /// gain a shared tier in a JetStream key-value bucket (a layer scanned by one replica is a
    /// hit on every other), and with --harbor-listen, Harbor jobs and reports live in JetStream
    /// (a key-value bucket and an object store), so Harbor may submit to one replica behind a
    /// Service and poll another.
    #[command(flatten)]
    pub nats: sidescan_nats::ConnectArgs,

    /// With --nats, every replica shares its layer and image results through a JetStream
    /// key-value bucket (and, with --harbor-listen, Harbor's jobs): replicas of those buckets
    /// (in a NATS cluster).
    #[arg(
        long,
        env = "SIDESCAN_NATS_REPLICAS",
        default_value_t = 1,
        requires = "nats"
    )]
    pub nats_replicas: usize,

    /// How long a result stays in the shared result cache on --nats after it was written.
    #[arg(long, env = "SIDESCAN_NATS_CACHE_TTL", default_value = "7d", value_parser = humantime::parse_duration, requires = "nats")]
    pub nats_cache_ttl: Duration,

    /// Size cap of the shared result cache on --nats; the oldest results are dropped past it.
    #[arg(
        long,
        env = "SIDESCAN_NATS_CACHE_MAX_SIZE",
        default_value = "1GiB",
        requires = "nats"
    )]
    pub nats_cache_max_size: ByteSize,

    /// Serve Prometheus metrics (GET /metrics, OpenMetrics text) over plain HTTP on this
    /// host:port. Off when not given.
    #[arg(long, env = "SIDESCAN_METRICS_LISTEN", value_name = "ADDR", value_parser = parse_metrics_listen)]
    pub metrics_listen: Option<String>,

    /// Write the bound metrics address (host:port) to this file once serving; useful with
    /// --metrics-listen 127.0.0.1:0. Written before --addr-file.
    #[arg(long, env = "SIDESCAN_METRICS_ADDR_FILE", requires = "metrics_listen")]
    pub metrics_addr_file: Option<PathBuf>,
}

/// Accepts `host:port` (no `unix:` socket: Prometheus scrapes TCP).
fn parse_metrics_listen(s: &str) -> Result<String, String> {
    match s.parse::<ListenAddr>() {
        Ok(ListenAddr::Tcp(addr)) => Ok(addr),
        Ok(ListenAddr::Unix(_)) => Err(format!(
            "invalid metrics address {s:?}: expected host:port (e.g. 127.0.0.1:9464); Prometheus \
             scrapes TCP, not Unix sockets"
        )),
        Err(e) => Err(e),
    }
}

fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("sidescan")
}

impl ServerConfig {
    /// The configuration from defaults and `SIDESCAN_*` environment variables alone, as if no
    /// flag were given.
    pub fn from_env() -> Result<Self, clap::Error> {
        Self::from_args(["sidescan-plugin"])
    }

    /// The configuration from command-line style arguments (the first is the program name) plus
    /// the environment.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        parse_args(args)
    }

    /// The image limits these flags set.
    pub fn limits(&self) -> Limits {
        Limits {
            max_image_bytes: self.max_image_size.as_u64(),
            max_uncompressed_bytes: self.max_uncompressed_size.as_u64(),
            max_entries: self.max_entries,
            max_file_bytes: self.max_file_size.as_u64(),
            max_compression_ratio: self.max_compression_ratio,
            max_manifest_bytes: self.max_manifest_size.as_u64(),
            max_index_entries: self.max_index_entries,
            ..Limits::default()
        }
    }

    /// The image-pipeline options these flags set.
    pub fn pipeline_options(&self) -> PipelineOptions {
        PipelineOptions {
            cache_dir: self.cache_dir.clone(),
            cache_max_bytes: self.cache_max_size.as_u64(),
            scratch_root: self.scratch_dir.clone(),
            limits: self.limits(),
            allowed_registries: self.allowed_registries.clone(),
        }
    }
}

/// Parses one group of flags (a `clap::Args` struct, such as [`ServerConfig`] or a plugin's
/// own flags) from command-line style arguments (the first is the program name) plus the
/// environment. For tests and for plugins that build their configuration piecewise.
pub fn parse_args<C, I, T>(args: I) -> Result<C, clap::Error>
where
    C: clap::Args + clap::FromArgMatches,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches =
        C::augment_args(clap::Command::new("sidescan-plugin")).try_get_matches_from(args)?;
    C::from_arg_matches(&matches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ServerConfig,
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            "127.0.0.1:0".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:0".into())
        );
        assert_eq!(
            "unix:/tmp/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/tmp/x.sock".into())
        );
        for bad in ["", "unix:", "localhost", "host:port", ":50051"] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn flags_parse_sizes_durations_and_lists() {
        let cli = Cli::try_parse_from([
            "p",
            "--listen",
            "unix:/tmp/p.sock",
            "--max-file-size",
            "1MiB",
            "--default-timeout",
            "90s",
            "--allow-registry",
            "127.0.0.1:5000,registry.local",
        ])
        .unwrap();
        assert_eq!(cli.config.limits().max_file_bytes, 1 << 20);
        assert_eq!(cli.config.default_timeout, Duration::from_secs(90));
        assert_eq!(
            cli.config.allowed_registries,
            ["127.0.0.1:5000", "registry.local"]
        );
        assert!(
            Cli::try_parse_from(["p", "--tls-cert", "c.pem"]).is_err(),
            "cert without key"
        );
        assert!(Cli::try_parse_from(["p", "--max-concurrent-scans", "0"]).is_err());
    }

    #[test]
    fn metrics_listen_takes_host_port_only_and_is_off_by_default() {
        let off = Cli::try_parse_from(["p"]).unwrap();
        assert_eq!(off.config.metrics_listen, None);
        let on = Cli::try_parse_from(["p", "--metrics-listen", "0.0.0.0:9464"]).unwrap();
        assert_eq!(on.config.metrics_listen.as_deref(), Some("0.0.0.0:9464"));
        for bad in ["unix:/tmp/m.sock", "9464", "host:port"] {
            assert!(
                Cli::try_parse_from(["p", "--metrics-listen", bad]).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(
            Cli::try_parse_from(["p", "--metrics-addr-file", "/tmp/m"]).is_err(),
            "an address file without --metrics-listen"
        );
    }
}
