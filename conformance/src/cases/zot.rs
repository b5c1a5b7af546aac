//! `zot/`: zot's own plugin protocol (`/scan.Scan/Scan`, `proto/scan/scan.proto`) on the
//! plugin's gRPC port, called as zot's plugin branch calls it: `image` is `repo:tag` relative to
//! a registry URL without a scheme, no deadline of zot's own. A plugin that does not serve the
//! service (UNIMPLEMENTED) skips the group: passing it certifies "works with zot".

use sidescan_proto::client::code_name;
use sidescan_proto::v1::{ScanReport, Severity};
use sidescan_proto::zot;
use sidescan_testkit::fixtures;
use tonic::Code;

use super::{Ctx, clean_placed, fail, skip};
use crate::{Case, CaseResult, Outcome};

/// The `zot/` cases, in run order.
pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "zot/scan-is-served-and-names-the-image",
            "/scan.Scan/Scan scans repo:tag on a scheme-less registry URL and names the image and scanner",
            zot_served
        ),
        case!(
            "zot/findings-agree-with-sidescan-v1",
            "zot's report carries the sidescan.v1 findings with zot's severities (negligible as LOW)",
            zot_findings_agree
        ),
        case!(
            "zot/missing-tag-is-not-found",
            "a tag the registry does not have is NOT_FOUND through zot's protocol too",
            zot_missing_tag
        ),
    ]
}

/// The registry as zot names it: without a scheme when the plugin would pick the same one by
/// itself (https, or plain http on a loopback host), else as is.
fn zot_registry(cx: &Ctx) -> zot::Registry {
    let registry = cx.fx.registry();
    let url = registry.url;
    let bare = url
        .strip_prefix("https://")
        .or_else(|| {
            url.strip_prefix("http://").filter(|rest| {
                let host = rest.split(['/', ':']).next().unwrap_or_default();
                host == "localhost" || host.starts_with("127.") || host == "[::1]"
            })
        })
        .map_or(url.clone(), str::to_owned);
    zot::Registry {
        url: bare,
        authorization: registry.authorization,
    }
}

/// One zot call; `Err(Skipped)` when the plugin does not serve zot's protocol.
async fn zot_scan(
    cx: &Ctx,
    image: &str,
) -> Result<Result<zot::ScanReport, tonic::Status>, Outcome> {
    let mut client = zot::scan_client::ScanClient::new(cx.client.channel());
    let request = zot::ScanRequest {
        image: image.to_owned(),
        registry: Some(zot_registry(cx)),
    };
    match client.scan(request).await {
        Err(status) if status.code() == Code::Unimplemented => Err(skip(
            "the plugin does not serve zot's /scan.Scan/Scan (UNIMPLEMENTED)",
        )),
        Err(status) => Ok(Err(status)),
        Ok(response) => Ok(response
            .into_inner()
            .report
            .ok_or_else(|| tonic::Status::internal("OK without a report"))),
    }
}

fn zot_severity(s: Severity) -> zot::Severity {
    match s {
        Severity::Unspecified | Severity::Unknown => zot::Severity::Unknown,
        Severity::Negligible | Severity::Low => zot::Severity::Low,
        Severity::Medium => zot::Severity::Medium,
        Severity::High => zot::Severity::High,
        Severity::Critical => zot::Severity::Critical,
    }
}

async fn zot_served(cx: &Ctx) -> CaseResult {
    let placed = clean_placed(cx).await?;
    let report = zot_scan(cx, &placed.by_tag()).await?.map_err(|s| {
        fail(format!(
            "expected OK, got {}: {}",
            code_name(s.code()),
            s.message()
        ))
    })?;
    let name = report.image.map(|i| i.name).unwrap_or_default();
    if name != placed.by_tag() {
        return Err(fail(format!(
            "expected report.image.name {:?}, got {name:?}",
            placed.by_tag()
        )));
    }
    let scanner = report.scanner.unwrap_or_default();
    let want = cx.meta.scanner.clone().unwrap_or_default();
    if scanner.name.is_empty() || scanner.name != want.name {
        return Err(fail(format!(
            "expected report.scanner.name {:?} (as GetMetadata says), got {:?}",
            want.name, scanner.name
        )));
    }
    Ok(())
}

async fn zot_findings_agree(cx: &Ctx) -> CaseResult {
    let artifact = if cx.has_malware() {
        fixtures::eicar_top_layer()
    } else {
        fixtures::clean_image()
    };
    let placed = cx.put("zot-agree", &artifact).await?;
    let v1: ScanReport = cx.scan_ok(cx.req(placed.by_tag())).await?;
    let zot_report = zot_scan(cx, &placed.by_tag()).await?.map_err(|s| {
        fail(format!(
            "expected OK, got {}: {}",
            code_name(s.code()),
            s.message()
        ))
    })?;
    for finding in &v1.vulnerabilities {
        let want = zot_severity(finding.severity());
        let found = zot_report
            .vulnerabilities
            .iter()
            .any(|z| z.vulnerability_id == finding.id && z.severity() == want);
        if !found {
            return Err(fail(format!(
                "sidescan.v1 finding {} ({:?}) is missing from zot's report or not {want:?}: {:?}",
                finding.id,
                finding.severity(),
                zot_report
                    .vulnerabilities
                    .iter()
                    .map(|z| (&z.vulnerability_id, z.severity()))
                    .collect::<Vec<_>>()
            )));
        }
    }
    if cx.has_malware() && v1.vulnerabilities.is_empty() {
        return Err(fail(
            "a malware plugin reported EICAR clean over sidescan.v1",
        ));
    }
    if !v1.notices.is_empty()
        && !zot_report
            .vulnerabilities
            .iter()
            .any(|z| z.vulnerability_id.starts_with("SIDESCAN-INCOMPLETE-"))
    {
        return Err(fail(
            "the sidescan.v1 report has notices (incomplete) but zot's report does not say so",
        ));
    }
    Ok(())
}

async fn zot_missing_tag(cx: &Ctx) -> CaseResult {
    let placed = clean_placed(cx).await?;
    let image = format!("{}:no-such-tag-{}", placed.repo, cx.run_id);
    match zot_scan(cx, &image).await? {
        Err(s) if s.code() == Code::NotFound => Ok(()),
        Err(s) => Err(fail(format!(
            "expected NOT_FOUND, got {}: {}",
            code_name(s.code()),
            s.message()
        ))),
        Ok(_) => Err(fail("expected NOT_FOUND, got OK")),
    }
}
