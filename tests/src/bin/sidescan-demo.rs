//! The README's main job (`scripts/demo`): the ClamAV adapter beside a registry. Starts a real
//! `docker-registry` and a real clamd on 127.0.0.1 (with a small signature database it writes,
//! since real signatures need a download), pushes a sample image with the EICAR test file hidden
//! in a lower layer among clean files, starts `sidescan-clamav`, runs `sidescan scan --fail-on
//! high` against it exactly as a user would, prints the report, and stops everything it started.
//! The demo succeeds (exit 0) when `sidescan scan` exits 1 because it reported the EICAR file;
//! any other outcome exits 1.

use std::process::{Command, ExitCode};

use sidescan_testkit::clamd::{ClamdProcess, EICAR_SIGNATURE};
use sidescan_testkit::fixtures::{self, EICAR, Entry, Image, Layer};
use sidescan_testkit::plugin::{PluginProcess, ServingStatus, workspace_binary};
use sidescan_testkit::registry::Registry;

/// Where the sample image hides the EICAR file (in its middle layer).
const EICAR_IN_IMAGE: &str = "usr/share/demo/eicar.com";

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");

    println!("==> starting docker-registry on 127.0.0.1");
    let registry = Registry::anonymous();
    println!("    {}", registry.url());

    println!("==> starting clamd (test signatures: the EICAR hash and one body rule)");
    let clamd = ClamdProcess::start();
    println!("    {} and {}", clamd.unix_addr(), clamd.tcp_addr());

    let image = Image::new()
        .layer(fixtures::base_layer())
        .layer(Layer::new([
            Entry::dir("usr/share/demo"),
            Entry::file("usr/share/demo/notes.txt", b"release notes\n".to_vec()),
            Entry::file(EICAR_IN_IMAGE, EICAR),
        ]))
        .layer(Layer::new([
            Entry::file("app/README.txt", b"demo application\n".to_vec()),
            Entry::file("app/run.sh", b"#!/bin/sh\necho hello\n".to_vec()).mode(0o755),
        ]))
        .build();
    let digest = runtime.block_on(registry.push(&image, "demo/app", "1.0"));
    println!(
        "    pushed {} ({digest}): 3 layers, EICAR at /{EICAR_IN_IMAGE} in layer 2",
        registry.image_ref("demo/app", "1.0")
    );

    println!(
        "==> starting the ClamAV adapter (sidescan-clamav --clamd {})",
        clamd.unix_addr()
    );
    let plugin = PluginProcess::start(
        &workspace_binary("sidescan-clamav"),
        &["--clamd", &clamd.unix_addr()],
    );
    runtime.block_on(plugin.wait_for_health(ServingStatus::Serving));
    println!("    listening on {}, health SERVING", plugin.addr());

    let args = [
        "scan".to_owned(),
        "demo/app:1.0".to_owned(),
        "--plugin".to_owned(),
        plugin.url(),
        "--registry".to_owned(),
        registry.url(),
        "--fail-on".to_owned(),
        "high".to_owned(),
    ];
    println!("==> sidescan {}\n", args.join(" "));
    let output = Command::new(workspace_binary("sidescan"))
        .args(&args)
        .output()
        .expect("run sidescan");
    let report = String::from_utf8_lossy(&output.stdout);
    print!("{report}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let code = output.status.code().unwrap_or(2);
    println!(
        "\n==> sidescan exited {code} ({}); stopping the adapter, clamd and the registry",
        match code {
            0 => "no findings at or above --fail-on",
            1 => "findings at or above --fail-on high",
            _ => "error",
        }
    );
    drop(plugin);
    drop(clamd);
    drop(registry);
    let reported = report.contains(EICAR_SIGNATURE) && report.contains(EICAR_IN_IMAGE);
    if code == 1 && reported {
        println!("==> demo passed: the EICAR file in a lower layer was reported");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "demo failed: expected {EICAR_SIGNATURE} at /{EICAR_IN_IMAGE} and exit 1, got exit {code}"
        );
        ExitCode::FAILURE
    }
}
