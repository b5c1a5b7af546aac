//! Events out: one CloudEvent (structured mode, `application/cloudevents+json`) per finished
//! scan, of type `dev.sidescan.image.scanned`, its data shaped like zot's
//! `zotregistry.image.scanned` (`name, reference, digest, mediaType, summary{count,
//! fixableCount, unknownCount, lowCount, mediumCount, highCount, criticalCount, maxSeverity}`)
//! plus the scanner, completeness and the report's digest.

use std::time::Duration;

use serde_json::json;
use sidescan_oci::report::ScannerId;
use sidescan_proto::v1::ScanResponse;

use crate::metrics::Metrics;

/// The CloudEvent type posted.
pub const IMAGE_SCANNED: &str = "dev.sidescan.image.scanned";

/// Attempts per event.
const ATTEMPTS: u32 = 3;

/// Posts CloudEvents to one URL.
#[derive(Debug)]
pub struct Emitter {
    url: String,
    http: reqwest::Client,
}

/// What was scanned, for the event's data.
#[derive(Debug)]
pub struct Scanned<'a> {
    /// Repository.
    pub name: &'a str,
    /// Tag, or the digest when pushed by digest.
    pub reference: &'a str,
    /// Manifest digest.
    pub digest: &'a str,
    /// Manifest media type.
    pub media_type: &'a str,
    /// Who scanned.
    pub scanner: &'a ScannerId,
    /// The result.
    pub response: &'a ScanResponse,
    /// Digest of the attached sidescan report.
    pub report_digest: &'a str,
}

/// The CloudEvent for `scanned`.
pub fn event(scanned: &Scanned<'_>) -> serde_json::Value {
    let report = scanned.response.report.clone().unwrap_or_default();
    let s = report.summary.unwrap_or_default();
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": "sidescan-watch",
        "type": IMAGE_SCANNED,
        "time": sidescan_oci::report::now_rfc3339(),
        "datacontenttype": "application/json",
        "data": {
            "name": scanned.name,
            "reference": scanned.reference,
            "digest": scanned.digest,
            "mediaType": scanned.media_type,
            "summary": {
                "count": s.total,
                "fixableCount": s.fixable,
                "unknownCount": s.unknown,
                "lowCount": s.low,
                "mediumCount": s.medium,
                "highCount": s.high,
                "criticalCount": s.critical,
                "maxSeverity": if s.total == 0 {
                    "NONE"
                } else {
                    sidescan_oci::report::severity_name(s.max_severity)
                },
            },
            "complete": sidescan_oci::report::is_complete(&report),
            "scanner": {
                "name": scanned.scanner.name,
                "version": scanned.scanner.version,
                "engineVersion": scanned.scanner.engine_version,
            },
            "report": {
                "digest": scanned.report_digest,
                "artifactType": sidescan_oci::report::REPORT_ARTIFACT_TYPE,
            },
        },
    })
}

impl Emitter {
    /// An emitter posting to `url`.
    pub fn new(url: &str) -> Result<Self, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("--emit {url:?}: want an http(s) URL"));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            url: url.into(),
            http,
        })
    }

    /// Posts the event for `scanned`, retrying a few times; failures are counted and logged,
    /// never fatal (the report is already in the registry).
    pub async fn send(&self, metrics: &Metrics, scanned: &Scanned<'_>) {
        let body = event(scanned).to_string();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            let result = self
                .http
                .post(&self.url)
                .header("content-type", crate::event::CLOUDEVENTS_JSON)
                .body(body.clone())
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => {
                    metrics.emitted("ok");
                    return;
                }
                Ok(r) => {
                    tracing::warn!(url = %self.url, status = r.status().as_u16(), "emit refused")
                }
                Err(e) => tracing::warn!(url = %self.url, error = %e, "emit failed"),
            }
        }
        metrics.emitted("failed");
    }
}
