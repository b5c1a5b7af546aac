//! The clamd side of sidescan-clamav against a real clamd (and a fake one that hangs): protocol,
//! verdicts, size limits and the SCAN fallback, outages, timeouts, cancellation and readiness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sidescan_clamav::{
    ClamavConfig, ClamavError, ClamavScanner, Clamd, ClamdAddr, FileScans, ScanPolicy, Verdict,
};
use sidescan_sdk::model::notice_codes;
use sidescan_sdk::{FindingKind, Readiness, ScanContext, Scanner, Severity};
use sidescan_testkit::clamd::{
    BODY_MARKER, BODY_SIGNATURE, ClamdOptions, ClamdProcess, EICAR_SIGNATURE,
};
use sidescan_testkit::fixtures::{EICAR, stored_zip};
use tokio::sync::mpsc;

fn addr(s: &str) -> ClamdAddr {
    s.parse().expect("clamd address")
}

fn client(a: &str) -> Clamd {
    Clamd::new(addr(a), 4, Duration::from_secs(10), Duration::from_secs(1))
}

fn policy(stream_max_length: u64, local_scan: bool) -> Arc<ScanPolicy> {
    Arc::new(ScanPolicy {
        stream_max_length,
        max_file_size: 100 << 20,
        local_scan,
        severity: Severity::Critical,
    })
}

fn code(err: ClamavError) -> String {
    format!("{:?}", sidescan_sdk::Error::from(err).code())
}

/// `len` bytes of harmless filler.
fn filler(len: usize) -> Vec<u8> {
    (0..len).map(|i| b"clean filler "[i % 13]).collect()
}

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

