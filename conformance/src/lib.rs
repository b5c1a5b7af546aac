//! # sidescan-conformance
//!
//! The conformance suite for `sidescan.v1` scanner plugins: it tells a plugin author, in any
//! language, whether their plugin honours the API, the way `csi-sanity` does for CSI drivers.
//!
//! The suite connects to a running plugin, reads `GetMetadata` and runs every case that applies
//! to what the plugin advertises (a plugin without a malware capability skips the EICAR case,
//! one without limits skips the over-limit cases). Each case is one function with a stable name
//! such as `registry/missing-tag-is-not-found`; see [`cases::all`].
//!
//! Outcomes ([`Outcome`]): *passed*; *failed* (the plugin broke the contract: expected vs got);
//! *skipped* (does not apply, with the reason); *error* (the suite itself or its fixture
//! registry failed: not the plugin's fault, kept apart from failures).
//!
//! Fixture images are served by an embedded read-only registry (the fault-injecting
//! [`sidescan_testkit::fake_registry::FakeRegistry`]) or pushed into a real registry
//! ([`FixtureSource`]). The fixtures and the fake registry come from `sidescan-testkit`, a
//! leaf crate without the SDK.
//!
//! ```no_run
//! # async fn demo() {
//! use sidescan_conformance::{Config, run};
//! let config = Config::new("http://127.0.0.1:50051");
//! let report = run(&config, |result| println!("{}", result.line())).await.expect("suite");
//! println!("{}", report.summary_line());
//! # }
//! ```

pub mod cases;
mod fixtures;
mod junit;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use regex::Regex;
use sidescan_proto::client::{ClientOptions, PluginClient, RetryPolicy, TlsOptions};
use sidescan_proto::v1::GetMetadataResponse;

pub use cases::Ctx;
pub use fixtures::{FixtureSource, Fixtures};

/// Version of this suite.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The API version the suite checks.
pub const API_VERSION: &str = sidescan_proto::API_VERSION;

/// SDK plugin flags that set limits small enough for the suite to build images over them, so the
/// `limits/*` cases apply and run quickly. Start an SDK-based plugin with these to certify it.
pub const SMALL_LIMIT_FLAGS: &[&str] = &[
    "--max-image-size",
    "4MiB",
    "--max-file-size",
    "2MiB",
    "--max-uncompressed-size",
    "64MiB",
    "--max-entries",
    "20000",
    "--max-manifest-size",
    "1MiB",
    "--max-compression-ratio",
    "100",
];

/// What became of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin did what the API requires.
    Passed,
    /// The plugin broke the contract; the text says what was expected and what came back.
    Failed(String),
    /// The case does not apply to this plugin; the text says why.
    Skipped(String),
    /// The suite or its fixture registry failed (not the plugin's fault).
    Error(String),
}

impl Outcome {
    /// `PASS`, `FAIL`, `SKIP` or `ERROR`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Passed => "PASS",
            Outcome::Failed(_) => "FAIL",
            Outcome::Skipped(_) => "SKIP",
            Outcome::Error(_) => "ERROR",
        }
    }

    /// The reason, for anything but a pass.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Passed => None,
            Outcome::Failed(r) | Outcome::Skipped(r) | Outcome::Error(r) => Some(r),
        }
    }
}

/// The result of a case body: `Ok(())` passes; `Err` carries a failure, skip or error.
pub type CaseResult = Result<(), Outcome>;

/// A boxed case future.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = CaseResult> + Send + 'a>>;

/// The body of a case.
pub type CaseFn = Box<dyn for<'a> Fn(&'a Ctx) -> CaseFuture<'a> + Send + Sync>;

/// One conformance case.
pub struct Case {
    /// Stable name, `group/what-is-checked`.
    pub name: String,
    /// What the case checks.
    pub description: String,
    /// The body.
    pub run: CaseFn,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// One case's result.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// The case name.
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
}

impl CaseReport {
    /// One line: `PASS  name  (1.2s)` plus the reason when there is one.
    pub fn line(&self) -> String {
        let secs = self.duration.as_secs_f64();
        match self.outcome.reason() {
            None => format!("{:<5} {} ({secs:.2}s)", self.outcome.label(), self.name),
            Some(r) => format!(
                "{:<5} {} ({secs:.2}s): {r}",
                self.outcome.label(),
                self.name
            ),
        }
    }
}

/// The results of a run.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Per case, in run order.
    pub cases: Vec<CaseReport>,
    /// The plugin's metadata, as read at the start.
    pub metadata: Option<GetMetadataResponse>,
}

impl RunReport {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }

    /// Number of passed cases.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }

    /// Number of failed cases.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Number of skipped cases.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    /// Number of suite errors.
    pub fn errors(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Error(_)))
    }

    /// Names of the failed cases, in run order.
    pub fn failed_names(&self) -> Vec<&str> {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The outcome of the case `name`, if it ran.
    pub fn outcome(&self, name: &str) -> Option<&Outcome> {
        self.cases
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.outcome)
    }

    /// `N passed, N failed, N skipped, N errors`.
    pub fn summary_line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped, {} errors",
            self.passed(),
            self.failed(),
            self.skipped(),
            self.errors()
        )
    }

    /// True when nothing failed and the suite had no errors.
    pub fn success(&self) -> bool {
        self.failed() == 0 && self.errors() == 0
    }

    /// The results as a JUnit XML document (one `<testsuite>`).
    pub fn junit_xml(&self) -> String {
        junit::render(self)
    }
}

/// Which cases to run: a case runs when it matches a focus pattern (or none is given) and no
/// skip pattern. A pattern matches when it is a substring of the name or, failing that, a
/// regular expression that matches it.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    focus: Vec<Pattern>,
    skip: Vec<Pattern>,
}

