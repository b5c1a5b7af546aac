//! Registry events in: what each format says, reduced to "this manifest of this repository
//! changed". Formats are told apart by their headers ([`parse`]):
//!
//! | request | format |
//! |---|---|
//! | `Content-Type: application/vnd.docker.distribution.events.v1+json` | CNCF distribution notifications ([`distribution`]) |
//! | `Ce-Type` header | CloudEvents binary mode, zot's HTTP sink ([`cloudevent`]) |
//! | `Content-Type: application/cloudevents+json` | CloudEvents structured mode (zot's NATS sink, or HTTP) |

pub mod cloudevent;
pub mod distribution;

use axum::http::HeaderMap;

/// Which kind of source an event came from (a metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A CNCF distribution (docker-registry) notification.
    Distribution,
    /// A zot CloudEvent in binary mode over HTTP.
    CloudEventBinary,
    /// A CloudEvent in structured mode over HTTP.
    CloudEventStructured,
    /// A CloudEvent received over NATS.
    Nats,
    /// Found by the reconcile loop's walk of the catalog.
    Reconcile,
}

impl Kind {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Distribution => "distribution",
            Self::CloudEventBinary => "cloudevent-binary",
            Self::CloudEventStructured => "cloudevent-structured",
            Self::Nats => "nats",
            Self::Reconcile => "reconcile",
        }
    }
}

/// A manifest that was pushed: what the watcher acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePushed {
    /// Repository, e.g. `team/app`.
    pub repository: String,
    /// The tag pushed, if any.
    pub tag: Option<String>,
    /// The manifest digest, when the event names it.
    pub digest: Option<String>,
    /// The manifest's media type, when the event names it.
    pub media_type: Option<String>,
    /// Why this is not an image (decided from what the event carries), when already known.
    pub not_an_image: Option<String>,
}

/// What a request held.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Manifest pushes to consider.
    pub pushes: Vec<ImagePushed>,
    /// Events that were valid but are not manifest pushes (blob pushes, pulls, deletes, ...).
    pub ignored: usize,
}

/// Why an event request was refused (each maps to one HTTP status in [`EventError::status`]).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// No header says which format the body is in.
    #[error(
        "unsupported event format: want {DISTRIBUTION_ENVELOPE}, application/cloudevents+json, or CloudEvents binary mode (Ce-Type)"
    )]
    UnsupportedFormat,
    /// The body is not valid JSON of the format.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// A CloudEvent of a type the watcher does not know.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
}

impl EventError {
    /// The HTTP status: 415 for an unknown format, 400 for malformed JSON, 422 for an unknown
    /// event type.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::UnsupportedFormat => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::UnknownType(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// The distribution notification envelope media type.
pub const DISTRIBUTION_ENVELOPE: &str = "application/vnd.docker.distribution.events.v1+json";
/// The CloudEvents structured-mode JSON media type.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// Parses one `POST /events` request.
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<(Kind, Parsed), EventError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if content_type == DISTRIBUTION_ENVELOPE {
        return Ok((Kind::Distribution, distribution::parse(body)?));
    }
    if let Some(ce_type) = headers.get("ce-type") {
        let ce_type = ce_type
            .to_str()
            .map_err(|_| EventError::Malformed("Ce-Type is not text".into()))?;
        return Ok((
            Kind::CloudEventBinary,
            cloudevent::parse_binary(ce_type, body)?,
        ));
    }
    if content_type == CLOUDEVENTS_JSON {
        return Ok((
            Kind::CloudEventStructured,
            cloudevent::parse_structured(body)?,
        ));
    }
    Err(EventError::UnsupportedFormat)
}
