//! A small distribution-API client for pushing fixtures and reading them back:
//! monolithic blob uploads (POST + PUT), manifest PUT/GET/HEAD, with Basic auth and the
//! Bearer token flow (401 challenge -> token realm with Basic credentials -> retry).
//!
//! Unlike a real client it never validates what it pushes: raw and bogus blobs and
//! manifests go out as given (the registry may refuse them; the error says how).

use crate::oci::{ACCEPT_ALL_MANIFESTS, Artifact, Blob};
use crate::registry::basic_authorization;
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use std::collections::HashMap;
use std::sync::Mutex;

/// An HTTP-level failure: status (if a response came back), and what was attempted.
#[derive(Debug, Clone)]
pub struct ClientError {
    /// HTTP status of the failing response, `None` for transport errors.
    pub status: Option<u16>,
    /// What failed, with the response body when there was one.
    pub message: String,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for ClientError {}

/// Result type of [`RegistryClient`].
pub type ClientResult<T> = Result<T, ClientError>;

fn transport(what: &str, e: reqwest::Error) -> ClientError {
    ClientError {
        status: None,
        message: format!("{what}: {e}"),
    }
}

async fn status_error(what: &str, resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    ClientError {
        status: Some(status),
        message: format!("{what}: {}", body.chars().take(500).collect::<String>()),
    }
}

/// Client for one registry and one credential set.
#[derive(Debug)]
pub struct RegistryClient {
    base: String,
    http: reqwest::Client,
    creds: Option<(String, String)>,
    bearer: Mutex<HashMap<String, String>>,
}

/// A fetched manifest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// `Content-Type` of the response.
    pub media_type: String,
    /// `Docker-Content-Digest` header, if any.
    pub digest: Option<String>,
    /// Body.
    pub data: Bytes,
}

