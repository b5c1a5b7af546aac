//! Loads zot-style `plugin_config.json` files (the zot plugin proposal) and builds a
//! [`PluginClient`] for every `VulnScanner` integration point.
//!
//! One file describes one plugin:
//!
//! ```json
//! {
//!     "name": "ClamAV",
//!     "integrationPoints": [
//!         {
//!             "interface": "VulnScanner",
//!             "grpcConnection": { "addr": "localhost", "port": 9100 },
//!             "options": { "zot-addr": "localhost:8080" }
//!         }
//!     ]
//! }
//! ```
//!
//! [`load`] also accepts a JSON array of such objects, or a directory whose `*.json` files (read in
//! file-name order) each hold one plugin or an array. Unknown fields are ignored.
//!
//! `grpcConnection.addr` is a host name or IP address (the plugin URL becomes
//! `http://addr:port`), a URL with a scheme (`http://host`, `https://host`; `port` is appended
//! when given), or `unix:/path/to.sock` (`port` is then not needed).
//!
//! [`PluginManager`] follows the proposal's driver model for the `VulnScanner` extension point:
//! every `VulnScanner` plugin is registered under its name, and exactly one of them is the
//! implementation called `"default"`: the plugin named `default` if there is one, otherwise the
//! first `VulnScanner` loaded. Connections are lazy, so loading does not need the plugins up.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::client::{ClientError, ClientOptions, PluginClient};

/// The `interface` name of the vulnerability-scanner extension point.
pub const VULN_SCANNER: &str = "VulnScanner";

/// The name under which the driver model dispenses its one implementation.
pub const DEFAULT_IMPLEMENTATION: &str = "default";

/// The option naming the registry's address (the proposal's `zot-addr`).
pub const ZOT_ADDR_OPTION: &str = "zot-addr";

/// One plugin as described in a configuration file.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginConfig {
    /// The plugin's name (`name`).
    pub name: String,
    /// The extension points it implements (`integrationPoints`).
    pub integration_points: Vec<IntegrationPoint>,
    /// The file it was read from.
    pub source: PathBuf,
}

/// One extension point a plugin implements.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegrationPoint {
    /// The extension point, e.g. `VulnScanner` (`interface`).
    pub interface: String,
    /// Where the plugin listens (`grpcConnection`).
    pub grpc_connection: GrpcConnection,
    /// Free-form options (`options`), e.g. `zot-addr`.
    pub options: Map<String, Value>,
}

/// Where a plugin listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcConnection {
    /// Host, IP address, URL with scheme, or `unix:/path` (`addr`).
    pub addr: String,
    /// TCP port (`port`); absent for a unix socket or a URL that carries its port.
    pub port: Option<u16>,
}

impl GrpcConnection {
    /// The plugin URL for [`PluginClient`]: `unix:/path`, `SCHEME://host:port` or
    /// `http://addr:port`.
    pub fn url(&self) -> String {
        let addr = self.addr.trim();
        if addr.starts_with("unix:") {
            return addr.to_string();
        }
        let (base, has_scheme) = match addr.find("://") {
            Some(_) => (addr.trim_end_matches('/').to_string(), true),
            None => (bracket_ipv6(addr), false),
        };
        let base = if has_scheme {
            base
        } else {
            format!("http://{base}")
        };
        match self.port {
            Some(port) => format!("{base}:{port}"),
            None => base,
        }
    }
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn config_err(path: &Path, message: impl Into<String>) -> ClientError {
    ClientError::Config {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads plugin configurations from a file (one plugin object or an array of them) or from a
/// directory of `*.json` files, in file-name order.
pub fn load(path: &Path) -> Result<Vec<PluginConfig>, ClientError> {
    let meta = std::fs::metadata(path).map_err(|e| config_err(path, e.to_string()))?;
    if !meta.is_dir() {
        let text = std::fs::read_to_string(path).map_err(|e| config_err(path, e.to_string()))?;
        return parse(&text, path);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| config_err(path, e.to_string()))? {
        let entry = entry.map_err(|e| config_err(path, e.to_string()))?;
        let file = entry.path();
        if file.extension().is_some_and(|ext| ext == "json") && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    let mut configs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| config_err(&file, e.to_string()))?;
        configs.extend(parse(&text, &file)?);
    }
    Ok(configs)
}

/// Parses the text of one configuration file (one plugin object or an array of them); `source`
/// names the file in errors.
pub fn parse(text: &str, source: &Path) -> Result<Vec<PluginConfig>, ClientError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| config_err(source, format!("invalid JSON: {e}")))?;
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_plugin(item, &format!("[{i}]"), source))
            .collect(),
        Value::Object(_) => Ok(vec![parse_plugin(&value, "", source)?]),
        other => Err(config_err(
            source,
            format!(
                "expected a plugin object or an array of them, found {}",
                kind(&other)
            ),
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn at(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else if field.starts_with('[') {
        format!("{path}{field}")
    } else {
        format!("{path}.{field}")
    }
}

fn object<'a>(
    value: &'a Value,
    path: &str,
    source: &Path,
) -> Result<&'a Map<String, Value>, ClientError> {
    value.as_object().ok_or_else(|| {
        let place = if path.is_empty() { "top level" } else { path };
        config_err(
            source,
            format!("{place}: expected an object, found {}", kind(value)),
        )
    })
}

