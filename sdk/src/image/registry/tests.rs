//! The mapping of registry errors to status codes, and which are retried.

use super::*;
use oci_client::errors::{OciEnvelope, OciError};

fn env(code: OciErrorCode) -> OciDistributionError {
    OciDistributionError::RegistryError {
        envelope: OciEnvelope {
            errors: vec![OciError {
                code,
                message: "m".into(),
                detail: serde_json::Value::Null,
            }],
        },
        url: "http://127.0.0.1/v2/x".into(),
    }
}

#[test]
fn oci_errors_map_to_status_codes() {
    use tonic::Code;
    let cases = vec![
        (
            OciDistributionError::UnauthorizedError { url: "u".into() },
            Code::Unauthenticated,
        ),
        (
            OciDistributionError::AuthenticationFailure("nope".into()),
            Code::Unauthenticated,
        ),
        (env(OciErrorCode::Unauthorized), Code::Unauthenticated),
        (env(OciErrorCode::Denied), Code::PermissionDenied),
        (env(OciErrorCode::ManifestUnknown), Code::NotFound),
        (env(OciErrorCode::NameUnknown), Code::NotFound),
        (env(OciErrorCode::BlobUnknown), Code::NotFound),
        (env(OciErrorCode::Toomanyrequests), Code::Unavailable),
        (
            OciDistributionError::ServerError {
                code: 403,
                url: "u".into(),
                message: String::new(),
            },
            Code::PermissionDenied,
        ),
        (
            OciDistributionError::ServerError {
                code: 404,
                url: "u".into(),
                message: String::new(),
            },
            Code::NotFound,
        ),
        (
            OciDistributionError::ServerError {
                code: 503,
                url: "u".into(),
                message: String::new(),
            },
            Code::Unavailable,
        ),
        (
            OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
                expected: "a".into(),
                actual: "b".into(),
            }),
            Code::DataLoss,
        ),
    ];
    for (e, code) in cases {
        let text = format!("{e}");
        let mapped = map_oci_error(e, "manifest x", false);
        assert_eq!(mapped.code(), code, "{text} -> {mapped}");
    }
    assert!(
        map_oci_error(
            OciDistributionError::UnauthorizedError { url: "u".into() },
            "m",
            true
        )
        .message()
        .contains("requires credentials")
    );
    assert!(is_retryable(&OciDistributionError::ServerError {
        code: 502,
        url: "u".into(),
        message: String::new()
    }));
    assert!(!is_retryable(&OciDistributionError::ServerError {
        code: 404,
        url: "u".into(),
        message: String::new()
    }));
}
