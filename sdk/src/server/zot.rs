//! zot's scanner-plugin protocol (`/scan.Scan/Scan`, `proto/scan/scan.proto`), served on the
//! plugin's gRPC port beside `sidescan.v1`. A thin front door: the request becomes a
//! `sidescan.v1` `ScanRequest` and takes the same path as `ScanImage` (validation, queue,
//! deadline, pipeline, logs, metrics); the report is translated back to zot's model.
//!
//! zot sends `image` as `repo:tag` relative to `registry.url`, and the URL without a scheme
//! (`localhost:8080`). As Docker decides for a scheme-less registry, plain http is used when the
//! host is a loopback address or is named in `--insecure-registry`, https otherwise.
//!
//! Severities map as zot has them: negligible becomes LOW, unspecified UNKNOWN. An incomplete
//! scan must not look clean to zot, which reads only vulnerabilities: every notice code becomes
//! one UNKNOWN-severity item `SIDESCAN-INCOMPLETE-<code>` carrying the notice's message.

use std::collections::HashMap;

use sidescan_proto::{v1 as pb, zot};
use tonic::{Request, Response, Status};

use super::service::ScanGrpc;

/// The zot-facing service (cheap to clone).
#[derive(Clone)]
pub(crate) struct ZotScan {
    v1: ScanGrpc,
    insecure_registries: Vec<String>,
}

impl ZotScan {
    /// Serves zot's protocol through `v1`; `insecure_registries` are `host[:port]` values pulled
    /// over plain http when zot names them without a scheme.
    pub(crate) fn new(v1: ScanGrpc, insecure_registries: Vec<String>) -> Self {
        Self {
            v1,
            insecure_registries,
        }
    }
}

#[tonic::async_trait]
impl zot::scan_server::Scan for ZotScan {
    async fn scan(
        &self,
        request: Request<zot::ScanRequest>,
    ) -> Result<Response<zot::ScanResponse>, Status> {
        let (metadata, extensions, request) = request.into_parts();
        let v1_request = to_v1(&request, &self.insecure_registries);
        let response = pb::scan_server::Scan::scan_image(
            &self.v1,
            Request::from_parts(metadata, extensions, v1_request),
        )
        .await?;
        let (metadata, response, extensions) = response.into_parts();
        let report = response.report.unwrap_or_default();
        Ok(Response::from_parts(
            metadata,
            zot::ScanResponse {
                report: Some(to_zot(&request.image, report)),
            },
            extensions,
        ))
    }
}

/// zot's request as a `sidescan.v1` request (the primary report only).
fn to_v1(request: &zot::ScanRequest, insecure_registries: &[String]) -> pb::ScanRequest {
    let registry = request.registry.clone().unwrap_or_default();
    let url = registry.url.trim().to_owned();
    let insecure = !url.contains("://") && !url.is_empty() && {
        let host = url.split('/').next().unwrap_or_default();
        is_loopback(host)
            || insecure_registries
                .iter()
                .any(|r| r.trim().eq_ignore_ascii_case(host))
    };
    pb::ScanRequest {
        image: request.image.clone(),
        registry: Some(pb::Registry {
            url,
            authorization: registry.authorization,
            insecure,
        }),
        ..Default::default()
    }
}

/// Whether `host[:port]` names this machine: `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// zot's severity for a `sidescan.v1` severity.
fn severity(s: pb::Severity) -> zot::Severity {
    match s {
        pb::Severity::Unspecified | pb::Severity::Unknown => zot::Severity::Unknown,
        pb::Severity::Negligible | pb::Severity::Low => zot::Severity::Low,
        pb::Severity::Medium => zot::Severity::Medium,
        pb::Severity::High => zot::Severity::High,
        pb::Severity::Critical => zot::Severity::Critical,
    }
}

/// A string as a `google.protobuf.Any` holding a `google.protobuf.StringValue`.
fn string_any(value: &str) -> prost_types::Any {
    let mut encoded = Vec::new();
    prost::encoding::string::encode(1, &value.to_owned(), &mut encoded);
    prost_types::Any {
        type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
        value: encoded,
    }
}

