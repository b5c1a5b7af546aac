//! HTTP for the pulls the SDK makes (manifest and blob GETs and the registry token exchange),
//! on reqwest, with every body read capped and every host checked against the allowlist.
//!
//! oci-client cannot do either: it buffers manifests, error bodies and token responses whole
//! (`Response::bytes()` / `text()`), follows redirects anywhere, and fetches whatever token realm
//! a registry names, and its `ClientConfig` offers no body limit, no redirect policy and no way
//! to pass in a `reqwest::Client`. So the pull path talks HTTP itself; oci-client's error type
//! is kept as the vocabulary of registry failures ([`map_oci_error`](super::map_oci_error)).
//!
//! - **Caps.** A manifest over its limit is RESOURCE_EXHAUSTED, decided from `Content-Length`
//!   before reading or while streaming; error bodies are read up to [`ERROR_BODY_MAX`] (only to
//!   parse the OCI error codes; the text is never echoed), token responses up to
//!   [`TOKEN_BODY_MAX`] (over: UNAVAILABLE).
//! - **Allowlist.** With `--allow-registry` set, a redirect to a host outside it, or a
//!   `WWW-Authenticate` realm outside it, is refused without contacting that host:
//!   PERMISSION_DENIED, like a request naming such a registry. With no allowlist, redirects are
//!   followed (at most [`MAX_REDIRECTS`]) and any realm is used, as before.
//! - **Auth.** `Bearer` credentials are sent as they are. Otherwise a request goes out with what
//!   the registry last asked for (nothing at first); a 401 with a challenge is answered once:
//!   `Basic` with the Basic credentials, `Bearer realm=...` with a token from the realm
//!   (`scope=repository:<repo>:pull`, Basic credentials if given), cached per repository until
//!   `expires_in` runs out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use oci_client::errors::{OciDistributionError, OciEnvelope};
use oci_client::secrets::RegistryAuth;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, RANGE, WWW_AUTHENTICATE};

use crate::error::Error;
use crate::image::error::Error as ImageError;
use crate::image::reference::normalize_host;

/// Bytes of an error response read to find its OCI error codes.
pub(crate) const ERROR_BODY_MAX: usize = 64 << 10;
/// Bytes of a token response accepted.
pub(crate) const TOKEN_BODY_MAX: usize = 1 << 20;
/// Manifest cap when `Limits::max_manifest_bytes` is 0 ("no limit"): nothing is buffered
/// without a bound.
pub(crate) const MANIFEST_CEILING: u64 = 64 << 20;
/// Redirects followed per request.
pub(crate) const MAX_REDIRECTS: usize = 5;
/// Token lifetime when the token service names none (the distribution spec's default).
const DEFAULT_TOKEN_SECS: u64 = 60;

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// What the registry (or the network) did, in oci-client's terms.
    Oci(OciDistributionError),
    /// Refused by the SDK (allowlist, caps, a malformed token answer). The message quotes no
    /// registry body.
    Refused(Error),
}

impl From<OciDistributionError> for Failure {
    fn from(e: OciDistributionError) -> Self {
        Self::Oci(e)
    }
}

/// A redirect to a host outside the allowlist (the redirect policy's error).
#[derive(Debug)]
struct RedirectRefused(String);

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "redirect to {} refused", self.0)
    }
}

impl std::error::Error for RedirectRefused {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    /// Nothing asked yet.
    Unknown,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Debug)]
struct AuthState {
    challenge: Challenge,
    /// Bearer tokens by repository, with their expiry.
    tokens: HashMap<String, (String, Instant)>,
}

/// HTTP to one registry with one credential set. Cheap to share (`Arc`).
pub(crate) struct Transport {
    http: reqwest::Client,
    base: String,
    registry: String,
    allowed: Arc<[String]>,
    auth: RegistryAuth,
    state: tokio::sync::Mutex<AuthState>,
}

/// `host[:port]` of a URL as the allowlist spells hosts.
fn host_of(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?;
    let hp = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    normalize_host(&hp, "url").ok()
}

