//! How the fake registry answers one request: the read API routed over its in-memory
//! repositories, then the injected fault applied to the answer.

use super::{Fault, RequestRecord, State};
use crate::server::{Body, full};
use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use std::sync::Arc;
use std::time::Duration;
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

pub(super) async fn handle(
    state: Arc<State>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Response<Body> {
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
