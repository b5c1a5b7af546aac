//! What the watcher benchmarks share: the images, the report checks, the counters they poll.
// Each bench target compiles this module and uses part of it.
#![allow(dead_code)]

use sidescan_oci::report::{self, REPORT_ARTIFACT_TYPE};
use sidescan_oci::{Credentials, Registry as OciRegistry, referrers};
use sidescan_testkit::fixtures::{Entry, Image, Layer};
use sidescan_testkit::metrics::Scrape;
use sidescan_testkit::oci::Artifact;
use sidescan_testkit::registry::Registry;
use sidescan_testkit::watch::WatchProcess;

/// The test plugin's scanner name, as its reports are annotated.
pub(crate) const SCANNER: &str = "sidescan-test-plugin";

/// The repository every image is pushed to.
pub(crate) const REPO: &str = "bench/app";

pub(crate) const MIB: f64 = 1024.0 * 1024.0;
/// A small image no other image shares a layer with: `part` and `n` make it distinct.
pub(crate) fn image(part: u64, n: u64) -> Artifact {
    let id = format!("{part}-{n}");
    Image::new()
        .layer(Layer::new([
            Entry::dir("etc"),
            Entry::file(
                "etc/os-release",
                format!("NAME=\"bench\"\nID=bench\nVERSION_ID={id}\n"),
            ),
            Entry::file("etc/hostname", format!("bench-{id}\n")),
            Entry::dir("bin"),
            Entry::file("bin/run", format!("#!/bin/sh\necho {id}\n")).mode(0o755),
        ]))
        .layer(Layer::new([
            Entry::dir("app"),
            Entry::pseudo_random("app/data.bin", 32 << 10, part << 32 | n),
            Entry::file("app/config.txt", format!("image = {id}\nworkers = 4\n")),
            Entry::file("app/finding.txt", format!("{id} SIDESCAN-TEST-FINDING\n")),
        ]))
        .build()
}

pub(crate) fn oci_client(registry: &Registry) -> Result<OciRegistry, String> {
    OciRegistry::new(&registry.url(), Credentials::Anonymous, false).map_err(|e| e.to_string())
}

/// Whether `REPO@digest` lists a report by the test plugin with its finding.
pub(crate) async fn has_report(oci: &OciRegistry, digest: &str) -> Result<bool, String> {
    let found = referrers::list(oci, REPO, digest)
        .await
        .map_err(|e| format!("referrers of {digest}: {e}"))?;
    Ok(report::latest(&found.entries).iter().any(|r| {
        r.artifact_type == REPORT_ARTIFACT_TYPE
            && r.scanner.name == SCANNER
            && r.complete
            && r.summary.get("high") == Some(&1)
    }))
}

/// Checks that every digest lists its report.
pub(crate) async fn verify(oci: &OciRegistry, digests: &[String], who: &str) -> Result<(), String> {
    for digest in digests {
        if !has_report(oci, digest).await? {
            return Err(format!("{who}: no report on {REPO}@{digest}"));
        }
    }
    Ok(())
}

/// How many reports the watcher has attached (its `scans_total{outcome="reported"}`).
pub(crate) async fn reported(watch: &WatchProcess) -> f64 {
    Scrape::parse(&watch.metrics_text().await).sum(
        "sidescan_watch_scans_total",
        &[("scanner", SCANNER), ("outcome", "reported")],
    )
}

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The process exit of a bench: success, or the error on stderr and failure.
pub(crate) fn exit(result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The bench's own arguments (`cargo bench` adds `--bench`, which is dropped).
pub(crate) fn bench_args() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect()
}
