//! The zot-style `plugin_config.json` loader and the `VulnScanner` driver model.

use std::path::Path;

use sidescan_proto::{
    client::{ClientError, ClientOptions},
    plugin_config::{self, GrpcConnection, PluginManager, VULN_SCANNER},
};

/// The JSON of the zot plugin proposal (seed 000), exactly.
const SEED: &str = r#"{
    "name": "ClamAV",
    "integrationPoints": [
        {
            "interface": "VulnScanner",
            "grpcConnection": {
                "addr": "localhost",
                "port": 9100
            },
            "options": {
                "zot-addr": "localhost:8080"
            }
        }
    ]
}"#;

fn plugin(name: &str, interface: &str, port: u16) -> String {
    format!(
        r#"{{"name": "{name}", "integrationPoints": [{{"interface": "{interface}",
            "grpcConnection": {{"addr": "127.0.0.1", "port": {port}}}}}]}}"#
    )
}

fn config_error(result: Result<impl std::fmt::Debug, ClientError>) -> String {
    match result {
        Err(err @ ClientError::Config { .. }) => err.to_string(),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn parses_the_seed_json() {
    let configs = plugin_config::parse(SEED, Path::new("plugin_config.json")).expect("seed parses");
    assert_eq!(configs.len(), 1);
    let config = &configs[0];
    assert_eq!(config.name, "ClamAV");
    assert_eq!(config.source, Path::new("plugin_config.json"));
    let point = &config.integration_points[0];
    assert_eq!(point.interface, VULN_SCANNER);
    assert_eq!(
        point.grpc_connection,
        GrpcConnection {
            addr: "localhost".into(),
            port: Some(9100)
        }
    );
    assert_eq!(point.grpc_connection.url(), "http://localhost:9100");
    assert_eq!(point.options["zot-addr"], "localhost:8080");
}

#[tokio::test]
async fn seed_plugin_becomes_the_default_vuln_scanner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plugin_config.json");
    std::fs::write(&file, SEED).expect("write");
    // Nothing listens on 9100: loading must not need the plugin up.
    let manager = PluginManager::load(&file, &ClientOptions::default()).expect("load");
    let default = manager.default_impl().expect("a default");
    assert_eq!(default.name(), "ClamAV");
    assert_eq!(default.client().url(), "http://localhost:9100");
    assert_eq!(default.registry_url(), Some("localhost:8080"));
    assert_eq!(default.source(), file);
    assert_eq!(
        manager.get_impl("default").map(|p| p.name()),
        Some("ClamAV")
    );
    assert_eq!(manager.get_impl("ClamAV").map(|p| p.name()), Some("ClamAV"));
    assert!(manager.get_impl("Trivy").is_none());
}

#[test]
fn unknown_fields_are_ignored() {
    let text = r#"{"name": "X", "future": true, "integrationPoints": [
        {"interface": "VulnScanner", "grpcConnection": {"addr": "h", "port": "9100", "tls": {}},
         "weight": 3}]}"#;
    let configs = plugin_config::parse(text, Path::new("x.json")).expect("parses");
    assert_eq!(
        configs[0].integration_points[0].grpc_connection.port,
        Some(9100)
    );
    assert!(configs[0].integration_points[0].options.is_empty());
}

#[tokio::test]
async fn array_form_and_default_selection() {
    let text = format!(
        "[{}, {}, {}]",
        plugin("Auth", "Authenticator", 9000),
        plugin("Trivy", VULN_SCANNER, 9101),
        plugin("ClamAV", VULN_SCANNER, 9100)
    );
    let configs = plugin_config::parse(&text, Path::new("all.json")).expect("array parses");
    assert_eq!(configs.len(), 3);
    let manager = PluginManager::from_configs(&configs, &ClientOptions::default()).expect("build");
    // Non-VulnScanner interfaces are ignored; the first VulnScanner loaded is the default.
    let names: Vec<_> = manager.all_plugins().iter().map(|p| p.name()).collect();
    assert_eq!(names, ["Trivy", "ClamAV"]);
    assert_eq!(manager.default_impl().map(|p| p.name()), Some("Trivy"));
    assert!(manager.get_impl("Auth").is_none());
    assert_eq!(manager.default_impl().and_then(|p| p.registry_url()), None);

    // A plugin named "default" is the default wherever it comes.
    let text = format!(
        "[{}, {}]",
        plugin("Trivy", VULN_SCANNER, 9101),
        plugin("default", VULN_SCANNER, 9102)
    );
    let configs = plugin_config::parse(&text, Path::new("all.json")).expect("parses");
    let manager = PluginManager::from_configs(&configs, &ClientOptions::default()).expect("build");
    let default = manager.default_impl().expect("default");
    assert_eq!(default.name(), "default");
    assert_eq!(default.client().url(), "http://127.0.0.1:9102");
}

