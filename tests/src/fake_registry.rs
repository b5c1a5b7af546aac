//! A fault-injecting fake registry: the OCI distribution *read* API served from memory
//! on 127.0.0.1:0, with switches for what a real registry will not do (wrong bytes,
//! truncated bodies, 5xx N times, stalls, slow dribbles, 401/403/404, endless bodies,
//! redirects, token challenges) and per-path request counters (to assert "one download per
//! blob" and retries). Stops on drop.
//!
//! Served: `GET /v2/`, `GET|HEAD /v2/<name>/manifests/<tag-or-digest>`,
//! `GET|HEAD /v2/<name>/blobs/<digest>` (with `Range: bytes=N-[M]`), and
//! `GET /v2/<name>/tags/list`. Content is served under whatever digest it was added
//! with: the fake never verifies, so lying digests from [`crate::hostile`] come through.

use crate::oci::{Artifact, Blob};
use crate::registry::basic_authorization;
use crate::server::{Body, BoxFut, HttpServer, full};
use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which requests a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// Every request.
    Any,
    /// Requests whose path is exactly this (e.g. `/v2/repo/blobs/sha256:...`).
    Path(String),
    /// Requests whose path ends with this digest (blob or manifest by digest).
    Digest(String),
    /// Requests whose path contains this substring (e.g. `/manifests/`).
    PathContains(String),
}

impl Match {
    fn matches(&self, path: &str) -> bool {
        match self {
            Match::Any => true,
            Match::Path(p) => path == p,
            Match::Digest(d) => path.ends_with(&format!("/{d}")),
            Match::PathContains(s) => path.contains(s.as_str()),
        }
    }
}

/// What goes wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with an OCI error body (401 adds a Basic challenge).
    Status(u16),
    /// Serve bytes of the same length but different content (last byte flipped, first
    /// too): a digest mismatch.
    WrongBytes,
    /// Serve these bytes instead (with their own, consistent `Content-Length`).
    Replace(Bytes),
    /// Announce the full `Content-Length`, send `after` bytes, then abort the
    /// connection (a transfer truncated mid-way).
    Truncate {
        /// Bytes sent before the connection is cut.
        after: usize,
    },
    /// Accept the request and never answer (no status line).
    Stall,
    /// Send headers and `after` bytes of the body, then nothing, forever.
    StallAfter {
        /// Bytes sent before stalling.
        after: usize,
    },
    /// Answer `status` with `bytes` filler bytes, generated while sent (never held in memory;
    /// [`FakeRegistry::flood_bytes_sent`] counts them), announcing `Content-Length` only when
    /// `announce` (else chunked): a 10 GB manifest, error body or token response.
    Flood {
        /// Status code.
        status: u16,
        /// Body length.
        bytes: u64,
        /// Send `Content-Length`.
        announce: bool,
    },
    /// Answer `status` (a 3xx) with `Location: location`.
    Redirect {
        /// Status code, e.g. 307.
        status: u16,
        /// Where to.
        location: String,
    },
    /// Answer 401 with this `WWW-Authenticate` value (e.g. `Bearer realm="http://.../token"`).
    Challenge(String),
    /// Answer `status` with exactly this body (e.g. an OCI error envelope with planted text).
    Respond {
        /// Status code.
        status: u16,
        /// Body.
        body: Bytes,
    },
    /// Send the body `chunk` bytes at a time with `interval` between chunks.
    Dribble {
        /// Bytes per chunk.
        chunk: usize,
        /// Pause between chunks.
        interval: Duration,
    },
}

#[derive(Debug)]
struct Rule {
    matcher: Match,
    fault: Fault,
    remaining: Option<u32>,
}

/// One request seen by the fake registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// `Range` header, if any.
    pub range: Option<String>,
    /// `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Default, Debug)]
struct Repo {
    manifests: HashMap<String, Blob>,
    blobs: HashMap<String, Blob>,
}

#[derive(Default, Debug)]
struct State {
    repos: Mutex<HashMap<String, Repo>>,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<RequestRecord>>,
    required_auth: Mutex<Option<String>>,
    flood_sent: Arc<std::sync::atomic::AtomicU64>,
}

/// The fault-injecting fake registry. Cheap to start (no process); stops on drop.
pub struct FakeRegistry {
    server: HttpServer,
    state: Arc<State>,
}

impl std::fmt::Debug for FakeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRegistry")
            .field("addr", &self.server.addr())
            .finish()
    }
}

impl Default for FakeRegistry {
    fn default() -> Self {
        Self::start()
    }
}

