//! Differential test of the SDK's tar reader against Go's `archive/tar`, the reader containerd,
//! Docker and BuildKit extract layers with. A file a runtime extracts but the SDK does not list
//! goes unscanned, so for every archive of a hostile corpus the SDK must list exactly what a
//! runtime would extract, or refuse the archive.
//!
//! The corpus (`differential/`): hand-written seeds, one per known disagreement between tar
//! readers, plus `SIDESCAN_DIFF_CASES` (default 12,000) mutants derived with a seeded PRNG
//! (`SIDESCAN_DIFF_SEED`). Go's side is `differential/tarlist.go`, built once per run; it needs
//! `go` (`scripts/install-deps` installs golang-go) and fails without it. The rules are in
//! `differential/compare.rs`. Failing archives are kept in
//! `target/tmp/tar-differential-failures/` with a `.txt` beside each explaining it.
//!
//! Replay one kept archive (its report goes to `target/tmp/tar-differential-replay/`):
//! `SIDESCAN_DIFF_REPLAY=target/tmp/tar-differential-failures/m-000123.tar cargo test -p
//! sidescan-sdk --test tar_differential -- --nocapture`.

#[path = "differential/compare.rs"]
mod compare;
#[path = "differential/corpus.rs"]
mod corpus;
#[path = "differential/mutate.rs"]
mod mutate;
#[path = "differential/seeds.rs"]
mod seeds;
#[path = "differential/seeds_headers.rs"]
mod seeds_headers;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use compare::{Expect, GoListing, Verdict};
use corpus::Case;
use sidescan_sdk::Limits;
use sidescan_sdk::archive::list_tar;

/// Data the harness reads of one entry; the SDK gets the same `max_file_bytes`.
const MAX_ENTRY: u64 = 64 << 20;

/// Failures printed in full (all are written to the kept directory).
const PRINT_FAILURES: usize = 25;

/// Builds `tarlist.go` into `dir`; panics with the install hint when `go` is missing.
fn build_tarlist(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential/tarlist.go");
    std::fs::copy(&src, dir.join("tarlist.go")).expect("copy tarlist.go");
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = Command::new("go")
        .args(["build", "-o", "tarlist", "tarlist.go"])
        .current_dir(dir)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", tmp.join("go-build-cache"))
        .env("GOPATH", tmp.join("gopath"))
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`go` not found: install golang-go (scripts/install-deps)")
        }
        Err(e) => panic!("cannot run `go build`: {e}; install golang-go (scripts/install-deps)"),
    };
    assert!(
        out.status.success(),
        "go build tarlist.go failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("tarlist")
}

/// Runs tarlist over `corpus_dir`: one listing per archive, by name.
fn go_listings(tool: &Path, corpus_dir: &Path) -> HashMap<String, GoListing> {
    let out = Command::new(tool)
        .arg(format!("-max-entry-bytes={MAX_ENTRY}"))
        .arg(corpus_dir)
        .output()
        .expect("run tarlist");
    assert!(
        out.status.success(),
        "tarlist failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("tarlist output is UTF-8")
        .lines()
        .map(|line| {
            let l: GoListing = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("bad tarlist line {line:?}: {e}"));
            (l.name.clone(), l)
        })
        .collect()
}

/// Counters printed at the end.
#[derive(Debug, Default)]
struct Counts {
    archives: usize,
    go_accepted: usize,
    equal: usize,
    refused_go_refused_too: usize,
    refused_go_accepted: usize,
    failures: usize,
}

/// The corpus: a replayed archive, or the seeds and mutants.
fn cases(seed: u64, n: usize) -> Vec<Case> {
    if let Ok(p) = std::env::var("SIDESCAN_DIFF_REPLAY") {
        // cargo runs tests in the package directory; accept paths relative to the workspace too
        let in_workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&p);
        let path = if Path::new(&p).exists() {
            PathBuf::from(&p)
        } else {
            in_workspace
        };
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("SIDESCAN_DIFF_REPLAY={p}: {e}"));
        return vec![Case {
            name: "replay.tar".into(),
            seed_name: "replay",
            index: None,
            log: vec![format!("replay of {p}")],
            data,
        }];
    }
    corpus::generate(seed, n)
}

