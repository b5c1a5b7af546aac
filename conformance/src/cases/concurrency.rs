//! `concurrency/`: parallel scans get their own, agreeing answers.

use super::{Ctx, canonical, check_report, fail};
use crate::{Case, CaseResult};
use sidescan_proto::v1::{ScanResponse, ScanVulnerability};
use sidescan_testkit::fixtures::{self, Entry, Image, Layer, base_layer};
use tonic::Code;

/// The `concurrency/` cases, in run order.
pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "concurrency/parallel-scans-get-their-own-answers",
            "parallel scans of different images each get their own report or RESOURCE_EXHAUSTED",
            concurrency_parallel
        ),
        case!(
            "concurrency/parallel-scans-of-one-image-agree",
            "parallel scans of one new image agree",
            concurrency_same_image
        ),
    ]
}

async fn concurrency_parallel(cx: &Ctx) -> CaseResult {
    const N: usize = 6;
    let mut placed = Vec::new();
    for i in 0..N {
        placed.push(
            cx.put(
                &format!("parallel-{i}"),
                &cx.unique(&format!("parallel-{i}")),
            )
            .await?,
        );
    }
    let results =
        futures::future::join_all(placed.iter().map(|p| cx.scan(cx.req(p.by_tag())))).await;
    let mut ok = 0;
    for (p, result) in placed.iter().zip(results) {
        match result {
            Ok(response) => {
                let digest = response
                    .report
                    .as_ref()
                    .and_then(|r| r.image.as_ref())
                    .map(|i| i.digest.clone())
                    .unwrap_or_default();
                if digest != p.digest {
                    return Err(fail(format!(
                        "the scan of {} reported digest {digest:?}, expected {}",
                        p.repo, p.digest
                    )));
                }
                if let Some(report) = &response.report {
                    check_report(report).map_err(fail)?;
                    if !report.vulnerabilities.is_empty() {
                        return Err(fail(format!(
                            "the clean image {} got findings {:?}",
                            p.repo, report.vulnerabilities
                        )));
                    }
                }
                ok += 1;
            }
            Err(e) if e.code() == Some(Code::ResourceExhausted) => {}
            Err(e) => {
                return Err(fail(format!(
                    "{}: expected OK or RESOURCE_EXHAUSTED, got {e}",
                    p.repo
                )));
            }
        }
    }
    if ok == 0 {
        return Err(fail(format!("all {N} parallel scans were refused")));
    }
    cx.expect_healthy().await
}

async fn concurrency_same_image(cx: &Ctx) -> CaseResult {
    let artifact = Image::new()
        .layer(base_layer())
        .layer(Layer::new([
            Entry::file("conformance/nonce.txt", format!("{} same\n", cx.run_id)),
            Entry::file(fixtures::EICAR_PATH, fixtures::EICAR),
        ]))
        .build();
    let placed = cx.put("parallel-same", &artifact).await?;
    let results = futures::future::join_all((0..4).map(|_| cx.scan(cx.req(placed.by_tag())))).await;
    let mut first: Option<Vec<ScanVulnerability>> = None;
    for result in results {
        match result {
            Ok(ScanResponse {
                report: Some(report),
                ..
            }) => {
                let findings = canonical(&report);
                match &first {
                    None => first = Some(findings),
                    Some(f) if *f != findings => {
                        return Err(fail(format!(
                            "parallel scans of one image differ: {f:?} vs {findings:?}"
                        )));
                    }
                    Some(_) => {}
                }
            }
            Ok(_) => return Err(fail("OK without a report")),
            Err(e) if e.code() == Some(Code::ResourceExhausted) => {}
            Err(e) => return Err(fail(format!("expected OK or RESOURCE_EXHAUSTED, got {e}"))),
        }
    }
    if first.is_none() {
        return Err(fail("all parallel scans were refused"));
    }
    Ok(())
}
