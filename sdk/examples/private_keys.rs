//! A complete sidescan plugin: reports PEM private keys found in image files, layer by layer.
//!
//! `cargo run -p sidescan-sdk --example private_keys -- --listen 127.0.0.1:50051`
use sidescan_sdk::prelude::*;
use tokio::io::AsyncReadExt as _;

struct PrivateKeys;

#[sidescan_sdk::async_trait]
impl Scanner for PrivateKeys {
    fn info(&self) -> ScannerInfo {
        let produces = vec![mime::VULNERABILITY_REPORT.into()];
        let (name, vendor) = ("private-keys".into(), "sidescan examples".into());
        let capabilities = vec![Capability {
            kind: "secret".into(),
            produces,
            ..Capability::default()
        }];
        ScannerInfo {
            name,
            vendor,
            version: "0.1.0".into(),
            capabilities,
        }
    }
    fn input(&self) -> Input {
        Input::PerLayer
    }
    async fn scan_layer(&self, layer: &mut Layer, _: &ScanContext) -> Result<ScanFindings, Error> {
        let mut found = ScanFindings::default();
        while let Some(mut entry) = layer.next_entry().await? {
            let mut text = Vec::new();
            if entry.kind != EntryKind::File || entry.size > 1 << 20 {
                continue; // bigger files are not key files
            }
            entry.read_to_end(&mut text).await?;
            let text = String::from_utf8_lossy(&text);
            if text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----") {
                let finding = Finding::new(FindingKind::Secret, "pem-private-key", Severity::High);
                found
                    .findings
                    .push(finding.at_path(&entry.path).with_title("PEM private key"));
            }
        }
        Ok(found)
    }
}

fn main() -> std::process::ExitCode {
    sidescan_sdk::serve(PrivateKeys)
}
