//! The HTTP endpoint: `POST /events` (every event format; see [`crate::event`]), `GET /healthz`
//! (ready: the registry and every plugin answer), `GET /livez`, `GET /metrics`.
//!
//! | answer | when |
//! |---|---|
//! | 202 | events accepted (queued, duplicates, or valid events that are not manifest pushes) |
//! | 400 | malformed JSON |
//! | 403 | the caller is not in `--allow-event-source` |
//! | 408 | the body did not arrive within `--event-timeout` |
//! | 413 | the body is larger than `--max-event-bytes` |
//! | 415 | no header names a known format |
//! | 422 | a CloudEvent of an unknown type |
//! | 503 | the queue is full (`Retry-After` set: the registry retries) |

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::event;
use crate::watcher::Watcher;

/// Limits of the events endpoint.
#[derive(Clone, Debug)]
pub struct EventLimits {
    /// Largest body.
    pub max_bytes: usize,
    /// Time to receive the body.
    pub timeout: Duration,
    /// Callers allowed (empty: any).
    pub allowed: Vec<IpAddr>,
}

#[derive(Clone)]
struct AppState {
    watcher: Arc<Watcher>,
    limits: Arc<EventLimits>,
}

/// The router.
pub fn router(watcher: Arc<Watcher>, limits: EventLimits) -> Router {
    Router::new()
        .route("/events", post(events))
        .route("/healthz", get(healthz))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(AppState {
            watcher,
            limits: Arc::new(limits),
        })
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (status, axum::Json(json!({"error": message}))).into_response()
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

async fn events(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limits = &state.limits;
    let watcher = &state.watcher;
    let peer_ip = canonical(peer.ip());
    if !limits.allowed.is_empty() && !limits.allowed.iter().any(|ip| canonical(*ip) == peer_ip) {
        watcher.metrics.event("unknown", "refused", 1);
        tracing::warn!(%peer, "event from a caller not in --allow-event-source");
        return problem(StatusCode::FORBIDDEN, "caller not allowed");
    }
    let read = axum::body::to_bytes(body, limits.max_bytes);
    let bytes = match tokio::time::timeout(limits.timeout, read).await {
        Err(_) => {
            watcher.metrics.event("unknown", "refused", 1);
            tracing::warn!(%peer, "event body timed out");
            return problem(StatusCode::REQUEST_TIMEOUT, "body not received in time");
        }
        Ok(Err(e)) => {
            watcher.metrics.event("unknown", "refused", 1);
            tracing::warn!(%peer, error = %e, "event body refused");
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes or broken", limits.max_bytes),
            );
        }
        Ok(Ok(bytes)) => bytes,
    };
    let (kind, parsed) = match event::parse(&headers, &bytes) {
        Ok(parsed) => parsed,
        Err(e) => {
            watcher.metrics.event("unknown", "refused", 1);
            tracing::warn!(%peer, error = %e, "bad event");
            return problem(e.status(), e.to_string());
        }
    };
    watcher
        .metrics
        .event(kind.label(), "ignored", parsed.ignored as u64);
    let pushes = parsed.pushes.len();
    tracing::info!(%peer, kind = kind.label(), pushes, ignored = parsed.ignored, "events received");
    match watcher.accept(kind, parsed.pushes) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"queued": pushes, "ignored": parsed.ignored})),
        )
            .into_response(),
        Err(full) => {
            let mut response = problem(StatusCode::SERVICE_UNAVAILABLE, full.to_string());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, "5".parse().expect("static header"));
            response
        }
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    let (ready, why) = state.watcher.readiness();
    let queue = state.watcher.queue.len();
    if ready {
        axum::Json(json!({"status": "ready", "queue": queue})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "reason": why, "queue": queue})),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.watcher.metrics.render(),
    )
        .into_response()
}
