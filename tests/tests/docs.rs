//! The documentation and the deployment files say what the code does:
//!
//! - README.md's plugin example is `sdk/examples/private_keys.rs`, which is compiled;
//! - README.md documents every flag and `SIDESCAN_*` variable of `sidescan-clamav --help` and
//!   `sidescan-trivy --help` (the SDK's flags included);
//! - `deploy/zot/plugin_config.json`, read with the real loader, points at the adapter the
//!   Kubernetes manifests and the compose file run, and zot's address is the one they allow;
//! - clamd's configuration (`deploy/clamav/*.conf`, embedded in the ConfigMaps) is accepted by
//!   `clamconf` and agrees with the adapter's flags; clamd sees the adapter's socket and scratch
//!   directories at the same paths;
//! - every container is hardened and has resources; the adapters have gRPC health probes.
//!
//! The manifests are validated against the Kubernetes schemas by `scripts/test`
//! (`kubernetes-validate --strict`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sidescan_proto::client::ClientOptions;
use sidescan_proto::plugin_config::{self, PluginManager, VULN_SCANNER};
use sidescan_testkit::plugin::workspace_binary;
use sidescan_testkit::tool;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml_docs(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: invalid YAML: {e}"))
}

/// Every `*.yaml` under `deploy/kubernetes`, sorted.
fn manifests() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read deploy/kubernetes") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("deploy/kubernetes"), &mut files);
    files.sort();
    let root = root();
    files
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect()
}

/// Asserts that two texts are equal, naming the first line that differs.
fn assert_same_text(actual: &str, expected: &str, what: &str) {
    if actual == expected {
        return;
    }
    let line = actual
        .lines()
        .zip(expected.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()));
    panic!(
        "{what}, first at line {}:\n  found:    {:?}\n  expected: {:?}",
        line + 1,
        actual.lines().nth(line).unwrap_or("<end>"),
        expected.lines().nth(line).unwrap_or("<end>")
    );
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {y:?}"))
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

/// The resource of `kind` named `name` in a manifest file.
fn resource<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn container<'a>(pod: &'a Yaml, name: &str) -> &'a Yaml {
    list(&pod["containers"])
        .iter()
        .chain(list(&pod["initContainers"]))
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// An environment variable of a Kubernetes container.
fn env<'a>(c: &'a Yaml, var: &str) -> &'a str {
    list(&c["env"])
        .iter()
        .find(|e| e["name"].as_str() == Some(var))
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("container {:?} has no {var}", c["name"]))
}

/// The port number of `host:port`.
fn port_of(addr: &str) -> i64 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} has no port"))
}

