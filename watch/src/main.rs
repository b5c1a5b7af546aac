//! `sidescan-watch`: see the crate documentation and `--help`.

use clap::Parser as _;
use sidescan_watch::args::{Args, LogFormat};

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// `--check-health URL`: exit 0 when `URL/healthz` answers 200.
async fn check_health(url: &str) -> std::process::ExitCode {
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sidescan-watch: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match client
        .get(format!("{}/healthz", url.trim_end_matches('/')))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => {
            println!("ready");
            std::process::ExitCode::SUCCESS
        }
        Ok(r) => {
            println!("not ready: {}", r.text().await.unwrap_or_default());
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            println!("not ready: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(url) = &args.check_health {
        return check_health(url).await;
    }
    init_logging(args.log_format);
    match sidescan_watch::run::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sidescan-watch cannot run");
            eprintln!("sidescan-watch: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
