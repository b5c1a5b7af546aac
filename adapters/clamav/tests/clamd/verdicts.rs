//! The protocol and clamd's verdicts: PING/VERSION, EICAR (also in a zip), `StreamMaxLength` and
//! the SCAN fallback, `MaxFileSize` as a notice, many files at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sidescan_clamav::{ClamavError, Clamd, FileScans, ScanPolicy, Verdict};
use sidescan_sdk::model::notice_codes;
use sidescan_sdk::{FindingKind, ScanContext, Severity};
use sidescan_testkit::clamd::{
    BODY_MARKER, BODY_SIGNATURE, ClamdOptions, ClamdProcess, EICAR_SIGNATURE,
};
use sidescan_testkit::fixtures::{EICAR, stored_zip};

use crate::{addr, client, code, filler, policy};

#[tokio::test]
async fn ping_and_version_over_unix_and_tcp() {
    let clamd = ClamdProcess::start();
    for a in [clamd.unix_addr(), clamd.tcp_addr()] {
        let c = client(&a);
        c.ping().await.unwrap_or_else(|e| panic!("PING {a}: {e}"));
        let v = c.version().await.expect("VERSION");
        assert_eq!(v.engine, "1.4.6", "{v:?}");
        // Custom signatures only: clamd reports no signature version.
        assert_eq!(v.signatures, "", "{v:?}");
        assert_eq!(v.key(), "1.4.6");
    }
}

#[tokio::test]
async fn eicar_is_found_clean_is_ok_and_the_body_signature_matches() {
    let clamd = ClamdProcess::start();
    for a in [clamd.unix_addr(), clamd.tcp_addr()] {
        let c = client(&a);
        assert_eq!(
            c.scan_bytes(EICAR).await.expect("scan EICAR"),
            Verdict::Found(vec![EICAR_SIGNATURE.into()]),
            "{a}"
        );
        assert_eq!(
            c.scan_bytes(b"hello, world\n").await.expect("scan clean"),
            Verdict::Clean,
            "{a}"
        );
        let mut body = filler(300_000);
        body.extend_from_slice(BODY_MARKER);
        body.extend_from_slice(&filler(1000));
        assert_eq!(
            c.scan_bytes(&body).await.expect("scan body marker"),
            Verdict::Found(vec![BODY_SIGNATURE.into()]),
            "{a}"
        );
    }
}

#[tokio::test]
async fn eicar_inside_a_zip_is_found() {
    let clamd = ClamdProcess::start();
    let zip = stored_zip(&[("readme.txt", b"nothing here"), ("eicar.com", EICAR)]);
    let verdict = client(&clamd.unix_addr())
        .scan_bytes(&zip)
        .await
        .expect("scan zip");
    assert_eq!(verdict, Verdict::Found(vec![EICAR_SIGNATURE.into()]));
}

#[tokio::test]
async fn stream_over_stream_max_length_is_too_large_not_ok() {
    let clamd = ClamdProcess::start(); // StreamMaxLength 2M
    let big = filler(3 << 20);
    let verdict = client(&clamd.tcp_addr())
        .scan_bytes(&big)
        .await
        .expect("clamd's size-limit reply is read, not lost to a broken pipe");
    assert_eq!(verdict, Verdict::StreamTooLong);

    // Through FileScans with a --stream-max-length above clamd's real limit: a misconfigured
    // engine (FAILED_PRECONDITION), not a notice a cached result would keep after the fix.
    let scratch = tempfile::tempdir().expect("scratch");
    let ctx = ScanContext::new("t", scratch.path());
    let mut scans = FileScans::new(client(&clamd.tcp_addr()), policy(100 << 20, false), &ctx);
    let result = async {
        scans.submit("/big.bin", big.len() as u64, &big[..]).await?;
        scans.finish().await
    }
    .await;
    let err = result.expect_err("clamd refused the stream");
    let text = err.to_string();
    assert!(matches!(err, ClamavError::StreamLimit { .. }), "{err:?}");
    assert!(
        text.contains("/big.bin") && text.contains("StreamMaxLength"),
        "{text}"
    );
    assert_eq!(code(err), "FailedPrecondition");
}