/// The `sidescan.v1` report in zot's model.
fn to_zot(image: &str, report: pb::ScanReport) -> zot::ScanReport {
    let scanner = report.scanner.unwrap_or_default();
    let mut vulnerabilities: Vec<zot::ScanVulnerability> = report
        .vulnerabilities
        .iter()
        .map(|f| zot::ScanVulnerability {
            vulnerability_id: f.id.clone(),
            pkg: if f.package.is_empty() {
                f.path.clone()
            } else {
                f.package.clone()
            },
            version: f.installed_version.clone(),
            fixed_version: f.fixed_version.clone(),
            title: f.title.clone(),
            severity: severity(f.severity()) as i32,
            description: f.description.clone(),
            references: f.links.clone(),
            layer: (!f.layer_digest.is_empty() || !f.layer_diff_id.is_empty()).then(|| {
                zot::Layer {
                    digest: f.layer_digest.clone(),
                    diff_id: f.layer_diff_id.clone(),
                }
            }),
            cvss: f
                .cvss
                .iter()
                .map(|(source, c)| {
                    (
                        source.clone(),
                        zot::Cvss {
                            v2_vector: c.v2_vector.clone(),
                            v3_vector: c.v3_vector.clone(),
                            v2_score: c.v2_score,
                            v3_score: c.v3_score,
                        },
                    )
                })
                .collect(),
            cwe_ids: f.cwe_ids.clone(),
            vendor_attributes: f
                .vendor_attributes
                .iter()
                .map(|(k, v)| (k.clone(), string_any(v)))
                .collect(),
        })
        .collect();
    let mut incomplete: Vec<(String, (u32, String))> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for n in &report.notices {
        let count = n.count.max(1);
        match seen.get(&n.code) {
            Some(&i) => incomplete[i].1.0 = incomplete[i].1.0.saturating_add(count),
            None => {
                seen.insert(n.code.clone(), incomplete.len());
                incomplete.push((n.code.clone(), (count, n.message.clone())));
            }
        }
    }
    for (code, (count, message)) in incomplete {
        vulnerabilities.push(zot::ScanVulnerability {
            vulnerability_id: format!("SIDESCAN-INCOMPLETE-{code}"),
            title: format!("scan incomplete: {count} x {code}"),
            description: format!(
                "Part of the image was not scanned ({code}, {count} time(s)), so this report is \
                 incomplete, not clean. First: {message}"
            ),
            severity: zot::Severity::Unknown as i32,
            ..Default::default()
        });
    }
    zot::ScanReport {
        image: Some(zot::Image {
            name: image.to_owned(),
        }),
        scanner: Some(zot::Scanner {
            name: scanner.name,
            vendor: scanner.vendor,
            version: scanner.version,
        }),
        vulnerabilities,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> zot::ScanRequest {
        zot::ScanRequest {
            image: "app:1".into(),
            registry: Some(zot::Registry {
                url: url.into(),
                authorization: String::new(),
            }),
        }
    }

    #[test]
    fn scheme_less_registries_are_plain_http_only_on_loopback_or_when_listed() {
        let insecure = |url: &str| {
            to_v1(&request(url), &["registry.internal:5000".into()])
                .registry
                .unwrap()
                .insecure
        };
        assert!(insecure("localhost:8080"));
        assert!(insecure("127.0.0.1:5000"));
        assert!(insecure("[::1]:5000"));
        assert!(insecure("registry.internal:5000"));
        assert!(!insecure("registry.internal:5001"));
        assert!(!insecure("example.test:5000"));
        // a scheme says it all
        assert!(!insecure("https://127.0.0.1:5000"));
        let v1 = to_v1(&request("localhost:8080"), &[]);
        assert_eq!(v1.image, "app:1");
        assert_eq!(v1.registry.unwrap().url, "localhost:8080");
    }

    #[test]
    fn findings_map_to_zot_severities_and_notices_never_read_as_clean() {
        let mut report = pb::ScanReport::default();
        for (id, sev) in [
            ("CVE-1", pb::Severity::Negligible),
            ("CVE-2", pb::Severity::Critical),
            ("CVE-3", pb::Severity::Unspecified),
        ] {
            let mut f = pb::ScanVulnerability {
                id: id.into(),
                package: "openssl".into(),
                layer_digest: "sha256:aa".into(),
                ..Default::default()
            };
            f.set_severity(sev);
            report.vulnerabilities.push(f);
        }
        let mut eicar = pb::ScanVulnerability {
            id: "Eicar-Test-Signature".into(),
            path: "/evil".into(),
            ..Default::default()
        };
        eicar.set_severity(pb::Severity::High);
        report.vulnerabilities.push(eicar);
        for _ in 0..2 {
            report.notices.push(pb::Notice {
                code: "file-too-large".into(),
                message: "big".into(),
                count: 1,
                ..Default::default()
            });
        }
        let z = to_zot("app:1", report);
        let got: Vec<(&str, &str, zot::Severity)> = z
            .vulnerabilities
            .iter()
            .map(|v| (v.vulnerability_id.as_str(), v.pkg.as_str(), v.severity()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("CVE-1", "openssl", zot::Severity::Low),
                ("CVE-2", "openssl", zot::Severity::Critical),
                ("CVE-3", "openssl", zot::Severity::Unknown),
                ("Eicar-Test-Signature", "/evil", zot::Severity::High),
                (
                    "SIDESCAN-INCOMPLETE-file-too-large",
                    "",
                    zot::Severity::Unknown
                ),
            ]
        );
        assert!(z.vulnerabilities[4].title.contains("2 x"));
        assert_eq!(
            z.vulnerabilities[0].layer.as_ref().unwrap().digest,
            "sha256:aa"
        );
        assert_eq!(z.image.unwrap().name, "app:1");
        assert_eq!(
            string_any("x").value,
            vec![0x0a, 1, b'x'],
            "StringValue wire encoding"
        );
    }
}
