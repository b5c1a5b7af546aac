//! [`ApiError`], the crate's one error enum, and its one mapping to HTTP statuses.
//!
//! | variant            | status | when                                                           |
//! |--------------------|--------|----------------------------------------------------------------|
//! | `BadJson`          | 400    | the scan request is not JSON, or a value has the wrong type    |
//! | `BadReportQuery`   | 400    | SBOM report without (or with a bad, or unrequested) `sbom_media_type` |
//! | `UnknownJob`       | 404    | no such scan id (never issued, or expired after the job TTL)   |
//! | `InvalidField`     | 422    | a field is missing or malformed (URL, repository, digest, ...) |
//! | `Unsupported`      | 501    | artifact type, capability or report type the plugin lacks      |
//! | `ScanFailed`       | 500    | the plugin answered the scan with an error (report GET only)   |
//! | `Backend`, `Store` | 500    | the plugin cannot be reached for metadata; the job store failed |
//!
//! The caller's mistakes are 4xx or 501; 500 means the plugin or this adapter failed. A failed scan
//! is 500 because the spec has Harbor poll "until 200 or 500": it is the one terminal error the
//! spec gives the report endpoint, and Harbor marks the scan as failed with the message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::mime;

/// Why a request was not answered with what it asked for.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON of the expected shape.
    #[error("invalid JSON: {0}")]
    BadJson(String),
    /// A field is missing or invalid.
    #[error("{0}")]
    InvalidField(String),
    /// The plugin cannot do what was asked (artifact type, capability, report type).
    #[error("{0}")]
    Unsupported(String),
    /// The report query is incomplete or invalid (`sbom_media_type`).
    #[error("{0}")]
    BadReportQuery(String),
    /// No job has this id (or it expired).
    #[error("unknown scan request id {0:?} (never issued, or expired)")]
    UnknownJob(String),
    /// The scan (or the one report type asked for) failed in the plugin.
    #[error("scan failed: {code}: {message}")]
    ScanFailed {
        /// The gRPC code name, e.g. `NOT_FOUND`.
        code: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin could not be reached or answered metadata with an error.
    #[error("scanner plugin unavailable: {0}")]
    Backend(String),
    /// The job store failed.
    #[error("job store: {0}")]
    Store(String),
}

impl ApiError {
    /// The HTTP status of this error (the one mapping).
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadJson(_) | ApiError::BadReportQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::UnknownJob(_) => StatusCode::NOT_FOUND,
            ApiError::InvalidField(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::ScanFailed { .. } | ApiError::Backend(_) | ApiError::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        error_response(status, &self.to_string())
    }
}

/// `{"error":{"message"}}` as [`mime::ERROR`] with `status`.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    let body = json!({ "error": { "message": message } }).to_string();
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime::ERROR));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_mistakes_are_never_500() {
        for e in [
            ApiError::BadJson(String::new()),
            ApiError::InvalidField(String::new()),
            ApiError::Unsupported(String::new()),
            ApiError::BadReportQuery(String::new()),
            ApiError::UnknownJob(String::new()),
        ] {
            assert_ne!(e.status(), StatusCode::INTERNAL_SERVER_ERROR, "{e:?}");
        }
    }
}
