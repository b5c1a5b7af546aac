//! A plugin for the end-to-end tests of the SDK server: it flags every file containing
//! `SIDESCAN-TEST-FINDING`, reports readiness from a file (ready while `--ready-file` exists, so a
//! test can take the "engine" away and bring it back), and can be slowed down per layer to hold
//! scan slots (queue, deadline and drain tests). With `--whole-image` it takes the image as an
//! unpacked rootfs instead of layer by layer (the SDK's whole-image path and result cache). It
//! is a real plugin process on real sockets.

use std::path::{Path, PathBuf};
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
    /// Scan whole images (an unpacked rootfs) instead of layer by layer.
    #[arg(long)]
    whole_image: bool,
    /// The engine version to report (a new one stands for new signatures).
    #[arg(long, default_value = "test-engine-1")]
    engine_version: String,
    #[command(flatten)]
    server: sidescan_sdk::ServerConfig,
}

struct TestScanner {
    ready_file: Option<PathBuf>,
    layer_delay: Duration,
    whole_image: bool,
    engine_version: String,
}

/// A finding for the file at `path` when `content` carries the marker.
fn marker_finding(path: &str, content: &[u8]) -> Option<Finding> {
    content.windows(MARKER.len()).any(|w| w == MARKER).then(|| {
        Finding::new(FindingKind::Secret, "SIDESCAN-TEST", Severity::High)
            .at_path(path.to_owned())
            .with_title("test marker found")
    })
}

/// Every regular file under `root`, as (absolute path inside the image, content).
fn rootfs_files(root: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let inside = entry.path().strip_prefix(root).map_or_else(
                    |_| entry.path().display().to_string(),
                    |p| format!("/{}", p.display()),
                );
                files.push((inside, std::fs::read(entry.path())?));
            }
        }
    }
    files.sort();
    Ok(files)
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
        if self.whole_image {
            Input::WholeImage { rootfs: true }
        } else {
            Input::PerLayer
        }
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
        Ok(self.engine_version.clone())
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
        // The SDK calls the plugin inside the scan's log span (the JSON-log test checks it).
        tracing::debug!(layer = %layer.info.digest, "test plugin scanning a layer");
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
            found.findings.extend(marker_finding(&entry.path, &content));
        }
        Ok(found)
    }

    async fn scan_image(
        &self,
        image: &ImageInput,
        _ctx: &ScanContext,
    ) -> Result<ScanFindings, Error> {
        let root = image
            .rootfs
            .clone()
            .ok_or_else(|| Error::internal("no rootfs for a whole-image scan"))?;
        tracing::debug!(manifest = %image.manifest_digest, "test plugin scanning an image");
        let files = tokio::task::spawn_blocking(move || rootfs_files(&root))
            .await
            .map_err(|e| Error::internal(format!("rootfs walk failed: {e}")))?
            .map_err(|e| Error::internal(format!("reading the rootfs: {e}")))?;
        let mut found = ScanFindings::default();
        for (path, content) in files {
            found.findings.extend(marker_finding(&path, &content));
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
            whole_image: cli.whole_image,
            engine_version: cli.engine_version,
        },
        cli.server,
    )
}