impl FakeRegistry {
    /// Starts an empty fake registry on 127.0.0.1:0.
    pub fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind 127.0.0.1:0")
    }

    /// Starts an empty fake registry on `addr` (e.g. `127.0.0.1:5000`); errors when the
    /// address cannot be bound.
    pub fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let state = Arc::new(State::default());
        let st = state.clone();
        let server = HttpServer::start_on("fake-registry", addr, move |req| -> BoxFut {
            let st = st.clone();
            Box::pin(async move { handle(st, req).await })
        })?;
        Ok(Self { server, state })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `127.0.0.1:PORT/repo:reference` (use `repo@sha256:...` style yourself for
    /// digests): a full image reference for a scan request.
    pub fn image_ref(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.server.addr())
    }

    /// Serves `artifact` (all blobs, all manifests by digest, top manifest also as
    /// `tag`) in `repo`.
    pub fn add(&self, repo: &str, tag: &str, artifact: &Artifact) {
        for b in artifact.all_blobs() {
            self.add_blob(repo, b.clone());
        }
        for m in artifact.all_manifests() {
            self.add_manifest(repo, &m.digest, m.clone());
        }
        self.add_manifest(repo, tag, artifact.manifest.clone());
    }

    /// Serves `blob.data` as blob `blob.digest` in `repo` (digest not checked).
    pub fn add_blob(&self, repo: &str, blob: Blob) {
        let mut repos = self.state.repos.lock().expect("lock");
        repos
            .entry(repo.to_owned())
            .or_default()
            .blobs
            .insert(blob.digest.clone(), blob);
    }

    /// Serves `manifest` under `reference` (tag or digest) in `repo`; the
    /// `Docker-Content-Digest` header is `manifest.digest`.
    pub fn add_manifest(&self, repo: &str, reference: &str, manifest: Blob) {
        let mut repos = self.state.repos.lock().expect("lock");
        repos
            .entry(repo.to_owned())
            .or_default()
            .manifests
            .insert(reference.to_owned(), manifest);
    }

    /// Removes a blob (later GETs answer 404).
    pub fn remove_blob(&self, repo: &str, digest: &str) {
        if let Some(r) = self.state.repos.lock().expect("lock").get_mut(repo) {
            r.blobs.remove(digest);
        }
    }

    /// Applies `fault` to every matching request from now on.
    pub fn inject(&self, matcher: Match, fault: Fault) {
        self.push_rule(matcher, fault, None);
    }

    /// Applies `fault` to the next `times` matching requests, then serves normally
    /// (e.g. `Fault::Status(503)` twice to test retries).
    pub fn inject_times(&self, matcher: Match, fault: Fault, times: u32) {
        self.push_rule(matcher, fault, Some(times));
    }

    fn push_rule(&self, matcher: Match, fault: Fault, remaining: Option<u32>) {
        self.state.rules.lock().expect("lock").push(Rule {
            matcher,
            fault,
            remaining,
        });
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.state.rules.lock().expect("lock").clear();
    }

    /// Requires this exact `Authorization` value (e.g. from [`basic_authorization`]);
    /// missing or different gets 401 with `WWW-Authenticate: Basic realm="fake"`.
    /// `None` turns the check off.
    pub fn require_authorization(&self, value: Option<String>) {
        *self.state.required_auth.lock().expect("lock") = value;
    }

    /// Shortcut: require Basic `user` / `password`.
    pub fn require_basic(&self, user: &str, password: &str) {
        self.require_authorization(Some(basic_authorization(user, password)));
    }

    /// Every request so far, in order.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.state.log.lock().expect("lock").clone()
    }

    /// Number of requests (any method) for exactly `path`.
    pub fn requests(&self, path: &str) -> usize {
        self.state
            .log
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Number of `GET`s of blob `digest` (any repository).
    pub fn blob_gets(&self, digest: &str) -> usize {
        let suffix = format!("/blobs/{digest}");
        self.state
            .log
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(&suffix))
            .count()
    }

    /// Number of `GET`s of manifest `reference` (tag or digest) in `repo`.
    pub fn manifest_gets(&self, repo: &str, reference: &str) -> usize {
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.state
            .log
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .count()
    }

    /// Total requests so far.
    pub fn total_requests(&self) -> usize {
        self.state.log.lock().expect("lock").len()
    }

    /// Filler bytes [`Fault::Flood`] bodies produced so far (at most what the client read plus
    /// socket buffers).
    pub fn flood_bytes_sent(&self) -> u64 {
        self.state
            .flood_sent
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets the request log (faults stay).
    pub fn reset_counters(&self) {
        self.state.log.lock().expect("lock").clear();
    }
}