/// Whether `url` may be contacted under `allowed` (empty: any).
pub(crate) fn allowed_url(allowed: &[String], url: &reqwest::Url) -> bool {
    allowed.is_empty() || host_of(url).is_some_and(|h| allowed.contains(&h))
}

/// Reads at most `cap` bytes of a body; `Ok(None)` when it is longer.
async fn read_capped(resp: reqwest::Response, cap: u64) -> Result<Option<Bytes>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Ok(None);
    }
    let mut body = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

/// A reqwest error as oci-client's, its URL removed (a redirect target may carry a signature).
fn request_failure(e: reqwest::Error) -> Failure {
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<RedirectRefused>() {
            return Failure::Refused(
                ImageError::NotAllowed(format!(
                    "the registry redirected to {}, which is not in this plugin's allowed \
                     registries",
                    r.0
                ))
                .into(),
            );
        }
        source = s.source();
    }
    Failure::Oci(OciDistributionError::RequestError(e.without_url()))
}

/// The failure of a non-success response: status and OCI error codes (from at most
/// [`ERROR_BODY_MAX`] bytes of body); the body text itself is dropped.
async fn error_response(resp: reqwest::Response, url: &str) -> Failure {
    let status = resp.status();
    let body = read_capped(resp, ERROR_BODY_MAX as u64)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let url = url.to_string();
    if status == StatusCode::UNAUTHORIZED {
        return OciDistributionError::UnauthorizedError { url }.into();
    }
    if status.is_client_error()
        && let Ok(mut envelope) = serde_json::from_slice::<OciEnvelope>(&body)
    {
        for e in &mut envelope.errors {
            e.message.clear();
            e.detail = serde_json::Value::Null;
        }
        return OciDistributionError::RegistryError { envelope, url }.into();
    }
    if status.is_success() {
        return OciDistributionError::SpecViolationError(format!(
            "expected HTTP 200 or 206, got {status}"
        ))
        .into();
    }
    OciDistributionError::ServerError {
        code: status.as_u16(),
        url,
        message: String::new(),
    }
    .into()
}

