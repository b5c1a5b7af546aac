//! The Trivy binary and its processes: a missing or removed binary, a hanging Trivy and a
//! cancelled scan (process group killed), a tiny timeout, the bound on concurrent processes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{World, images};
use sidescan_sdk::prelude::*;
use sidescan_trivy::TrivyAdapter;

use crate::common;
use crate::{UPDATED_AT, vulns};

#[tokio::test]
async fn missing_binary_is_not_ready_and_fails_with_failed_precondition() {
    let w = World::with_db(UPDATED_AT);
    let mut config = w.config(&[]);
    config.trivy_bin = w.dir.path().join("no-such-trivy");
    let adapter = TrivyAdapter::new(config);
    match adapter.readiness().await {
        Readiness::NotReady(why) => assert!(why.contains("no-such-trivy"), "{why}"),
        Readiness::Ready => panic!("ready without a trivy binary"),
    }
    let input = w.layout("alpine", &images::alpine_image());
    let err = adapter
        .scan_image(&input, &w.ctx("missing"))
        .await
        .expect_err("no binary");
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    assert!(adapter.engine_version().await.is_err());
}

#[tokio::test]
async fn a_binary_removed_after_start_makes_the_plugin_not_ready() {
    let w = World::with_db(UPDATED_AT);
    let copy = w.dir.path().join("trivy-copy");
    std::os::unix::fs::symlink(common::trivy_bin(), &copy).expect("symlink");
    let mut config = w.config(&[]);
    config.trivy_bin = copy.clone();
    let adapter = TrivyAdapter::new(config);
    assert_eq!(adapter.readiness().await, Readiness::Ready);
    std::fs::remove_file(&copy).expect("remove");
    assert!(matches!(adapter.readiness().await, Readiness::NotReady(_)));
}

/// A fake trivy for fault injection: answers `--version`, and otherwise records its pid and the
/// pid of a `sleep` child in `dir` and hangs.
fn hanging_trivy(dir: &Path) -> PathBuf {
    let script = dir.join("hanging-trivy");
    let body = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Version: 0.76.0'; exit 0; fi\necho $$ > '{d}/leader.pid'\nsleep 300 &\necho $! > '{d}/child.pid'\nwait\n",
        d = dir.display()
    );
    std::fs::write(&script, body).expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

fn read_pid(path: &Path) -> u32 {
    assert!(
        common::wait_for(Duration::from_secs(5), || path.exists()),
        "{} never written",
        path.display()
    );
    let mut text = String::new();
    common::wait_for(Duration::from_secs(2), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.trim().parse::<u32>().is_ok()
    });
    text.trim().parse().expect("pid")
}

#[tokio::test]
async fn a_hanging_trivy_times_out_and_its_process_group_is_killed() {
    let w = World::with_db(UPDATED_AT);
    let mut config = w.config(&["--trivy-timeout", "700ms"]);
    config.trivy_bin = hanging_trivy(w.dir.path());
    let adapter = TrivyAdapter::new(config);
    let input = w.layout("alpine", &images::alpine_image());
    let started = Instant::now();
    let err = adapter
        .scan_image(&input, &w.ctx("hang"))
        .await
        .expect_err("must time out");
    let took = started.elapsed();
    assert!(matches!(err, Error::DeadlineExceeded(_)), "{err:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let leader = read_pid(&w.dir.path().join("leader.pid"));
    let child = read_pid(&w.dir.path().join("child.pid"));
    assert!(
        common::wait_for(Duration::from_secs(3), || common::process_gone(leader)
            && common::process_gone(child)
            && common::live_group_members(leader).is_empty()),
        "orphans left: leader {leader} gone={}, sleep child {child} gone={}, group {:?}",
        common::process_gone(leader),
        common::process_gone(child),
        common::live_group_members(leader)
    );
    eprintln!("timed out after {took:?}; leader {leader} and child {child} gone");
}

#[tokio::test]
async fn a_cancelled_scan_kills_the_process_group() {
    let w = World::with_db(UPDATED_AT);
    let mut config = w.config(&[]);
    config.trivy_bin = hanging_trivy(w.dir.path());
    let adapter = TrivyAdapter::new(config);
    let input = w.layout("alpine", &images::alpine_image());
    let ctx = w.ctx("cancel");
    let cancel = ctx.cancel.clone();
    let pid_dir = w.dir.path().to_owned();
    tokio::spawn(async move {
        let path = pid_dir.join("child.pid");
        for _ in 0..250 {
            if path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
    });
    let err = adapter
        .scan_image(&input, &ctx)
        .await
        .expect_err("cancelled");
    assert!(matches!(err, Error::Cancelled(_)), "{err:?}");
    let leader = read_pid(&w.dir.path().join("leader.pid"));
    let child = read_pid(&w.dir.path().join("child.pid"));
    assert!(
        common::wait_for(Duration::from_secs(3), || common::process_gone(leader)
            && common::process_gone(child)),
        "orphans left after cancel"
    );
}

#[tokio::test]
async fn real_trivy_with_a_tiny_timeout_is_deadline_exceeded() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&["--trivy-timeout", "1ms"]);
    let input = w.layout("alpine", &images::alpine_image());
    let err = adapter
        .scan_image(&input, &w.ctx("tiny"))
        .await
        .expect_err("1ms is too short");
    assert!(matches!(err, Error::DeadlineExceeded(_)), "{err:?}");
}

#[tokio::test]
async fn concurrent_scans_share_a_bounded_number_of_trivy_processes() {
    let w = World::with_db(UPDATED_AT);
    let adapter = w.adapter(&["--max-trivy-processes", "1"]);
    let input = w.layout("alpine", &images::alpine_image());
    let ctxs: Vec<ScanContext> = (0..3).map(|i| w.ctx(&format!("c{i}"))).collect();
    let started = Instant::now();
    let results =
        futures::future::join_all(ctxs.iter().map(|ctx| adapter.scan_image(&input, ctx))).await;
    eprintln!(
        "3 scans, 1 trivy process at a time: {:?}",
        started.elapsed()
    );
    for r in results {
        assert_eq!(vulns(&r.expect("scan").findings).len(), 3);
    }
}