struct Prepared {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    head: bool,
}

fn oci_error(status: u16, code: &str, message: &str) -> Prepared {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if status == 401 {
        headers.push(("www-authenticate", "Basic realm=\"fake\"".to_owned()));
    }
    Prepared {
        status,
        headers,
        body: body.into(),
        head: false,
    }
}

fn status_code_name(status: u16) -> &'static str {
    match status {
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        404 => "NOT_FOUND",
        429 => "TOOMANYREQUESTS",
        _ => "UNKNOWN",
    }
}

fn route(state: &State, method: &str, path: &str, range: Option<&str>) -> Prepared {
    let head = method == "HEAD";
    if method != "GET" && !head {
        return oci_error(405, "UNSUPPORTED", "fake registry is read-only");
    }
    if path == "/v2/" || path == "/v2" {
        return Prepared {
            status: 200,
            headers: vec![("content-type", "application/json".to_owned())],
            body: Bytes::from_static(b"{}"),
            head,
        };
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return oci_error(404, "NOT_FOUND", "not a /v2/ path");
    };
    let repos = state.repos.lock().expect("lock");
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let Some(repo) = repos.get(name) else {
            return oci_error(404, "NAME_UNKNOWN", "repository name not known to registry");
        };
        let mut tags: Vec<&String> = repo.manifests.keys().filter(|k| !k.contains(':')).collect();
        tags.sort();
        let body = serde_json::json!({"name": name, "tags": tags}).to_string();
        return Prepared {
            status: 200,
            headers: vec![("content-type", "application/json".to_owned())],
            body: body.into(),
            head,
        };
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let Some(m) = repos.get(name).and_then(|r| r.manifests.get(reference)) else {
            return oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown");
        };
        return Prepared {
            status: 200,
            headers: vec![
                ("content-type", m.media_type.clone()),
                ("docker-content-digest", m.digest.clone()),
            ],
            body: m.data.clone(),
            head,
        };
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        let Some(b) = repos.get(name).and_then(|r| r.blobs.get(digest)) else {
            return oci_error(404, "BLOB_UNKNOWN", "blob unknown to registry");
        };
        let len = b.data.len();
        let mut headers = vec![
            ("content-type", "application/octet-stream".to_owned()),
            ("docker-content-digest", b.digest.clone()),
            ("accept-ranges", "bytes".to_owned()),
        ];
        if let Some((start, end)) = range.and_then(|r| parse_range(r, len)) {
            headers.push(("content-range", format!("bytes {start}-{end}/{len}")));
            return Prepared {
                status: 206,
                headers,
                body: b.data.slice(start..=end),
                head,
            };
        }
        return Prepared {
            status: 200,
            headers,
            body: b.data.clone(),
            head,
        };
    }
    oci_error(404, "NOT_FOUND", "unknown endpoint")
}

fn parse_range(h: &str, len: usize) -> Option<(usize, usize)> {
    let spec = h.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: usize = a.trim().parse().ok()?;
    let end: usize = if b.trim().is_empty() {
        len.checked_sub(1)?
    } else {
        b.trim().parse::<usize>().ok()?.min(len.checked_sub(1)?)
    };
    (start <= end && start < len).then_some((start, end))
}

fn take_fault(state: &State, path: &str) -> Option<Fault> {
    let mut rules = state.rules.lock().expect("lock");
    let idx = rules
        .iter()
        .position(|r| r.matcher.matches(path) && r.remaining != Some(0))?;
    let rule = &mut rules[idx];
    if let Some(n) = rule.remaining.as_mut() {
        *n -= 1;
    }
    Some(rule.fault.clone())
}

fn stream_body(chunks: Vec<Bytes>, interval: Duration, then: StreamEnd) -> Body {
    let stream = futures::stream::unfold(
        (chunks.into_iter(), true, then),
        move |(mut it, first, then)| async move {
            if !first && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            match it.next() {
                Some(c) => Some((Ok(Frame::data(c)), (it, false, then))),
                None => match then {
                    StreamEnd::Finish => None,
                    StreamEnd::Abort => {
                        // Let hyper flush the headers and partial body first, so the
                        // client sees a 200 whose body then breaks.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((
                            Err(std::io::Error::other("fake registry: truncated on purpose")),
                            (it, false, StreamEnd::Finish),
                        ))
                    }
                    StreamEnd::Hang => {
                        std::future::pending::<()>().await;
                        None
                    }
                },
            }
        },
    );
    StreamBody::new(stream).boxed()
}