impl Transport {
    /// HTTP to `registry` (`host[:port]`) over `http` or https, with `auth`; redirects and token
    /// realms limited to `allowed` (normalised hosts; empty: any).
    pub(super) fn new(
        registry: &str,
        plain_http: bool,
        auth: RegistryAuth,
        allowed: Arc<[String]>,
        user_agent: &str,
    ) -> Result<Self, Error> {
        let policy = if allowed.is_empty() {
            reqwest::redirect::Policy::limited(MAX_REDIRECTS)
        } else {
            let allowed = allowed.clone();
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if allowed_url(&allowed, attempt.url()) {
                    attempt.follow()
                } else {
                    let host = host_of(attempt.url())
                        .or_else(|| attempt.url().host_str().map(str::to_string))
                        .unwrap_or_default();
                    attempt.error(RedirectRefused(host))
                }
            })
        };
        let http = reqwest::Client::builder()
            .redirect(policy)
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .user_agent(user_agent)
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        let scheme = if plain_http { "http" } else { "https" };
        Ok(Self {
            http,
            base: format!("{scheme}://{registry}"),
            registry: registry.to_string(),
            allowed,
            auth,
            state: tokio::sync::Mutex::new(AuthState {
                challenge: Challenge::Unknown,
                tokens: HashMap::new(),
            }),
        })
    }

    /// GET of a manifest: its bytes and the `Docker-Content-Digest` header, if any. Over
    /// `max_bytes` (0: [`MANIFEST_CEILING`]) is RESOURCE_EXHAUSTED, never read whole.
    pub(super) async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        accept: &[&str],
        max_bytes: u64,
    ) -> Result<(Bytes, Option<String>), Failure> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self.get(repo, &url, Some(&accept.join(", ")), None).await?;
        if resp.status() != StatusCode::OK {
            return Err(error_response(resp, &url).await);
        }
        let header = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let cap = if max_bytes == 0 {
            MANIFEST_CEILING
        } else {
            max_bytes
        };
        match read_capped(resp, cap).await.map_err(request_failure)? {
            Some(body) => Ok((body, header)),
            None => Err(Failure::Refused(Error::resource_exhausted(format!(
                "the manifest is over the limit of {cap} bytes"
            )))),
        }
    }

    /// GET of a blob from byte `offset` on (always a Range request): the response, 200 or 206.
    pub(super) async fn blob(
        &self,
        repo: &str,
        digest: &str,
        offset: u64,
    ) -> Result<reqwest::Response, Failure> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let range = format!("bytes={offset}-");
        let resp = self.get(repo, &url, None, Some(&range)).await?;
        match resp.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(resp),
            _ => Err(error_response(resp, &url).await),
        }
    }

    /// One GET, answering a 401 challenge once.
    async fn get(
        &self,
        repo: &str,
        url: &str,
        accept: Option<&str>,
        range: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let mut sent = self.authorization(repo).await?;
        for attempt in 0..2 {
            let mut req = self.http.get(url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(r) = range {
                req = req.header(RANGE, r);
            }
            if let Some(h) = &sent {
                req = req.header(AUTHORIZATION, h.clone());
            }
            let resp = req.send().await.map_err(request_failure)?;
            if resp.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(resp);
            }
            if !self.learn(repo, &resp).await? {
                return Ok(resp);
            }
            let next = self.authorization(repo).await?;
            if next == sent {
                // Answering would send the same again.
                return Ok(resp);
            }
            sent = next;
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Records the challenge of a 401; false when there is none to answer.
    async fn learn(&self, repo: &str, resp: &reqwest::Response) -> Result<bool, Failure> {
        if matches!(self.auth, RegistryAuth::Bearer(_)) {
            return Ok(false);
        }
        let Some(challenge) = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .find_map(parse_challenge)
        else {
            return Ok(false);
        };
        if let Challenge::Bearer { realm, .. } = &challenge {
            let url = reqwest::Url::parse(realm).map_err(|_| {
                Failure::Refused(Error::unavailable(
                    "the registry named a token realm that is not a URL",
                ))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Failure::Refused(Error::unavailable(
                    "the registry named a token realm that is not http(s)",
                )));
            }
            if !allowed_url(&self.allowed, &url) {
                return Err(Failure::Refused(
                    ImageError::NotAllowed(format!(
                        "the registry's token realm {} is not in this plugin's allowed registries",
                        host_of(&url).unwrap_or_default()
                    ))
                    .into(),
                ));
            }
        }
        let mut state = self.state.lock().await;
        state.tokens.remove(repo);
        state.challenge = challenge;
        Ok(true)
    }

    /// The `Authorization` value to send for `repo`, fetching a token when the registry asked
    /// for one.
    async fn authorization(&self, repo: &str) -> Result<Option<HeaderValue>, Failure> {
        let value = |s: String| {
            let mut v = HeaderValue::from_str(&s).map_err(|_| {
                Failure::Refused(Error::unavailable("a token is not a valid header value"))
            })?;
            v.set_sensitive(true);
            Ok::<_, Failure>(Some(v))
        };
        if let RegistryAuth::Bearer(token) = &self.auth {
            return value(format!("Bearer {token}"));
        }
        let challenge = {
            let state = self.state.lock().await;
            if let Challenge::Bearer { .. } = state.challenge
                && let Some((token, until)) = state.tokens.get(repo)
                && Instant::now() < *until
            {
                return value(format!("Bearer {token}"));
            }
            state.challenge.clone()
        };
        match challenge {
            Challenge::Unknown => Ok(None),
            Challenge::Basic => match &self.auth {
                RegistryAuth::Basic(..) => value(basic(&self.auth)),
                _ => Ok(None),
            },
            Challenge::Bearer { realm, service } => {
                // Not under the lock: a slow token service stalls only the requests needing it.
                let (token, ttl) = self.fetch_token(&realm, service.as_deref(), repo).await?;
                let until = Instant::now() + ttl.saturating_sub(Duration::from_secs(5));
                let mut state = self.state.lock().await;
                state
                    .tokens
                    .insert(repo.to_string(), (token.clone(), until));
                value(format!("Bearer {token}"))
            }
        }
    }

    /// The token exchange at `realm` (checked against the allowlist by [`Self::learn`]).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        repo: &str,
    ) -> Result<(String, Duration), Failure> {
        let scope = format!("repository:{repo}:pull");
        let mut query = vec![("scope", scope.as_str())];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut req = self.http.get(realm).query(&query);
        if let RegistryAuth::Basic(..) = &self.auth {
            let mut v = HeaderValue::from_str(&basic(&self.auth)).map_err(|_| {
                Failure::Refused(Error::invalid_argument(
                    "credentials are not a header value",
                ))
            })?;
            v.set_sensitive(true);
            req = req.header(AUTHORIZATION, v);
        }
        let resp = req.send().await.map_err(request_failure)?;
        let status = resp.status();
        if status != StatusCode::OK {
            drop(resp);
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                return Err(OciDistributionError::ServerError {
                    code: status.as_u16(),
                    url: realm.to_string(),
                    message: String::new(),
                }
                .into());
            }
            return Err(OciDistributionError::AuthenticationFailure(String::new()).into());
        }
        let registry = &self.registry;
        let body = read_capped(resp, TOKEN_BODY_MAX as u64)
            .await
            .map_err(request_failure)?
            .ok_or_else(|| {
                Failure::Refused(Error::unavailable(format!(
                    "the token service of {registry} answered more than {TOKEN_BODY_MAX} bytes"
                )))
            })?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|_| {
            Failure::Refused(Error::unavailable(format!(
                "the token service of {registry} answered something that is not a token"
            )))
        })?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::Refused(Error::unavailable(format!(
                    "the token service of {registry} answered no token"
                )))
            })?;
        let secs = t
            .expires_in
            .unwrap_or(DEFAULT_TOKEN_SECS)
            .clamp(1, 24 * 3600);
        Ok((token, Duration::from_secs(secs)))
    }
}

