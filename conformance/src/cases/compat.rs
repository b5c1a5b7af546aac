//! `compat/`: messages from a newer host (unknown fields) are accepted.

use super::{Ctx, clean_placed, fail};
use crate::{Case, CaseResult, Outcome};
use prost::Message;
use sidescan_proto::client::code_name;
use sidescan_proto::v1::{GetMetadataResponse, ScanResponse};

/// The `compat/` cases, in run order.
pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "compat/unknown-fields-in-scan-request-are-accepted",
            "a ScanRequest carrying unknown fields is scanned",
            compat_scan_unknown_fields
        ),
        case!(
            "compat/unknown-fields-in-metadata-request-are-accepted",
            "a GetMetadataRequest carrying unknown fields is answered",
            compat_metadata_unknown_fields
        ),
    ]
}

/// Appends unknown fields (a varint with field number 1000 and a string with 1001), as a newer
/// host would send them.
fn with_unknown_fields(mut bytes: Vec<u8>) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    encode_key(1000, WireType::Varint, &mut bytes);
    encode_varint(42, &mut bytes);
    let text = b"a field from a future version";
    encode_key(1001, WireType::LengthDelimited, &mut bytes);
    encode_varint(text.len() as u64, &mut bytes);
    bytes.extend_from_slice(text);
    bytes
}

async fn raw_call(cx: &Ctx, method: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Outcome> {
    let mut grpc = tonic::client::Grpc::new(cx.client.channel());
    grpc.ready()
        .await
        .map_err(|e| fail(format!("plugin connection not ready: {e}")))?;
    let mut request = tonic::Request::new(body);
    request.set_timeout(cx.case_timeout);
    let path = http::uri::PathAndQuery::from_static(method);
    grpc.unary(request, path, sidescan_testkit::grpc::RawCodec)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| {
            fail(format!(
                "expected OK, got {}: {}",
                code_name(s.code()),
                s.message()
            ))
        })
}

async fn compat_scan_unknown_fields(cx: &Ctx) -> CaseResult {
    let placed = clean_placed(cx).await?;
    let body = with_unknown_fields(cx.req(placed.by_tag()).encode_to_vec());
    let reply = raw_call(cx, "/sidescan.v1.Scan/ScanImage", body).await?;
    let response = ScanResponse::decode(reply.as_slice())
        .map_err(|e| fail(format!("the answer is not a ScanResponse: {e}")))?;
    let digest = response
        .report
        .and_then(|r| r.image)
        .map(|i| i.digest)
        .unwrap_or_default();
    if digest != placed.digest {
        return Err(fail(format!(
            "expected report.image.digest {}, got {digest:?}",
            placed.digest
        )));
    }
    Ok(())
}

async fn compat_metadata_unknown_fields(cx: &Ctx) -> CaseResult {
    let body = with_unknown_fields(Vec::new());
    let reply = raw_call(cx, "/sidescan.v1.Scan/GetMetadata", body).await?;
    let response = GetMetadataResponse::decode(reply.as_slice())
        .map_err(|e| fail(format!("the answer is not a GetMetadataResponse: {e}")))?;
    if response.api_version != cx.meta.api_version {
        return Err(fail(format!(
            "api_version {:?} differs from the plain call's {:?}",
            response.api_version, cx.meta.api_version
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidescan_proto::v1::ScanRequest;

    #[test]
    fn unknown_fields_decode_as_the_same_message() {
        let request = ScanRequest {
            image: "app:1".into(),
            ..Default::default()
        };
        let bytes = with_unknown_fields(request.encode_to_vec());
        assert_eq!(ScanRequest::decode(bytes.as_slice()).ok(), Some(request));
    }
}
