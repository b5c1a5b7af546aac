//! The plugins every image is scanned with, and who each one is right now (name, version,
//! engine version), read from `GetMetadata` before each scan.

use std::time::Duration;

use sidescan_oci::report::ScannerId;
use sidescan_proto::client::{ClientError, ClientOptions, PluginClient, ServingStatus, TlsOptions};
use sidescan_proto::v1::{GetMetadataResponse, ReportParameters, ScanRequest, ScanResponse};

/// One plugin.
#[derive(Clone, Debug)]
pub struct Plugin {
    client: PluginClient,
}

/// Bound on metadata and health calls.
const QUICK_CALL: Duration = Duration::from_secs(10);

impl Plugin {
    /// A lazily connected plugin at `url`; scans get `scan_timeout` as their deadline.
    pub fn new(url: &str, ca_pem: Option<Vec<u8>>) -> Result<Self, ClientError> {
        let mut options = ClientOptions::default();
        if let Some(ca) = ca_pem {
            options = options.tls(TlsOptions {
                ca_cert_pem: Some(ca),
                ..Default::default()
            });
        }
        Ok(Self {
            client: PluginClient::connect_lazy(url, options)?,
        })
    }

    /// The plugin's URL.
    pub fn url(&self) -> &str {
        self.client.url()
    }

    /// Its metadata now.
    pub async fn metadata(&self) -> Result<GetMetadataResponse, ClientError> {
        self.client.with_timeout(Some(QUICK_CALL)).metadata().await
    }

    /// Whether it is SERVING.
    pub async fn serving(&self) -> bool {
        matches!(
            self.client.with_timeout(Some(QUICK_CALL)).health().await,
            Ok(ServingStatus::Serving)
        )
    }

    /// Scans with deadline `timeout`.
    pub async fn scan(
        &self,
        request: ScanRequest,
        timeout: Duration,
    ) -> Result<ScanResponse, ClientError> {
        self.client.with_timeout(Some(timeout)).scan(request).await
    }
}

/// Who answered `metadata` (see [`ScannerId::from_metadata`]).
pub fn identity(metadata: &GetMetadataResponse, url: &str) -> ScannerId {
    ScannerId::from_metadata(metadata, url)
}

/// The report types to ask `metadata`'s plugin for, so that the SBOM formats in `wanted` can be
/// attached: the SBOM report type when the plugin produces it, else nothing.
pub fn report_types(
    metadata: &GetMetadataResponse,
    wanted: &[sidescan_oci::report::Format],
) -> std::collections::HashMap<String, ReportParameters> {
    use sidescan_oci::report::Format;
    use sidescan_proto::mime;
    let produces_sbom = metadata.capabilities.iter().any(|c| {
        c.produces_mime_types
            .iter()
            .any(|m| mime::normalize(m) == mime::normalize(mime::SBOM_REPORT))
    });
    let sbom = wanted.iter().find_map(|f| match f {
        Format::Spdx => Some(mime::SPDX_JSON),
        Format::CycloneDx => Some(mime::CYCLONEDX_JSON),
        _ => None,
    });
    match (produces_sbom, sbom) {
        (true, Some(media_type)) => [(
            mime::SBOM_REPORT.to_string(),
            ReportParameters {
                parameters: [(
                    mime::SBOM_MEDIA_TYPE_PARAMETER.to_string(),
                    media_type.to_string(),
                )]
                .into(),
            },
        )]
        .into(),
        _ => Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidescan_proto::v1::Scanner;

    #[test]
    fn engine_version_from_the_property_or_all_properties() {
        let mut md = GetMetadataResponse {
            scanner: Some(Scanner {
                name: "s".into(),
                version: "1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        md.properties.insert("db".into(), "1".into());
        let a = identity(&md, "u");
        md.properties.insert("db".into(), "2".into());
        let b = identity(&md, "u");
        assert_ne!(a.engine_version, b.engine_version);
        md.properties
            .insert(sidescan_proto::ENGINE_VERSION_PROPERTY.into(), "e7".into());
        assert_eq!(identity(&md, "u").engine_version, "e7");
        md.scanner = None;
        assert_eq!(identity(&md, "http://p").name, "http://p");
    }
}
