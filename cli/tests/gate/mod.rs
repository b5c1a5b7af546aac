//! The incomplete gate: a report with notices never passes `--fail-on` silently.

use crate::support::{sidescan, start, text};

const HOSTILE_LINE: &str = "incomplete: 2 notices (unsafe-path-skipped x1, file-too-large x1)";

#[tokio::test]
async fn fail_on_fails_an_incomplete_report_and_names_the_notices() {
    let (url, _plugin) = start(true).await;
    let scan = |image: &'static str, extra: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let args = [&["scan", image, "--plugin", url.as_str()][..], extra].concat();
            sidescan(&args, &[]).await
        }
    };

    // No finding at or above CRITICAL, but two things were not scanned: exit 1.
    let out = scan("hostile:1.0", &["--fail-on", "critical"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), format!("{HOSTILE_LINE}\n"));

    // Findings at or above the threshold: exit 1 as before, and the line is printed too.
    let out = scan("hostile:1.0", &["--fail-on", "high"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), format!("{HOSTILE_LINE}\n"));

    // --allow-incomplete lets it pass, still saying so.
    let out = scan(
        "hostile:1.0",
        &["--fail-on", "critical", "--allow-incomplete"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("{HOSTILE_LINE} (allowed by --allow-incomplete)\n")
    );

    // Without --fail-on the exit code stays 0; the line is still printed.
    let out = scan("hostile:1.0", &[]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stderr), format!("{HOSTILE_LINE}\n"));

    // A complete report with nothing at or above the threshold passes silently.
    let out = scan("clean:1.0", &["--fail-on", "critical"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[tokio::test]
async fn summarised_notices_count_what_they_stand_for() {
    let (url, _plugin) = start(true).await;
    let out = sidescan(
        &[
            "scan",
            "flood:1.0",
            "--plugin",
            &url,
            "--fail-on",
            "critical",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "incomplete: 9980 notices (unsafe-path-skipped x9980)\n"
    );
    let table = text(&out.stdout);
    for expected in [
        "NOTICES: 9980",
        "[unsafe-path-skipped] unsafe-path-skipped: 9980 more (x9980)",
        "WARNING: INCOMPLETE",
    ] {
        assert!(table.contains(expected), "{expected:?} missing:\n{table}");
    }
}

#[tokio::test]
async fn json_output_says_incomplete() {
    let (url, _plugin) = start(true).await;
    let json = |image: &'static str| {
        let url = url.clone();
        async move {
            let out = sidescan(&["scan", image, "--plugin", &url, "--format", "json"], &[]).await;
            serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
        }
    };
    let hostile = json("hostile:1.0").await;
    assert_eq!(hostile["report"]["summary"]["incomplete"], true);
    assert_eq!(hostile["report"]["summary"]["noticeCount"], 2);
    let clean = json("clean:1.0").await;
    // proto3 JSON omits false and 0.
    assert_eq!(clean["report"]["summary"].get("incomplete"), None);
    assert_eq!(clean["report"]["summary"].get("noticeCount"), None);
    assert_eq!(clean["report"]["summary"]["total"], 2);
}
