//! The adapter's own flags and `SIDESCAN_TRIVY_*` environment variables ([`TrivyConfig`]).
//!
//! They are flattened next to the SDK's [`sidescan_sdk::ServerConfig`] in the binary; names that
//! would clash with the SDK's (`--cache-dir`, `--timeout`) carry a `trivy-` prefix.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// What Trivy looks for (`--scanners`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum TrivyScanner {
    /// Known vulnerabilities of OS and language packages (needs the vulnerability DB).
    Vuln,
    /// Hard-coded secrets (no DB needed).
    Secret,
}

impl TrivyScanner {
    /// The name Trivy's `--scanners` flag takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vuln => "vuln",
            Self::Secret => "secret",
        }
    }
}

/// Trivy's severity names, for `--severities`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum TrivySeverity {
    /// UNKNOWN.
    Unknown,
    /// LOW.
    Low,
    /// MEDIUM.
    Medium,
    /// HIGH.
    High,
    /// CRITICAL.
    Critical,
}

impl TrivySeverity {
    /// The upper-case name Trivy uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }
}

/// Where Trivy reads the image from (`--image-source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImageSource {
    /// The SDK pulls the image into its blob cache, verifies every blob's digest and every
    /// layer's diff_id and size limits, and Trivy scans the local OCI layout once all of it is
    /// verified. The SDK writes each new layer into the layout uncompressed as it verifies it
    /// (`Input::UncompressedLayout`), so Trivy decompresses nothing; a layer the adapter verified
    /// before stays compressed, and Trivy's layer cache usually spares reading it. Credentials
    /// never leave the adapter; layers shared between images are downloaded once.
    Layout,
    /// Trivy pulls the image itself (`--image-src remote`) by the digest the SDK resolved, with
    /// the request's credentials in its environment. Faster on a first scan (Trivy overlaps its
    /// download with its analysis), but layers bypass the SDK's verification, limits and blob
    /// cache (Trivy checks blob digests itself).
    Registry,
}

/// Every flag of the Trivy adapter. Each has an environment variable (`SIDESCAN_TRIVY_*`); flags
/// win over the environment.
#[derive(Debug, Clone, Args)]
pub struct TrivyConfig {
    /// Where Trivy reads images from: `layout` (the SDK's verified local copy) or `registry`
    /// (Trivy pulls by digest with the request's credentials). See BENCHMARKS.md for the numbers.
    #[arg(long, env = "SIDESCAN_TRIVY_IMAGE_SOURCE", value_enum, default_value_t = ImageSource::Layout)]
    pub image_source: ImageSource,

    /// The trivy executable: a path, or a name looked up on PATH.
    #[arg(long, env = "SIDESCAN_TRIVY_BIN", default_value = "trivy")]
    pub trivy_bin: PathBuf,

    /// Trivy's cache directory: the vulnerability DB lives in `<dir>/db` (trivy.db, metadata.json).
    #[arg(long, env = "SIDESCAN_TRIVY_CACHE_DIR", default_value_os_t = default_trivy_cache_dir())]
    pub trivy_cache_dir: PathBuf,

    /// OCI repositories to download the vulnerability DB from, in order of priority (Trivy's
    /// default when not given).
    #[arg(long, env = "SIDESCAN_TRIVY_DB_REPOSITORY", value_delimiter = ',')]
    pub db_repository: Vec<String>,

    /// OCI repositories of the Java index DB (Trivy's default when not given).
    #[arg(long, env = "SIDESCAN_TRIVY_JAVA_DB_REPOSITORY", value_delimiter = ',')]
    pub java_db_repository: Vec<String>,

    /// Never download the vulnerability DB: the operator provides `<trivy-cache-dir>/db`
    /// (air-gapped installs). Scans never update the DB themselves in any case.
    #[arg(long, env = "SIDESCAN_TRIVY_SKIP_DB_UPDATE")]
    pub skip_db_update: bool,

    /// Ask Trivy not to call any API to identify dependencies (`--offline-scan`).
    #[arg(long, env = "SIDESCAN_TRIVY_OFFLINE_SCAN")]
    pub offline_scan: bool,

    /// Timeout of one Trivy run; the process and its group are killed past it (DEADLINE_EXCEEDED).
    #[arg(long, env = "SIDESCAN_TRIVY_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub trivy_timeout: Duration,

