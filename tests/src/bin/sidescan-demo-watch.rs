//! The README's scan-on-push job (`scripts/demo-watch`): a real `docker-registry` that notifies
//! `sidescan-watch`, the watcher, a real clamd (with a small signature database it writes) and
//! `sidescan-clamav`, all on 127.0.0.1. It pushes an image with the EICAR test file with
//! `skopeo copy`, as a user would, waits for the watcher to attach the report to the image in the
//! registry, then reads it back with `sidescan report --fail-on high` and stops everything it
//! started. It succeeds (exit 0) when the report attached by the watcher names the EICAR file and
//! `sidescan report` exits 1 for it; anything else exits 1.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use sidescan_testkit::clamd::ClamdProcess;
use sidescan_testkit::fixtures::{self, EICAR, Entry, Image, Layer};
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, workspace_binary};
use sidescan_testkit::process::free_port;
use sidescan_testkit::registry::Registry;
use sidescan_testkit::tool;
use sidescan_testkit::watch::{WatchProcess, sidescan_report as report};

/// Where the sample image keeps the EICAR file.
const EICAR_IN_IMAGE: &str = "usr/share/demo/eicar.com";

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");

    println!("==> starting clamd (test signatures: the EICAR hash and one body rule)");
    let clamd = ClamdProcess::start();
    println!("==> starting the ClamAV adapter");
    let clamav = PluginProcess::start(
        &workspace_binary("sidescan-clamav"),
        &["--clamd", &clamd.unix_addr()],
    );
    runtime.block_on(clamav.wait_for_health(ServingStatus::Serving));
    println!("    {}", clamav.url());

    let port = free_port();
    let events = format!("http://127.0.0.1:{port}/events");
    println!("==> starting docker-registry with notifications to {events}");
    let registry = Registry::with_notifications(&events);
    println!("    {}", registry.url());

    let args: Vec<String> = [
        "--registry",
        &registry.url(),
        "--plugin",
        &clamav.url(),
        "--attach-format",
        "sarif",
        "--log-format",
        "text",
    ]
    .map(str::to_owned)
    .to_vec();
    println!("==> starting sidescan-watch {}", args.join(" "));
    let watch = WatchProcess::start(
        &workspace_binary("sidescan-watch"),
        &format!("127.0.0.1:{port}"),
        &args,
    );
    runtime.block_on(watch.wait_ready(Duration::from_secs(30)));
    println!("    ready on {}", watch.url());

    let image = Image::new()
        .layer(fixtures::base_layer())
        .layer(Layer::new([
            Entry::dir("usr/share/demo"),
            Entry::file(EICAR_IN_IMAGE, EICAR),
        ]))
        .build();
    let layout = tempfile::tempdir().expect("temp dir");
    image
        .write_oci_layout(layout.path(), "1.0")
        .expect("OCI layout");
    let reference = registry.docker_ref("demo/app", "1.0");
    println!("==> skopeo copy oci:<layout>:1.0 {reference}");
    let pushed = Instant::now();
    let status = Command::new(tool::skopeo())
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1.0", layout.path().display()))
        .arg(&reference)
        .status()
        .expect("run skopeo");
    if !status.success() {
        eprintln!("demo-watch: skopeo copy failed");
        return ExitCode::FAILURE;
    }

    let image_ref = format!("{}/demo/app:1.0", registry.host());
    println!("==> waiting for the report referrer (sidescan report {image_ref} --format json)");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, json) = report(&image_ref, &registry.url(), &["--format", "json"]);
        let attached = serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v["reports"].as_array().map(|r| !r.is_empty()))
            .unwrap_or(false);
        if attached {
            println!("    attached {:.1?} after the push", pushed.elapsed());
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "demo-watch: no report after 60 s; watcher log:\n{}",
                watch.logs()
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    println!(
        "==> sidescan report {image_ref} --registry {} --fail-on high",
        registry.url()
    );
    let (code, table) = report(&image_ref, &registry.url(), &["--fail-on", "high"]);
    print!("{table}");
    println!("    sidescan report exited {code}");
    let found = table.contains(EICAR_IN_IMAGE);
    println!("==> stopping the watcher, the adapter, clamd and the registry");
    if found && code == 1 {
        println!("demo-watch: OK, the report attached on push names /{EICAR_IN_IMAGE}");
        ExitCode::SUCCESS
    } else {
        eprintln!("demo-watch: expected the EICAR finding and exit code 1");
        ExitCode::FAILURE
    }
}
