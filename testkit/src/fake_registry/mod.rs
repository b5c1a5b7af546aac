//! A fault-injecting fake registry: the OCI distribution API (distribution-spec v1.1: pull,
//! push, delete, the referrers API) served from memory on 127.0.0.1:0, with switches for what
//! a real registry will not do (wrong bytes, truncated bodies, 5xx N times, stalls, slow
//! dribbles, 401/403/404, endless bodies, redirects, token challenges) and per-path request
//! counters (to assert "one download per blob" and retries). Stops on drop.
//!
//! Pull: `GET /v2/`, `GET|HEAD /v2/<name>/manifests/<tag-or-digest>` (with an `ETag`),
//! `GET|HEAD /v2/<name>/blobs/<digest>` (with `Range: bytes=N-[M]`), and
//! `GET /v2/<name>/tags/list`. Content added with [`FakeRegistry::add`] and friends is served
//! under whatever digest it was added with: the fake never verifies it, so lying digests from
//! [`crate::hostile`] come through.
//!
//! Push (verified, as a registry does): blob uploads (`POST /v2/<name>/blobs/uploads/` then a
//! monolithic `PUT <location>?digest=`, a single `POST ...?digest=`, chunked `PATCH`es with
//! `Content-Range` then the closing `PUT`, `GET`/`DELETE` of an upload, cross-repository
//! `?mount=&from=`), each checked against its digest (`400 DIGEST_INVALID`);
//! `PUT /v2/<name>/manifests/<tag-or-digest>` (bytes stored exactly; `Content-Type` must match
//! the `mediaType` field; the referenced blobs or manifests must exist; `If-Match` honoured,
//! `412` on mismatch; `OCI-Subject` in the answer when the manifest has a `subject` and the
//! referrers API is on); `DELETE /v2/<name>/manifests/<tag-or-digest>` (a digest takes its
//! tags with it; `405` when deletes are off).
//!
//! Referrers API (on unless [`FakeRegistryBuilder::referrers_api`] turns it off):
//! `GET /v2/<name>/referrers/<digest>[?artifactType=]`, an image index of every stored manifest
//! whose `subject` is `<digest>` (no pagination). Off, the path answers the plain-text 404 of a
//! registry without the API (Debian's docker-registry 2.8), and pushes get no `OCI-Subject`,
//! so clients use the referrers tag schema.
//!
//! Faults apply to every route, writes included; a write answered by a fault changes nothing.
//! [`Match::Method`] narrows a rule to one HTTP method (e.g. a `412` on the `PUT` of a tag only).

mod push;
mod referrers;
mod serve;

use crate::oci::{Artifact, Blob};
use crate::registry::basic_authorization;
use crate::server::{BoxFut, HttpServer};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Requests with this HTTP method (e.g. `PUT`, case-insensitive) that the inner rule
    /// matches.
    Method(String, Box<Match>),
}

