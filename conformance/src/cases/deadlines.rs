//! `deadlines/`: deadlines and cancellations end the work and leave the plugin healthy.

use super::{Ctx, describe, fail};
use crate::{Case, CaseResult};
use sidescan_testkit::fake_registry::{Fault, Match};
use sidescan_testkit::fixtures::{Entry, Image, Layer, base_layer};
use std::time::Duration;
use tonic::Code;

/// The `deadlines/` cases, in run order.
pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "deadlines/one-millisecond-deadline-is-deadline-exceeded",
            "a 1 ms deadline is DEADLINE_EXCEEDED; the plugin stays healthy and scans again",
            deadlines_one_ms
        ),
        case!(
            "deadlines/cancel-during-download-leaves-plugin-healthy",
            "a call dropped 200 ms into a slow download leaves the plugin healthy; the next scan works",
            deadlines_cancel
        ),
        case!(
            "deadlines/work-stops-when-deadline-passes",
            "after the deadline passes the plugin stops pulling the image",
            deadlines_work_stops
        ),
    ]
}

async fn deadlines_one_ms(cx: &Ctx) -> CaseResult {
    let placed = cx.put("deadline", &cx.unique("deadline")).await?;
    let result = cx
        .client
        .with_timeout(Some(Duration::from_millis(1)))
        .scan(cx.req(placed.by_tag()))
        .await;
    cx.expect_codes(result, &[Code::DeadlineExceeded]).await?;
    cx.scan_ok(cx.req(placed.by_tag())).await.map(drop)
}

async fn deadlines_cancel(cx: &Ctx) -> CaseResult {
    let fake = cx.fake()?;
    let artifact = Image::new()
        .layer(base_layer())
        .layer(Layer::new([
            Entry::file("conformance/nonce.txt", format!("{} cancel\n", cx.run_id)),
            Entry::pseudo_random("conformance/slow.bin", 256 << 10, 11),
        ]))
        .build();
    let placed = cx.put("cancel", &artifact).await?;
    let layer = artifact.layers[1].blob.digest.clone();
    fake.inject(
        Match::Digest(layer.clone()),
        Fault::Dribble {
            chunk: 4096,
            interval: Duration::from_millis(50),
        },
    );
    let call = cx.scan(cx.req(placed.by_tag()));
    if let Ok(result) = tokio::time::timeout(Duration::from_millis(200), call).await {
        return Err(fail(format!(
            "expected the scan to be still downloading after 200 ms, it answered {}",
            match result {
                Ok(r) => describe(&r),
                Err(e) => e.to_string(),
            }
        )));
    }
    fake.clear_faults();
    cx.expect_healthy().await?;
    let report = cx.scan_ok(cx.req(placed.by_tag())).await?;
    let digest = report.image.map(|i| i.digest).unwrap_or_default();
    if digest != placed.digest {
        return Err(fail(format!(
            "the scan after the cancel reported digest {digest:?}, expected {}",
            placed.digest
        )));
    }
    Ok(())
}

async fn deadlines_work_stops(cx: &Ctx) -> CaseResult {
    let fake = cx.fake()?;
    let artifact = cx.unique("work-stops");
    let placed = cx.put("work-stops", &artifact).await?;
    // The manifest trickles in over about 3 s: a plugin that honours a 500 ms deadline never
    // gets to the blobs.
    let chunk = artifact.manifest.data.len().div_ceil(30).max(1);
    fake.inject(
        Match::PathContains(format!("/v2/{}/manifests/", placed.repo)),
        Fault::Dribble {
            chunk,
            interval: Duration::from_millis(100),
        },
    );
    let result = cx
        .client
        .with_timeout(Some(Duration::from_millis(500)))
        .scan(cx.req(placed.by_tag()))
        .await;
    match &result {
        Err(e) if e.code() == Some(Code::DeadlineExceeded) => {}
        _ => return cx.expect_codes(result, &[Code::DeadlineExceeded]).await,
    }
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let blobs = format!("/v2/{}/blobs/", placed.repo);
    let late: Vec<String> = fake
        .request_log()
        .into_iter()
        .filter(|r| r.path.starts_with(&blobs))
        .map(|r| r.path)
        .collect();
    if !late.is_empty() {
        return Err(fail(format!(
            "the plugin kept pulling after the 500 ms deadline passed: it requested {late:?}"
        )));
    }
    cx.expect_healthy().await
}