#[derive(Clone, Debug)]
struct Pattern {
    text: String,
    regex: Option<Regex>,
}

impl Pattern {
    fn new(text: &str) -> Result<Self, String> {
        let regex = match Regex::new(text) {
            Ok(r) => Some(r),
            // A plain substring that is not a valid regex is still a usable pattern.
            Err(_) if !text.is_empty() => None,
            Err(e) => return Err(format!("pattern {text:?}: {e}")),
        };
        Ok(Pattern {
            text: text.to_string(),
            regex,
        })
    }

    fn matches(&self, name: &str) -> bool {
        name.contains(&self.text) || self.regex.as_ref().is_some_and(|r| r.is_match(name))
    }
}

impl Selection {
    /// A selection from `--focus` and `--skip` patterns.
    pub fn new(focus: &[String], skip: &[String]) -> Result<Self, String> {
        let parse = |ps: &[String]| -> Result<Vec<Pattern>, String> {
            ps.iter().map(|p| Pattern::new(p)).collect()
        };
        Ok(Selection {
            focus: parse(focus)?,
            skip: parse(skip)?,
        })
    }

    /// Whether the case `name` is selected.
    pub fn selects(&self, name: &str) -> bool {
        (self.focus.is_empty() || self.focus.iter().any(|p| p.matches(name)))
            && !self.skip.iter().any(|p| p.matches(name))
    }
}

/// How to run the suite.
#[derive(Clone, Debug)]
pub struct Config {
    /// Plugin URL: `http://host:port`, `https://host:port` or `unix:/path`.
    pub endpoint: String,
    /// TLS settings for an `https://` endpoint.
    pub tls: Option<TlsOptions>,
    /// Which cases run.
    pub selection: Selection,
    /// Bound on each case; a case over it fails.
    pub case_timeout: Duration,
    /// Where fixture images come from.
    pub fixtures: FixtureSource,
    /// The plugin's Harbor API base URL (`http://host:port`), for the `harbor/` cases; they
    /// are skipped without it.
    pub harbor_url: Option<String>,
}

impl Config {
    /// Defaults for `endpoint`: every case, 120 s per case, the embedded fixture registry on
    /// 127.0.0.1.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Config {
            endpoint: endpoint.into(),
            tls: None,
            selection: Selection::default(),
            case_timeout: Duration::from_secs(120),
            fixtures: FixtureSource::default(),
            harbor_url: None,
        }
    }
}

/// Why the suite could not run at all.
#[derive(Debug)]
pub enum SuiteError {
    /// The plugin could not be reached or `GetMetadata` failed.
    Plugin(String),
    /// The fixture registry could not be started or reached.
    Fixtures(String),
}

impl fmt::Display for SuiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuiteError::Plugin(m) => write!(f, "plugin: {m}"),
            SuiteError::Fixtures(m) => write!(f, "fixture registry: {m}"),
        }
    }
}

impl std::error::Error for SuiteError {}

/// Runs the selected cases one after the other, calling `on_result` after each, and returns
/// every result. Fails only when the plugin cannot be reached or the fixtures cannot be served.
pub async fn run(
    config: &Config,
    mut on_result: impl FnMut(&CaseReport),
) -> Result<RunReport, SuiteError> {
    // No retries: the suite checks what the plugin answers to each call.
    let mut options = ClientOptions::default()
        .connect_timeout(Duration::from_secs(10))
        .retry(RetryPolicy::disabled());
    if let Some(tls) = &config.tls {
        options = options.tls(tls.clone());
    }
    let client = PluginClient::connect(&config.endpoint, options)
        .await
        .map_err(|e| SuiteError::Plugin(e.to_string()))?;
    let metadata = client
        .with_timeout(Some(Duration::from_secs(30)))
        .metadata()
        .await
        .map_err(|e| SuiteError::Plugin(format!("GetMetadata: {e}")))?;
    let fixtures = Fixtures::start(&config.fixtures)
        .await
        .map_err(SuiteError::Fixtures)?;
    let ctx = Ctx::new(
        client,
        metadata.clone(),
        fixtures,
        config.case_timeout,
        config.harbor_url.clone(),
    );
    let mut report = RunReport {
        cases: Vec::new(),
        metadata: Some(metadata),
    };
    for case in cases::all() {
        if !config.selection.selects(&case.name) {
            continue;
        }
        let started = Instant::now();
        let outcome = match tokio::time::timeout(config.case_timeout, (case.run)(&ctx)).await {
            Ok(Ok(())) => Outcome::Passed,
            Ok(Err(outcome)) => outcome,
            Err(_) => Outcome::Failed(format!(
                "no answer within the case timeout of {}",
                humantime::format_duration(config.case_timeout)
            )),
        };
        ctx.after_case();
        let result = CaseReport {
            name: case.name,
            outcome,
            duration: started.elapsed(),
        };
        on_result(&result);
        report.cases.push(result);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_takes_substrings_and_regexes() {
        let s = Selection::new(
            &["registry/".into(), "^limits/.*entries".into()],
            &["auth".into()],
        )
        .expect("patterns");
        assert!(s.selects("registry/missing-tag-is-not-found"));
        assert!(s.selects("limits/entries-over-limit-is-resource-exhausted"));
        assert!(!s.selects("registry/auth-x"));
        assert!(!s.selects("semantics/clean-image-has-no-findings"));
        // Not a valid regex: still a substring pattern.
        let s = Selection::new(&["hostile-(".into()], &[]).expect("patterns");
        assert!(s.selects("robustness/hostile-(x"));
        assert!(Selection::default().selects("anything"));
    }
}
