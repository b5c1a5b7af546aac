//! A plugin's `sidescan.v1` metadata as Harbor's scanner-adapter metadata, shaped to pass
//! Harbor's registration rules (`ScannerAdapterMetadata.Validate`): name, vendor and version
//! non-empty; every capability consumes the Docker manifest type (and the OCI one); every
//! capability produces a report type Harbor knows.
//!
//! Capabilities: `vulnerability` always (its reports are rendered here from the plugin's
//! primary report, so any plugin has it: malware, secrets and notices appear as items), producing
//! the native 1.0 and generic 1.1 reports; `sbom` when the plugin produces
//! `application/vnd.security.sbom.report+json; version=1.0`.
//!
//! Properties: the plugin's own (`clamav.signature_version`, `trivy.db.updated_at`, ...),
//! `harbor.scanner-adapter/scanner-type` (the plugin's capability types),
//! `harbor.scanner-adapter/registry-authorization-type` (`Basic` or `Bearer`) and, when the
//! plugin names a database or signature date, `harbor.scanner-adapter/vulnerability-database-updated-at`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use sidescan_proto::mime as pmime;
use sidescan_proto::v1::GetMetadataResponse;

use crate::error::ApiError;
use crate::mime;
use crate::request::{Enabled, Validated};

/// Property naming the database or signature date.
pub const DB_UPDATED_AT: &str = "harbor.scanner-adapter/vulnerability-database-updated-at";
/// Property telling Harbor which credentials to send.
pub const AUTHORIZATION_TYPE: &str = "harbor.scanner-adapter/registry-authorization-type";
/// Property describing the scanner.
pub const SCANNER_TYPE: &str = "harbor.scanner-adapter/scanner-type";

/// Plugin properties that name the engine's data date, most specific first.
const DATE_PROPERTIES: [&str; 2] = ["trivy.db.updated_at", "clamav.signature_date"];

/// Harbor's `ScannerAdapterMetadata`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Metadata {
    scanner: Scanner,
    capabilities: Vec<serde_json::Value>,
    properties: BTreeMap<String, String>,
}

/// Name, vendor and version.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Scanner {
    /// Name.
    pub name: String,
    /// Vendor.
    pub vendor: String,
    /// Version.
    pub version: String,
}

/// Whether the plugin produces SBOM reports.
pub fn produces_sbom(plugin: &GetMetadataResponse) -> bool {
    plugin
        .capabilities
        .iter()
        .flat_map(|c| &c.produces_mime_types)
        .any(|m| mime::same(m, pmime::SBOM_REPORT))
}

/// The scanner as Harbor must see it: empty fields become `unknown` (Harbor refuses empty ones).
pub fn scanner(plugin: &GetMetadataResponse) -> Scanner {
    let s = plugin.scanner.clone().unwrap_or_default();
    let or_unknown = |v: String| {
        if v.trim().is_empty() {
            "unknown".to_owned()
        } else {
            v
        }
    };
    Scanner {
        name: or_unknown(s.name),
        vendor: or_unknown(s.vendor),
        version: or_unknown(s.version),
    }
}

