//! The adapter never reports "clean" for what it did not scan, and never caches what may come
//! out differently next time: the verdict flags are part of the engine version (the cache key),
//! a transient per-file clamd error fails the scan (nothing cached, the caller retries),
//! encrypted content is a notice, and a clamd that answers OK for content over its limits
//! (no `AlertExceedsMax yes`) is not ready. Real clamd throughout; a fault-injecting proxy in
//! front of it only for the transient errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use sidescan_clamav::{
    ClamavConfig, ClamavError, ClamavScanner, Clamd, ClamdAddr, FileScans, ScanPolicy,
};
use sidescan_proto::v1 as pb;
use sidescan_sdk::{Readiness, ScanContext, Scanner, Severity};
use sidescan_testkit::clamd::{ClamdOptions, ClamdProcess, EICAR_SIGNATURE};
use sidescan_testkit::fixtures::{EICAR, Entry, Image, Layer, stored_zip};
use sidescan_testkit::plugin::{PluginProcess, ServingStatus};
use sidescan_testkit::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

fn addr(s: &str) -> ClamdAddr {
    s.parse().expect("clamd address")
}

fn code(err: ClamavError) -> String {
    format!("{:?}", sidescan_sdk::Error::from(err).code())
}

/// One change to a configuration.
type Change<'a> = Box<dyn Fn(&mut ClamavConfig) + 'a>;

#[tokio::test]
async fn every_verdict_flag_is_part_of_the_engine_version() {
    let clamd = ClamdProcess::start();
    let base = ClamavConfig::new(addr(&clamd.unix_addr()));
    let version = |config: ClamavConfig| async move {
        ClamavScanner::new(config)
            .engine_version()
            .await
            .expect("engine version")
    };
    let reference = version(base.clone()).await;
    assert_eq!(
        version(base.clone()).await,
        reference,
        "identical configs, different keys"
    );

    let changed: [(&str, Change<'_>); 5] = [
        (
            "--malware-severity",
            Box::new(|c| c.malware_severity = Severity::High),
        ),
        (
            "--stream-max-length",
            Box::new(|c| c.stream_max_length = ByteSize::mib(50)),
        ),
        (
            "--clamd-max-file-size",
            Box::new(|c| c.clamd_max_file_size = ByteSize::mib(50)),
        ),
        ("--clamd-local", Box::new(|c| c.clamd_local = Some(false))),
        (
            "clamd address kind (unix: is local, tcp:// is not)",
            Box::new(|c| c.clamd = addr(&clamd.tcp_addr())),
        ),
    ];
    for (flag, change) in &changed {
        let mut config = base.clone();
        change(&mut config);
        let other = version(config).await;
        assert_ne!(other, reference, "{flag} changes verdicts but not the key");
        assert!(other.starts_with("1.4.6+policy."), "{other}");
    }

    // How content reaches clamd does not change a verdict: one key, shared cache entries.
    let unchanged: [(&str, Change<'_>); 4] = [
        (
            "--clamd-fd-passing=false",
            Box::new(|c| c.clamd_fd_passing = false),
        ),
        ("--clamd-connections", Box::new(|c| c.clamd_connections = 2)),
        (
            "--file-timeout",
            Box::new(|c| c.file_timeout = Duration::from_secs(5)),
        ),
        (
            "--artifact-type",
            Box::new(|c| c.artifact_types = vec!["application/x-test".into()]),
        ),
    ];
    for (flag, change) in &unchanged {
        let mut config = base.clone();
        change(&mut config);
        assert_eq!(version(config).await, reference, "{flag}");
    }
}

/// A clamd stand-in on 127.0.0.1 that forwards every connection to a real clamd, except that
/// the next `armed` `INSTREAM`s are answered with `reply` (after reading the whole stream, as
/// clamd does).
struct FaultyClamd {
    port: u16,
    armed: Arc<AtomicUsize>,
    reply: Arc<Mutex<String>>,
    forwarded_streams: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyClamd {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let armed = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(Mutex::new(String::new()));
        let forwarded_streams = Arc::new(AtomicUsize::new(0));
        let (a, r, f) = (armed.clone(), reply.clone(), forwarded_streams.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (a, r, f) = (a.clone(), r.clone(), f.clone());
                tokio::spawn(async move {
                    let _ = Self::serve(sock, upstream, &a, &r, &f).await;
                });
            }
        });
        Self {
            port,
            armed,
            reply,
            forwarded_streams,
            task,
        }
    }

    async fn serve(
        mut sock: tokio::net::TcpStream,
        upstream: u16,
        armed: &AtomicUsize,
        reply: &Mutex<String>,
        forwarded: &AtomicUsize,
    ) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        let cmd_end = loop {
            let n = sock.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.iter().position(|&b| b == 0) {
                break end + 1;
            }
        };
        let instream = head.starts_with(b"zINSTREAM\0");
        let fail = instream
            && armed
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if fail {
            let rest = head[cmd_end..].to_vec();
            let (mut rd, mut wr) = sock.split();
            drain_stream(&mut (&rest[..]).chain(&mut rd)).await?;
            let text = format!("{}\0", reply.lock().expect("reply").clone());
            wr.write_all(text.as_bytes()).await?;
            return wr.shutdown().await;
        }
        if instream {
            forwarded.fetch_add(1, Ordering::SeqCst);
        }
        let mut up = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await?;
        up.write_all(&head).await?;
        tokio::io::copy_bidirectional(&mut sock, &mut up).await?;
        Ok(())
    }

    fn addr(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Answers the next `n` INSTREAMs with `reply`.
    fn fail_next(&self, n: usize, reply: &str) {
        *self.reply.lock().expect("reply") = reply.to_owned();
        self.armed.store(n, Ordering::SeqCst);
    }

    fn forwarded_streams(&self) -> usize {
        self.forwarded_streams.load(Ordering::SeqCst)
    }
}

