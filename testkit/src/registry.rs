//! A real registry process (CNCF distribution, `docker-registry`) on 127.0.0.1, with
//! anonymous, htpasswd or bearer-token auth, and the in-process [`TokenServer`].

use crate::client::RegistryClient;
use crate::oci::Artifact;
use crate::process::{ChildGuard, free_port, http_status};
use crate::server::{BoxFut, HttpServer, response};
use crate::tool;
use base64::Engine as _;
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default user for [`Auth::htpasswd`] and [`Auth::token`].
pub const DEFAULT_USER: &str = "sidescan";
/// Default password for [`Auth::htpasswd`] and [`Auth::token`].
pub const DEFAULT_PASSWORD: &str = "s3cret-Pa55";
/// `service` of the token-auth registry (the `aud` of its tokens).
pub const TOKEN_SERVICE: &str = "sidescan-test-registry";
/// `issuer` of the token-auth registry (the `iss` of its tokens).
pub const TOKEN_ISSUER: &str = "sidescan-test-token-issuer";

/// How a [`Registry`] authenticates clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No auth: everything allowed.
    Anonymous,
    /// HTTP Basic against an htpasswd (bcrypt) file.
    Htpasswd {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Bearer tokens (RS256 JWTs) from an in-process [`TokenServer`], which accepts
    /// these Basic credentials.
    Token {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

impl Auth {
    /// `Htpasswd` with [`DEFAULT_USER`] / [`DEFAULT_PASSWORD`].
    pub fn htpasswd() -> Self {
        Auth::Htpasswd {
            user: DEFAULT_USER.into(),
            password: DEFAULT_PASSWORD.into(),
        }
    }

    /// `Token` with [`DEFAULT_USER`] / [`DEFAULT_PASSWORD`].
    pub fn token() -> Self {
        Auth::Token {
            user: DEFAULT_USER.into(),
            password: DEFAULT_PASSWORD.into(),
        }
    }

    /// `(user, password)` unless anonymous.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            Auth::Anonymous => None,
            Auth::Htpasswd { user, password } | Auth::Token { user, password } => {
                Some((user, password))
            }
        }
    }
}

/// `Basic base64(user:password)`.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A running `docker-registry` on 127.0.0.1 with config and storage in a temp dir.
/// Stopped by PID (SIGTERM, then SIGKILL) and its temp dir removed on drop.
pub struct Registry {
    // Field order is drop order: process first, then token server, then the directory.
    child: ChildGuard,
    token_server: Option<TokenServer>,
    addr: SocketAddr,
    auth: Auth,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("addr", &self.addr)
            .field("auth", &self.auth)
            .field("pid", &self.child.pid())
            .finish()
    }
}

impl Registry {
    /// Starts a registry with `auth`, waits until `GET /v2/` answers (200, or 401 for
    /// auth modes), retrying on a new port if the chosen one was taken. Panics (with the
    /// registry's log) if it cannot start, or if `docker-registry` is not installed.
    /// Manifests may name foreign layers with `http(s)://` URLs.
    pub fn start(auth: Auth) -> Self {
        Self::start_notifying(auth, None)
    }

    /// An anonymous registry that sends CNCF distribution notifications (every push and pull)
    /// to `url`, retrying each second while `url` does not answer.
    pub fn with_notifications(url: &str) -> Self {
        Self::start_notifying(Auth::Anonymous, Some(url))
    }

