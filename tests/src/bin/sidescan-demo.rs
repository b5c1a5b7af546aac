//! The README's main job (`scripts/demo`): starts a real registry on 127.0.0.1, pushes a sample
//! image with a private key hidden in a lower layer, starts the SDK's example plugin, runs
//! `sidescan scan` against it exactly as a user would, prints the report, and stops everything it
//! started. The demo succeeds (exit 0) when `sidescan scan --fail-on high` exits 1 because it
//! found the planted key; any other outcome exits 1.

use std::process::{Command, ExitCode};

use sidescan_tests::fixtures::{self, Entry, Image, Layer};
use sidescan_tests::plugin::{PluginProcess, workspace_binary};
use sidescan_tests::registry::Registry;

fn main() -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");

    println!("==> starting docker-registry on 127.0.0.1");
    let registry = Registry::anonymous();
    let image = Image::new()
        .layer(fixtures::base_layer())
        .layer(Layer::new([Entry::file(
            fixtures::PRIVATE_KEY_PATH,
            fixtures::fake_rsa_private_key_pem().into_bytes(),
        )]))
        .layer(Layer::new([
            Entry::file("app/README.txt", b"demo application\n".to_vec()),
            Entry::file("app/run.sh", b"#!/bin/sh\necho hello\n".to_vec()).mode(0o755),
        ]))
        .build();
    let digest = runtime.block_on(registry.push(&image, "demo/app", "1.0"));
    println!(
        "    pushed {} ({digest})",
        registry.image_ref("demo/app", "1.0")
    );

    println!("==> starting the example plugin (sdk/examples/private_keys.rs)");
    let plugin = PluginProcess::start(&workspace_binary("private_keys"), &[]);
    println!("    listening on {}", plugin.addr());

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
    let status = Command::new(workspace_binary("sidescan"))
        .args(&args)
        .status()
        .expect("run sidescan");
    let code = status.code().unwrap_or(2);
    println!(
        "\n==> sidescan exited {code} ({}); stopping the plugin and the registry",
        match code {
            0 => "no findings at or above --fail-on",
            1 => "findings at or above --fail-on high",
            _ => "error",
        }
    );
    drop(plugin);
    drop(registry);
    if code == 1 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "demo failed: expected the planted private key to be reported (exit 1), got exit {code}"
        );
        ExitCode::FAILURE
    }
}
