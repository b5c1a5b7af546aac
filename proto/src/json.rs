//! The proto3 canonical JSON mapping of `sidescan.v1` messages (what `sidescan scan --format
//! json` prints and what report referrers carry), both ways, through the descriptor set.

use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage as _};

/// Why a message could not be rendered or read.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The message is not in the `sidescan.v1` descriptor set.
    #[error("no descriptor for {0}")]
    UnknownMessage(String),
    /// The text is not the message in the proto3 JSON mapping.
    #[error("{0}")]
    Invalid(String),
}

fn descriptor(full_name: &str) -> Result<prost_reflect::MessageDescriptor, JsonError> {
    let pool = DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET)
        .map_err(|e| JsonError::Invalid(e.to_string()))?;
    pool.get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessage(full_name.into()))
}

/// `message` (whose protobuf full name is `full_name`, e.g. `sidescan.v1.ScanResponse`) in the
/// proto3 canonical JSON mapping, pretty-printed, with a final newline.
pub fn to_string_pretty<M: prost::Message>(
    message: &M,
    full_name: &str,
) -> Result<String, JsonError> {
    let dynamic =
        DynamicMessage::decode(descriptor(full_name)?, message.encode_to_vec().as_slice())
            .map_err(|e| JsonError::Invalid(e.to_string()))?;
    let mut text =
        serde_json::to_string_pretty(&dynamic).map_err(|e| JsonError::Invalid(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

/// Reads a message of type `M` (full name `full_name`) from its proto3 JSON mapping. Unknown
/// fields are ignored, as the mapping allows, so newer writers stay readable.
pub fn from_slice<M: prost::Message + Default>(
    json: &[u8],
    full_name: &str,
) -> Result<M, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(false);
    let dynamic =
        DynamicMessage::deserialize_with_options(descriptor(full_name)?, &mut de, &options)
            .map_err(|e| JsonError::Invalid(e.to_string()))?;
    de.end().map_err(|e| JsonError::Invalid(e.to_string()))?;
    debug_assert_eq!(dynamic.descriptor().full_name(), full_name);
    dynamic
        .transcode_to::<M>()
        .map_err(|e| JsonError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{ScanReport, ScanResponse, Scanner};

    #[test]
    fn round_trip_and_errors() {
        let response = ScanResponse {
            report: Some(ScanReport {
                scanner: Some(Scanner {
                    name: "s".into(),
                    version: "1.0.0".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            reports: vec![],
        };
        let text = to_string_pretty(&response, "sidescan.v1.ScanResponse").unwrap();
        assert!(text.contains("\"name\": \"s\""), "{text}");
        let back: ScanResponse = from_slice(text.as_bytes(), "sidescan.v1.ScanResponse").unwrap();
        assert_eq!(back, response);
        assert!(
            from_slice::<ScanResponse>(b"{\"report\": 3}", "sidescan.v1.ScanResponse").is_err()
        );
        assert!(matches!(
            to_string_pretty(&response, "sidescan.v1.Nope"),
            Err(JsonError::UnknownMessage(_))
        ));
    }
}