    /// A registry with `auth` that sends notifications to `notify`, when given (see
    /// [`Registry::with_notifications`]).
    pub fn start_notifying(auth: Auth, notify: Option<&str>) -> Self {
        let bin = tool::docker_registry();
        let dir = tempfile::Builder::new()
            .prefix("sidescan-registry-")
            .tempdir()
            .expect("temp dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        let log_path = dir.path().join("registry.log");

        let mut token_server = None;
        let auth_yaml = match &auth {
            Auth::Anonymous => String::new(),
            Auth::Htpasswd { user, password } => {
                let path = dir.path().join("htpasswd");
                write_htpasswd(&path, user, password);
                format!(
                    "auth:\n  htpasswd:\n    realm: sidescan\n    path: {}\n",
                    path.display()
                )
            }
            Auth::Token { user, password } => {
                let ts = TokenServer::start(user, password);
                let bundle = dir.path().join("token-root.pem");
                std::fs::write(&bundle, ts.root_cert_pem()).expect("write cert bundle");
                let yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    ts.realm(),
                    bundle.display()
                );
                token_server = Some(ts);
                yaml
            }
        };

        let notify_yaml = notify
            .map(|url| {
                format!(
                    "notifications:\n  endpoints:\n    - name: sidescan-watch\n      url: {url}\n      timeout: 5s\n      threshold: 3\n      backoff: 1s\n"
                )
            })
            .unwrap_or_default();
        let mut last_log = String::new();
        for attempt in 0..6 {
            let port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {addr}\n  secret: sidescan-test-secret\n\
                 validation:\n  manifests:\n    urls:\n      allow:\n        - ^https?://\n\
                 {auth_yaml}{notify_yaml}",
                storage = storage.display(),
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("write config");
            let log = std::fs::File::create(&log_path).expect("log file");
            let mut cmd = Command::new(&bin);
            cmd.arg("serve")
                .arg(&config_path)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(k);
                }
            }
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut child = ChildGuard::new(child, format!("docker-registry {addr}"));
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if child.try_wait().is_some() {
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if last_log.contains("address already in use") {
                        break; // port race: try another port
                    }
                    panic!("docker-registry exited at start (attempt {attempt}); log:\n{last_log}");
                }
                match http_status(addr, "/v2/", Duration::from_millis(500)) {
                    Ok(200) | Ok(401) => {
                        return Self {
                            child,
                            token_server,
                            addr,
                            auth,
                            log_path,
                            dir,
                        };
                    }
                    Ok(code) => panic!("docker-registry GET /v2/ answered {code}"),
                    Err(_) if Instant::now() > deadline => {
                        last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                        panic!("docker-registry not ready on {addr} after 20 s; log:\n{last_log}");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(30)),
                }
            }
        }
        panic!(
            "docker-registry could not bind a free port after 6 attempts; last log:\n{last_log}"
        );
    }

    /// [`Registry::start`] with [`Auth::Anonymous`].
    pub fn anonymous() -> Self {
        Self::start(Auth::Anonymous)
    }

    /// [`Registry::start`] with [`Auth::htpasswd`].
    pub fn htpasswd() -> Self {
        Self::start(Auth::htpasswd())
    }

    /// [`Registry::start`] with [`Auth::token`].
    pub fn token() -> Self {
        Self::start(Auth::token())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The auth mode.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// `(user, password)` unless anonymous.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.credentials()
    }

    /// An HTTP `Authorization` value for this registry's credentials: `Basic ...`
    /// (for token mode too: a client exchanges it at the token realm). `None` when
    /// anonymous.
    pub fn authorization(&self) -> Option<String> {
        self.credentials().map(|(u, p)| basic_authorization(u, p))
    }

    /// `Bearer <jwt>` granting `actions` (e.g. `["pull"]`) on `repository`, minted
    /// directly by the token server (token mode only; panics otherwise).
    pub fn bearer_authorization(&self, repository: &str, actions: &[&str]) -> String {
        let ts = self.token_server().expect("bearer tokens need Auth::Token");
        let user = self.credentials().map(|c| c.0).unwrap_or(DEFAULT_USER);
        format!(
            "Bearer {}",
            ts.mint(user, &[("repository", repository, actions)])
        )
    }

    /// The token server (token mode only).
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// `127.0.0.1:PORT/repo:tag`: a full image reference for a scan request.
    pub fn image_ref(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr)
    }

    /// A `docker://` reference for skopeo: `docker://127.0.0.1:PORT/repo:tag`.
    pub fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}/{repo}:{tag}", self.addr)
    }

    /// `--creds user:password` for skopeo, or nothing when anonymous.
    pub fn skopeo_creds_args(&self) -> Vec<String> {
        self.credentials()
            .map(|(u, p)| vec!["--creds".to_owned(), format!("{u}:{p}")])
            .unwrap_or_default()
    }

    /// The registry's temp dir (config, log, storage).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// PID of the registry process.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// A push/pull client with this registry's credentials.
    pub fn client(&self) -> RegistryClient {
        RegistryClient::new(&self.url(), self.credentials())
    }

    /// Pushes `artifact` as `repo:tag`; returns the manifest digest. Panics on error.
    pub async fn push(&self, artifact: &Artifact, repo: &str, tag: &str) -> String {
        self.client()
            .push(artifact, repo, tag)
            .await
            .unwrap_or_else(|e| panic!("push {repo}:{tag} to {}: {e}", self.host()))
    }

    /// Stops the registry now (SIGTERM, then SIGKILL); the temp dir stays until drop.
    pub fn stop(&mut self) {
        self.child.stop();
    }
}

fn write_htpasswd(path: &Path, user: &str, password: &str) {
    let out = Command::new(tool::htpasswd())
        .args(["-Bbn", user, password])
        .output()
        .expect("run htpasswd");
    assert!(
        out.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(path, out.stdout).expect("write htpasswd");
}

struct SigningMaterial {
    key: rcgen::KeyPair,
    cert_pem: String,
    kid: String,
}

/// One RSA key per test process (RSA generation is the slow part).
fn signing_material() -> &'static SigningMaterial {
    static M: OnceLock<SigningMaterial> = OnceLock::new();
    M.get_or_init(|| {
        use rcgen::PublicKeyData as _;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let mut params = rcgen::CertificateParams::new(vec!["sidescan-token-issuer".to_owned()])
            .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sidescan test token issuer");
        let cert = params.self_signed(&key).expect("self-signed cert");
        let kid = libtrust_key_id(&key.subject_public_key_info());
        SigningMaterial {
            cert_pem: cert.pem(),
            key,
            kid,
        }
    })
}

