//! Registry credentials from an HTTP `Authorization` value (`Registry.authorization`).
//!
//! The value is a secret: it is never logged, never part of an error message, and only its
//! SHA-256 is kept as a key to pick the registry transport (and its token cache) of this
//! credential set.

use std::fmt;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::input::RegistryCredentials;

/// Parsed credentials. `Debug` never shows the secret.
#[derive(Clone)]
pub(crate) struct Credentials {
    /// What `oci-client` sends (Basic also performs the token-service exchange).
    pub auth: RegistryAuth,
    /// SHA-256 of the raw authorization value: identifies the credential set without revealing it.
    pub key: [u8; 32],
}

impl Credentials {
    /// Whether no credentials were given.
    pub(crate) fn is_anonymous(&self) -> bool {
        matches!(self.auth, RegistryAuth::Anonymous)
    }
}

impl Credentials {
    /// The credentials as a [`Input::Remote`](crate::Input::Remote) scanner gets them.
    pub(crate) fn to_registry_credentials(&self) -> RegistryCredentials {
        match &self.auth {
            RegistryAuth::Anonymous => RegistryCredentials::Anonymous,
            RegistryAuth::Basic(username, password) => RegistryCredentials::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            RegistryAuth::Bearer(token) => RegistryCredentials::Bearer {
                token: token.clone(),
            },
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.auth {
            RegistryAuth::Anonymous => "anonymous",
            RegistryAuth::Basic(..) => "basic",
            RegistryAuth::Bearer(..) => "bearer",
        };
        f.debug_struct("Credentials")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

/// Parses `""`, `"Basic base64(user:pass)"` or `"Bearer token"` (scheme case-insensitive).
/// Anything else is INVALID_ARGUMENT; the message never contains the value.
pub(crate) fn parse_authorization(value: &str) -> Result<Credentials, Error> {
    let key: [u8; 32] = Sha256::digest(value.as_bytes()).into();
    let value = value.trim();
    if value.is_empty() {
        return Ok(Credentials {
            auth: RegistryAuth::Anonymous,
            key,
        });
    }
    let (scheme, rest) = value.split_once(' ').ok_or_else(|| {
        Error::invalid_argument(
            "registry.authorization: expected \"Basic <base64>\" or \"Bearer <token>\"",
        )
    })?;
    let rest = rest.trim();
    let auth = if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| {
                Error::invalid_argument(
                    "registry.authorization: Basic credentials are not valid base64",
                )
            })?;
        let decoded = String::from_utf8(decoded).map_err(|_| {
            Error::invalid_argument("registry.authorization: Basic credentials are not UTF-8")
        })?;
        let (user, pass) = decoded.split_once(':').ok_or_else(|| {
            Error::invalid_argument(
                "registry.authorization: Basic credentials must be base64 of user:password",
            )
        })?;
        if user.is_empty() {
            return Err(Error::invalid_argument(
                "registry.authorization: Basic credentials have an empty user name",
            ));
        }
        RegistryAuth::Basic(user.to_string(), pass.to_string())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() || rest.contains(char::is_whitespace) || !rest.is_ascii() {
            return Err(Error::invalid_argument(
                "registry.authorization: Bearer token is empty or malformed",
            ));
        }
        RegistryAuth::Bearer(rest.to_string())
    } else {
        return Err(Error::invalid_argument(
            "registry.authorization: unsupported scheme (expected Basic or Bearer)",
        ));
    };
    Ok(Credentials { auth, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn parses_the_three_forms() {
        assert!(parse_authorization("").unwrap().is_anonymous());
        let c = parse_authorization(&format!("Basic {}", b64("alice:s3:cret"))).unwrap();
        assert!(matches!(&c.auth, RegistryAuth::Basic(u, p) if u == "alice" && p == "s3:cret"));
        let c = parse_authorization(&format!("basic  {}", b64("bob:"))).unwrap();
        assert!(matches!(&c.auth, RegistryAuth::Basic(u, p) if u == "bob" && p.is_empty()));
        let c = parse_authorization("Bearer abc.def-ghi").unwrap();
        assert!(matches!(&c.auth, RegistryAuth::Bearer(t) if t == "abc.def-ghi"));
    }

    #[test]
    fn rejects_malformed_without_echoing_the_secret() {
        for bad in [
            "Basic",
            "Basic !!!notbase64",
            &format!("Basic {}", b64("no-colon-secretvalue")),
            &format!("Basic {}", b64(":secretvalue")),
            "Bearer ",
            "Bearer two secretvalue",
            "Digest secretvalue",
            "secretvalue",
        ] {
            let err = parse_authorization(bad).expect_err(bad);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(!err.to_string().contains("secretvalue"), "{err}");
        }
    }

    #[test]
    fn keys_differ_per_credential_and_debug_hides_secrets() {
        let a = parse_authorization(&format!("Basic {}", b64("u:one"))).unwrap();
        let b = parse_authorization(&format!("Basic {}", b64("u:two"))).unwrap();
        assert_ne!(a.key, b.key);
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("one") && dbg.contains("basic"), "{dbg}");
    }
}
