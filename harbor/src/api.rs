//! The HTTP layer: routes under `/api/v1`, headers and bodies. Behaviour lives in
//! [`HarborService`]; every error is an [`ApiError`] rendered as
//! `application/vnd.scanner.adapter.error+json; version=1.0`, also for what axum itself would
//! refuse (unreadable path or body, unknown route).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::error::{ApiError, error_response};
use crate::mime;
use crate::service::{HarborService, ReportAnswer};

/// The header Harbor reads on a 302 (an integer number of seconds).
pub const REFRESH_AFTER: &str = "Refresh-After";

/// Every route with the statuses it can answer (checked against `openapi.yaml` by a test).
pub const ROUTES: [(&str, &str, &[u16]); 3] = [
    ("get", "/api/v1/metadata", &[200, 500]),
    ("post", "/api/v1/scan", &[202, 400, 413, 422, 500, 501]),
    (
        "get",
        "/api/v1/scan/{scan_request_id}/report",
        &[200, 302, 400, 404, 500, 501],
    ),
];

/// The router serving the Harbor scanner-adapter API v1.2 under `/api/v1`.
pub fn router(service: Arc<HarborService>) -> Router {
    Router::new()
        .route("/api/v1/metadata", get(get_metadata))
        .route("/api/v1/scan", post(post_scan))
        .route("/api/v1/scan/{scan_request_id}/report", get(get_report))
        .fallback(not_found)
        .with_state(service)
}

fn with_content_type(mut response: Response, content_type: &'static str) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn get_metadata(
    State(service): State<Arc<HarborService>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let metadata = service.metadata().await?;
    let content_type = if mime::metadata_wants_v1_0(header_str(&headers, header::ACCEPT)) {
        mime::METADATA_V1_0
    } else {
        mime::METADATA_V1_1
    };
    let body = serde_json::to_string(&metadata)
        .map_err(|e| ApiError::Backend(format!("cannot encode metadata: {e}")))?;
    Ok(with_content_type(
        (StatusCode::OK, body).into_response(),
        content_type,
    ))
}

async fn post_scan(
    State(service): State<Arc<HarborService>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let body = body.map_err(|e| error_response(e.status(), &e.body_text()))?;
    let id = service
        .submit(&body)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(with_content_type(
        (StatusCode::ACCEPTED, json!({ "id": id }).to_string()).into_response(),
        mime::SCAN_RESPONSE,
    ))
}

async fn get_report(
    State(service): State<Arc<HarborService>>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::UnknownJob(String::new()))?;
    let sbom_media_type = query
        .as_deref()
        .and_then(|q| query_value(q, "sbom_media_type"));
    let answer = service
        .report(
            &id,
            header_str(&headers, header::ACCEPT),
            sbom_media_type.as_deref(),
        )
        .await?;
    Ok(match answer {
        ReportAnswer::NotReady(secs) => {
            let mut response = StatusCode::FOUND.into_response();
            response
                .headers_mut()
                .insert(REFRESH_AFTER, HeaderValue::from(secs));
            response
        }
        ReportAnswer::Ready(kind, document) => with_content_type(
            (StatusCode::OK, document.to_string()).into_response(),
            kind.media_type(),
        ),
    })
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "no such endpoint")
}

/// The first value of `key` in an `application/x-www-form-urlencoded` query.
fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == key).then(|| decode(v))
    })
}

/// Percent- and `+`-decoding; malformed escapes are kept as they are.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_as_forms() {
        assert_eq!(
            query_value(
                "sbom_media_type=application%2Fspdx%2Bjson",
                "sbom_media_type"
            )
            .as_deref(),
            Some("application/spdx+json")
        );
        assert_eq!(query_value("a=1&b=x+y", "b").as_deref(), Some("x y"));
        assert_eq!(query_value("a=%zz%", "a").as_deref(), Some("%zz%"));
        assert_eq!(query_value("a=%4", "a").as_deref(), Some("%4"));
        assert_eq!(query_value("a", "b"), None);
    }
}