/// Harbor's metadata for `plugin`; `authorization_type` is `Basic` or `Bearer`.
pub fn translate(plugin: &GetMetadataResponse, authorization_type: &str) -> Metadata {
    let mut capabilities = vec![json!({
        "type": "vulnerability",
        "consumes_mime_types": mime::CONSUMES,
        "produces_mime_types": [mime::NATIVE_REPORT, mime::GENERIC_REPORT],
    })];
    if produces_sbom(plugin) {
        capabilities.push(json!({
            "type": "sbom",
            "consumes_mime_types": mime::CONSUMES,
            "produces_mime_types": [mime::SBOM_REPORT],
            "additional_attributes": { "sbom_media_types": mime::SBOM_FORMATS },
        }));
    }
    let mut properties: BTreeMap<String, String> = plugin
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let types: Vec<&str> = plugin
        .capabilities
        .iter()
        .map(|c| c.r#type.as_str())
        .filter(|t| !t.is_empty())
        .collect();
    if !types.is_empty() {
        properties.insert(SCANNER_TYPE.to_owned(), types.join(","));
    }
    properties.insert(AUTHORIZATION_TYPE.to_owned(), authorization_type.to_owned());
    if let Some(date) = DATE_PROPERTIES
        .iter()
        .filter_map(|k| plugin.properties.get(*k))
        .find(|v| !v.trim().is_empty())
    {
        properties.insert(DB_UPDATED_AT.to_owned(), rfc3339(date));
    }
    Metadata {
        scanner: scanner(plugin),
        capabilities,
        properties,
    }
}

/// Checks the enabled capabilities against what the plugin can do (501 otherwise).
pub fn check_capabilities(
    plugin: &GetMetadataResponse,
    request: &Validated,
) -> Result<(), ApiError> {
    for enabled in &request.enabled {
        let (kind, produces, allowed): (&str, &[String], &[&str]) = match enabled {
            Enabled::Vulnerability(p) => (
                "vulnerability",
                p,
                &[mime::NATIVE_REPORT, mime::GENERIC_REPORT],
            ),
            Enabled::Sbom { produces, .. } => {
                if !produces_sbom(plugin) {
                    return Err(ApiError::Unsupported(
                        "the scanner has no sbom capability".to_owned(),
                    ));
                }
                ("sbom", produces, &[mime::SBOM_REPORT])
            }
        };
        if let Some(bad) = produces
            .iter()
            .find(|p| !allowed.iter().any(|a| mime::same(a, p)))
        {
            return Err(ApiError::Unsupported(format!(
                "the {kind} capability does not produce {bad:?}; it produces {}",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

/// clamd's `Mon Jan  5 09:25:02 2026` as RFC 3339 (UTC assumed); other values unchanged.
fn rfc3339(value: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = value.split_whitespace().collect();
    let parsed = (|| {
        let [_, month, day, time, year] = parts.as_slice() else {
            return None;
        };
        let month = MONTHS.iter().position(|m| m == month)? + 1;
        let day: u32 = day.parse().ok()?;
        let year: u32 = year.parse().ok()?;
        let hms: Vec<u32> = time
            .split(':')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let [h, m, s] = hms.as_slice() else {
            return None;
        };
        (day <= 31 && *h < 24 && *m < 60 && *s < 61)
            .then(|| format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"))
    })();
    parsed.unwrap_or_else(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidescan_proto::v1::{Capability, Scanner as PbScanner};

    fn clamav_like() -> GetMetadataResponse {
        GetMetadataResponse {
            scanner: Some(PbScanner {
                name: "sidescan-clamav".into(),
                vendor: String::new(),
                version: "0.1.0".into(),
            }),
            capabilities: vec![Capability {
                r#type: "malware".into(),
                consumes_mime_types: vec![pmime::OCI_MANIFEST.into()],
                produces_mime_types: vec![pmime::MALWARE_REPORT.into()],
            }],
            properties: [
                ("clamav.signature_version".to_owned(), "27000".to_owned()),
                (
                    "clamav.signature_date".to_owned(),
                    "Mon Jan  5 09:25:02 2026".to_owned(),
                ),
            ]
            .into(),
            ..GetMetadataResponse::default()
        }
    }

    #[test]
    fn metadata_passes_harbors_registration_rules() {
        let md = serde_json::to_value(translate(&clamav_like(), "Basic")).unwrap();
        for field in ["name", "vendor", "version"] {
            assert!(!md["scanner"][field].as_str().unwrap().is_empty(), "{md}");
        }
        let caps = md["capabilities"].as_array().unwrap();
        assert_eq!(caps.len(), 1, "no sbom for a malware plugin: {md}");
        for c in caps {
            let consumes = c["consumes_mime_types"].as_array().unwrap();
            assert!(consumes.contains(&json!(pmime::DOCKER_MANIFEST)));
            assert!(consumes.contains(&json!(pmime::OCI_MANIFEST)));
        }
        assert_eq!(md["properties"]["clamav.signature_version"], "27000");
        assert_eq!(md["properties"][DB_UPDATED_AT], "2026-01-05T09:25:02Z");
        assert_eq!(md["properties"][AUTHORIZATION_TYPE], "Basic");
        assert_eq!(md["properties"][SCANNER_TYPE], "malware");
    }

    #[test]
    fn an_sbom_plugin_gets_the_sbom_capability() {
        let mut plugin = clamav_like();
        plugin.capabilities.push(Capability {
            r#type: "sbom".into(),
            consumes_mime_types: vec![],
            produces_mime_types: vec![pmime::SBOM_REPORT.into()],
        });
        let md = serde_json::to_value(translate(&plugin, "Bearer")).unwrap();
        assert_eq!(md["capabilities"][1]["type"], "sbom");
        assert_eq!(
            md["capabilities"][1]["produces_mime_types"],
            json!([mime::SBOM_REPORT])
        );
    }

    #[test]
    fn dates_other_than_clamds_pass_unchanged() {
        assert_eq!(rfc3339("2024-05-01T00:00:00Z"), "2024-05-01T00:00:00Z");
        assert_eq!(
            rfc3339("Mon Foo 5 09:25:02 2026"),
            "Mon Foo 5 09:25:02 2026"
        );
    }
}