/// The libtrust key id distribution uses to find a token's signing key among the
/// `rootcertbundle` certificates: sha256 of the DER SubjectPublicKeyInfo, first 240
/// bits, base32, in 12 colon-separated groups of 4.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let h = Sha256::digest(spki_der);
    let bytes = &h[..30];
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    // 30 bytes = 240 bits = exactly 48 base32 chars, no padding.
    out.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An in-process Docker token server (the `realm` of a token-auth registry).
///
/// `GET /token?service=..&scope=repository:NAME:pull,push` with the right
/// `Authorization: Basic` answers `{"token": JWT, "access_token": JWT, "expires_in": 3600}`;
/// the JWT is RS256-signed with a key whose self-signed certificate is the registry's
/// `rootcertbundle`, and grants every requested scope. Wrong or missing credentials:
/// 401. Stops on drop.
pub struct TokenServer {
    server: HttpServer,
    requests: Arc<AtomicU64>,
    last_scopes: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    /// Starts a token server accepting `user` / `password`.
    pub fn start(user: &str, password: &str) -> Self {
        let expected = basic_authorization(user, password);
        let requests = Arc::new(AtomicU64::new(0));
        let last_scopes = Arc::new(Mutex::new(vec![]));
        let (rq, ls) = (requests.clone(), last_scopes.clone());
        let user = user.to_owned();
        let server = HttpServer::start("token-server", move |req| -> BoxFut {
            rq.fetch_add(1, Ordering::SeqCst);
            let authorized = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some(expected.as_str());
            let path_ok = req.uri().path() == "/token";
            let query = req.uri().query().unwrap_or("").to_owned();
            let user = user.clone();
            let ls = ls.clone();
            Box::pin(async move {
                if !path_ok {
                    return response(404, None, "not found");
                }
                if !authorized {
                    let mut r = response(
                        401,
                        Some("application/json"),
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
                    );
                    r.headers_mut().insert(
                        "www-authenticate",
                        "Basic realm=\"sidescan-token\"".parse().expect("header"),
                    );
                    return r;
                }
                let url = reqwest::Url::parse(&format!("http://x/?{query}")).expect("query");
                let scopes: Vec<String> = url
                    .query_pairs()
                    .filter(|(k, _)| k == "scope")
                    .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
                    .collect();
                *ls.lock().expect("lock") = scopes.clone();
                let access: Vec<serde_json::Value> = scopes
                    .iter()
                    .filter_map(|s| parse_scope(s))
                    .map(|(t, n, a)| json!({"type": t, "name": n, "actions": a}))
                    .collect();
                let token = mint_token(&user, access);
                let body = json!({"token": token, "access_token": token, "expires_in": 3600});
                response(200, Some("application/json"), body.to_string())
            })
        });
        Self {
            server,
            requests,
            last_scopes,
        }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr())
    }

    /// PEM of the self-signed certificate whose key signs the tokens.
    pub fn root_cert_pem(&self) -> String {
        signing_material().cert_pem.clone()
    }

    /// The libtrust `kid` put in every token header.
    pub fn key_id(&self) -> String {
        signing_material().kid.clone()
    }

    /// Mints a token for `subject` with `access` entries `(type, name, actions)`.
    pub fn mint(&self, subject: &str, access: &[(&str, &str, &[&str])]) -> String {
        mint_token(
            subject,
            access
                .iter()
                .map(|(t, n, a)| json!({"type": t, "name": n, "actions": a}))
                .collect(),
        )
    }

    /// Number of requests received.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// The `scope` values of the last token request.
    pub fn last_scopes(&self) -> Vec<String> {
        self.last_scopes.lock().expect("lock").clone()
    }
}

fn parse_scope(s: &str) -> Option<(String, String, Vec<String>)> {
    let (ty, rest) = s.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((
        ty.to_owned(),
        name.to_owned(),
        actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
    ))
}

fn mint_token(subject: &str, access: Vec<serde_json::Value>) -> String {
    use rcgen::SigningKey as _;
    static JTI: AtomicU64 = AtomicU64::new(1);
    let m = signing_material();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": m.kid});
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": subject,
        "aud": TOKEN_SERVICE,
        "exp": now + 3600,
        "nbf": now.saturating_sub(60),
        "iat": now,
        "jti": format!("sidescan-{}", JTI.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let sig = m.key.sign(signing_input.as_bytes()).expect("RS256 sign");
    format!("{signing_input}.{}", b64.encode(sig))
}