/// The volume mounted at `path` in a container and whether read-only.
fn mount_at(c: &Yaml, path: &str) -> Option<(String, bool)> {
    list(&c["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(path))
        .map(|m| {
            (
                str_of(&m["name"], "volume name").to_string(),
                m["readOnly"].as_bool() == Some(true),
            )
        })
}

/// Runs `binary --help` and returns its text.
fn help(binary: &str) -> String {
    let path = workspace_binary(binary);
    let out = Command::new(&path)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("run {} --help: {e}", path.display()));
    assert!(out.status.success(), "{binary} --help failed");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// `--flags` and `SIDESCAN_*` variables named in a help text.
fn flags_and_vars(help: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = help.as_bytes();
    let word = |i: usize| {
        let end = bytes[i..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'))
            .map_or(bytes.len(), |n| i + n);
        help[i..end].to_string()
    };
    for (i, _) in help.match_indices("--") {
        let prev = i.checked_sub(1).map(|p| bytes[p]);
        if prev.is_none_or(|b| b == b' ' || b == b',' || b == b'[' || b == b'\n') {
            let flag = word(i);
            if flag.len() > 2 && flag != "--help" && flag != "--version" {
                found.insert(flag);
            }
        }
    }
    for (i, _) in help.match_indices("SIDESCAN_") {
        found.insert(word(i));
    }
    found
}

/// Whether `text` contains `token` as a whole word (not as the prefix of a longer flag).
fn mentions(text: &str, token: &str) -> bool {
    text.match_indices(token).any(|(i, _)| {
        let after = text[i + token.len()..].chars().next();
        let before = text[..i].chars().next_back();
        !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn readme_plugin_example_is_the_compiled_example() {
    let readme = read("README.md");
    let example = read("sdk/examples/private_keys.rs");
    let blocks: Vec<&str> = readme
        .split("```rust\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .collect();
    assert!(
        blocks.contains(&example.as_str()),
        "README.md has no ```rust block equal to sdk/examples/private_keys.rs: copy the file \
         into the README's \"Writing a plugin\" section"
    );
}

#[test]
fn readme_documents_every_flag_and_variable_of_both_adapters() {
    let readme = read("README.md");
    let mut missing = Vec::new();
    for binary in ["sidescan-clamav", "sidescan-trivy"] {
        let tokens = flags_and_vars(&help(binary));
        assert!(
            tokens.contains("--listen") && tokens.contains("SIDESCAN_LISTEN"),
            "{binary} --help lists no SDK flags: {tokens:?}"
        );
        for token in tokens {
            if !mentions(&readme, &token) {
                missing.push(format!("{binary}: {token}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README.md's operator guide does not document:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn deploy_env_vars_are_flags_of_the_adapters() {
    let clamav = help("sidescan-clamav");
    let trivy = help("sidescan-trivy");
    let files = [
        ("deploy/kubernetes/standalone/clamav.yaml", &clamav),
        ("deploy/kubernetes/sidecar/zot.yaml", &clamav),
        ("deploy/zot/compose.yaml", &clamav),
        ("deploy/kubernetes/standalone/trivy.yaml", &trivy),
        ("deploy/systemd/clamav.env", &clamav),
    ];
    let watch = help("sidescan-watch");
    let files = files.into_iter().chain([
        ("deploy/kubernetes/standalone/watch.yaml", &watch),
        ("deploy/kubernetes/nats/watch-workers.yaml", &watch),
    ]);
    for (file, help) in files {
        let text = read(file);
        for (i, _) in text.match_indices("SIDESCAN_") {
            let var: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // The metrics endpoint comes with its own change; checked once the binary has it.
            if var == "SIDESCAN_METRICS_LISTEN" && !help.contains("--metrics-listen") {
                continue;
            }
            assert!(
                mentions(help, &var),
                "{file} sets {var}, which the adapter does not read"
            );
        }
    }
}

/// The systemd example installs the plugin with flags `sidescan artifact install` has, and
/// starts the binary that `install` writes.
#[test]
fn systemd_unit_installs_the_plugin_with_real_flags() {
    let unit = read("deploy/systemd/sidescan-clamav.service");
    let path = workspace_binary("sidescan");
    let out = Command::new(&path)
        .args(["artifact", "install", "--help"])
        .env_clear()
        .output()
        .expect("run sidescan artifact install --help");
    assert!(
        out.status.success(),
        "sidescan artifact install --help failed"
    );
    let install_help = String::from_utf8(out.stdout).expect("utf-8 help");
    let line = unit
        .lines()
        .find(|l| l.starts_with("ExecStartPre=") && l.contains("artifact install"))
        .expect("an ExecStartPre running sidescan artifact install");
    for flag in line.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(
            install_help.contains(flag),
            "the unit passes {flag}, which sidescan artifact install does not take"
        );
    }
    let dir = line
        .split_whitespace()
        .nth(4)
        .expect("install's target directory");
    assert!(
        unit.contains(&format!("ExecStart={dir}/sidescan-clamav")),
        "ExecStart runs the binary install wrote into {dir}"
    );
}

#[test]
fn zot_plugin_config_resolves_to_the_scanner_service() {
    let path = root().join("deploy/zot/plugin_config.json");
    let configs = plugin_config::load(&path).expect("deploy/zot/plugin_config.json loads");
    assert_eq!(configs.len(), 1);
    let point = &configs[0].integration_points[0];
    assert_eq!(point.interface, VULN_SCANNER);
    assert_eq!(point.grpc_connection.url(), "http://sidescan-clamav:50051");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let manager = PluginManager::load(&path, &ClientOptions::default()).expect("plugin manager");
    let default = manager.default_impl().expect("a default VulnScanner");
    assert_eq!(default.name(), "ClamAV");
    assert_eq!(default.client().url(), "http://sidescan-clamav:50051");
    assert_eq!(default.registry_url(), Some("http://zot:8080"));

    // Kubernetes: the Service sidescan-clamav:50051 reaches the adapter's gRPC port, and zot
    // is the Service zot:8080 whose pods listen where config.json says.
    let clamav = yaml_docs("deploy/kubernetes/standalone/clamav.yaml");
    let service = resource(&clamav, "Service", "sidescan-clamav");
    let grpc = list(&service["spec"]["ports"])
        .iter()
        .find(|p| p["port"].as_i64() == Some(50051))
        .expect("Service sidescan-clamav has port 50051");
    let deployment = resource(&clamav, "Deployment", "sidescan-clamav");
    let pod = &deployment["spec"]["template"]["spec"];
    let adapter = container(pod, "sidescan-clamav");
    let target = str_of(&grpc["targetPort"], "targetPort");
    let container_port = list(&adapter["ports"])
        .iter()
        .find(|p| p["name"].as_str() == Some(target))
        .and_then(|p| p["containerPort"].as_i64())
        .expect("the Service's targetPort names an adapter port");
    assert_eq!(
        container_port,
        port_of(env(adapter, "SIDESCAN_LISTEN")),
        "the adapter listens on its grpc port"
    );
    assert_eq!(
        service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"],
        "the Service selects the Deployment's pods"
    );
    assert_eq!(
        env(adapter, "SIDESCAN_ALLOWED_REGISTRIES"),
        "zot:8080",
        "the adapter may pull from zot-addr"
    );

    let zot = yaml_docs("deploy/kubernetes/standalone/zot.yaml");
    let zot_config = resource(&zot, "ConfigMap", "zot-config");
    assert_same_text(
        str_of(
            &zot_config["data"]["plugin_config.json"],
            "plugin_config.json",
        ),
        &read("deploy/zot/plugin_config.json"),
        "standalone/zot.yaml: plugin_config.json differs from deploy/zot/plugin_config.json",
    );
    assert_same_text(
        str_of(&zot_config["data"]["config.json"], "config.json"),
        &read("deploy/zot/config.json"),
        "standalone/zot.yaml: config.json differs from deploy/zot/config.json",
    );
    let zot_service = resource(&zot, "Service", "zot");
    assert!(
        list(&zot_service["spec"]["ports"])
            .iter()
            .any(|p| p["port"].as_i64() == Some(8080))
    );
    let config: serde_json::Value = serde_json::from_str(&read("deploy/zot/config.json")).unwrap();
    assert_eq!(
        config["http"]["port"], "8080",
        "zot listens on zot-addr's port"
    );
    assert_eq!(config["extensions"]["search"]["enable"], true);

    // Compose: the same names, so the same plugin_config.json works there.
    let compose = &yaml_docs("deploy/zot/compose.yaml")[0];
    let services = &compose["services"];
    let adapter = &services["sidescan-clamav"];
    assert_eq!(
        port_of(str_of(
            &adapter["environment"]["SIDESCAN_LISTEN"],
            "SIDESCAN_LISTEN"
        )),
        50051
    );
    assert_eq!(
        str_of(
            &adapter["environment"]["SIDESCAN_ALLOWED_REGISTRIES"],
            "allowlist"
        ),
        "zot:8080"
    );
    let zot_volumes: Vec<&str> = list(&services["zot"]["volumes"])
        .iter()
        .map(|v| str_of(v, "volume"))
        .collect();
    assert!(
        zot_volumes
            .iter()
            .any(|v| v.starts_with("./plugin_config.json:"))
    );
    assert!(zot_volumes.iter().any(|v| v.starts_with("./config.json:")));
}

#[test]
fn sidecar_plugin_config_resolves_to_the_adapter_in_the_pod() {
    let docs = yaml_docs("deploy/kubernetes/sidecar/zot.yaml");
    let config = resource(&docs, "ConfigMap", "zot-config");
    assert_same_text(
        str_of(&config["data"]["config.json"], "config.json"),
        &read("deploy/zot/config.json"),
        "sidecar/zot.yaml: config.json differs from deploy/zot/config.json",
    );
    let configs = plugin_config::parse(
        str_of(&config["data"]["plugin_config.json"], "plugin_config.json"),
        Path::new("sidecar plugin_config.json"),
    )
    .expect("the sidecar plugin_config.json parses");
    let point = &configs[0].integration_points[0];
    assert_eq!(point.interface, VULN_SCANNER);
    assert_eq!(point.grpc_connection.url(), "http://127.0.0.1:50051");
    assert_eq!(point.options["zot-addr"], "http://127.0.0.1:8080");

    let pod = &resource(&docs, "Deployment", "zot")["spec"]["template"]["spec"];
    let adapter = container(pod, "sidescan-clamav");
    assert_eq!(port_of(env(adapter, "SIDESCAN_LISTEN")), 50051);
    assert_eq!(
        env(adapter, "SIDESCAN_ALLOWED_REGISTRIES"),
        "127.0.0.1:8080"
    );
    let zot = container(pod, "zot");
    assert!(
        list(&zot["ports"])
            .iter()
            .any(|p| p["containerPort"].as_i64() == Some(8080))
    );
}

/// clamd's size syntax (`100M`, `1G`, plain bytes) and the adapter's (`100MiB`) in bytes.
fn bytes(size: &str) -> u64 {
    let size = size.trim();
    let split = size
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(size.len());
    let (n, unit) = size.split_at(split);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("size {size:?}"));
    n * match unit {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "m" | "MiB" => 1 << 20,
        "G" | "g" | "GiB" => 1 << 30,
        other => panic!("unit {other:?} in {size:?}"),
    }
}

/// The value of a clamd/freshclam configuration option.
fn option<'a>(conf: &'a str, name: &str) -> &'a str {
    conf.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| {
            l.split_once(char::is_whitespace)
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.trim())
        })
        .unwrap_or_else(|| panic!("option {name} not set"))
}

#[test]
fn clamd_configuration_is_valid_and_matches_the_adapter() {
    let clamd_conf = read("deploy/clamav/clamd.conf");
    let freshclam_conf = read("deploy/clamav/freshclam.conf");

    // clamconf (clamav-daemon) parses both files and reports unknown options.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clamd.conf"), &clamd_conf).unwrap();
    std::fs::write(dir.path().join("freshclam.conf"), &freshclam_conf).unwrap();
    let clamconf = tool::require("clamconf", tool::CLAMD_HINT);
    let out = Command::new(clamconf)
        .arg("-c")
        .arg(dir.path())
        .output()
        .expect("run clamconf");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("ERROR") && !text.contains("WARNING"),
        "clamconf rejects deploy/clamav/*.conf:\n{text}"
    );

    let socket = option(&clamd_conf, "LocalSocket");
    let socket_dir = Path::new(socket).parent().unwrap().to_str().unwrap();
    let database = option(&clamd_conf, "DatabaseDirectory");
    assert_eq!(option(&freshclam_conf, "DatabaseDirectory"), database);
    let notify = option(&freshclam_conf, "NotifyClamd");
    let threads: u64 = option(&clamd_conf, "MaxThreads").parse().unwrap();
    let stream_max = bytes(option(&clamd_conf, "StreamMaxLength"));
    let max_file = bytes(option(&clamd_conf, "MaxFileSize"));
    assert_eq!(option(&clamd_conf, "AlertExceedsMax"), "yes");
    assert_eq!(option(&clamd_conf, "AlertEncrypted"), "yes");

    // Kubernetes: both ConfigMaps carry the files; in every pod clamd shares the adapter's socket
    // and scratch directories at the same paths, and the sizes agree with the adapter's flags.
    for (file, deployment) in [
        ("deploy/kubernetes/standalone", "sidescan-clamav"),
        ("deploy/kubernetes/sidecar", "zot"),
    ] {
        let config = yaml_docs(&format!("{file}/clamav-config.yaml"));
        let config = resource(&config, "ConfigMap", "sidescan-clamd-config");
        assert_same_text(
            str_of(&config["data"]["clamd.conf"], "clamd.conf"),
            &clamd_conf,
            &format!("{file}/clamav-config.yaml: clamd.conf differs from deploy/clamav/clamd.conf"),
        );
        assert_same_text(
            str_of(&config["data"]["freshclam.conf"], "freshclam.conf"),
            &freshclam_conf,
            &format!(
                "{file}/clamav-config.yaml: freshclam.conf differs from deploy/clamav/freshclam.conf"
            ),
        );
        let manifest = if deployment == "zot" {
            format!("{file}/zot.yaml")
        } else {
            format!("{file}/clamav.yaml")
        };
        let docs = yaml_docs(&manifest);
        let pod = &resource(&docs, "Deployment", deployment)["spec"]["template"]["spec"];
        let adapter = container(pod, "sidescan-clamav");
        let clamd = container(pod, "clamd");
        let freshclam = container(pod, "freshclam");
        let seed = container(pod, "seed-signatures");
        let what = |m: &str| format!("{manifest}: {m}");

        assert_eq!(
            env(adapter, "SIDESCAN_CLAMD"),
            format!("unix:{socket}"),
            "{}",
            what("the adapter dials clamd.conf's LocalSocket")
        );
        let (socket_volume, _) = mount_at(adapter, socket_dir).expect("socket dir in the adapter");
        for c in [clamd, freshclam] {
            assert_eq!(
                mount_at(c, socket_dir).map(|m| m.0).as_ref(),
                Some(&socket_volume),
                "{}",
                what("clamd and freshclam share the socket directory")
            );
        }
        let scratch = env(adapter, "SIDESCAN_SCRATCH_DIR");
        let (scratch_volume, adapter_ro) = mount_at(adapter, scratch).expect("scratch mounted");
        assert!(!adapter_ro);
        assert_eq!(
            mount_at(clamd, scratch),
            Some((scratch_volume, true)),
            "{}",
            what("clamd reads the adapter's scratch directory at the same path (for SCAN)")
        );
        assert_eq!(
            bytes(env(adapter, "SIDESCAN_STREAM_MAX_LENGTH")),
            stream_max,
            "{}",
            what("--stream-max-length = StreamMaxLength")
        );
        assert_eq!(
            bytes(env(adapter, "SIDESCAN_CLAMD_MAX_FILE_SIZE")),
            max_file,
            "{}",
            what("--clamd-max-file-size = MaxFileSize")
        );
        let connections: u64 = env(adapter, "SIDESCAN_CLAMD_CONNECTIONS").parse().unwrap();
        assert!(
            connections < threads,
            "{}",
            what("--clamd-connections below MaxThreads")
        );
        let (db_volume, _) = mount_at(clamd, database).expect("database mounted in clamd");
        assert_eq!(
            mount_at(freshclam, database).map(|m| m.0),
            Some(db_volume.clone())
        );
        assert_eq!(
            list(&seed["volumeMounts"])[0]["name"].as_str(),
            Some(db_volume.as_str()),
            "{}",
            what("the database volume is seeded")
        );
        let conf_dir = Path::new(notify).parent().unwrap().to_str().unwrap();
        assert!(
            mount_at(freshclam, conf_dir).is_some(),
            "{}",
            what("freshclam reads clamd.conf (NotifyClamd)")
        );
    }

    // Compose mounts the files themselves, at the same paths.
    let compose = &yaml_docs("deploy/zot/compose.yaml")[0];
    let services = &compose["services"];
    let volumes = |service: &str| -> Vec<String> {
        list(&services[service]["volumes"])
            .iter()
            .map(|v| str_of(v, "volume").to_string())
            .collect()
    };
    assert!(volumes("clamd").contains(&"../clamav/clamd.conf:/etc/clamav/clamd.conf:ro".into()));
    assert!(
        volumes("freshclam")
            .contains(&"../clamav/freshclam.conf:/etc/clamav/freshclam.conf:ro".into())
    );
    let adapter_env = &services["sidescan-clamav"]["environment"];
    let scratch = str_of(&adapter_env["SIDESCAN_SCRATCH_DIR"], "scratch dir");
    assert!(volumes("sidescan-clamav").contains(&format!("scratch:{scratch}")));
    assert!(volumes("clamd").contains(&format!("scratch:{scratch}:ro")));
    assert!(volumes("sidescan-clamav").contains(&format!("clamd-socket:{socket_dir}")));
    assert!(volumes("clamd").contains(&format!("clamd-socket:{socket_dir}")));
    assert_eq!(
        str_of(&adapter_env["SIDESCAN_CLAMD"], "clamd"),
        format!("unix:{socket}")
    );
    assert_eq!(
        bytes(str_of(&adapter_env["SIDESCAN_STREAM_MAX_LENGTH"], "size")),
        stream_max
    );
    assert_eq!(
        bytes(str_of(&adapter_env["SIDESCAN_CLAMD_MAX_FILE_SIZE"], "size")),
        max_file
    );
}

#[test]
fn every_container_is_hardened_and_sized_and_adapters_have_grpc_probes() {
    for file in manifests() {
        for doc in yaml_docs(&file) {
            if doc["kind"].as_str() != Some("Deployment") {
                continue;
            }
            let name = str_of(&doc["metadata"]["name"], "name");
            let pod = &doc["spec"]["template"]["spec"];
            let at = |c: &Yaml| format!("{file}: {name}/{}", c["name"].as_str().unwrap_or("?"));
            assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
            assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"].as_str(),
                Some("RuntimeDefault")
            );
            let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
            for c in list(&pod["containers"])
                .iter()
                .chain(list(&pod["initContainers"]))
            {
                let sc = &c["securityContext"];
                assert_eq!(
                    sc["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{}",
                    at(c)
                );
                assert_eq!(
                    sc["readOnlyRootFilesystem"].as_bool(),
                    Some(true),
                    "{}",
                    at(c)
                );
                assert_eq!(
                    list(&sc["capabilities"]["drop"]),
                    [Yaml::String("ALL".into())],
                    "{}",
                    at(c)
                );
                let r = &c["resources"];
                for (section, key) in [
                    ("requests", "cpu"),
                    ("requests", "memory"),
                    ("limits", "memory"),
                ] {
                    assert!(
                        r[section][key].as_str().is_some(),
                        "{}: {section}.{key}",
                        at(c)
                    );
                }
                let Some(image) = c["image"].as_str() else {
                    panic!("{}: no image", at(c))
                };
                assert!(
                    !image.ends_with(":latest") && image.contains(':'),
                    "{}: pin the image",
                    at(c)
                );
                if image.starts_with("sidescan-watch") {
                    // An HTTP service: readiness is its /healthz.
                    assert_eq!(
                        c["readinessProbe"]["httpGet"]["path"].as_str(),
                        Some("/healthz"),
                        "{}",
                        at(c)
                    );
                } else if image.starts_with("sidescan-") {
                    let grpc_port = list(&c["ports"])
                        .iter()
                        .find(|p| p["name"].as_str() == Some("grpc"))
                        .and_then(|p| p["containerPort"].as_i64())
                        .unwrap_or_else(|| panic!("{}: no grpc port", at(c)));
                    for probe in ["startupProbe", "readinessProbe"] {
                        let g = &c[probe]["grpc"];
                        assert_eq!(g["port"].as_i64(), Some(grpc_port), "{}: {probe}", at(c));
                        assert_eq!(
                            g["service"].as_str(),
                            Some(sidescan_proto::SCAN_SERVICE_NAME),
                            "{}: {probe}",
                            at(c)
                        );
                    }
                    assert_eq!(
                        c["livenessProbe"]["grpc"]["port"].as_i64(),
                        Some(grpc_port),
                        "{}",
                        at(c)
                    );
                    let drain = humantime_secs(env(c, "SIDESCAN_SHUTDOWN_GRACE"));
                    assert!(
                        grace > drain,
                        "{}: terminationGracePeriodSeconds {grace} must exceed the drain {drain}s",
                        at(c)
                    );
                }
            }
        }
    }
}

fn humantime_secs(s: &str) -> i64 {
    humantime::parse_duration(s)
        .unwrap_or_else(|e| panic!("duration {s:?}: {e}"))
        .as_secs() as i64
}

/// The manifest's view of one container: where each volume is mounted.
struct Mounts(Vec<(String, String)>);

impl Mounts {
    fn of(c: &Yaml) -> Self {
        Self(
            list(&c["volumeMounts"])
                .iter()
                .map(|m| {
                    (
                        str_of(&m["mountPath"], "mountPath").to_string(),
                        str_of(&m["name"], "volume name").to_string(),
                    )
                })
                .collect(),
        )
    }

    /// Where `path` inside the container lives on this machine: the volume mounted at its
    /// longest matching mount path, as a directory under `volumes`.
    fn host_path(&self, path: &str, volumes: &Path) -> PathBuf {
        let (mount, volume) = self
            .0
            .iter()
            .filter(|(m, _)| path == m || path.starts_with(&format!("{m}/")))
            .max_by_key(|(m, _)| m.len())
            .unwrap_or_else(|| panic!("{path} is on no volume of the container"));
        let rest = path[mount.len()..].trim_start_matches('/');
        let dir = volumes.join(volume);
        std::fs::create_dir_all(&dir).unwrap();
        if rest.is_empty() { dir } else { dir.join(rest) }
    }
}

/// A size option scaled down 100 times, in bytes (the test's files stay small).
fn scaled(size: &str) -> String {
    (bytes(size) / 100).to_string()
}

/// Whether clamd answers `PING` on `socket`.
fn clamd_pings(socket: &Path) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let mut answer = String::new();
    s.write_all(b"zPING\0").is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.starts_with("PONG")
}

/// The pod of `deploy/kubernetes/standalone/clamav.yaml` on this machine: clamd runs with the
/// deployed `clamd.conf` and the adapter with the manifest's environment, each seeing the pod's
/// volumes (directories of one temp dir) where its mounts put them. Sizes are scaled down 100
/// times on both sides; the registry is a local one. A small file reaches clamd as a descriptor
/// (`FILDES`), a file over `StreamMaxLength` as a scratch copy clamd opens by path (`SCAN`), and a
/// file over `MaxFileSize` becomes a notice.
#[tokio::test]
async fn the_deployed_clamd_and_adapter_scan_files_of_every_size() {
    use sidescan_proto::v1 as pb;
    use sidescan_testkit::clamd::{BODY_MARKER, BODY_SIGNATURE, EICAR_SIGNATURE};
    use sidescan_testkit::fixtures::{EICAR, Entry, Image, Layer};
    use sidescan_testkit::process::ChildGuard;
    use sidescan_testkit::registry::Registry;
    use std::time::{Duration, Instant};

    let docs = yaml_docs("deploy/kubernetes/standalone/clamav.yaml");
    let pod = &resource(&docs, "Deployment", "sidescan-clamav")["spec"]["template"]["spec"];
    let adapter = container(pod, "sidescan-clamav");
    let clamd_mounts = Mounts::of(container(pod, "clamd"));
    let adapter_mounts = Mounts::of(adapter);
    let root = tempfile::tempdir().unwrap();
    let volumes = root.path().join("volumes");

    // clamd.conf as deployed, its paths on the pod's volumes, its sizes scaled.
    let mut conf = String::new();
    for line in read("deploy/clamav/clamd.conf").lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let value = match key {
            "LocalSocket" | "DatabaseDirectory" | "TemporaryDirectory" => clamd_mounts
                .host_path(value, &volumes)
                .display()
                .to_string(),
            "StreamMaxLength" | "MaxFileSize" | "MaxScanSize" => scaled(value),
            _ => {
                conf.push_str(line);
                conf.push('\n');
                continue;
            }
        };
        conf.push_str(&format!("{key} {value}\n"));
    }
    let database = PathBuf::from(option(&conf, "DatabaseDirectory"));
    sidescan_testkit::clamd::write_test_signatures(&database).unwrap();
    std::fs::create_dir_all(option(&conf, "TemporaryDirectory")).unwrap();
    let socket = PathBuf::from(option(&conf, "LocalSocket"));
    std::fs::write(root.path().join("clamd.conf"), &conf).unwrap();
    let clamd_log = root.path().join("clamd.log");
    let clamd = Command::new(tool::clamd())
        .arg(format!(
            "--config-file={}",
            root.path().join("clamd.conf").display()
        ))
        .stdout(std::fs::File::create(&clamd_log).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start clamd");
    let _clamd = ChildGuard::new(clamd, "clamd (deployed clamd.conf)");
    let started = Instant::now();
    while !clamd_pings(&socket) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "clamd with the deployed clamd.conf did not come up:\n{conf}\nlog:\n{}",
            std::fs::read_to_string(&clamd_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The adapter with the manifest's environment.
    let registry = Registry::anonymous();
    let registry_host = registry.url().trim_start_matches("http://").to_string();
    let addr_file = root.path().join("addr");
    let mut cmd = Command::new(workspace_binary("sidescan-clamav"));
    cmd.env_clear();
    for e in list(&adapter["env"]) {
        let name = str_of(&e["name"], "env name");
        let value = str_of(&e["value"], "env value");
        let value = match name {
            // Loopback only, and no metrics port in a test.
            "SIDESCAN_LISTEN" => "127.0.0.1:0".to_string(),
            "SIDESCAN_METRICS_LISTEN" => continue,
            "SIDESCAN_ALLOWED_REGISTRIES" => registry_host.clone(),
            "SIDESCAN_CLAMD" => format!(
                "unix:{}",
                adapter_mounts
                    .host_path(value.trim_start_matches("unix:"), &volumes)
                    .display()
            ),
            "SIDESCAN_SCRATCH_DIR" | "SIDESCAN_CACHE_DIR" => adapter_mounts
                .host_path(value, &volumes)
                .display()
                .to_string(),
            "SIDESCAN_STREAM_MAX_LENGTH" | "SIDESCAN_CLAMD_MAX_FILE_SIZE" => scaled(value),
            _ => value.to_string(),
        };
        cmd.env(name, value);
    }
    cmd.env("SIDESCAN_ADDR_FILE", &addr_file)
        .env("SIDESCAN_HEALTH_INTERVAL", "100ms")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(root.path().join("adapter.log")).unwrap());
    let _adapter = ChildGuard::new(
        cmd.spawn().expect("start sidescan-clamav"),
        "sidescan-clamav",
    );
    let adapter_log =
        || std::fs::read_to_string(root.path().join("adapter.log")).unwrap_or_default();
    let started = Instant::now();
    let addr = loop {
        if let Ok(addr) = std::fs::read_to_string(&addr_file) {
            break addr;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the adapter did not start:\n{}",
            adapter_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let client = sidescan_proto::client::PluginClient::connect(
        &format!("http://{addr}"),
        ClientOptions::default(),
    )
    .await
    .expect("connect to the adapter");
    let started = Instant::now();
    while !matches!(
        client.health().await,
        Ok(sidescan_proto::client::ServingStatus::Serving)
    ) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the adapter never became SERVING:\n{}",
            adapter_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // One file of each size: EICAR (small), the body marker in a file over StreamMaxLength but
    // under MaxFileSize, and a file over MaxFileSize.
    let stream_max = bytes(&scaled(option(
        &read("deploy/clamav/clamd.conf"),
        "StreamMaxLength",
    )));
    let max_file = bytes(&scaled(option(
        &read("deploy/clamav/clamd.conf"),
        "MaxFileSize",
    )));
    let mut large = vec![0u8; usize::try_from(stream_max * 2).unwrap()];
    large[1000..1000 + BODY_MARKER.len()].copy_from_slice(BODY_MARKER);
    let image = Image::new()
        .layer(Layer::new([
            Entry::dir("app"),
            Entry::file("app/eicar.com", EICAR),
            Entry::file("app/large.bin", large),
            Entry::zeros("app/huge.bin", max_file + 1),
        ]))
        .build();
    registry.push(&image, "deploy/clamav", "1").await;
    let response = client
        .scan(pb::ScanRequest {
            image: "deploy/clamav:1".into(),
            registry: Some(pb::Registry {
                url: registry.url(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("scan: {e}\nadapter log:\n{}", adapter_log()));
    let report = response.report.expect("report");
    let mut found: Vec<(String, String)> = report
        .vulnerabilities
        .iter()
        .map(|f| (f.path.clone(), f.id.clone()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("/app/eicar.com".to_string(), EICAR_SIGNATURE.to_string()),
            ("/app/large.bin".to_string(), BODY_SIGNATURE.to_string()),
        ],
        "adapter log:\n{}",
        adapter_log()
    );
    let notices: Vec<&str> = report.notices.iter().map(|n| n.path.as_str()).collect();
    assert_eq!(notices, ["/app/huge.bin"], "{:?}", report.notices);

    // How each file reached clamd: a descriptor, and a path in the shared scratch volume.
    let scratch = adapter_mounts.host_path(env(adapter, "SIDESCAN_SCRATCH_DIR"), &volumes);
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(&clamd_log).unwrap_or_default();
        let by_fd = log
            .lines()
            .any(|l| l.contains("/memfd:") && l.contains(EICAR_SIGNATURE));
        let by_path = log.lines().any(|l| {
            l.contains(&scratch.canonicalize().unwrap().display().to_string())
                && l.contains(BODY_SIGNATURE)
        });
        if by_fd && by_path {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "clamd did not get EICAR by descriptor and the large file by path:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The registry configurations of deploy/ send their events where the watcher listens.
#[test]
fn registry_event_configs_point_at_the_watcher() {
    let k8s = yaml_docs("deploy/kubernetes/standalone/watch.yaml");
    let service = resource(&k8s, "Service", "sidescan-watch");
    let port = list(&service["spec"]["ports"])[0]["port"].as_i64().unwrap();
    let deployment = resource(&k8s, "Deployment", "sidescan-watch");
    let watch = container(&deployment["spec"]["template"]["spec"], "sidescan-watch");
    assert_eq!(port_of(env(watch, "SIDESCAN_WATCH_LISTEN")), port);
    let events_url = format!("http://sidescan-watch:{port}/events");

    let distribution = yaml_docs("deploy/distribution/config.yml");
    let endpoint = &list(&distribution[0]["notifications"]["endpoints"])[0];
    assert_eq!(endpoint["url"].as_str(), Some(events_url.as_str()));
    assert_eq!(
        distribution[0]["storage"]["delete"]["enabled"].as_bool(),
        Some(true)
    );

    let zot_http: serde_json::Value =
        serde_json::from_str(&read("deploy/zot/config-events-http.json")).unwrap();
    let sink = &zot_http["extensions"]["events"]["sinks"][0];
    assert_eq!(sink["type"], "http");
    assert_eq!(sink["address"], events_url.as_str());
    let zot_nats: serde_json::Value =
        serde_json::from_str(&read("deploy/zot/config-events-nats.json")).unwrap();
    let sink = &zot_nats["extensions"]["events"]["sinks"][0];
    assert_eq!(sink["type"], "nats");
    // The watcher subscribes to --nats-subject, whose default is the sink's channel here.
    let help = help("sidescan-watch");
    let subject = sink["channel"].as_str().unwrap();
    assert!(help.contains(&format!("[default: {subject}]")), "{help}");
}