#[tokio::test]
async fn clamd_killed_mid_stream_is_unavailable() {
    let mut clamd = ClamdProcess::start();
    let c = client(&clamd.unix_addr());
    let (tx, rx) = mpsc::channel(2);
    let scan = tokio::spawn({
        let c = c.clone();
        async move { c.scan_stream(rx).await }
    });
    tx.send(filler(64 << 10)).await.expect("first chunk");
    tokio::time::sleep(Duration::from_millis(200)).await;
    clamd.kill();
    // Keep feeding: the feeder must not hang when clamd is gone.
    for _ in 0..16 {
        if tx.send(filler(64 << 10)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let result = tokio::time::timeout(Duration::from_secs(5), scan)
        .await
        .expect("scan ends promptly")
        .expect("join");
    let err = result.expect_err("a dead clamd gives no verdict");
    assert_eq!(code(err), "Unavailable");

    // And a new scan while clamd is down is Unavailable too.
    let err = c.scan_bytes(EICAR).await.expect_err("clamd is down");
    assert_eq!(code(err), "Unavailable");
}

#[tokio::test]
async fn hanging_clamd_times_out_as_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accepts connections and never reads or answers.
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let file_timeout = Duration::from_millis(500);
    let c = Clamd::new(
        addr(&format!("tcp://127.0.0.1:{port}")),
        2,
        file_timeout,
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let err = c.scan_bytes(EICAR).await.expect_err("no verdict");
    let elapsed = started.elapsed();
    assert!(
        matches!(err, ClamavError::Timeout { .. }),
        "{err:?} after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(code(err), "Unavailable");

    // A large file: clamd stops accepting data, the write step times out.
    let scratch = tempfile::tempdir().expect("scratch");
    let ctx = ScanContext::new("t", scratch.path());
    let mut scans = FileScans::new(c.clone(), policy(100 << 20, false), &ctx);
    let big = filler(16 << 20);
    let started = Instant::now();
    let result = async {
        scans.submit("/big", big.len() as u64, &big[..]).await?;
        scans.finish().await
    }
    .await;
    let elapsed = started.elapsed();
    let err = result.expect_err("no verdict");
    assert_eq!(code(err), "Unavailable");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");

    // PING times out as well.
    let started = Instant::now();
    assert!(c.ping().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(1));
    hold.abort();
}

#[tokio::test]
async fn cancelled_scan_stops_promptly_as_deadline_exceeded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let c = Clamd::new(
        addr(&format!("tcp://127.0.0.1:{port}")),
        2,
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    let scratch = tempfile::tempdir().expect("scratch");
    let ctx = ScanContext::new("t", scratch.path());
    let cancel = ctx.cancel.clone();
    let mut scans = FileScans::new(c, policy(100 << 20, false), &ctx);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let result = async {
        scans.submit("/a", EICAR.len() as u64, EICAR).await?;
        scans.finish().await
    }
    .await;
    let err = result.expect_err("cancelled");
    assert!(matches!(err, ClamavError::Cancelled), "{err:?}");
    assert_eq!(code(err), "DeadlineExceeded");
    assert!(started.elapsed() < Duration::from_secs(2));
    hold.abort();
}

#[tokio::test]
async fn readiness_follows_clamd_and_engine_version_comes_back() {
    let mut clamd = ClamdProcess::start();
    let mut config = ClamavConfig::new(addr(&clamd.unix_addr()));
    config.clamd_database_dir = Some(clamd.database_dir());
    let scanner = ClamavScanner::new(config);
    assert_eq!(scanner.readiness().await, Readiness::Ready);
    let v1 = scanner.engine_version().await.expect("engine version");
    assert!(v1.starts_with("1.4.6+policy."), "{v1}");
    assert!(v1.contains("+db."), "{v1}");
    let props = scanner.properties().await;
    assert_eq!(
        props.get("clamav.version").map(String::as_str),
        Some("1.4.6")
    );
    assert!(props.contains_key("clamav.signature_version"), "{props:?}");
    assert!(props.contains_key("clamav.signature_date"), "{props:?}");

    clamd.kill();
    let started = Instant::now();
    match scanner.readiness().await {
        Readiness::NotReady(reason) => assert!(reason.contains("PING"), "{reason}"),
        Readiness::Ready => panic!("ready with clamd killed"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let err = scanner.engine_version().await.expect_err("no clamd");
    assert_eq!(format!("{:?}", err.code()), "Unavailable");

    // A signature change while clamd is down: the engine version changes with it.
    std::fs::write(
        clamd.database_dir().join("extra.hdb"),
        "0123456789abcdef0123456789abcdef:10:Extra-Test\n",
    )
    .expect("extra.hdb");
    clamd.restart();
    assert_eq!(scanner.readiness().await, Readiness::Ready);
    let v2 = scanner.engine_version().await.expect("engine version");
    assert!(
        v2.starts_with("1.4.6+policy.") && v2.contains("+db."),
        "{v2}"
    );
    assert_ne!(v1, v2, "new signatures, same engine version");
}

#[test]
fn info_advertises_malware_reports_images_and_artifacts() {
    let scanner = ClamavScanner::new(ClamavConfig::new(addr("unix:/nonexistent.sock")));
    let info = scanner.info();
    assert_eq!(info.name, "sidescan-clamav");
    let cap = &info.capabilities[0];
    assert_eq!(cap.kind, "malware");
    assert_eq!(cap.produces, [sidescan_proto::mime::MALWARE_REPORT]);
    for t in [
        sidescan_proto::mime::OCI_MANIFEST,
        sidescan_proto::mime::DOCKER_MANIFEST_LIST,
        "application/octet-stream",
    ] {
        assert!(cap.consumes.iter().any(|c| c == t), "{t} missing");
    }
}

/// A file holding `data`, as the scan path writes it (an anonymous memory file).
fn memfd(data: &[u8]) -> std::fs::File {
    use std::io::Write;
    let fd = rustix::fs::memfd_create("test", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    let mut file = std::fs::File::from(fd);
    file.write_all(data).expect("write memfd");
    file
}

#[tokio::test]
async fn fildes_over_unix_finds_eicar_and_clean_is_clean_and_tcp_uses_instream() {
    let clamd = ClamdProcess::start();
    let mut marker = filler(300_000);
    marker.extend_from_slice(BODY_MARKER);
    let zip = stored_zip(&[("a/eicar.com", EICAR)]);
    let cases: [(&[u8], Verdict); 4] = [
        (EICAR, Verdict::Found(vec![EICAR_SIGNATURE.into()])),
        (b"hello, world\n", Verdict::Clean),
        (&marker, Verdict::Found(vec![BODY_SIGNATURE.into()])),
        (&zip, Verdict::Found(vec![EICAR_SIGNATURE.into()])),
    ];

    // The FILDES exchange itself: clamd answers `fd[N]: ...` about the passed descriptor.
    for (data, want) in &cases {
        let file = memfd(data);
        let got = sidescan_clamav::protocol::fildes(
            &addr(&clamd.unix_addr()),
            std::os::fd::AsFd::as_fd(&file),
            Duration::from_secs(10),
        )
        .await
        .expect("FILDES");
        assert_eq!(got.as_ref(), Some(want), "FILDES refused or wrong verdict");
    }

    // The client: stays on FILDES (no fallback) over unix; never turns it on over TCP.
    let unix = client(&clamd.unix_addr()).with_fd_passing(true);
    let tcp = client(&clamd.tcp_addr()).with_fd_passing(true);
    assert!(unix.fd_passing());
    assert!(!tcp.fd_passing(), "fd passing over TCP");
    for c in [&unix, &tcp] {
        for (data, want) in &cases {
            let _slot = c.acquire().await.expect("slot");
            assert_eq!(
                &c.scan_file(memfd(data)).await.expect("scan"),
                want,
                "{:?}",
                c.addr()
            );
        }
    }
    assert!(
        unix.fd_passing(),
        "clamd refused FILDES: fell back to INSTREAM"
    );

    // The whole path (FileScans), FILDES over unix and INSTREAM over TCP: same results.
    for c in [unix, tcp] {
        let scratch = tempfile::tempdir().expect("scratch");
        let ctx = ScanContext::new("t", scratch.path());
        let mut scans = FileScans::new(c.clone(), policy(10 << 20, true), &ctx);
        let clean = filler(1_500_000);
        for (path, data) in [
            ("/bin/eicar", EICAR),
            ("/clean-1", &clean[..]),
            ("/etc/marker", &marker[..]),
            ("/clean-2", b"hello\n"),
            ("/srv/a.zip", &zip[..]),
        ] {
            scans
                .submit(path, data.len() as u64, data)
                .await
                .expect("submit");
        }
        let mut out = scans.finish().await.expect("finish");
        assert!(out.notices.is_empty(), "{out:?}");
        out.findings.sort_by(|a, b| a.path.cmp(&b.path));
        let got: Vec<_> = out
            .findings
            .iter()
            .map(|f| (f.path.as_str(), f.id.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/bin/eicar", EICAR_SIGNATURE),
                ("/etc/marker", BODY_SIGNATURE),
                ("/srv/a.zip", EICAR_SIGNATURE),
            ],
            "{:?}",
            c.addr()
        );
    }
}

#[tokio::test]
async fn clamd_killed_during_fildes_scans_is_unavailable() {
    let mut clamd = ClamdProcess::start();
    let c = client(&clamd.unix_addr()).with_fd_passing(true);
    let scratch = tempfile::tempdir().expect("scratch");
    let ctx = ScanContext::new("t", scratch.path());
    let mut scans = FileScans::new(c, policy(10 << 20, true), &ctx);
    scans
        .submit("/a", 6, &b"hello\n"[..])
        .await
        .expect("submit");
    clamd.kill();
    let clean = filler(100_000);
    let mut result = Ok(());
    for i in 0..20 {
        result = scans
            .submit(&format!("/f{i}"), clean.len() as u64, &clean[..])
            .await;
        if result.is_err() {
            break;
        }
    }
    let err = match result {
        Err(e) => e,
        Ok(()) => scans.finish().await.expect_err("scan after clamd died"),
    };
    assert_eq!(code(err), "Unavailable");
}

#[tokio::test]
async fn after_a_database_change_the_key_switches_only_once_the_reload_settled() {
    let clamd = ClamdProcess::start();
    let mut config = ClamavConfig::new(addr(&clamd.unix_addr()));
    config.clamd_database_dir = Some(clamd.database_dir());
    config.clamd_reload_settle = Duration::from_millis(1500);
    let scanner = ClamavScanner::new(config.clone());
    assert_eq!(scanner.readiness().await, Readiness::Ready);
    let before = scanner.engine_version().await.expect("engine version");
    assert!(!before.contains("reloading"), "{before}");

    std::fs::write(
        clamd.database_dir().join("extra.hdb"),
        "0123456789abcdef0123456789abcdef:10:Extra-Test\n",
    )
    .expect("extra.hdb");
    // The next readiness check sees the change and sends RELOAD.
    assert_eq!(scanner.readiness().await, Readiness::Ready);
    let during = scanner.engine_version().await.expect("engine version");
    assert!(during.contains(".reloading."), "{during}");
    assert_ne!(during, before);
    // Stable while settling.
    assert_eq!(
        scanner.engine_version().await.expect("engine version"),
        during
    );

    tokio::time::sleep(Duration::from_millis(1700)).await;
    let after = scanner.engine_version().await.expect("engine version");
    assert!(!after.contains("reloading"), "{after}");
    assert_ne!(after, before);
    assert!(during.starts_with(&after), "{during} / {after}");
    // The settled key is the one a fresh scanner computes for the new database.
    let fresh = ClamavScanner::new(config);
    assert_eq!(fresh.engine_version().await.expect("engine version"), after);
}