fn basic(auth: &RegistryAuth) -> String {
    use base64::Engine as _;
    match auth {
        RegistryAuth::Basic(user, password) => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
        _ => String::new(),
    }
}

/// The first challenge of a `WWW-Authenticate` value we can answer.
fn parse_challenge(value: &HeaderValue) -> Option<Challenge> {
    let value = value.to_str().ok()?.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(params);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
    })
}

/// `key="value", key=value` pairs (keys lower-cased; quoted values may contain commas).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, c)) = chars.next() {
                            value.push(c);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end.min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let v = HeaderValue::from_static(
            r#"Bearer realm="https://auth.example.test/token",service="reg,1",scope="repository:a:pull""#,
        );
        assert_eq!(
            parse_challenge(&v),
            Some(Challenge::Bearer {
                realm: "https://auth.example.test/token".into(),
                service: Some("reg,1".into()),
            })
        );
        assert_eq!(
            parse_challenge(&HeaderValue::from_static(r#"Basic realm="x""#)),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(&HeaderValue::from_static("Bearer service=x")),
            None
        );
        assert_eq!(
            parse_challenge(&HeaderValue::from_static("Negotiate")),
            None
        );
    }

    #[test]
    fn allowlist_matches_host_and_port() {
        let allowed: Vec<String> = vec!["127.0.0.1:5000".into(), "reg.example.test".into()];
        let ok = |u: &str| allowed_url(&allowed, &reqwest::Url::parse(u).unwrap());
        assert!(ok("http://127.0.0.1:5000/v2/"));
        assert!(!ok("http://127.0.0.1:5001/v2/"));
        assert!(ok("https://REG.example.test/token"));
        assert!(!ok("https://reg.example.test.evil.test/token"));
        assert!(allowed_url(
            &[],
            &reqwest::Url::parse("http://anything.test/").unwrap()
        ));
    }
}
