//! `semantics/`: what a report says: findings, summaries, names, typed reports.

use super::{Ctx, clean_placed, fail, skip};
use crate::{Case, CaseResult};
use sidescan_proto::mime;
use sidescan_proto::v1::{FindingKind, ReportParameters};
use sidescan_testkit::fixtures::{self};

/// The `semantics/` cases, in run order.
pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "semantics/clean-image-has-no-findings",
            "a clean image gives no findings and the resolved manifest digest",
            semantics_clean
        ),
        case!(
            "semantics/report-names-the-image",
            "the report names repository, tag, media type and the scanner of GetMetadata",
            semantics_names_image
        ),
        case!(
            "semantics/docker-media-types-are-scanned",
            "a Docker schema2 image is scanned and its digest reported",
            semantics_docker
        ),
        case!(
            "semantics/eicar-is-a-malware-finding",
            "EICAR is a MALWARE finding with its path and layer digest",
            semantics_eicar
        ),
        case!(
            "semantics/findings-are-well-formed",
            "findings have ids and severities in range; summary counts equal the findings",
            semantics_well_formed
        ),
        case!(
            "semantics/requested-report-types-are-answered",
            "each requested report type gets its own entry with a status and a document",
            semantics_typed_reports
        ),
    ]
}

async fn semantics_clean(cx: &Ctx) -> CaseResult {
    let placed = cx.put("clean-unique", &cx.unique("clean")).await?;
    let report = cx.scan_ok(cx.req(placed.by_tag())).await?;
    if !report.vulnerabilities.is_empty() {
        return Err(fail(format!(
            "expected no findings for a clean image, got {:?}",
            report.vulnerabilities
        )));
    }
    let digest = report.image.map(|i| i.digest).unwrap_or_default();
    if digest != placed.digest {
        return Err(fail(format!(
            "expected report.image.digest {}, got {digest:?}",
            placed.digest
        )));
    }
    Ok(())
}

async fn semantics_names_image(cx: &Ctx) -> CaseResult {
    let placed = clean_placed(cx).await?;
    let report = cx.scan_ok(cx.req(placed.by_tag())).await?;
    let image = report.image.unwrap_or_default();
    if !image.repository.ends_with(&placed.repo) {
        return Err(fail(format!(
            "expected report.image.repository {:?}, got {:?}",
            placed.repo, image.repository
        )));
    }
    if image.tag != placed.tag {
        return Err(fail(format!(
            "expected report.image.tag {:?}, got {:?}",
            placed.tag, image.tag
        )));
    }
    if mime::normalize(&image.media_type) != mime::normalize(mime::OCI_MANIFEST) {
        return Err(fail(format!(
            "expected report.image.media_type {:?}, got {:?}",
            mime::OCI_MANIFEST,
            image.media_type
        )));
    }
    let (Some(got), Some(want)) = (&report.scanner, &cx.meta.scanner) else {
        return Err(fail("the report has no scanner"));
    };
    if got.name != want.name || got.version != want.version {
        return Err(fail(format!(
            "report.scanner {} {} differs from GetMetadata's {} {}",
            got.name, got.version, want.name, want.version
        )));
    }
    Ok(())
}

async fn semantics_docker(cx: &Ctx) -> CaseResult {
    let placed = cx
        .put("docker-media-types", &fixtures::docker_media_types_image())
        .await?;
    let report = cx.scan_ok(cx.req(placed.by_tag())).await?;
    let digest = report.image.map(|i| i.digest).unwrap_or_default();
    if digest != placed.digest {
        return Err(fail(format!(
            "expected report.image.digest {}, got {digest:?}",
            placed.digest
        )));
    }
    Ok(())
}

async fn semantics_eicar(cx: &Ctx) -> CaseResult {
    cx.require_malware()?;
    let artifact = fixtures::eicar_top_layer();
    let layer = artifact.layers[1].blob.digest.clone();
    let placed = cx.put("eicar", &artifact).await?;
    let report = cx.scan_ok(cx.req(placed.by_tag())).await?;
    let found = report.vulnerabilities.iter().find(|f| {
        f.kind == FindingKind::Malware as i32
            && f.path.trim_start_matches('/') == fixtures::EICAR_PATH
    });
    let Some(finding) = found else {
        return Err(fail(format!(
            "expected a MALWARE finding at {}, got {:?}",
            fixtures::EICAR_PATH,
            report.vulnerabilities
        )));
    };
    if finding.layer_digest != layer {
        return Err(fail(format!(
            "expected the EICAR finding's layer_digest {layer}, got {:?}",
            finding.layer_digest
        )));
    }
    Ok(())
}

async fn semantics_well_formed(cx: &Ctx) -> CaseResult {
    let produces_vuln = cx
        .produced()
        .iter()
        .any(|m| mime::normalize(m) == mime::normalize(mime::VULNERABILITY_REPORT));
    for (label, artifact) in [
        ("eicar", fixtures::eicar_top_layer()),
        ("private-key", fixtures::private_key_image()),
        ("whiteouts", fixtures::whiteout_image()),
    ] {
        let placed = cx.put(label, &artifact).await?;
        let mut request = cx.req(placed.by_tag());
        if produces_vuln {
            request.report_types.insert(
                mime::VULNERABILITY_REPORT.into(),
                ReportParameters::default(),
            );
        }
        // scan_ok checks ids, severities and the summary.
        cx.scan_ok(request).await?;
    }
    Ok(())
}

async fn semantics_typed_reports(cx: &Ctx) -> CaseResult {
    let produced = cx.produced();
    if produced.is_empty() {
        return Err(skip("the plugin produces no report type"));
    }
    let placed = clean_placed(cx).await?;
    let mut request = cx.req(placed.by_tag());
    for m in &produced {
        request
            .report_types
            .insert(m.clone(), ReportParameters::default());
    }
    let response = cx
        .scan(request)
        .await
        .map_err(|e| fail(format!("expected OK, got {e}")))?;
    for m in &produced {
        let Some(typed) = response
            .reports
            .iter()
            .find(|r| mime::normalize(&r.mime_type) == mime::normalize(m))
        else {
            return Err(fail(format!(
                "requested {m:?}, no entry in response.reports"
            )));
        };
        match typed.status {
            1 => {
                if typed.document.is_empty() {
                    return Err(fail(format!("{m}: SUCCEEDED with an empty document")));
                }
                if typed.document_media_type.contains("json")
                    && serde_json::from_slice::<serde_json::Value>(&typed.document).is_err()
                {
                    return Err(fail(format!(
                        "{m}: document_media_type {} but the document is not JSON",
                        typed.document_media_type
                    )));
                }
            }
            2 => {
                if typed.error.as_ref().is_none_or(|e| e.code == 0) {
                    return Err(fail(format!("{m}: FAILED without an error code")));
                }
            }
            other => {
                return Err(fail(format!(
                    "{m}: status {other} is neither SUCCEEDED nor FAILED"
                )));
            }
        }
    }
    if response.reports.len() != produced.len() {
        return Err(fail(format!(
            "requested {} report types, got {} entries",
            produced.len(),
            response.reports.len()
        )));
    }
    Ok(())
}