impl Drop for FaultyClamd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads INSTREAM chunks up to the zero-length terminator.
async fn drain_stream<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<()> {
    loop {
        let len = r.read_u32().await?;
        if len == 0 {
            return Ok(());
        }
        tokio::io::copy(&mut r.take(u64::from(len)), &mut tokio::io::sink()).await?;
    }
}

fn policy() -> Arc<ScanPolicy> {
    Arc::new(ScanPolicy {
        stream_max_length: 10 << 20,
        max_file_size: 100 << 20,
        local_scan: false,
        severity: Severity::Critical,
    })
}

/// Scans `files` through [`FileScans`] with clamd at `a` (INSTREAM).
async fn scan_files(
    a: &str,
    files: &[(&str, &[u8])],
) -> Result<sidescan_sdk::ScanFindings, ClamavError> {
    let c = Clamd::new(addr(a), 2, Duration::from_secs(10), Duration::from_secs(1));
    let scratch = tempfile::tempdir().expect("scratch");
    let ctx = ScanContext::new("t", scratch.path());
    let mut scans = FileScans::new(c, policy(), &ctx).with_layer_digest("sha256:l");
    for (path, data) in files {
        scans.submit(path, data.len() as u64, *data).await?;
    }
    scans.finish().await
}

#[tokio::test]
async fn per_file_clamd_errors_and_scan_time_limits_fail_the_batch_as_unavailable() {
    let clamd = ClamdProcess::start();
    let faulty = FaultyClamd::start(clamd.port()).await;
    let files: [(&str, &[u8]); 2] = [("/a/one", b"hello there\n"), ("/a/two", EICAR)];
    for reply in [
        "stream: Can't allocate memory ERROR",
        "stream: Can't create temporary file ERROR",
        "stream: Heuristics.Limits.Exceeded.MaxScanTime FOUND",
    ] {
        faulty.fail_next(1, reply);
        let err = scan_files(&faulty.addr(), &files)
            .await
            .expect_err("a transient clamd answer gives no result");
        let text = err.to_string();
        assert!(matches!(err, ClamavError::FileError { .. }), "{err:?}");
        assert!(text.contains("/a/one"), "{text}");
        assert_eq!(code(err), "Unavailable", "{reply}");
    }
    // Unarmed: the same files give the real verdicts.
    let out = scan_files(&faulty.addr(), &files).await.expect("scan");
    assert!(out.notices.is_empty(), "{out:?}");
    assert_eq!(out.findings.len(), 1, "{out:?}");
    assert_eq!(out.findings[0].id, EICAR_SIGNATURE);
}

#[tokio::test]
async fn encrypted_content_is_a_notice_not_clean_and_not_malware() {
    let clamd = ClamdProcess::start(); // AlertEncrypted yes
    // A stored zip whose entry is flagged as encrypted (general purpose bit 0).
    let mut zip = stored_zip(&[("secret.txt", b"0123456789ab harmless content\n")]);
    zip[6] |= 1;
    let central = zip
        .windows(4)
        .position(|w| w == b"PK\x01\x02")
        .expect("central directory");
    zip[central + 8] |= 1;
    let out = scan_files(&clamd.tcp_addr(), &[("/srv/secret.zip", &zip)])
        .await
        .expect("scan");
    assert!(out.findings.is_empty(), "{out:?}");
    assert_eq!(
        out.notices.len(),
        1,
        "encrypted content passed as clean: {out:?}"
    );
    let n = &out.notices[0];
    assert_eq!(
        (n.code.as_str(), n.path.as_str(), n.layer_digest.as_str()),
        (
            sidescan_clamav::scan::ENCRYPTED_NOTICE,
            "/srv/secret.zip",
            "sha256:l"
        )
    );
    assert!(n.message.contains("Heuristics.Encrypted.Zip"), "{n:?}");
}

