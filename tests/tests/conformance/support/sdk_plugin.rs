//! A plugin built on the SDK, served in-process on 127.0.0.1: a malware scanner that reports the
//! EICAR test string (a stand-in for ClamAV, so that the malware cases apply), with small limits
//! so that the limit cases run quickly.

use std::sync::Arc;

use clap::Parser;
use sidescan_sdk::prelude::*;
use tokio::io::AsyncReadExt as _;

struct EicarScanner;

const EICAR_MARK: &[u8] = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE";

#[sidescan_sdk::async_trait]
impl Scanner for EicarScanner {
    fn info(&self) -> ScannerInfo {
        ScannerInfo {
            name: "conformance-eicar".into(),
            vendor: "sidescan conformance tests".into(),
            version: "0.1.0".into(),
            capabilities: vec![Capability {
                kind: "malware".into(),
                produces: vec![mime::MALWARE_REPORT.into()],
                ..Capability::default()
            }],
        }
    }

    fn input(&self) -> Input {
        Input::PerLayer
    }

    async fn engine_version(&self) -> Result<String, Error> {
        Ok("eicar-1".into())
    }

    async fn scan_layer(&self, layer: &mut Layer, _: &ScanContext) -> Result<ScanFindings, Error> {
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
            if content.windows(EICAR_MARK.len()).any(|w| w == EICAR_MARK) {
                found.findings.push(
                    Finding::new(FindingKind::Malware, "Eicar-Test-Signature", Severity::High)
                        .at_path(entry.path.clone())
                        .with_title("EICAR test file"),
                );
            }
        }
        Ok(found)
    }
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    server: sidescan_sdk::ServerConfig,
}

/// The running in-process plugin; stops (and removes its temp dir) on drop.
pub(crate) struct SdkPlugin {
    url: String,
    harbor_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl SdkPlugin {
    /// Starts the plugin with small limits in the current runtime.
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr_file = dir.path().join("addr");
        let harbor_addr_file = dir.path().join("harbor-addr");
        let args = Args::try_parse_from([
            "conformance-eicar".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--addr-file".as_ref(),
            addr_file.as_os_str(),
            "--cache-dir".as_ref(),
            dir.path().join("cache").as_os_str(),
            "--scratch-dir".as_ref(),
            dir.path().as_os_str(),
            "--health-interval".as_ref(),
            "100ms".as_ref(),
            "--max-image-size".as_ref(),
            "4MiB".as_ref(),
            "--max-file-size".as_ref(),
            "2MiB".as_ref(),
            "--max-uncompressed-size".as_ref(),
            "64MiB".as_ref(),
            "--max-entries".as_ref(),
            "20000".as_ref(),
            "--max-manifest-size".as_ref(),
            "1MiB".as_ref(),
            "--max-compression-ratio".as_ref(),
            "100".as_ref(),
            "--log-level".as_ref(),
            "warn".as_ref(),
            "--harbor-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--harbor-addr-file".as_ref(),
            harbor_addr_file.as_os_str(),
        ] as [&std::ffi::OsStr; 29])
        .expect("plugin flags");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) =
                sidescan_sdk::server::run(Arc::new(EicarScanner), args.server, shutdown).await
            {
                eprintln!("in-process plugin stopped: {e}");
            }
        });
        let started = std::time::Instant::now();
        let addr = loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file)
                && !addr.is_empty()
            {
                break addr;
            }
            assert!(
                started.elapsed().as_secs() < 20,
                "the in-process plugin did not bind"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        // Wait for SERVING (readiness is polled every 100 ms).
        let harbor = std::fs::read_to_string(&harbor_addr_file).expect("--harbor-addr-file");
        let plugin = SdkPlugin {
            url: format!("http://{}", addr.trim()),
            harbor_url: format!("http://{}", harbor.trim()),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        };
        let client = sidescan_proto::client::PluginClient::connect(&plugin.url, Default::default())
            .await
            .expect("connect");
        for _ in 0..100 {
            if matches!(
                client.health().await,
                Ok(sidescan_proto::client::ServingStatus::Serving)
            ) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        plugin
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Its Harbor API (`--harbor-listen`): `http://127.0.0.1:PORT`.
    pub(crate) fn harbor_url(&self) -> &str {
        &self.harbor_url
    }

    /// Stops the server and waits for it.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for SdkPlugin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
