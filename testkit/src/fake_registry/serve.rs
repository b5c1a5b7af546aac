//! How the fake registry answers one request: the request routed over its in-memory
//! repositories (reads here, writes in [`super::push`], the referrers API in
//! [`super::referrers`]), then the injected fault applied to the answer.

use super::{Fault, RequestRecord, State, push, referrers};
use crate::oci::Blob;
use crate::server::{Body, full};
use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use std::sync::Arc;
use std::time::Duration;

/// An answer before faults are applied to it.
pub(super) struct Prepared {
    pub(super) status: u16,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Bytes,
    pub(super) head: bool,
}

impl Prepared {
    /// `status` with these headers and no body.
    pub(super) fn empty(status: u16, headers: Vec<(&'static str, String)>) -> Self {
        Self {
            status,
            headers,
            body: Bytes::new(),
            head: false,
        }
    }

    /// `status` with a body of `content_type`.
    pub(super) fn with_body(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            body: body.into(),
            head: false,
        }
    }
}

/// The request as the routes see it: method, path, decoded query, headers and the whole body.
pub(super) struct Req {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: Vec<(String, String)>,
    pub(super) headers: hyper::HeaderMap,
    pub(super) body: Bytes,
}

impl Req {
    /// A header as text.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of query parameter `key`.
    pub(super) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of query parameter `key`.
    pub(super) fn params<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `application/x-www-form-urlencoded` decoding as Go's `url.ParseQuery` does it (what
/// distribution and zot use): `+` is a space, `%XX` a byte.
fn parse_query(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(b[i + 1]), hex(b[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub(super) fn oci_error(status: u16, code: &str, message: &str) -> Prepared {
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

/// The `ETag` of a stored manifest: its digest, quoted.
pub(super) fn etag(manifest: &Blob) -> String {
    format!("\"{}\"", manifest.digest)
}

fn route(state: &State, req: &Req) -> Prepared {
    let (method, path) = (req.method.as_str(), req.path.as_str());
    let head = method == "HEAD";
    let read = method == "GET" || head;
    if path == "/v2/" || path == "/v2" {
        if !read {
            return oci_error(405, "UNSUPPORTED", "method not allowed");
        }
        return Prepared {
            head,
            ..Prepared::with_body(200, "application/json", Bytes::from_static(b"{}"))
        };
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return oci_error(404, "NOT_FOUND", "not a /v2/ path");
    };
    if let Some((name, tail)) = rest.split_once("/blobs/uploads")
        && (tail.is_empty() || tail.starts_with('/'))
    {
        let id = tail.trim_start_matches('/');
        return push::upload(state, req, name, (!id.is_empty()).then_some(id));
    }
    if let Some((name, digest)) = rest.rsplit_once("/referrers/") {
        return referrers::list(state, req, name, digest);
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        match method {
            "PUT" => return push::put_manifest(state, req, name, reference),
            "DELETE" => return push::delete_manifest(state, name, reference),
            _ if !read => return oci_error(405, "UNSUPPORTED", "method not allowed"),
            _ => {}
        }
    } else if !read {
        return oci_error(405, "UNSUPPORTED", "method not allowed");
    }
    let range = req.header("range");
    let repos = state.repos.lock().expect("lock");
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let Some(repo) = repos.get(name) else {
            return oci_error(404, "NAME_UNKNOWN", "repository name not known to registry");
        };
        let mut tags: Vec<&String> = repo.manifests.keys().filter(|k| !k.contains(':')).collect();
        tags.sort();
        let body = serde_json::json!({"name": name, "tags": tags}).to_string();
        return Prepared {
            head,
            ..Prepared::with_body(200, "application/json", body)
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
                ("etag", etag(m)),
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

fn take_fault(state: &State, method: &str, path: &str) -> Option<Fault> {
    let mut rules = state.rules.lock().expect("lock");
    let idx = rules
        .iter()
        .position(|r| r.matcher.matches(method, path) && r.remaining != Some(0))?;
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

pub(super) async fn handle(
    state: Arc<State>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // The whole body first (uploads and manifests are small here), also when a fault answers:
    // a client still sending would otherwise see the connection close instead of the answer.
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let req = Req {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parse_query(parts.uri.query().unwrap_or_default()),
        headers: parts.headers,
        body,
    };
    let header = |n: &str| req.header(n).map(str::to_owned);
    let authorization = header("authorization");
    state.log.lock().expect("lock").push(RequestRecord {
        method: req.method.clone(),
        path: req.path.clone(),
        range: header("range"),
        authorization: authorization.clone(),
        query: parts.uri.query().map(str::to_owned),
        if_match: header("if-match"),
    });
    let method = req.method.as_str();
    let fault = take_fault(&state, method, &req.path);
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
        (_, Some(required)) if authorization.as_deref() != Some(required.as_str()) => {
            oci_error(401, "UNAUTHORIZED", "authentication required")
        }
        _ => route(&state, &req),
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
