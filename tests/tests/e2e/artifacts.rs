//! `sidescan artifact` round trips against a real `docker-registry`: ClamAV databases and Trivy
//! DBs pushed, inspected and pulled back byte for byte; plugins pushed per platform and
//! installed for the host, by tag and by pinned digest; credentials from flags and an auth
//! file; bad input refused with a clear error, nothing written outside the target directory.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use sidescan_oci::artifact::plugin::Platform;
use sidescan_testkit::fixtures;
use sidescan_testkit::plugin::workspace_binary;
use sidescan_testkit::registry::{DEFAULT_PASSWORD, DEFAULT_USER, Registry};

use super::signatures::sidescan_artifact;

/// Runs `sidescan artifact ARGS...` with `envs`, whatever its outcome.
fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(workspace_binary("sidescan"))
        .arg("artifact")
        .args(args)
        .env_remove("SIDESCAN_REGISTRY_USERNAME")
        .env_remove("SIDESCAN_REGISTRY_PASSWORD")
        .env_remove("SIDESCAN_REGISTRY_TOKEN")
        .envs(envs.iter().copied())
        .output()
        .expect("run sidescan")
}

/// Runs a command that must fail with exit 2; its stderr.
fn fails(args: &[&str]) -> String {
    let out = run(args, &[]);
    assert_eq!(out.status.code(), Some(2), "{args:?} should fail: {out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every entry of `dir`, recursively, as relative paths, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().expect("type").is_dir() {
            out.extend(
                tree(&entry.path())
                    .into_iter()
                    .map(|n| format!("{name}/{n}")),
            );
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

#[test]
fn clamav_database_round_trip_and_refusals() {
    let registry = Registry::anonymous();
    let reference = registry.image_ref("mirror/clamav", "db");
    let src = tempfile::tempdir().expect("temp dir");
    let daily = b"ClamAV-VDB:02 Dec 2026 08-00 +0000:27842:2070000:90:x:builder:1700000000";
    let mut daily = daily.to_vec();
    daily.resize(4096, 0);
    std::fs::write(src.path().join("daily.cld"), &daily).unwrap();
    std::fs::write(src.path().join("custom.ndb"), "Sig:0:*:41424344\n").unwrap();
    let files = [
        src.path().join("daily.cld").display().to_string(),
        src.path().join("custom.ndb").display().to_string(),
    ];
    let pushed = sidescan_artifact(&["push", "clamav-db", &reference, &files[0], &files[1]]);
    let digest = pushed.trim().rsplit_once('@').expect("REF@DIGEST").1;

    let inspect = sidescan_artifact(&["inspect", &reference]);
    for want in [
        "kind:      ClamAV database",
        &format!("digest:    {digest}"),
        "version:   27842",
        "daily.cld",
        "custom.ndb",
        "application/vnd.clamav.database",
        "ago)",
    ] {
        assert!(inspect.contains(want), "{want:?} in:\n{inspect}");
    }

    let out = tempfile::tempdir().expect("temp dir");
    let target = out.path().join("db");
    sidescan_artifact(&["pull", &reference, target.to_str().unwrap()]);
    assert_eq!(tree(out.path()), ["db/custom.ndb", "db/daily.cld"]);
    assert_eq!(std::fs::read(target.join("daily.cld")).unwrap(), daily);
    // By digest too.
    let by_digest = format!("{}/mirror/clamav@{digest}", registry.host());
    sidescan_artifact(&["pull", &by_digest, target.to_str().unwrap()]);
    assert_eq!(tree(out.path()), ["db/custom.ndb", "db/daily.cld"]);

    // Refusals, each with a reason and nothing written.
    let err = fails(&[
        "push",
        "clamav-db",
        &reference,
        &src.path().join("x.txt").display().to_string(),
    ]);
    assert!(err.contains("not a ClamAV database file"), "{err}");
    let missing = src.path().join("missing.hdb").display().to_string();
    let err = fails(&["push", "clamav-db", &reference, &missing]);
    assert!(err.contains("missing.hdb"), "{err}");
    let err = fails(&[
        "pull",
        &registry.image_ref("mirror/clamav", "nope"),
        out.path().join("x").to_str().unwrap(),
    ]);
    assert!(err.contains("does not exist"), "{err}");
    let err = fails(&["pull", "not a reference", "x"]);
    assert!(err.contains("reference"), "{err}");
    assert_eq!(tree(out.path()), ["db/custom.ndb", "db/daily.cld"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_not_pulled_as_artifacts() {
    let registry = Registry::anonymous();
    registry.push(&fixtures::clean_image(), "app", "1").await;
    let out = tempfile::tempdir().expect("temp dir");
    let err = fails(&[
        "pull",
        &registry.image_ref("app", "1"),
        out.path().to_str().unwrap(),
    ]);
    assert!(err.contains("container image"), "{err}");
    assert!(tree(out.path()).is_empty());
}

#[test]
fn trivy_db_round_trip() {
    let registry = Registry::anonymous();
    let reference = registry.image_ref("mirror/trivy-db", "2");
    let src = tempfile::tempdir().expect("temp dir");
    std::fs::write(src.path().join("trivy.db"), vec![7u8; 10_000]).unwrap();
    std::fs::write(
        src.path().join("metadata.json"),
        r#"{"Version":2,"UpdatedAt":"2026-12-01T00:00:00Z"}"#,
    )
    .unwrap();
    sidescan_artifact(&["push", "trivy-db", &reference, src.path().to_str().unwrap()]);
    let inspect = sidescan_artifact(&["inspect", &reference]);
    assert!(inspect.contains("Trivy vulnerability DB"), "{inspect}");
    assert!(inspect.contains("db.tar.gz"), "{inspect}");
    assert!(
        inspect.contains("version:   2026-12-01T00:00:00Z"),
        "{inspect}"
    );
    let out = tempfile::tempdir().expect("temp dir");
    sidescan_artifact(&["pull", &reference, out.path().to_str().unwrap()]);
    assert_eq!(tree(out.path()), ["metadata.json", "trivy.db"]);
    for name in ["trivy.db", "metadata.json"] {
        assert_eq!(
            std::fs::read(out.path().join(name)).unwrap(),
            std::fs::read(src.path().join(name)).unwrap()
        );
    }
    std::fs::remove_file(src.path().join("metadata.json")).unwrap();
    let err = fails(&["push", "trivy-db", &reference, src.path().to_str().unwrap()]);
    assert!(err.contains("metadata.json"), "{err}");
}

#[test]
fn plugins_install_for_the_host_platform_and_pinned_digests() {
    let registry = Registry::htpasswd();
    let reference = registry.image_ref("sidescan/plugin", "0.1.0");
    let src = tempfile::tempdir().expect("temp dir");
    let host = Platform::host().to_string();
    let other = if host == "linux/arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    std::fs::create_dir(src.path().join("host")).unwrap();
    std::fs::create_dir(src.path().join("other")).unwrap();
    let host_bin = src.path().join("host/sidescan-plugin");
    let other_bin = src.path().join("other/sidescan-plugin");
    std::fs::write(&host_bin, "#!/bin/sh\necho host\n").unwrap();
    std::fs::write(&other_bin, "#!/bin/sh\necho other\n").unwrap();
    let creds = [
        ("SIDESCAN_REGISTRY_USERNAME", DEFAULT_USER),
        ("SIDESCAN_REGISTRY_PASSWORD", DEFAULT_PASSWORD),
    ];
    let out = run(
        &[
            "push",
            "plugin",
            &reference,
            "--platform",
            &host,
            host_bin.to_str().unwrap(),
            "--platform",
            other,
            other_bin.to_str().unwrap(),
        ],
        &creds,
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let digest = stdout.trim().rsplit_once('@').unwrap().1.to_string();

    // Without credentials the registry refuses; with an auth file it answers.
    let err = fails(&["inspect", &reference]);
    assert!(err.contains("Not authorized"), "{err}");
    let auth = src.path().join("auth.json");
    let basic = base64_auth(DEFAULT_USER, DEFAULT_PASSWORD);
    std::fs::write(
        &auth,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{basic}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let authfile = auth.to_str().unwrap();
    let inspect = run(&["inspect", &reference, "--authfile", authfile], &[]);
    let inspect = String::from_utf8(inspect.stdout).unwrap();
    assert!(
        inspect.contains("sidescan plugin") && inspect.contains(&host),
        "{inspect}"
    );

    let bin = tempfile::tempdir().expect("temp dir");
    let dir = bin.path().join("bin");
    let dir_arg = dir.to_str().unwrap();
    // A pinned digest that differs: refused, nothing written.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let out = run(
        &[
            "install",
            &reference,
            dir_arg,
            "--digest",
            &wrong,
            "--authfile",
            authfile,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the pinned"),
        "{out:?}"
    );
    assert!(!dir.exists());
    let out = run(
        &[
            "install",
            &reference,
            dir_arg,
            "--digest",
            &digest,
            "--authfile",
            authfile,
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(tree(bin.path()), ["bin/sidescan-plugin"]);
    let installed = dir.join("sidescan-plugin");
    assert_eq!(
        std::fs::read_to_string(&installed).unwrap(),
        "#!/bin/sh\necho host\n"
    );
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let ran = Command::new(&installed)
        .output()
        .expect("run the installed plugin");
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "host\n");
}

fn base64_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}
