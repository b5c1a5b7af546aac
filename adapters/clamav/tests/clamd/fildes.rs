//! Memory-file descriptors (`FILDES`) to a local clamd, `INSTREAM` over TCP, and clamd dying
//! during FILDES scans.

use std::time::Duration;

use sidescan_clamav::{FileScans, Verdict};
use sidescan_sdk::ScanContext;
use sidescan_testkit::clamd::{BODY_MARKER, BODY_SIGNATURE, ClamdProcess, EICAR_SIGNATURE};
use sidescan_testkit::fixtures::{EICAR, stored_zip};

use crate::{addr, client, code, filler, policy};

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
