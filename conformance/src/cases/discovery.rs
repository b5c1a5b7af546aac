//! `discovery/`: the plugin answers health, reflection and `GetMetadata` consistently.

use super::{Ctx, fail, is_semver, skip};
use crate::{Case, CaseResult};
use sidescan_proto::mime;
use sidescan_proto::v1::Limits;
use tonic::Code;

/// The `discovery/` cases, in run order.
pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "discovery/health-is-serving",
            "grpc.health.v1 Check for sidescan.v1.Scan answers SERVING",
            discovery_health
        ),
        case!(
            "discovery/reflection-lists-scan-service",
            "gRPC server reflection lists sidescan.v1.Scan",
            discovery_reflection
        ),
        case!(
            "discovery/metadata-names-the-scanner",
            "GetMetadata names the scanner with a semantic version",
            discovery_scanner
        ),
        case!(
            "discovery/metadata-api-version",
            "GetMetadata reports api_version sidescan.v1",
            discovery_api_version
        ),
        case!(
            "discovery/metadata-capabilities-use-known-mime-types",
            "every capability has a type, consumes media types and produces known report MIME types",
            discovery_capabilities
        ),
        case!(
            "discovery/metadata-is-stable",
            "two GetMetadata calls describe the same plugin",
            discovery_stable
        ),
        case!(
            "discovery/metadata-limits-are-consistent",
            "default_timeout is not above max_timeout",
            discovery_limits
        ),
    ]
}

async fn discovery_health(cx: &Ctx) -> CaseResult {
    cx.expect_healthy().await
}

async fn discovery_reflection(cx: &Ctx) -> CaseResult {
    use tonic_reflection::pb::{v1, v1alpha};
    let want = sidescan_proto::SCAN_SERVICE_NAME;
    let channel = cx.client.channel();
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let services: Vec<String> = match client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
    {
        Ok(response) => {
            let mut stream = response.into_inner();
            match stream.message().await {
                Ok(Some(v1::ServerReflectionResponse {
                    message_response:
                        Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(
                            list,
                        )),
                    ..
                })) => list.service.into_iter().map(|s| s.name).collect(),
                other => return Err(fail(format!("reflection v1 ListServices: {other:?}"))),
            }
        }
        Err(status) if status.code() == Code::Unimplemented => {
            let request = v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
                ),
            };
            let mut client =
                v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
            let response = client
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .map_err(|s| fail(format!("no gRPC reflection service (v1 or v1alpha): {s}")))?;
            let mut stream = response.into_inner();
            match stream.message().await {
                Ok(Some(v1alpha::ServerReflectionResponse {
                    message_response:
                        Some(
                            v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(
                                list,
                            ),
                        ),
                    ..
                })) => list.service.into_iter().map(|s| s.name).collect(),
                other => return Err(fail(format!("reflection v1alpha ListServices: {other:?}"))),
            }
        }
        Err(status) => return Err(fail(format!("reflection v1 ListServices: {status}"))),
    };
    if services.iter().any(|s| s == want) {
        Ok(())
    } else {
        Err(fail(format!(
            "expected reflection to list {want}, got {services:?}"
        )))
    }
}

async fn discovery_scanner(cx: &Ctx) -> CaseResult {
    let Some(scanner) = &cx.meta.scanner else {
        return Err(fail("GetMetadata has no scanner"));
    };
    if scanner.name.trim().is_empty() {
        return Err(fail("scanner.name is empty"));
    }
    if !is_semver(&scanner.version) {
        return Err(fail(format!(
            "scanner.version {:?} is not a semantic version (MAJOR.MINOR.PATCH)",
            scanner.version
        )));
    }
    Ok(())
}

async fn discovery_api_version(cx: &Ctx) -> CaseResult {
    if cx.meta.api_version == sidescan_proto::API_VERSION {
        Ok(())
    } else {
        Err(fail(format!(
            "expected api_version {:?}, got {:?}",
            sidescan_proto::API_VERSION,
            cx.meta.api_version
        )))
    }
}

async fn discovery_capabilities(cx: &Ctx) -> CaseResult {
    if cx.meta.capabilities.is_empty() {
        return Err(fail("GetMetadata lists no capability"));
    }
    let known: Vec<String> = mime::KNOWN_REPORTS
        .iter()
        .map(|m| mime::normalize(m))
        .collect();
    for (i, c) in cx.meta.capabilities.iter().enumerate() {
        if c.r#type.trim().is_empty() {
            return Err(fail(format!("capability #{i} has no type")));
        }
        if c.produces_mime_types.is_empty() {
            return Err(fail(format!("capability {:?} produces nothing", c.r#type)));
        }
        for m in &c.produces_mime_types {
            if !known.contains(&mime::normalize(m)) {
                return Err(fail(format!(
                    "capability {:?} produces {m:?}, not a known report MIME type ({})",
                    c.r#type,
                    mime::KNOWN_REPORTS.join(", ")
                )));
            }
        }
        for m in &c.consumes_mime_types {
            let ok = m.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty() && !b.is_empty() && !m.contains(char::is_whitespace)
            });
            if !ok {
                return Err(fail(format!(
                    "capability {:?} consumes {m:?}, not a media type",
                    c.r#type
                )));
            }
        }
    }
    Ok(())
}

async fn discovery_stable(cx: &Ctx) -> CaseResult {
    let again = cx
        .client
        .metadata()
        .await
        .map_err(|e| fail(format!("second GetMetadata: {e}")))?;
    if again.scanner != cx.meta.scanner
        || again.api_version != cx.meta.api_version
        || again.capabilities != cx.meta.capabilities
        || again.features != cx.meta.features
    {
        return Err(fail(format!(
            "GetMetadata changed between calls: {:?} then {:?}",
            (&cx.meta.scanner, &cx.meta.capabilities, &cx.meta.features),
            (&again.scanner, &again.capabilities, &again.features)
        )));
    }
    Ok(())
}

async fn discovery_limits(cx: &Ctx) -> CaseResult {
    let limits = cx.limits();
    let secs = |d: &Option<prost_types::Duration>| d.as_ref().map(|d| (d.seconds, d.nanos));
    match (secs(&limits.default_timeout), secs(&limits.max_timeout)) {
        (Some(default), Some(max)) if max != (0, 0) && default > max => Err(fail(format!(
            "limits.default_timeout {default:?} is above limits.max_timeout {max:?}"
        ))),
        (None, None) if limits == Limits::default() => Err(skip("the plugin advertises no limits")),
        _ => Ok(()),
    }
}