fn required<'a>(
    map: &'a Map<String, Value>,
    field: &str,
    path: &str,
    source: &Path,
) -> Result<&'a Value, ClientError> {
    map.get(field)
        .filter(|v| !v.is_null())
        .ok_or_else(|| config_err(source, format!("{}: missing", at(path, field))))
}

fn non_empty_string(value: &Value, path: &str, source: &Path) -> Result<String, ClientError> {
    match value.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(_) => Err(config_err(source, format!("{path}: must not be empty"))),
        None => Err(config_err(
            source,
            format!("{path}: expected a string, found {}", kind(value)),
        )),
    }
}

fn parse_plugin(value: &Value, path: &str, source: &Path) -> Result<PluginConfig, ClientError> {
    let map = object(value, path, source)?;
    let name = non_empty_string(
        required(map, "name", path, source)?,
        &at(path, "name"),
        source,
    )?;
    let points_path = at(path, "integrationPoints");
    let points = required(map, "integrationPoints", path, source)?
        .as_array()
        .ok_or_else(|| config_err(source, format!("{points_path}: expected an array")))?;
    let integration_points = points
        .iter()
        .enumerate()
        .map(|(i, point)| parse_point(point, &format!("{points_path}[{i}]"), source))
        .collect::<Result<_, _>>()?;
    Ok(PluginConfig {
        name,
        integration_points,
        source: source.to_path_buf(),
    })
}

fn parse_point(value: &Value, path: &str, source: &Path) -> Result<IntegrationPoint, ClientError> {
    let map = object(value, path, source)?;
    let interface = non_empty_string(
        required(map, "interface", path, source)?,
        &at(path, "interface"),
        source,
    )?;
    let conn_path = at(path, "grpcConnection");
    let conn = object(
        required(map, "grpcConnection", path, source)?,
        &conn_path,
        source,
    )?;
    let addr = non_empty_string(
        required(conn, "addr", &conn_path, source)?,
        &at(&conn_path, "addr"),
        source,
    )?;
    let port_path = at(&conn_path, "port");
    let port = match conn.get("port").filter(|v| !v.is_null()) {
        None => None,
        Some(v) => Some(parse_port(v, &port_path, source)?),
    };
    let is_unix = addr.starts_with("unix:");
    let has_scheme = addr.contains("://");
    if port.is_none() && !is_unix && !has_scheme {
        return Err(config_err(source, format!("{port_path}: missing")));
    }
    if let Some(rest) = addr.split_once("://").map(|(_, rest)| rest)
        && port.is_some()
        && rest
            .trim_end_matches('/')
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        return Err(config_err(
            source,
            format!("{conn_path}: the port is given both in \"addr\" and in \"port\""),
        ));
    }
    let options = match map.get("options") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(options)) => options.clone(),
        Some(other) => {
            return Err(config_err(
                source,
                format!(
                    "{}: expected an object, found {}",
                    at(path, "options"),
                    kind(other)
                ),
            ));
        }
    };
    Ok(IntegrationPoint {
        interface,
        grpc_connection: GrpcConnection { addr, port },
        options,
    })
}

fn parse_port(value: &Value, path: &str, source: &Path) -> Result<u16, ClientError> {
    let port = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match port {
        Some(p @ 1..=65535) => Ok(p as u16),
        _ => Err(config_err(
            source,
            format!("{path}: expected a port number 1-65535, found {value}"),
        )),
    }
}

/// A registered `VulnScanner` implementation: the proposal's RPC client adapter.
#[derive(Clone, Debug)]
pub struct VulnScannerPlugin {
    name: String,
    client: PluginClient,
    options: Map<String, Value>,
    source: PathBuf,
}

