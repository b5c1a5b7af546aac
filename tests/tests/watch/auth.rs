//! A registry that wants credentials: the watcher reads them from an auth.json (as skopeo and
//! podman do), pulls through the plugin with them, pushes its reports with them, and never logs
//! them.

use std::time::Duration;

use base64::Engine as _;
use sidescan_oci::{Credentials, Registry as OciRegistry};
use sidescan_testkit::process::free_port;
use sidescan_testkit::registry::{Auth, Registry};

use crate::support::{marked_image, skopeo_push, start_watch, test_plugin, wait_for_report};

#[tokio::test]
async fn credentials_from_an_auth_file_reach_the_registry_and_never_the_log() {
    let plugin = test_plugin("e1").await;
    let port = free_port();
    let registry = Registry::start_notifying(
        Auth::htpasswd(),
        Some(&format!("http://127.0.0.1:{port}/events")),
    );
    let (user, password) = registry.credentials().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth_file = dir.path().join("auth.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        &auth_file,
        serde_json::json!({"auths": {registry.host(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let watch = start_watch(
        &format!("127.0.0.1:{port}"),
        &registry.url(),
        &[&plugin],
        &["--authfile", auth_file.to_str().unwrap()],
    );
    watch.wait_ready(Duration::from_secs(20)).await;

    let digest = skopeo_push(&registry, &marked_image("auth"), "private/app", "1");
    let oci = OciRegistry::new(
        &registry.url(),
        Credentials::Basic {
            username: user.into(),
            password: password.into(),
        },
        false,
    )
    .unwrap();
    let found = wait_for_report(
        &oci,
        "private/app",
        &digest,
        "sidescan-test-plugin",
        None,
        Duration::from_secs(30),
        || watch.logs(),
    )
    .await;
    assert_eq!(found.summary["high"], 1);
    let logs = watch.logs();
    assert!(
        !logs.contains(password),
        "the password is in the log:\n{logs}"
    );
    assert!(!logs.contains(&auth), "the auth value is in the log");
}