#[tokio::test]
async fn directory_form_reads_json_files_in_name_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("20-clamav.json"),
        plugin("ClamAV", VULN_SCANNER, 9100),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("10-more.json"),
        format!(
            "[{}, {}]",
            plugin("Trivy", VULN_SCANNER, 9101),
            plugin("Auth", "Authenticator", 9000)
        ),
    )
    .expect("write");
    std::fs::write(dir.path().join("README.md"), "not json").expect("write");
    std::fs::create_dir(dir.path().join("sub.json")).expect("mkdir");

    let configs = plugin_config::load(dir.path()).expect("dir loads");
    let names: Vec<_> = configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Trivy", "Auth", "ClamAV"]);
    assert_eq!(configs[0].source, dir.path().join("10-more.json"));

    let manager = PluginManager::load(dir.path(), &ClientOptions::default()).expect("manager");
    assert_eq!(manager.default_impl().map(|p| p.name()), Some("Trivy"));
    assert_eq!(manager.all_plugins().len(), 2);

    let empty = tempfile::tempdir().expect("tempdir");
    let manager = PluginManager::load(empty.path(), &ClientOptions::default()).expect("empty");
    assert!(manager.is_empty());
    assert!(manager.default_impl().is_none());
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let file = Path::new("/etc/zot/plugin_config.json");
    let cases = [
        ("{", "invalid JSON"),
        ("42", "expected a plugin object or an array"),
        (r#"{"integrationPoints": []}"#, "name: missing"),
        (
            r#"{"name": "", "integrationPoints": []}"#,
            "name: must not be empty",
        ),
        (r#"{"name": "X"}"#, "integrationPoints: missing"),
        (
            r#"{"name": "X", "integrationPoints": {}}"#,
            "integrationPoints: expected an array",
        ),
        (
            r#"{"name": "X", "integrationPoints": [{"grpcConnection": {"addr": "h", "port": 1}}]}"#,
            "integrationPoints[0].interface: missing",
        ),
        (
            r#"{"name": "X", "integrationPoints": [{"interface": "VulnScanner"}]}"#,
            "integrationPoints[0].grpcConnection: missing",
        ),
        (
            r#"{"name": "X", "integrationPoints": [{"interface": "VulnScanner", "grpcConnection": {"port": 1}}]}"#,
            "integrationPoints[0].grpcConnection.addr: missing",
        ),
        (
            r#"{"name": "X", "integrationPoints": [{"interface": "VulnScanner", "grpcConnection": {"addr": "h"}}]}"#,
            "integrationPoints[0].grpcConnection.port: missing",
        ),
        (
            r#"{"name": "X", "integrationPoints": [{"interface": "VulnScanner", "grpcConnection": {"addr": "h", "port": 70000}}]}"#,
            "integrationPoints[0].grpcConnection.port: expected a port number 1-65535",
        ),
        (
            r#"{"name": "X", "integrationPoints": [{"interface": "VulnScanner", "grpcConnection": {"addr": "h", "port": 1}, "options": []}]}"#,
            "integrationPoints[0].options: expected an object",
        ),
        (
            r#"[{"name": "X", "integrationPoints": []}, 3]"#,
            "[1]: expected an object",
        ),
    ];
    for (text, expected) in cases {
        let message = config_error(plugin_config::parse(text, file));
        assert!(
            message.starts_with("plugin config /etc/zot/plugin_config.json: "),
            "{message}"
        );
        assert!(message.contains(expected), "{text}: {message}");
    }

    let message = config_error(plugin_config::load(Path::new(
        "/nonexistent/plugin_config.json",
    )));
    assert!(
        message.contains("/nonexistent/plugin_config.json"),
        "{message}"
    );
}

#[tokio::test]
async fn duplicate_names_and_bad_addresses_are_errors() {
    let text = format!(
        "[{}, {}]",
        plugin("ClamAV", VULN_SCANNER, 9100),
        plugin("ClamAV", VULN_SCANNER, 9101)
    );
    let configs = plugin_config::parse(&text, Path::new("dup.json")).expect("parses");
    let message = config_error(PluginManager::from_configs(
        &configs,
        &ClientOptions::default(),
    ));
    assert!(message.contains("registered twice"), "{message}");

    let text = r#"{"name": "X", "integrationPoints": [{"interface": "VulnScanner",
        "grpcConnection": {"addr": "ftp://h", "port": 1}}]}"#;
    let configs = plugin_config::parse(text, Path::new("bad.json")).expect("parses");
    let message = config_error(PluginManager::from_configs(
        &configs,
        &ClientOptions::default(),
    ));
    assert!(
        message.contains("bad.json") && message.contains("scheme"),
        "{message}"
    );
}

#[tokio::test]
async fn unix_socket_and_url_addresses() {
    let text = r#"[
        {"name": "Local", "integrationPoints": [{"interface": "VulnScanner",
            "grpcConnection": {"addr": "unix:/run/sidescan/clamav.sock"}}]},
        {"name": "Remote", "integrationPoints": [{"interface": "VulnScanner",
            "grpcConnection": {"addr": "http://scanner.internal", "port": 9100}}]}
    ]"#;
    let configs = plugin_config::parse(text, Path::new("x.json")).expect("parses");
    let manager = PluginManager::from_configs(&configs, &ClientOptions::default()).expect("build");
    let urls: Vec<_> = manager
        .all_plugins()
        .iter()
        .map(|p| p.client().url())
        .collect();
    assert_eq!(
        urls,
        [
            "unix:/run/sidescan/clamav.sock",
            "http://scanner.internal:9100"
        ]
    );
}

#[test]
fn manager_outside_a_runtime_is_an_error() {
    let configs = plugin_config::parse(SEED, Path::new("seed.json")).expect("parses");
    assert!(matches!(
        PluginManager::from_configs(&configs, &ClientOptions::default()),
        Err(ClientError::NoRuntime)
    ));
}
