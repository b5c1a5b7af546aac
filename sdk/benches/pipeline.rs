//! Benchmark of the SDK image pipeline against `skopeo copy` + `umoci unpack`, in one run.
//!
//! ```text
//! cargo bench -p sidescan-sdk --bench pipeline [-- --mib 220 --reps 2]
//! ```
//!
//! Starts the test kit's `docker-registry` on 127.0.0.1 (temp dir, free port), generates an
//! image of about `--mib` MiB compressed (incompressible random files plus compressible text, three gzip
//! layers), pushes it with skopeo, then measures, each in a fresh process (peak RSS = `VmHWM`):
//!
//! - baseline: `skopeo copy docker://… oci:DIR` + `umoci unpack --rootless`;
//! - SDK cold: pull + verify (digests, diff_ids) + OCI layout + rootfs unpack, empty blob cache;
//! - SDK warm: the same with the blob cache warm (still re-unpacks the rootfs);
//! - SDK pull only (layout, no rootfs) cold and warm: what the blob cache saves;
//! - SDK per-layer streaming walk (all file bodies read) cold, and warm (layer result cache).
//!
//! Needs `apt-get install -y docker-registry skopeo umoci`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sidescan_sdk::pipeline::{Pipeline, PipelineOptions, ScanJob};
use sidescan_sdk::prelude::*;
use sidescan_sdk::{Limits, async_trait};
use sidescan_testkit::digest::{HashWriter, sha256_digest};
use sidescan_testkit::random::PseudoRandom;
use tokio::io::AsyncReadExt as _;

// ---------------------------------------------------------------------------------------------
// child: one measured pipeline run
// ---------------------------------------------------------------------------------------------

struct Noop(Input);

#[async_trait]
impl Scanner for Noop {
    fn info(&self) -> ScannerInfo {
        ScannerInfo {
            name: "bench".into(),
            vendor: "bench".into(),
            version: "1".into(),
            capabilities: vec![],
        }
    }
    fn input(&self) -> Input {
        self.0
    }
    async fn scan_layer(&self, layer: &mut Layer, _: &ScanContext) -> Result<ScanFindings, Error> {
        let mut buf = vec![0u8; 64 << 10];
        let mut files = 0u64;
        while let Some(mut e) = layer.next_entry().await? {
            files += 1;
            while e
                .read(&mut buf)
                .await
                .map_err(|x| Error::internal(x.to_string()))?
                > 0
            {}
        }
        let mut f = ScanFindings::default();
        f.notices
            .push(Notice::new("bench-files", files.to_string()));
        Ok(f)
    }
    async fn scan_image(&self, image: &ImageInput, _: &ScanContext) -> Result<ScanFindings, Error> {
        let mut f = ScanFindings::default();
        if let Some(root) = &image.rootfs {
            f.notices
                .push(Notice::new("bench-files", count_files(root).to_string()));
        }
        Ok(f)
    }
}

