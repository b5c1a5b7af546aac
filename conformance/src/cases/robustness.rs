//! `robustness/`: one case per hostile fixture: a documented code or a sound report, never a false clean.

use super::{Ctx, check_report, describe, fail, names, skip, suite_error};
use crate::{Case, CaseResult};
use sidescan_proto::client::ClientError;
use sidescan_proto::v1::{FindingKind, ScanResponse};
use sidescan_testkit::hostile::{self, Expected, HostileCase};
use tonic::Code;

/// The `robustness/` cases, one per entry of the hostile corpus, in its order.
pub(super) fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for hostile in hostile::corpus() {
        let name = hostile.name;
        let description = match hostile.expected.eicar_path() {
            Some(path) => format!(
                "hostile fixture {name}: a malware plugin reports EICAR at {path} or refuses with a \
                 documented code, never clean; the plugin stays healthy"
            ),
            None => format!(
                "hostile fixture {name}: a documented code or a report, and the plugin stays healthy"
            ),
        };
        cases.push(Case {
            name: format!("robustness/hostile-{name}"),
            description,
            run: super::make(move |cx| Box::pin(robustness_hostile(cx, name))),
        });
    }
    cases
}

/// Codes a plugin may use to refuse content it will not scan.
const REFUSALS: &[Code] = &[
    Code::DataLoss,
    Code::FailedPrecondition,
    Code::ResourceExhausted,
];

async fn robustness_hostile(cx: &Ctx, name: &'static str) -> CaseResult {
    let Some(case) = hostile::corpus().iter().find(|c| c.name == name) else {
        return Err(suite_error(format!("no hostile case {name}")));
    };
    robustness(cx, case).await
}

async fn robustness(cx: &Ctx, case: &HostileCase) -> CaseResult {
    if !case.real_registry && cx.fx.fake().is_none() {
        return Err(skip(
            "a real registry refuses this fixture; it needs the embedded fixture registry",
        ));
    }
    if let Some(primer) = &case.primer {
        // Scanned first by the same plugin: an answer cached for it must not be reused.
        let placed = cx
            .put(&format!("hostile-{}-primer", case.name), primer)
            .await?;
        if let Err(e) = cx.scan(cx.req(placed.by_tag())).await
            && matches!(e.code(), None | Some(Code::Internal | Code::Unknown))
        {
            return Err(fail(format!("scan of the primer: {e}")));
        }
    }
    let placed = cx
        .put(&format!("hostile-{}", case.name), &case.artifact)
        .await?;
    let result = cx.scan(cx.req(placed.by_tag())).await;
    if let (Expected::FindsEicar { path, or_fails }, true) = (&case.expected, cx.has_malware()) {
        return fail_closed(cx, case, path, or_fails, result).await;
    }
    // Content that does not match its digest must never be reported; resource bombs and
    // other refusals may also be scanned in full by a plugin without the relevant limit.
    let (ok_allowed, codes): (bool, &[Code]) = match &case.expected {
        Expected::Fails(codes) if codes.contains(&Code::DataLoss) => (false, codes),
        Expected::Fails(codes) => (true, codes),
        _ => (true, REFUSALS),
    };
    match result {
        Ok(response) if ok_allowed => {
            if let Some(report) = &response.report {
                check_report(report).map_err(fail)?;
            } else {
                return Err(fail("OK without a report"));
            }
            cx.expect_healthy().await
        }
        Ok(response) => Err(fail(format!(
            "expected {}, got OK with {} ({})",
            names(codes),
            describe(&response),
            case.description
        ))),
        Err(e) => match e.code() {
            Some(code) if codes.contains(&code) => cx.expect_healthy().await,
            _ => Err(fail(format!(
                "expected {}{}, got {e}",
                if ok_allowed { "a report or " } else { "" },
                names(codes)
            ))),
        },
    }
}

/// A fail-closed case for a malware plugin: EICAR at `path`, or one of `or_fails`.
async fn fail_closed(
    cx: &Ctx,
    case: &HostileCase,
    path: &str,
    or_fails: &[Code],
    result: Result<ScanResponse, ClientError>,
) -> CaseResult {
    match result {
        Ok(ScanResponse {
            report: Some(report),
            ..
        }) => {
            check_report(&report).map_err(fail)?;
            let found = report.vulnerabilities.iter().any(|f| {
                f.kind == FindingKind::Malware as i32
                    && f.path.trim_start_matches('/') == path.trim_start_matches('/')
            });
            if !found {
                return Err(fail(format!(
                    "expected a MALWARE finding at {path} or {}, got a report with {} finding(s) \
                     and {} notice(s) without it: clean where a container runtime extracts EICAR \
                     ({})",
                    names(or_fails),
                    report.vulnerabilities.len(),
                    report.notices.len(),
                    case.description
                )));
            }
            cx.expect_healthy().await
        }
        Ok(_) => Err(fail("OK without a report")),
        Err(e) => match e.code() {
            Some(code) if or_fails.contains(&code) => cx.expect_healthy().await,
            _ => Err(fail(format!(
                "expected a MALWARE finding at {path} or {}, got {e}",
                names(or_fails)
            ))),
        },
    }
}
