//! Log setup: text or JSON lines on stderr, level from the flags or `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use super::config::LogFormat;

/// Installs the global subscriber (once; later calls are no-ops). Transport crates are held at
/// `warn` unless `RUST_LOG` names them, so no request headers reach the logs.
pub(crate) fn init(format: LogFormat, level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| {
            format!(
                "{level},h2=warn,hyper=warn,hyper_util=warn,tower=warn,rustls=warn,reqwest=warn"
            )
        });
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