fn count_files(dir: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = match e.path().symlink_metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            if m.is_dir() {
                n += count_files(&e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn child(args: &[String]) -> ExitCode {
    let [host, cache, scratch, mode] = args else {
        eprintln!("usage: --run HOST CACHE SCRATCH MODE");
        return ExitCode::FAILURE;
    };
    let input = match mode.as_str() {
        "rootfs" => Input::WholeImage { rootfs: true },
        "layout" => Input::WholeImage { rootfs: false },
        _ => Input::PerLayer,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let pipeline = Pipeline::new(PipelineOptions {
            cache_dir: cache.into(),
            cache_max_bytes: 4 << 30,
            scratch_root: scratch.into(),
            limits: Limits::default(),
            allowed_registries: vec![],
        })?;
        let scanner: Arc<dyn Scanner> = Arc::new(Noop(input));
        let job = ScanJob {
            image: "bench:1".into(),
            registry_url: format!("http://{host}"),
            ..Default::default()
        };
        let start = Instant::now();
        let out = pipeline
            .scan(&scanner, &job, &ScanContext::new("bench", "/tmp"))
            .await?;
        let files: u64 = out
            .findings
            .notices
            .iter()
            .filter(|n| n.code == "bench-files")
            .filter_map(|n| n.message.parse::<u64>().ok())
            .sum();
        Ok::<_, Error>((start.elapsed(), files))
    });
    match result {
        Ok((elapsed, files)) => {
            println!("{} {} {}", elapsed.as_millis(), vm_hwm_kib(), files);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scan failed: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// driver
// ---------------------------------------------------------------------------------------------

struct BlobOut {
    digest: String,
    diff_id: String,
    size: u64,
}

/// One layer: `random_mib` MiB of random files (4 MiB each) and `text_mib` MiB of text files.
fn make_layer(blobs: &Path, seed: u64, random_mib: usize, text_mib: usize) -> io::Result<BlobOut> {
    let tmp = blobs.join(format!("tmp-{seed}"));
    let gz =
        flate2::write::GzEncoder::new(std::fs::File::create(&tmp)?, flate2::Compression::fast());
    // The tar stream is hashed (diff_id) on its way into gzip.
    let mut tee = HashWriter::new(gz);
    {
        let mut tar = tar::Builder::new(&mut tee);
        let mut rng = PseudoRandom::new(seed);
        let mut data = vec![0u8; 4 << 20];
        for i in 0..random_mib / 4 {
            rng.fill(&mut data);
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, format!("data/l{seed}/random-{i}.bin"), &data[..])?;
        }
        let words = [
            "alpha", "beta", "gamma", "delta", "config", "value", "server", "lib", "usr", "share",
        ];
        let mut line = Vec::new();
        let mut text = Vec::with_capacity(1 << 20);
        for i in 0..text_mib {
            text.clear();
            let mut n = 0u64;
            while text.len() < (1 << 20) {
                line.clear();
                let mut b = [0u8; 8];
                rng.fill(&mut b);
                for k in 0..8 {
                    line.extend_from_slice(words[(b[k] % 10) as usize].as_bytes());
                    line.push(b' ');
                }
                n += 1;
                line.extend_from_slice(format!("{n}\n").as_bytes());
                text.extend_from_slice(&line);
            }
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, format!("usr/share/l{seed}/text-{i}.txt"), &text[..])?;
        }
        tar.finish()?;
    }
    let (gz, diff_id) = tee.finish();
    gz.finish()?;
    let digest = sha256_of_file(&tmp)?;
    let size = std::fs::metadata(&tmp)?.len();
    std::fs::rename(&tmp, blobs.join(digest.trim_start_matches("sha256:")))?;
    Ok(BlobOut {
        digest,
        diff_id,
        size,
    })
}

/// `sha256:<hex>` of a file, streamed.
fn sha256_of_file(path: &Path) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = HashWriter::new(io::sink());
    io::copy(&mut f, &mut h)?;
    Ok(h.finish().1)
}

fn write_blob(blobs: &Path, data: &[u8]) -> io::Result<String> {
    let digest = sha256_digest(data);
    std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), data)?;
    Ok(digest)
}

/// Generates the image as an OCI layout; returns the compressed size.
fn make_image(dir: &Path, mib: usize) -> io::Result<u64> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let big = (mib.saturating_sub(40) / 2 / 4) * 4;
    let layers = [
        make_layer(&blobs, 1, big, 0)?,
        make_layer(&blobs, 2, big, 0)?,
        make_layer(&blobs, 3, 24, 48)?,
    ];
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        "config": {}
    })
    .to_string();
    let config_digest = write_blob(&blobs, config.as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l.digest, "size": l.size
        })).collect::<Vec<_>>(),
    })
    .to_string();
    let manifest_digest = write_blob(&blobs, manifest.as_bytes())?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "bench"}
        }]
    });
    std::fs::write(dir.join("index.json"), index.to_string())?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(layers.iter().map(|l| l.size).sum())
}

fn run_ok(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn timed(f: impl FnOnce() -> Result<(), String>) -> Result<Duration, String> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

/// Baseline: skopeo copy to a fresh OCI layout, then umoci unpack.
/// Returns (skopeo wall, umoci wall, files).
fn baseline(work: &Path, host: &str, n: usize) -> Result<(Duration, Duration, u64), String> {
    let layout = work.join(format!("baseline-{n}"));
    let bundle = work.join(format!("bundle-{n}"));
    let copy = timed(|| {
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--quiet", "--src-tls-verify=false"])
                .arg(format!("docker://{host}/bench:1"))
                .arg(format!("oci:{}:1", layout.display())),
        )
    })?;
    let unpack = timed(|| {
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:1", layout.display()))
                .arg(&bundle),
        )
    })?;
    let files = count_files(&bundle.join("rootfs"));
    let _ = std::fs::remove_dir_all(&layout);
    let _ = std::fs::remove_dir_all(&bundle);
    Ok((copy, unpack, files))
}

/// One SDK run in a child process: (wall of the scan, peak RSS KiB, files).
fn sdk(
    host: &str,
    cache: &Path,
    scratch: &Path,
    mode: &str,
) -> Result<(Duration, u64, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .arg("--run")
        .arg(host)
        .arg(cache)
        .arg(scratch)
        .arg(mode)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "sdk run {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match v.as_slice() {
        [ms, kib, files] => Ok((Duration::from_millis(*ms), *kib, *files)),
        _ => Err(format!("unexpected child output {text:?}")),
    }
}

