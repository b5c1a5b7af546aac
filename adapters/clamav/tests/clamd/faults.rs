//! Outages, timeouts and cancellation: clamd killed mid-stream, a clamd that hangs, a cancelled
//! scan.

use std::time::{Duration, Instant};

use sidescan_clamav::{ClamavError, Clamd, FileScans};
use sidescan_sdk::ScanContext;
use sidescan_testkit::clamd::ClamdProcess;
use sidescan_testkit::fixtures::EICAR;
use tokio::sync::mpsc;

use crate::{addr, client, code, filler, policy};

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
