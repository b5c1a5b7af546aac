//! Registry credentials, found where skopeo, podman, oras and docker look for them.
//!
//! Precedence: explicit values (flags or `SIDESCAN_REGISTRY_*`), then an explicit auth file,
//! then the standard files in the order containers-auth.json(5) gives:
//! `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$HOME/.config/containers/auth.json`, `$DOCKER_CONFIG/config.json` (default
//! `$HOME/.docker/config.json`). The first file with an entry for the registry wins.
//!
//! In a file, an entry's key is a registry host (`host[:port]`), or a repository scope
//! (`host/namespace/repo`, the longest matching scope wins, as containers/image does), or a
//! URL (`https://host/v1/`, docker's legacy form). Entries carry `auth` (base64 of
//! `user:password`), or `username` and `password`, or `registrytoken` (a bearer token).
//! `credHelpers` and `credsStore` run `docker-credential-<helper> get` as docker does.
//!
//! Secrets never reach `Debug` output or logs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::Error;

/// How to authenticate to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    #[default]
    Anonymous,
    /// User name and password (also used for the token-service exchange).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// A bearer token sent as is.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Self::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl Credentials {
    /// The HTTP `Authorization` value a sidescan.v1 plugin takes in `Registry.authorization`
    /// (empty for anonymous).
    pub fn authorization(&self) -> String {
        match self {
            Self::Anonymous => String::new(),
            Self::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            ),
            Self::Bearer(token) => format!("Bearer {token}"),
        }
    }

    /// What `oci-client` sends.
    pub(crate) fn to_registry_auth(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match self {
            Self::Anonymous => RegistryAuth::Anonymous,
            Self::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Self::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        }
    }
}

/// Where credentials may come from; [`CredentialSources::resolve`] picks them for one registry.
#[derive(Clone, Default)]
pub struct CredentialSources {
    /// User name given explicitly (with `password`).
    pub username: Option<String>,
    /// Password given explicitly.
    pub password: Option<String>,
    /// Bearer token given explicitly.
    pub token: Option<String>,
    /// An auth file given explicitly (`--authfile`); searched before the standard ones.
    pub auth_file: Option<PathBuf>,
    /// Skip the standard auth files (tests, or when only explicit values may be used).
    pub no_standard_files: bool,
}

impl std::fmt::Debug for CredentialSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSources")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("auth_file", &self.auth_file)
            .finish()
    }
}

impl CredentialSources {
    /// The credentials for `registry` (`host[:port]`) and, when given, `repository` (for
    /// repository-scoped entries). Anonymous when no source names the registry.
    pub fn resolve(&self, registry: &str, repository: Option<&str>) -> Result<Credentials, Error> {
        match (&self.username, &self.password, &self.token) {
            (_, _, Some(token)) => return Ok(Credentials::Bearer(token.clone())),
            (Some(username), Some(password), None) => {
                return Ok(Credentials::Basic {
                    username: username.clone(),
                    password: password.clone(),
                });
            }
            (Some(_), None, None) | (None, Some(_), None) => {
                return Err(Error::Credentials(
                    "a user name needs a password and a password a user name".into(),
                ));
            }
            (None, None, None) => {}
        }
        let mut files: Vec<PathBuf> = self.auth_file.iter().cloned().collect();
        if !self.no_standard_files {
            files.extend(standard_auth_files());
        }
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::Credentials(format!("{}: {e}", file.display())));
                }
            };
            if let Some(creds) = from_auth_file(&text, &file, registry, repository)? {
                return Ok(creds);
            }
        }
        Ok(Credentials::Anonymous)
    }
}

/// The standard auth files, in the order containers-auth.json(5) and docker search them.
fn standard_auth_files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut files = Vec::new();
    files.extend(env("REGISTRY_AUTH_FILE"));
    if let Some(run) = env("XDG_RUNTIME_DIR") {
        files.push(run.join("containers/auth.json"));
    }
    let home = env("HOME");
    if let Some(home) = &home {
        files.push(home.join(".config/containers/auth.json"));
    }
    match env("DOCKER_CONFIG") {
        Some(dir) => files.push(dir.join("config.json")),
        None => files.extend(home.map(|h| h.join(".docker/config.json"))),
    }
    files
}

#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// `https://host:5000/v1/` → `host:5000`; `host/ns/repo` stays.
fn normalise_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.strip_suffix('/').unwrap_or(key);
    key.strip_suffix("/v1").unwrap_or(key)
}