fn driver(mib: usize, reps: usize) -> Result<(), String> {
    let work = tempfile::Builder::new()
        .prefix("bench-pipeline-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let w = work.path();
    // registry (the test kit's docker-registry, stopped on drop)
    let registry = sidescan_testkit::registry::Registry::anonymous();
    let host = registry.host();
    eprintln!("generating a ~{mib} MiB image ...");
    let src = w.join("src");
    let compressed = make_image(&src, mib).map_err(|e| e.to_string())?;
    eprintln!(
        "pushing {:.1} MiB compressed ...",
        compressed as f64 / 1048576.0
    );
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:bench", src.display()))
            .arg(format!("docker://{host}/bench:1")),
    )?;
    let _ = std::fs::remove_dir_all(&src);

    let min = |v: &[Duration]| v.iter().copied().min().unwrap_or_default();
    let mut base = Vec::new();
    let mut base_copy = Vec::new();
    let mut base_unpack = Vec::new();
    let mut base_files = 0;
    let mut rows: Vec<(&str, Vec<Duration>, u64, u64)> = vec![
        ("SDK cold: pull+verify+layout+unpack", vec![], 0, 0),
        ("SDK warm: same, blob cache warm", vec![], 0, 0),
        ("SDK cold pull+verify+layout (no rootfs)", vec![], 0, 0),
        ("SDK warm pull+verify+layout (no rootfs)", vec![], 0, 0),
        ("SDK cold per-layer streaming walk", vec![], 0, 0),
        ("SDK warm per-layer (layer result cache)", vec![], 0, 0),
    ];
    for rep in 0..reps {
        eprintln!("round {} of {reps} ...", rep + 1);
        let (copy, unpack, files) = baseline(w, &host, rep)?;
        base.push(copy + unpack);
        base_copy.push(copy);
        base_unpack.push(unpack);
        base_files = files;
        let scratch = w.join("scratch");
        let runs: [(usize, &str, bool); 6] = [
            (0, "rootfs", true),
            (1, "rootfs", false),
            (2, "layout", true),
            (3, "layout", false),
            (4, "stream", true),
            (5, "stream", false),
        ];
        let mut cache = PathBuf::new();
        for (i, mode, fresh) in runs {
            if fresh {
                cache = w.join(format!("cache-{rep}-{i}"));
            }
            let (d, kib, files) = sdk(&host, &cache, &scratch, mode)?;
            rows[i].1.push(d);
            rows[i].2 = rows[i].2.max(kib);
            rows[i].3 = files;
        }
        for i in [0, 2, 4] {
            let _ = std::fs::remove_dir_all(w.join(format!("cache-{rep}-{i}")));
        }
    }
    let b = min(&base).as_secs_f64();
    println!();
    println!(
        "image: {:.1} MiB compressed, 3 gzip layers, {base_files} files; {reps} rounds, best of each",
        compressed as f64 / 1048576.0
    );
    println!(
        "{:<44} {:>9} {:>9} {:>11} {:>7}",
        "run", "wall s", "x base", "peak RSS", "files"
    );
    println!(
        "{:<44} {:>9.3} {:>9.2} {:>11} {:>7}",
        "baseline: skopeo copy + umoci unpack", b, 1.0, "-", base_files
    );
    let bc = min(&base_copy).as_secs_f64();
    let bu = min(&base_unpack).as_secs_f64();
    println!(
        "{:<44} {bc:>9.3} {:>9.3}",
        "  of which skopeo copy (pull+verify)",
        bc / b
    );
    println!(
        "{:<44} {bu:>9.3} {:>9.3}",
        "  of which umoci unpack",
        bu / b
    );
    for (name, d, kib, files) in &rows {
        let s = min(d).as_secs_f64();
        println!(
            "{name:<44} {s:>9.3} {:>9.3} {:>8.1} MiB {files:>7}",
            s / b,
            *kib as f64 / 1024.0
        );
    }
    let cold = min(&rows[0].1).as_secs_f64();
    let pull_cold = min(&rows[2].1).as_secs_f64();
    let pull_warm = min(&rows[3].1).as_secs_f64();
    let rss = rows.iter().map(|r| r.2).max().unwrap_or(0) as f64 / 1024.0;
    println!();
    println!(
        "ratio SDK cold / baseline:              {:.2} (target <= 0.60)",
        cold / b
    );
    println!(
        "ratio warm pull / cold pull:            {:.3} (target <= 0.10)",
        pull_warm / pull_cold
    );
    println!(
        "ratio SDK cold pull / skopeo copy:      {:.3}",
        pull_cold / bc
    );
    println!(
        "ratio warm full (re-unpack) / cold full: {:.3}",
        min(&rows[1].1).as_secs_f64() / cold
    );
    println!("SDK peak RSS (max over runs):           {rss:.1} MiB (target <= 64)");
    if rows[0].3 != base_files {
        return Err(format!(
            "file count differs: SDK {} vs umoci {base_files}",
            rows[0].3
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; ignore it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--run") {
        return child(&args[1..]);
    }
    let mut mib = 220;
    let mut reps = 2;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next().and_then(|v| v.parse().ok())) {
            ("--mib", Some(v)) => mib = v,
            ("--reps", Some(v)) => reps = v.max(1),
            _ => {
                eprintln!(
                    "usage: cargo bench -p sidescan-sdk --bench pipeline -- [--mib N] [--reps N]"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    match driver(mib, reps) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}
