//! A plugin for the end-to-end tests of the SDK server: it flags every file containing
//! `SIDESCAN-TEST-FINDING`, reports readiness from a file (ready while `--ready-file` exists, so a
//! test can take the "engine" away and bring it back), and can be slowed down per layer to hold
//! scan slots (queue, deadline and drain tests). It is a real plugin process on real sockets.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sidescan_sdk::prelude::*;
use tokio::io::AsyncReadExt;

/// The marker that makes a file a finding.
const MARKER: &[u8] = b"SIDESCAN-TEST-FINDING";

#[derive(Parser)]
#[command(name = "sidescan-test-plugin", version)]
struct Cli {
    /// Ready only while this file exists (always ready when not given).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Sleep this long before scanning each layer.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    layer_delay: Duration,
    #[command(flatten)]
    server: sidescan_sdk::ServerConfig,
}

struct TestScanner {
    ready_file: Option<PathBuf>,
    layer_delay: Duration,
}

#[sidescan_sdk::async_trait]
impl Scanner for TestScanner {
    fn info(&self) -> ScannerInfo {
        ScannerInfo {
            name: "sidescan-test-plugin".into(),
            vendor: "sidescan tests".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec![Capability {
                kind: "secret".into(),
                produces: vec![
                    mime::VULNERABILITY_REPORT.into(),
                    mime::MALWARE_REPORT.into(),
                ],
                ..Capability::default()
            }],
        }
    }

    fn input(&self) -> Input {
        Input::PerLayer
    }

    async fn readiness(&self) -> Readiness {
        match &self.ready_file {
            Some(path) if !path.exists() => {
                Readiness::NotReady(format!("{} is missing", path.display()))
            }
            _ => Readiness::Ready,
        }
    }

    async fn engine_version(&self) -> Result<String, Error> {
        Ok("test-engine-1".into())
    }

    async fn scan_layer(
        &self,
        layer: &mut Layer,
        ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        tokio::select! {
            () = tokio::time::sleep(self.layer_delay) => {}
            () = ctx.cancel.cancelled() => return Err(Error::Cancelled("scan cancelled".into())),
        }
        let mut found = ScanFindings::default();
        while let Some(mut entry) = layer.next_entry().await? {
            if entry.kind != EntryKind::File {
                continue;
            }
            let mut content = Vec::new();
            entry
                .read_to_end(&mut content)
                .await
                .map_err(|e| Error::internal(format!("reading {}: {e}", entry.path)))?;
            if content.windows(MARKER.len()).any(|w| w == MARKER) {
                found.findings.push(
                    Finding::new(FindingKind::Secret, "SIDESCAN-TEST", Severity::High)
                        .at_path(entry.path.clone())
                        .with_title("test marker found"),
                );
            }
        }
        Ok(found)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    sidescan_sdk::serve_with(
        TestScanner {
            ready_file: cli.ready_file,
            layer_delay: cli.layer_delay,
        },
        cli.server,
    )
}