impl Match {
    fn matches(&self, method: &str, path: &str) -> bool {
        match self {
            Match::Any => true,
            Match::Path(p) => path == p,
            Match::Digest(d) => path.ends_with(&format!("/{d}")),
            Match::PathContains(s) => path.contains(s.as_str()),
            Match::Method(m, inner) => {
                m.eq_ignore_ascii_case(method) && inner.matches(method, path)
            }
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
    /// The query string (without `?`), if any.
    pub query: Option<String>,
    /// `If-Match` header, if any.
    pub if_match: Option<String>,
}

#[derive(Default, Debug)]
struct Repo {
    manifests: HashMap<String, Blob>,
    blobs: HashMap<String, Blob>,
}

/// A blob upload session in progress.
#[derive(Debug)]
struct Upload {
    repo: String,
    data: Vec<u8>,
}

#[derive(Default, Debug)]
struct State {
    repos: Mutex<HashMap<String, Repo>>,
    uploads: Mutex<HashMap<String, Upload>>,
    upload_seq: AtomicU64,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<RequestRecord>>,
    required_auth: Mutex<Option<String>>,
    flood_sent: Arc<AtomicU64>,
    no_referrers_api: AtomicBool,
    no_deletes: AtomicBool,
}

/// Options of a [`FakeRegistry`] before it starts: [`FakeRegistry::builder`].
#[derive(Clone, Debug)]
pub struct FakeRegistryBuilder {
    referrers_api: bool,
    deletes: bool,
}

impl Default for FakeRegistryBuilder {
    fn default() -> Self {
        Self {
            referrers_api: true,
            deletes: true,
        }
    }
}

impl FakeRegistryBuilder {
    /// Whether the registry has the referrers API (default on). Off, it behaves as a
    /// distribution-spec 1.0 registry: `/referrers/` is a plain 404 and manifest pushes get no
    /// `OCI-Subject`.
    pub fn referrers_api(mut self, on: bool) -> Self {
        self.referrers_api = on;
        self
    }

    /// Whether `DELETE` of manifests is allowed (default on). Off, it answers `405
    /// UNSUPPORTED`, as registries with deletes disabled do.
    pub fn deletes(mut self, on: bool) -> Self {
        self.deletes = on;
        self
    }

    /// Starts the registry on 127.0.0.1:0.
    pub fn start(self) -> FakeRegistry {
        self.start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind 127.0.0.1:0")
    }

    /// Starts the registry on `addr`; errors when the address cannot be bound.
    pub fn start_on(self, addr: SocketAddr) -> std::io::Result<FakeRegistry> {
        let state = Arc::new(State::default());
        state
            .no_referrers_api
            .store(!self.referrers_api, Ordering::Relaxed);
        state.no_deletes.store(!self.deletes, Ordering::Relaxed);
        let st = state.clone();
        let server = HttpServer::start_on("fake-registry", addr, move |req| -> BoxFut {
            let st = st.clone();
            Box::pin(async move { serve::handle(st, req).await })
        })?;
        Ok(FakeRegistry { server, state })
    }
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
    /// Starts an empty fake registry on 127.0.0.1:0, with the referrers API and deletes.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Starts an empty fake registry on `addr` (e.g. `127.0.0.1:5000`); errors when the
    /// address cannot be bound.
    pub fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        Self::builder().start_on(addr)
    }

    /// Options before starting (e.g. `FakeRegistry::builder().referrers_api(false).start()`).
    pub fn builder() -> FakeRegistryBuilder {
        FakeRegistryBuilder::default()
    }

    /// Turns the referrers API on or off from now on (a registry upgraded, or downgraded,
    /// under its clients).
    pub fn set_referrers_api(&self, on: bool) {
        self.state.no_referrers_api.store(!on, Ordering::Relaxed);
    }

    /// Whether the referrers API is on.
    pub fn referrers_api(&self) -> bool {
        !self.state.no_referrers_api.load(Ordering::Relaxed)
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

    /// The manifest stored under `reference` (tag or digest) in `repo`, as served.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<Blob> {
        let repos = self.state.repos.lock().expect("lock");
        repos.get(repo)?.manifests.get(reference).cloned()
    }

    /// The blob `digest` of `repo`, as served.
    pub fn blob(&self, repo: &str, digest: &str) -> Option<Blob> {
        let repos = self.state.repos.lock().expect("lock");
        repos.get(repo)?.blobs.get(digest).cloned()
    }

    /// The tags of `repo`, sorted (empty when it does not exist).
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let repos = self.state.repos.lock().expect("lock");
        let mut tags: Vec<String> = repos
            .get(repo)
            .map(|r| {
                r.manifests
                    .keys()
                    .filter(|k| !k.contains(':'))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Blob uploads started and neither finished nor cancelled.
    pub fn open_uploads(&self) -> usize {
        self.state.uploads.lock().expect("lock").len()
    }

    /// Requests with `method` (e.g. `PUT`) for exactly `path`.
    pub fn requests_with(&self, method: &str, path: &str) -> Vec<RequestRecord> {
        self.state
            .log
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .cloned()
            .collect()
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
        self.state.flood_sent.load(Ordering::Relaxed)
    }

    /// Forgets the request log (faults stay).
    pub fn reset_counters(&self) {
        self.state.log.lock().expect("lock").clear();
    }
}

#[cfg(test)]
mod tests;