/// The responses of faults that replace the whole answer.
fn special_response(state: &State, fault: Option<&Fault>) -> Option<Response<Body>> {
    let response = match fault? {
        Fault::Flood {
            status,
            bytes,
            announce,
        } => {
            static FILL: [u8; 64 << 10] = [b'x'; 64 << 10];
            let sent = state.flood_sent.clone();
            let stream = futures::stream::unfold(*bytes, move |left| {
                let sent = sent.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let n = left.min(FILL.len() as u64);
                    sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    let chunk = Bytes::from_static(&FILL[..n as usize]);
                    Some((Ok::<_, std::io::Error>(Frame::data(chunk)), left - n))
                }
            });
            let mut b = Response::builder()
                .status(*status)
                .header("content-type", "application/json");
            if *announce {
                b = b.header("content-length", *bytes);
            }
            b.body(StreamBody::new(stream).boxed())
        }
        Fault::Redirect { status, location } => Response::builder()
            .status(*status)
            .header("location", location.as_str())
            .body(full(Bytes::new())),
        Fault::Challenge(challenge) => {
            let p = oci_error(401, "UNAUTHORIZED", "authentication required");
            Response::builder()
                .status(401)
                .header("content-type", "application/json")
                .header("www-authenticate", challenge.as_str())
                .body(full(p.body))
        }
        Fault::Respond { status, body } => Response::builder()
            .status(*status)
            .header("content-type", "application/json")
            .body(full(body.clone())),
        _ => return None,
    };
    Some(response.expect("response"))
}

#[derive(Clone, Copy)]
enum StreamEnd {
    Finish,
    Abort,
    Hang,
}

async fn handle(state: Arc<State>, req: hyper::Request<hyper::body::Incoming>) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let range = header("range");
    let authorization = header("authorization");
    state.log.lock().expect("lock").push(RequestRecord {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
        authorization: authorization.clone(),
    });
    let fault = take_fault(&state, &path);
    if let Some(response) = special_response(&state, fault.as_ref()) {
        return response;
    }
    let required = state.required_auth.lock().expect("lock").clone();
    let mut p = match (&fault, required) {
        (Some(Fault::Stall), _) => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        (Some(Fault::Status(s)), _) => {
            oci_error(*s, status_code_name(*s), "fault injected by fake registry")
        }
        (_, Some(req)) if authorization.as_deref() != Some(req.as_str()) => {
            oci_error(401, "UNAUTHORIZED", "authentication required")
        }
        _ => route(&state, &method, &path, range.as_deref()),
    };
    p.head |= method == "HEAD";
    let full_len = p.body.len();
    let mut body = p.body.clone();
    let mut builder = Response::builder().status(p.status);
    for (k, v) in &p.headers {
        builder = builder.header(*k, v);
    }
    let is_payload = p.status < 300;
    let body: Body = match fault {
        Some(Fault::WrongBytes) if is_payload && !body.is_empty() => {
            let mut v = body.to_vec();
            let last = v.len() - 1;
            v[last] ^= 0xff;
            v[0] ^= 0x01;
            body = v.into();
            builder = builder.header("content-length", full_len);
            if p.head {
                full(Bytes::new())
            } else {
                full(body)
            }
        }
        Some(Fault::Replace(b)) if is_payload => {
            builder = builder.header("content-length", b.len());
            if p.head { full(Bytes::new()) } else { full(b) }
        }
        Some(Fault::Truncate { after }) if is_payload && !p.head => {
            builder = builder.header("content-length", full_len);
            let k = after.min(full_len);
            stream_body(vec![body.slice(..k)], Duration::ZERO, StreamEnd::Abort)
        }
        Some(Fault::StallAfter { after }) if is_payload && !p.head => {
            builder = builder.header("content-length", full_len);
            let k = after.min(full_len);
            stream_body(vec![body.slice(..k)], Duration::ZERO, StreamEnd::Hang)
        }
        Some(Fault::Dribble { chunk, interval }) if is_payload && !p.head => {
            builder = builder.header("content-length", full_len);
            let chunk = chunk.max(1);
            let chunks = (0..full_len)
                .step_by(chunk)
                .map(|i| body.slice(i..(i + chunk).min(full_len)))
                .collect();
            stream_body(chunks, interval, StreamEnd::Finish)
        }
        _ => {
            builder = builder.header("content-length", full_len);
            if p.head {
                full(Bytes::new())
            } else {
                full(body)
            }
        }
    };
    builder.body(body).expect("response")
}