/// A request for `repo:1` on `registry` asking for the malware report.
fn request(registry: &Registry, repo: &str) -> pb::ScanRequest {
    sidescan_testkit::plugin::malware_request(&registry.url(), &format!("{repo}:1"))
}

async fn scan(
    plugin: &PluginProcess,
    req: pb::ScanRequest,
) -> Result<pb::ScanReport, tonic::Status> {
    let mut req = tonic::Request::new(req);
    req.set_timeout(Duration::from_secs(60));
    let response = plugin.scan_client().await.scan_image(req).await?;
    Ok(response.into_inner().report.expect("report"))
}

#[tokio::test]
async fn a_transient_clamd_error_fails_the_scan_and_leaves_nothing_in_the_cache() {
    let registry = Registry::anonymous();
    let clamd = ClamdProcess::start();
    let faulty = FaultyClamd::start(clamd.port()).await;
    let plugin = PluginProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_sidescan-clamav")),
        &["--clamd", &faulty.addr(), "--clamd-connections", "1"],
    );
    plugin.wait_for_health(ServingStatus::Serving).await;
    let image = Image::new()
        .layer(Layer::new([
            Entry::file("app/one.txt", "one\n"),
            Entry::file("app/eicar.com", EICAR),
            Entry::file("app/three.txt", "three\n"),
        ]))
        .build();
    registry.push(&image, "clam/transient", "1").await;

    faulty.fail_next(1, "stream: Can't allocate memory ERROR");
    let err = scan(&plugin, request(&registry, "clam/transient"))
        .await
        .expect_err("a layer clamd could not finish has no result");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("Can't allocate memory") && err.message().contains("/app/one.txt"),
        "{err:?}"
    );

    // Retried: the layer is scanned again (nothing was cached), in full, with no notice.
    let before = faulty.forwarded_streams();
    let report = scan(&plugin, request(&registry, "clam/transient"))
        .await
        .unwrap_or_else(|e| panic!("retry: {e:?}\n{}", plugin.logs()));
    assert_eq!(
        faulty.forwarded_streams() - before,
        3,
        "layer not rescanned"
    );
    assert!(report.notices.is_empty(), "{:?}", report.notices);
    let ids: Vec<_> = report
        .vulnerabilities
        .iter()
        .map(|f| f.id.as_str())
        .collect();
    assert_eq!(ids, [EICAR_SIGNATURE]);

    // And that complete result is what the cache serves now.
    let before = faulty.forwarded_streams();
    let cached = scan(&plugin, request(&registry, "clam/transient"))
        .await
        .expect("cached scan");
    assert_eq!(
        faulty.forwarded_streams(),
        before,
        "not served from the cache"
    );
    assert_eq!(cached.vulnerabilities.len(), 1);
    assert!(cached.notices.is_empty());
}

#[tokio::test]
async fn clamd_without_alert_exceeds_max_is_not_ready_and_with_it_is() {
    let silent = ClamdProcess::start_with(&ClamdOptions {
        extra_config: vec!["AlertExceedsMax no".into()],
        ..ClamdOptions::default()
    });
    let alerting = ClamdProcess::start();
    for a in [silent.unix_addr(), silent.tcp_addr()] {
        let scanner = ClamavScanner::new(ClamavConfig::new(addr(&a)));
        match scanner.readiness().await {
            Readiness::NotReady(reason) => assert!(
                reason.contains("AlertExceedsMax yes") && reason.contains("came back OK"),
                "{reason}"
            ),
            Readiness::Ready => panic!("ready with a clamd that skips over-limit content silently"),
        }
        // Still refused on the next look (the check is repeated until it passes).
        assert!(matches!(scanner.readiness().await, Readiness::NotReady(_)));
    }
    for a in [alerting.unix_addr(), alerting.tcp_addr()] {
        let scanner = ClamavScanner::new(ClamavConfig::new(addr(&a)));
        assert_eq!(scanner.readiness().await, Readiness::Ready, "{a}");
    }
    assert!(
        alerting
            .log()
            .contains("Heuristics.Limits.Exceeded.MaxRecursion FOUND"),
        "{}",
        alerting.log()
    );
}

#[tokio::test]
async fn the_plugin_refuses_to_serve_a_silent_clamd_and_says_why() {
    let silent = ClamdProcess::start_with(&ClamdOptions {
        extra_config: vec!["AlertExceedsMax no".into()],
        ..ClamdOptions::default()
    });
    let plugin = PluginProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_sidescan-clamav")),
        &["--clamd", &silent.unix_addr()],
    );
    let started = Instant::now();
    while !plugin.logs().contains("clamd self-check failed") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no self-check failure logged:\n{}",
            plugin.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        plugin.logs().contains("AlertExceedsMax yes"),
        "{}",
        plugin.logs()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(plugin.health().await, ServingStatus::NotServing);
}