impl RegistryClient {
    /// Client for `base_url` (`http://127.0.0.1:PORT`) with optional `(user, password)`.
    pub fn new(base_url: &str, creds: Option<(&str, &str)>) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("reqwest client"),
            creds: creds.map(|(u, p)| (u.to_owned(), p.to_owned())),
            bearer: Mutex::new(HashMap::new()),
        }
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends a request with auth handling: cached Bearer token for `scope` or Basic
    /// credentials up front; on a 401 challenge, fetches a token (Bearer) or adds Basic
    /// and retries once. `url` may be a path (`/v2/...`) or absolute.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> ClientResult<reqwest::Response> {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            format!("{}{url}", self.base)
        };
        let mut auth = self.cached_auth(scope);
        for attempt in 0..2 {
            let mut rb = self.http.request(method.clone(), &url);
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            if let Some(a) = &auth {
                rb = rb.header("authorization", a);
            }
            if let Some(b) = &body {
                rb = rb.body(b.clone());
            }
            let resp = rb
                .send()
                .await
                .map_err(|e| transport(&format!("{method} {url}"), e))?;
            if resp.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            match self.answer_challenge(&challenge, scope).await? {
                Some(a) => auth = Some(a),
                None => return Ok(resp),
            }
        }
        unreachable!("loop returns")
    }

    fn cached_auth(&self, scope: &str) -> Option<String> {
        if let Some(t) = self.bearer.lock().expect("lock").get(scope) {
            return Some(format!("Bearer {t}"));
        }
        None
    }

    async fn answer_challenge(&self, challenge: &str, scope: &str) -> ClientResult<Option<String>> {
        let Some((user, pass)) = &self.creds else {
            return Ok(None);
        };
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            return Ok(Some(basic_authorization(user, pass)));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let realm = params.get("realm").cloned().unwrap_or_default();
        let mut url = reqwest::Url::parse(&realm).map_err(|e| ClientError {
            status: None,
            message: format!("bad realm {realm:?}: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = params.get("service") {
                q.append_pair("service", s);
            }
            let sc = if scope.is_empty() {
                params.get("scope").cloned().unwrap_or_default()
            } else {
                scope.to_owned()
            };
            if !sc.is_empty() {
                q.append_pair("scope", &sc);
            }
            q.append_pair("account", user);
        }
        let resp = self
            .http
            .get(url.clone())
            .header("authorization", basic_authorization(user, pass))
            .send()
            .await
            .map_err(|e| transport("token request", e))?;
        if !resp.status().is_success() {
            return Err(status_error(&format!("token request {url}"), resp).await);
        }
        let v: serde_json::Value = resp.json().await.map_err(|e| transport("token json", e))?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .unwrap_or_default()
            .to_owned();
        self.bearer
            .lock()
            .expect("lock")
            .insert(scope.to_owned(), token.clone());
        Ok(Some(format!("Bearer {token}")))
    }

    /// `GET /v2/` status (after auth handling).
    pub async fn ping(&self) -> ClientResult<u16> {
        Ok(self
            .send(Method::GET, "/v2/", "", &[], None)
            .await?
            .status()
            .as_u16())
    }

    /// Whether `repo` has blob `digest` (HEAD).
    pub async fn blob_exists(&self, repo: &str, digest: &str) -> ClientResult<bool> {
        let r = self
            .send(
                Method::HEAD,
                &format!("/v2/{repo}/blobs/{digest}"),
                &pull(repo),
                &[],
                None,
            )
            .await?;
        match r.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error("HEAD blob", r).await),
        }
    }

    /// Whether `repo` has manifest `reference` (HEAD).
    pub async fn manifest_exists(&self, repo: &str, reference: &str) -> ClientResult<bool> {
        let r = self
            .send(
                Method::HEAD,
                &format!("/v2/{repo}/manifests/{reference}"),
                &pull(repo),
                &[("accept", ACCEPT_ALL_MANIFESTS)],
                None,
            )
            .await?;
        match r.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error("HEAD manifest", r).await),
        }
    }

    /// Uploads `data` as blob `digest` into `repo` (monolithic: POST then PUT with
    /// `?digest=`), whether or not the digest matches (the registry checks; a mismatch
    /// comes back as an error with status 400).
    pub async fn put_blob_raw(&self, repo: &str, digest: &str, data: Bytes) -> ClientResult<()> {
        let scope = push(repo);
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &scope,
                &[],
                None,
            )
            .await?;
        if r.status().as_u16() != 202 {
            return Err(status_error("start upload", r).await);
        }
        let loc = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError {
                status: Some(202),
                message: "upload without Location".into(),
            })?
            .to_owned();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let put_url = format!("{loc}{sep}digest={}", digest.replace(':', "%3A"));
        let len = data.len().to_string();
        let r = self
            .send(
                Method::PUT,
                &put_url,
                &scope,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-length", &len),
                ],
                Some(data),
            )
            .await?;
        if r.status().as_u16() != 201 {
            return Err(status_error(&format!("PUT blob {digest}"), r).await);
        }
        Ok(())
    }

    /// Uploads `blob` unless the registry already has it.
    pub async fn push_blob(&self, repo: &str, blob: &Blob) -> ClientResult<()> {
        if self.blob_exists(repo, &blob.digest).await? {
            return Ok(());
        }
        self.put_blob_raw(repo, &blob.digest, blob.data.clone())
            .await
    }

    /// PUTs raw manifest bytes under `reference` (tag or digest) with `media_type`;
    /// returns the registry's `Docker-Content-Digest`.
    pub async fn put_manifest_raw(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        data: Bytes,
    ) -> ClientResult<String> {
        let r = self
            .send(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                &push(repo),
                &[("content-type", media_type)],
                Some(data),
            )
            .await?;
        if r.status().as_u16() != 201 {
            return Err(status_error(&format!("PUT manifest {repo}:{reference}"), r).await);
        }
        Ok(r.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned())
    }

    /// Pushes every blob, then child manifests by digest, then the top manifest as
    /// `tag`; returns the top manifest digest (as computed locally).
    pub async fn push(&self, artifact: &Artifact, repo: &str, tag: &str) -> ClientResult<String> {
        self.push_contents(artifact, repo).await?;
        let m = &artifact.manifest;
        self.put_manifest_raw(repo, tag, &m.media_type, m.data.clone())
            .await?;
        Ok(m.digest.clone())
    }

    /// Like [`push`](Self::push) but the top manifest is put by digest (untagged).
    pub async fn push_by_digest(&self, artifact: &Artifact, repo: &str) -> ClientResult<String> {
        self.push_contents(artifact, repo).await?;
        let m = &artifact.manifest;
        self.put_manifest_raw(repo, &m.digest, &m.media_type, m.data.clone())
            .await?;
        Ok(m.digest.clone())
    }

    async fn push_contents(&self, artifact: &Artifact, repo: &str) -> ClientResult<()> {
        for b in artifact.all_blobs() {
            self.push_blob(repo, b).await?;
        }
        let manifests = artifact.all_manifests();
        for m in &manifests[..manifests.len() - 1] {
            self.put_manifest_raw(repo, &m.digest, &m.media_type, m.data.clone())
                .await?;
        }
        Ok(())
    }

    /// GETs a manifest (accepting every manifest media type).
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> ClientResult<FetchedManifest> {
        let r = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/manifests/{reference}"),
                &pull(repo),
                &[("accept", ACCEPT_ALL_MANIFESTS)],
                None,
            )
            .await?;
        if !r.status().is_success() {
            return Err(status_error(&format!("GET manifest {repo}:{reference}"), r).await);
        }
        let header = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let media_type = header("content-type").unwrap_or_default();
        let digest = header("docker-content-digest");
        let data = r.bytes().await.map_err(|e| transport("manifest body", e))?;
        Ok(FetchedManifest {
            media_type,
            digest,
            data,
        })
    }

    /// GETs a blob's bytes.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> ClientResult<Bytes> {
        let r = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/blobs/{digest}"),
                &pull(repo),
                &[],
                None,
            )
            .await?;
        if !r.status().is_success() {
            return Err(status_error(&format!("GET blob {digest}"), r).await);
        }
        r.bytes().await.map_err(|e| transport("blob body", e))
    }

    /// Tags of `repo`.
    pub async fn tags(&self, repo: &str) -> ClientResult<Vec<String>> {
        let r = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/tags/list"),
                &pull(repo),
                &[],
                None,
            )
            .await?;
        if !r.status().is_success() {
            return Err(status_error("tags list", r).await);
        }
        let v: serde_json::Value = r.json().await.map_err(|e| transport("tags json", e))?;
        Ok(v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn pull(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// Parses a `WWW-Authenticate` value: scheme and `key="value"` parameters.
pub fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (v, next) = if let Some(stripped) = after.strip_prefix('"') {
            match stripped.find('"') {
                Some(end) => (&stripped[..end], &stripped[end + 1..]),
                None => (stripped, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(k, v.to_owned());
        rest = next.trim_start_matches(',').trim();
    }
    (scheme.to_owned(), params)
}
