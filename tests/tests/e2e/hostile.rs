//! The hostile corpus through the SDK's image pipeline: every case gets its documented status code
//! or a successful scan (with a notice where something was skipped), nothing is written outside
//! the scan's scratch dir, nothing outside is deleted, and the scratch dir is removed afterwards.
//! Each case runs three times: streamed layer by layer, unpacked into a rootfs for a whole-image
//! scanner, and as a verified OCI layout only (whole-image scanner without a rootfs). The
//! fail-closed cases must hand the scanner EICAR where a runtime extracts it (the reader reports
//! it), or be refused with their documented code; a case's primer is scanned first by the same
//! pipeline.

use sidescan_sdk::Limits;
use sidescan_sdk::pipeline::ScanJob;
use sidescan_sdk::prelude::*;
use sidescan_testkit::fake_registry::FakeRegistry;
use sidescan_testkit::hostile::{self, Expected, HostileCase};
use tonic::Code;

use crate::support;

/// Limits below the corpus's bombs (1 GiB gzip bomb, 100k-entry tar bomb, 8 MiB file).
fn limits() -> Limits {
    Limits {
        max_uncompressed_bytes: 256 << 20,
        max_entries: 20_000,
        max_file_bytes: 4 << 20,
        ..Limits::default()
    }
}

async fn run_case(case: &HostileCase, registry: &FakeRegistry, input: Input) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = support::pipeline(dir.path(), limits());
    let scanner = support::reader(input);
    let job = ScanJob {
        image: format!("hostile/{}:1", case.name),
        registry_url: registry.url(),
        ..ScanJob::default()
    };
    let ctx = support::context(dir.path());
    let mut problems = Vec::new();
    if case.primer.is_some() {
        let primer = ScanJob {
            image: format!("hostile/{}:primer", case.name),
            ..job.clone()
        };
        if let Err(err) = pipeline.scan(&scanner, &primer, &ctx).await
            && err.code() == Code::Internal
        {
            problems.push(format!("primer: INTERNAL: {}", err.message()));
        }
    }
    let outcome = pipeline.scan(&scanner, &job, &ctx).await;

    // A scanner that takes only the verified OCI layout reads the layers itself: the SDK unpacks
    // nothing, so there is nothing it skips (no notice is due), and a layer it cannot decode cannot
    // be skipped either: that image is FAILED_PRECONDITION for such a scanner.
    let layout_only = matches!(
        input,
        Input::WholeImage { rootfs: false } | Input::UncompressedLayout
    );
    let expected = match &case.expected {
        Expected::SkippedWithNotice if layout_only && case.name == "unknown-layer-media-type" => {
            Expected::Fails(&[Code::FailedPrecondition])
        }
        Expected::SkippedWithNotice if layout_only => Expected::Succeeds,
        other => other.clone(),
    };
    match (&expected, &outcome) {
        (Expected::Fails(codes), Err(err)) if !codes.contains(&err.code()) => {
            problems.push(format!(
                "wanted one of {codes:?}, got {:?}: {}",
                err.code(),
                err.message()
            ))
        }
        (Expected::Fails(codes), Ok(_)) => {
            problems.push(format!("wanted one of {codes:?}, the scan succeeded"))
        }
        (Expected::SkippedWithNotice, Ok(out)) if out.findings.notices.is_empty() => {
            problems.push("skipped content but the report has no notice".into())
        }
        (Expected::FindsEicar { or_fails, .. }, Err(err)) if !or_fails.contains(&err.code()) => {
            problems.push(format!(
                "wanted EICAR or one of {or_fails:?}, got {:?}: {}",
                err.code(),
                err.message()
            ))
        }
        // Only a scanner that gets the files can see EICAR; the layout-only one reads nothing.
        (Expected::FindsEicar { path, .. }, Ok(out))
            if !layout_only && !out.findings.findings.iter().any(|f| f.path == *path) =>
        {
            problems.push(format!(
                "EICAR at {path} was never handed to the scanner: findings {:?}, notices {:?}",
                out.findings.findings, out.findings.notices
            ))
        }
        (Expected::SkippedWithNotice | Expected::Confined | Expected::Succeeds, Err(err)) => {
            problems.push(format!(
                "wanted success, got {:?}: {}",
                err.code(),
                err.message()
            ))
        }
        _ => {}
    }
    let scratch = dir.path().join("scratch");
    let leaked = hostile::find_canaries(&[&scratch]);
    if !leaked.is_empty() {
        problems.push(format!("wrote outside its root: {leaked:?}"));
    }
    if !hostile::whiteout_victim_survived() {
        problems.push("a whiteout deleted a file outside the root".into());
    }
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    if !left.is_empty() {
        problems.push(format!("scratch dir not cleaned: {left:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_case_gets_its_documented_outcome_and_nothing_escapes() {
    let corpus = hostile::corpus();
    assert!(corpus.len() >= 15, "the corpus must have at least 15 cases");
    hostile::remove_canaries(&[]);
    hostile::create_whiteout_victim();
    let registry = FakeRegistry::start();
    for case in corpus {
        registry.add(&format!("hostile/{}", case.name), "1", &case.artifact);
        if let Some(primer) = &case.primer {
            registry.add(&format!("hostile/{}", case.name), "primer", primer);
        }
    }
    let mut failures = Vec::new();
    for case in corpus {
        for input in [
            Input::PerLayer,
            Input::WholeImage { rootfs: true },
            Input::WholeImage { rootfs: false },
            Input::UncompressedLayout,
        ] {
            if let Err(problem) = run_case(case, &registry, input).await {
                failures.push(format!("{} ({input:?}): {problem}", case.name));
            }
            hostile::remove_canaries(&[]);
        }
    }
    assert!(
        failures.is_empty(),
        "{} hostile case runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