impl VulnScannerPlugin {
    /// The plugin's name from its configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The (lazily connected) client.
    pub fn client(&self) -> &PluginClient {
        &self.client
    }

    /// The integration point's `options`.
    pub fn options(&self) -> &Map<String, Value> {
        &self.options
    }

    /// A string option, if present and a string.
    pub fn option_str(&self, key: &str) -> Option<&str> {
        self.options.get(key).and_then(Value::as_str)
    }

    /// The `zot-addr` option as given (e.g. `localhost:8080` or `http://zot:5000`): the registry
    /// URL callers should put in `ScanRequest.registry.url` by default. The API reads a bare
    /// `host:port` as https; callers set `Registry.insecure` for a plain-http registry.
    pub fn registry_url(&self) -> Option<&str> {
        self.option_str(ZOT_ADDR_OPTION)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// The configuration file this plugin came from.
    pub fn source(&self) -> &Path {
        &self.source
    }
}

/// The `VulnScanner` implementations manager: every `VulnScanner` plugin by name, one of them
/// dispensed as `"default"`.
#[derive(Clone, Debug, Default)]
pub struct PluginManager {
    scanners: Vec<VulnScannerPlugin>,
    default_index: Option<usize>,
}

impl PluginManager {
    /// Loads configurations from `path` (see [`load`]) and builds lazy clients for every
    /// `VulnScanner` integration point with `options`. Must be called inside a Tokio runtime.
    pub fn load(path: &Path, options: &ClientOptions) -> Result<Self, ClientError> {
        Self::from_configs(&load(path)?, options)
    }

    /// Builds lazy clients for every `VulnScanner` integration point of `configs`; other
    /// interfaces are ignored. Two `VulnScanner` registrations under one name are an error. Must
    /// be called inside a Tokio runtime.
    pub fn from_configs(
        configs: &[PluginConfig],
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let mut scanners: Vec<VulnScannerPlugin> = Vec::new();
        for config in configs {
            for point in config
                .integration_points
                .iter()
                .filter(|p| p.interface == VULN_SCANNER)
            {
                if let Some(existing) = scanners.iter().find(|s| s.name == config.name) {
                    return Err(config_err(
                        &config.source,
                        format!(
                            "{VULN_SCANNER} plugin {:?} is registered twice (first in {})",
                            config.name,
                            existing.source.display()
                        ),
                    ));
                }
                let url = point.grpc_connection.url();
                let client =
                    PluginClient::connect_lazy(&url, options.clone()).map_err(|e| match e {
                        ClientError::NoRuntime => e,
                        other => {
                            config_err(&config.source, format!("plugin {:?}: {other}", config.name))
                        }
                    })?;
                scanners.push(VulnScannerPlugin {
                    name: config.name.clone(),
                    client,
                    options: point.options.clone(),
                    source: config.source.clone(),
                });
            }
        }
        let default_index = scanners
            .iter()
            .position(|s| s.name == DEFAULT_IMPLEMENTATION)
            .or(if scanners.is_empty() { None } else { Some(0) });
        Ok(PluginManager {
            scanners,
            default_index,
        })
    }

    /// The implementation registered under `name`; `"default"` dispenses the default one.
    pub fn get_impl(&self, name: &str) -> Option<&VulnScannerPlugin> {
        if name == DEFAULT_IMPLEMENTATION {
            return self.default_impl();
        }
        self.scanners.iter().find(|s| s.name == name)
    }

    /// The implementation called `"default"`: the plugin named `default`, else the first
    /// `VulnScanner` loaded; `None` when no `VulnScanner` was configured.
    pub fn default_impl(&self) -> Option<&VulnScannerPlugin> {
        self.default_index.and_then(|i| self.scanners.get(i))
    }

    /// Every registered implementation, in load order.
    pub fn all_plugins(&self) -> &[VulnScannerPlugin] {
        &self.scanners
    }

    /// True when no `VulnScanner` was configured.
    pub fn is_empty(&self) -> bool {
        self.scanners.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_from_connections() {
        let c = |addr: &str, port: Option<u16>| {
            GrpcConnection {
                addr: addr.into(),
                port,
            }
            .url()
        };
        assert_eq!(c("localhost", Some(9100)), "http://localhost:9100");
        assert_eq!(c("::1", Some(9100)), "http://[::1]:9100");
        assert_eq!(c("https://scan.local", Some(443)), "https://scan.local:443");
        assert_eq!(c("http://scan.local:9100/", None), "http://scan.local:9100");
        assert_eq!(c("unix:/run/x.sock", None), "unix:/run/x.sock");
    }
}