/// The credentials an auth file holds for `registry` (and `repository`), if any.
fn from_auth_file(
    text: &str,
    path: &Path,
    registry: &str,
    repository: Option<&str>,
) -> Result<Option<Credentials>, Error> {
    let bad = |why: String| Error::Credentials(format!("{}: {why}", path.display()));
    let file: AuthFile = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    // Longest matching scope first: host/ns/repo, host/ns, host.
    let mut scopes = vec![registry.to_string()];
    if let Some(repo) = repository {
        let mut scope = registry.to_string();
        for part in repo.split('/') {
            scope.push('/');
            scope.push_str(part);
            scopes.push(scope.clone());
        }
    }
    scopes.reverse();
    if let Some(helper) = file.cred_helpers.get(registry) {
        return credential_helper(helper, registry).map_err(bad);
    }
    for scope in &scopes {
        let entry = file
            .auths
            .iter()
            .find(|(key, _)| normalise_key(key) == scope)
            .map(|(_, e)| e);
        if let Some(entry) = entry {
            return entry_credentials(entry).map_err(bad);
        }
    }
    match &file.creds_store {
        Some(store) => credential_helper(store, registry).map_err(bad),
        None => Ok(None),
    }
}

fn entry_credentials(entry: &AuthEntry) -> Result<Option<Credentials>, String> {
    if let Some(token) = entry.registrytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::Bearer(token.clone())));
    }
    if entry.identitytoken.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err("identity tokens (OAuth refresh tokens) are not supported; log in with a user name and password, or pass --token".into());
    }
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials::Basic {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| "an `auth` value is not base64".to_string())?;
    let decoded = String::from_utf8(decoded).map_err(|_| "an `auth` value is not UTF-8")?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or("an `auth` value is not `user:password`")?;
    Ok(Some(Credentials::Basic {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

/// Runs `docker-credential-<helper> get` with the registry on stdin, as docker does.
fn credential_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, String> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("credential helper {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .map_err(|e| format!("credential helper {program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("credential helper {program}: {e}"))?;
    if !out.status.success() {
        // docker's helpers print "credentials not found in native keychain" and exit 1.
        let said = String::from_utf8_lossy(&out.stdout).to_lowercase()
            + &String::from_utf8_lossy(&out.stderr).to_lowercase();
        if said.contains("not found") {
            return Ok(None);
        }
        return Err(format!(
            "credential helper {program} failed ({})",
            out.status
        ));
    }
    let reply: Reply = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("credential helper {program}: {e}"))?;
    if reply.username == "<token>" {
        return Err(format!(
            "credential helper {program} returned an identity token, which is not supported"
        ));
    }
    Ok(Some(Credentials::Basic {
        username: reply.username,
        password: reply.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn sources(file: &Path) -> CredentialSources {
        CredentialSources {
            auth_file: Some(file.to_path_buf()),
            no_standard_files: true,
            ..Default::default()
        }
    }

    #[test]
    fn explicit_values_win_and_half_a_pair_is_refused() {
        let s = CredentialSources {
            token: Some("t".into()),
            username: Some("u".into()),
            ..Default::default()
        };
        assert_eq!(
            s.resolve("r", None).unwrap(),
            Credentials::Bearer("t".into())
        );
        let s = CredentialSources {
            username: Some("u".into()),
            ..Default::default()
        };
        assert!(matches!(s.resolve("r", None), Err(Error::Credentials(_))));
    }

    #[test]
    fn auth_file_entries_by_host_scope_and_url() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        let text = serde_json::json!({"auths": {
            "127.0.0.1:5000": {"auth": b64("host:pw")},
            "127.0.0.1:5000/team/app": {"auth": b64("scoped:pw2")},
            "https://legacy.test/v1/": {"username": "old", "password": "p"},
            "tok.test": {"registrytoken": "abc"},
        }});
        std::fs::write(&file, text.to_string()).unwrap();
        let s = sources(&file);
        let basic = |u: &str, p: &str| Credentials::Basic {
            username: u.into(),
            password: p.into(),
        };
        assert_eq!(
            s.resolve("127.0.0.1:5000", None).unwrap(),
            basic("host", "pw")
        );
        assert_eq!(
            s.resolve("127.0.0.1:5000", Some("team/app")).unwrap(),
            basic("scoped", "pw2")
        );
        assert_eq!(
            s.resolve("127.0.0.1:5000", Some("team/other")).unwrap(),
            basic("host", "pw")
        );
        assert_eq!(s.resolve("legacy.test", None).unwrap(), basic("old", "p"));
        assert_eq!(
            s.resolve("tok.test", None).unwrap(),
            Credentials::Bearer("abc".into())
        );
        assert_eq!(
            s.resolve("elsewhere:1", None).unwrap(),
            Credentials::Anonymous
        );
    }

    #[test]
    fn broken_files_are_errors_naming_the_file_never_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        std::fs::write(&file, r#"{"auths": {"h": {"auth": "%%%secret"}}}"#).unwrap();
        let err = sources(&file).resolve("h", None).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        std::fs::write(&file, "not json").unwrap();
        assert!(sources(&file).resolve("h", None).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let s = CredentialSources {
            password: Some("hunter2".into()),
            token: Some("tok-secret".into()),
            ..Default::default()
        };
        let text = format!("{s:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("tok-secret"),
            "{text}"
        );
    }
}