#[tokio::test]
async fn big_file_is_scanned_with_local_scan_or_reported_not_scanned() {
    let clamd = ClamdProcess::start(); // StreamMaxLength 2M
    let filler = filler(3 << 20);
    let zip = stored_zip(&[("filler.bin", &filler), ("eicar.com", EICAR)]);
    assert!(zip.len() > 3 << 20);
    let scratch = tempfile::tempdir().expect("scratch");
    let ctx = ScanContext::new("t", scratch.path());

    // Local (unix socket): written to the scratch dir and SCANned; the copy is removed.
    let mut scans = FileScans::new(client(&clamd.unix_addr()), policy(2 << 20, true), &ctx)
        .with_layer_digest("sha256:abc");
    scans
        .submit("/opt/big.zip", zip.len() as u64, &zip[..])
        .await
        .expect("submit");
    let out = scans.finish().await.expect("finish");
    assert!(out.notices.is_empty(), "{out:?}");
    assert_eq!(out.findings.len(), 1, "{out:?}");
    let f = &out.findings[0];
    assert_eq!(
        (f.kind, f.id.as_str(), f.path.as_str(), f.severity),
        (
            FindingKind::Malware,
            EICAR_SIGNATURE,
            "/opt/big.zip",
            Severity::Critical
        )
    );
    assert_eq!(f.layer_digest, "sha256:abc");
    let left: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("scratch dir")
        .collect();
    assert!(left.is_empty(), "scratch copies left behind: {left:?}");

    // Not local (tcp): not read at all, and reported as not scanned.
    let mut scans = FileScans::new(client(&clamd.tcp_addr()), policy(2 << 20, false), &ctx);
    scans
        .submit("/opt/big.zip", zip.len() as u64, &zip[..])
        .await
        .expect("submit");
    let out = scans.finish().await.expect("finish");
    assert!(out.findings.is_empty(), "{out:?}");
    assert_eq!(out.notices.len(), 1, "{out:?}");
    assert_eq!(out.notices[0].code, notice_codes::FILE_TOO_LARGE);
    assert_eq!(
        out.notices[0].message,
        format!("not scanned: larger than {} bytes", 2 << 20)
    );
}

#[tokio::test]
async fn max_file_size_limit_becomes_a_notice() {
    let clamd = ClamdProcess::start_with(&ClamdOptions {
        stream_max_length: "4M".into(),
        max_file_size: Some("1M".into()),
        ..ClamdOptions::default()
    });
    let data = filler(1536 << 10);
    let verdict = client(&clamd.unix_addr())
        .scan_bytes(&data)
        .await
        .expect("scan");
    assert_eq!(
        verdict,
        Verdict::LimitExceeded("Heuristics.Limits.Exceeded.MaxFileSize".into())
    );
    let scratch = tempfile::tempdir().expect("scratch");
    let ctx = ScanContext::new("t", scratch.path());
    let mut scans = FileScans::new(client(&clamd.unix_addr()), policy(4 << 20, true), &ctx);
    scans
        .submit("/var/big.log", data.len() as u64, &data[..])
        .await
        .expect("submit");
    let out = scans.finish().await.expect("finish");
    assert!(out.findings.is_empty(), "a limit is not malware: {out:?}");
    assert_eq!(out.notices.len(), 1, "a limit is not clean: {out:?}");
    assert_eq!(out.notices[0].code, notice_codes::FILE_TOO_LARGE);
    assert!(
        out.notices[0].message.contains("MaxFileSize"),
        "{:?}",
        out.notices[0]
    );
}

#[tokio::test]
async fn many_files_are_scanned_concurrently_with_paths_and_severity() {
    let clamd = ClamdProcess::start();
    let scratch = tempfile::tempdir().expect("scratch");
    let ctx = ScanContext::new("t", scratch.path());
    let c = Clamd::new(
        addr(&clamd.unix_addr()),
        3,
        Duration::from_secs(10),
        Duration::from_secs(1),
    );
    let pol = Arc::new(ScanPolicy {
        severity: Severity::High,
        ..(*policy(2 << 20, true)).clone()
    });
    let mut scans = FileScans::new(c, pol, &ctx).with_layer_digest("sha256:layer");
    let clean = filler(1_500_000);
    let zip = stored_zip(&[("a/eicar.com", EICAR)]);
    let mut marker = filler(10_000);
    marker.extend_from_slice(BODY_MARKER);
    let started = Instant::now();
    for i in 0..20 {
        let (path, data): (String, &[u8]) = match i {
            5 => ("/bin/eicar".into(), EICAR),
            11 => ("/srv/archive.zip".into(), &zip),
            17 => ("/etc/marker".into(), &marker),
            _ => (format!("/usr/lib/clean-{i}.so"), &clean),
        };
        scans
            .submit(&path, data.len() as u64, data)
            .await
            .expect("submit");
    }
    scans.submit("/empty", 0, &b""[..]).await.expect("empty");
    let mut out = scans.finish().await.expect("finish");
    eprintln!(
        "20 files (17 x 1.5 MB) scanned over 3 connections in {:?}",
        started.elapsed()
    );
    assert!(out.notices.is_empty(), "{out:?}");
    out.findings.sort_by(|a, b| a.path.cmp(&b.path));
    let got: Vec<_> = out
        .findings
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                f.id.as_str(),
                f.severity,
                f.layer_digest.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "/bin/eicar",
                EICAR_SIGNATURE,
                Severity::High,
                "sha256:layer"
            ),
            (
                "/etc/marker",
                BODY_SIGNATURE,
                Severity::High,
                "sha256:layer"
            ),
            (
                "/srv/archive.zip",
                EICAR_SIGNATURE,
                Severity::High,
                "sha256:layer"
            ),
        ]
    );
}