#[test]
fn sdk_tar_reader_agrees_with_go_archive_tar() {
    let (seed, n) = corpus::settings();
    println!("tar differential: SIDESCAN_DIFF_SEED={seed:#x} SIDESCAN_DIFF_CASES={n}");
    let work = tempfile::tempdir().expect("temp dir");
    let tool = build_tarlist(work.path());
    let corpus = cases(seed, n);
    let corpus_dir = work.path().join("corpus");
    std::fs::create_dir(&corpus_dir).expect("corpus dir");
    for c in &corpus {
        std::fs::write(corpus_dir.join(&c.name), &c.data).expect("write archive");
    }
    let go = go_listings(&tool, &corpus_dir);

    let replay = std::env::var("SIDESCAN_DIFF_REPLAY").is_ok();
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join(if replay {
        "tar-differential-replay"
    } else {
        "tar-differential-failures"
    });
    let _ = std::fs::remove_dir_all(&kept);
    let limits = Limits {
        max_file_bytes: MAX_ENTRY,
        ..Limits::default()
    };
    let mut counts = Counts::default();
    let mut seed_rows = Vec::new();
    let mut failing_seeds: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &corpus {
        let listing = go
            .get(&c.name)
            .unwrap_or_else(|| panic!("tarlist did not list {}", c.name));
        let expect = compare::expect(listing);
        let sdk = list_tar(&c.data, limits);
        let verdict = compare::judge(&expect, &sdk);
        counts.archives += 1;
        let go_ok = matches!(expect, Expect::Accept(_));
        counts.go_accepted += usize::from(go_ok);
        match &verdict {
            Verdict::BothRefused => counts.refused_go_refused_too += 1,
            Verdict::Equal => counts.equal += 1,
            Verdict::SdkRefused => counts.refused_go_accepted += 1,
            Verdict::Fail(why) => {
                counts.failures += 1;
                *failing_seeds.entry(c.seed_name).or_default() += 1;
                let report = format!(
                    "FAIL {}: {why}\n  {}\n Go ({}):\n{} SDK:\n{}",
                    c.name,
                    c.replay_hint(seed),
                    listing.error.as_deref().unwrap_or("no error"),
                    compare::show_expect(&expect),
                    compare::show_sdk(&sdk),
                );
                if counts.failures <= PRINT_FAILURES {
                    println!("{report}");
                }
                std::fs::create_dir_all(&kept).expect("kept dir");
                std::fs::write(kept.join(&c.name), &c.data).expect("keep archive");
                std::fs::write(kept.join(format!("{}.txt", c.name)), &report).expect("keep report");
            }
        }
        if c.index.is_none() {
            seed_rows.push((c.seed_name, go_ok, sdk.is_ok(), verdict));
        }
    }

    println!("\nseeds (go / sdk / verdict):");
    for (name, go_ok, sdk_ok, verdict) in &seed_rows {
        let v = match verdict {
            Verdict::Fail(_) => "FAIL",
            Verdict::Equal => "equal",
            Verdict::BothRefused => "both refuse",
            Verdict::SdkRefused => "sdk refuses",
        };
        let ok = |b: bool| if b { "accept" } else { "refuse" };
        println!("  {name:<40} {:<7} {:<7} {v}", ok(*go_ok), ok(*sdk_ok));
    }
    if !failing_seeds.is_empty() {
        println!("\nfailures by seed (seed itself and its mutants):");
        for (name, k) in &failing_seeds {
            println!("  {name:<40} {k}");
        }
        println!("failing archives kept in {}", kept.display());
    }
    println!(
        "\narchives {}, Go-accepted {}, SDK-accepted-and-equal {}, SDK-refused {} \
         (Go also refused {}, Go accepted {}), failures {}",
        counts.archives,
        counts.go_accepted,
        counts.equal,
        counts.refused_go_refused_too + counts.refused_go_accepted,
        counts.refused_go_refused_too,
        counts.refused_go_accepted,
        counts.failures
    );
    println!("replay: SIDESCAN_DIFF_SEED={seed:#x} SIDESCAN_DIFF_CASES={n}");

    if !replay {
        let all: Vec<&str> = seeds::seeds().iter().map(|(name, _)| *name).collect();
        let ran: Vec<&str> = seed_rows.iter().map(|r| r.0).collect();
        assert_eq!(ran, all, "every hand-written seed runs");
        let floor = if n >= 10_000 { 2_000 } else { n / 5 };
        assert!(
            counts.equal >= floor,
            "only {} archives were accepted by both Go and the SDK (at least {floor} expected): \
             the SDK must not pass by refusing everything",
            counts.equal
        );
    }
    assert_eq!(
        counts.failures,
        0,
        "the SDK disagrees with Go's archive/tar on {} archives (kept in {})",
        counts.failures,
        kept.display()
    );
}