    /// Severities to report (Trivy's `--severity`); all when not given.
    #[arg(
        long,
        env = "SIDESCAN_TRIVY_SEVERITIES",
        value_enum,
        value_delimiter = ',',
        ignore_case = true
    )]
    pub severities: Vec<TrivySeverity>,

    /// Report only vulnerabilities that have a fix.
    #[arg(long, env = "SIDESCAN_TRIVY_IGNORE_UNFIXED")]
    pub ignore_unfixed: bool,

    /// What to scan for: vuln, secret (comma-separated or repeated).
    #[arg(long, env = "SIDESCAN_TRIVY_SCANNERS", value_enum, value_delimiter = ',', default_values_t = [TrivyScanner::Vuln])]
    pub scanners: Vec<TrivyScanner>,

    /// Download a fresh vulnerability DB this often (e.g. 12h); never when not given. Ignored with
    /// --skip-db-update.
    #[arg(long, env = "SIDESCAN_TRIVY_DB_UPDATE_INTERVAL", value_parser = humantime::parse_duration)]
    pub db_update_interval: Option<Duration>,

    /// Trivy processes that may run at once; further scans wait.
    #[arg(long, env = "SIDESCAN_TRIVY_MAX_PROCESSES", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_trivy_processes: u32,

    /// Keep Trivy's per-layer analysis across scans, one cache per Trivy process slot under
    /// `<trivy-cache-dir>/layer-cache`, each emptied past this size: a new image on a known base
    /// has only its new layers analysed. 0 turns it off (Trivy's in-memory cache, per run).
    #[arg(
        long,
        env = "SIDESCAN_TRIVY_LAYER_CACHE_MAX_SIZE",
        default_value = "1GiB"
    )]
    pub layer_cache_max_size: bytesize::ByteSize,

    /// How much of a failed Trivy run's stderr (its last bytes) goes into the error message.
    #[arg(long, env = "SIDESCAN_TRIVY_STDERR_TAIL", default_value_t = 8192)]
    pub stderr_tail_bytes: usize,
}

fn default_trivy_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("sidescan-trivy")
}

impl TrivyConfig {
    /// The configuration from command-line style arguments (the first is the program name) plus
    /// the environment.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        sidescan_sdk::server::parse_args(args)
    }

    /// Scanners, sorted and deduplicated.
    pub fn scanner_list(&self) -> Vec<TrivyScanner> {
        let mut list = self.scanners.clone();
        list.sort();
        list.dedup();
        if list.is_empty() {
            list.push(TrivyScanner::Vuln);
        }
        list
    }

    /// Whether the vulnerability scanner (and so the DB) is enabled.
    pub fn wants_db(&self) -> bool {
        self.scanner_list().contains(&TrivyScanner::Vuln)
    }

    /// Severities, sorted and deduplicated (empty: all).
    pub fn severity_list(&self) -> Vec<TrivySeverity> {
        let mut list = self.severities.clone();
        list.sort();
        list.dedup();
        list
    }

    /// Directory holding `trivy.db` and `metadata.json`.
    pub fn db_dir(&self) -> PathBuf {
        self.trivy_cache_dir.join("db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_lists_parse() {
        let c = TrivyConfig::from_args(["p"]).expect("defaults");
        assert_eq!(c.scanner_list(), [TrivyScanner::Vuln]);
        assert_eq!(c.trivy_timeout, Duration::from_secs(300));
        assert!(c.db_update_interval.is_none());
        let c = TrivyConfig::from_args([
            "p",
            "--scanners",
            "secret,vuln",
            "--severities",
            "CRITICAL,high",
            "--trivy-timeout",
            "1ms",
            "--db-update-interval",
            "12h",
        ])
        .expect("flags");
        assert_eq!(c.scanner_list(), [TrivyScanner::Vuln, TrivyScanner::Secret]);
        assert_eq!(
            c.severity_list(),
            [TrivySeverity::High, TrivySeverity::Critical]
        );
        assert_eq!(c.trivy_timeout, Duration::from_millis(1));
        assert_eq!(c.db_update_interval, Some(Duration::from_secs(12 * 3600)));
        assert!(TrivyConfig::from_args(["p", "--scanners", "misconfig"]).is_err());
        assert!(TrivyConfig::from_args(["p", "--max-trivy-processes", "0"]).is_err());
    }
}
