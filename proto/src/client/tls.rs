//! [`TlsOptions`] for `https://` plugin URLs, and the connector setup: the [`Endpoint`] for a
//! parsed [`Target`], with TLS exactly when the URL asks for it.

use std::{fmt, path::Path};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Uri};

use super::error::{ClientError, error_chain};
use super::target::Target;

/// TLS settings for `https://` plugin URLs.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// PEM of the CA certificate(s) that signed the plugin's certificate. Required for https:
    /// the client trusts no system roots.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// PEM of the client certificate, for mutual TLS (needs `client_key_pem`).
    pub client_cert_pem: Option<Vec<u8>>,
    /// PEM of the client certificate's private key, for mutual TLS.
    pub client_key_pem: Option<Vec<u8>>,
    /// Server name to verify instead of the URL's host (e.g. when connecting by IP address).
    pub domain: Option<String>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_cert_pem", &self.ca_cert_pem.as_ref().map(|b| b.len()))
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(|b| b.len()),
            )
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("domain", &self.domain)
            .finish()
    }
}

impl TlsOptions {
    /// Reads the CA certificate and, optionally, the client certificate and key from PEM files.
    pub fn from_files(
        ca_cert: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let read = |what: &'static str, path: Option<&Path>| {
            path.map(|path| {
                std::fs::read(path).map_err(|source| ClientError::ReadFile {
                    what,
                    path: path.to_path_buf(),
                    source,
                })
            })
            .transpose()
        };
        Ok(TlsOptions {
            ca_cert_pem: read("CA certificate", ca_cert)?,
            client_cert_pem: read("client certificate", client_cert)?,
            client_key_pem: read("client key", client_key)?,
            domain: None,
        })
    }

    /// Sets the server name to verify.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.ca_cert_pem.is_none()
            && self.client_cert_pem.is_none()
            && self.client_key_pem.is_none()
            && self.domain.is_none()
    }

    fn to_tonic(&self, url: &str) -> Result<ClientTlsConfig, ClientError> {
        let tls_err = |reason: &str| ClientError::Tls {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let ca = self.ca_cert_pem.as_ref().ok_or_else(|| {
            tls_err("no CA certificate given: an https plugin URL needs the CA that signed the plugin's certificate")
        })?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(cert), Some(key)) => config = config.identity(Identity::from_pem(cert, key)),
            (None, None) => {}
            (Some(_), None) => return Err(tls_err("a client certificate needs its key")),
            (None, Some(_)) => return Err(tls_err("a client key needs its certificate")),
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }
}

/// The endpoint for `target` (not yet bounded by the connect timeout): TLS from `tls` for an
/// `https://` URL, which needs it; plain for `http://` and unix sockets, which refuse it.
pub(super) fn endpoint(
    url: &str,
    target: &Target,
    tls: Option<&TlsOptions>,
) -> Result<Endpoint, ClientError> {
    Ok(match target {
        Target::Tcp { uri, tls: true } => {
            let config = tls
                .ok_or_else(|| ClientError::Tls {
                    url: url.to_string(),
                    reason: "an https plugin URL needs TLS options (at least a CA certificate)"
                        .to_string(),
                })?
                .to_tonic(url)?;
            Endpoint::from(uri.clone())
                .tls_config(config)
                .map_err(|e| ClientError::Tls {
                    url: url.to_string(),
                    reason: error_chain(&e),
                })?
        }
        Target::Tcp { uri, tls: false } => {
            if tls.is_some() {
                return Err(ClientError::Tls {
                    url: url.to_string(),
                    reason: "TLS options given for a plain http URL; use https://".to_string(),
                });
            }
            Endpoint::from(uri.clone())
        }
        Target::Unix(_) => {
            if tls.is_some() {
                return Err(ClientError::Tls {
                    url: url.to_string(),
                    reason: "TLS options given for a unix socket".to_string(),
                });
            }
            // The authority is only used for the :authority pseudo-header.
            Endpoint::from(Uri::from_static("http://localhost"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientOptions;
    use crate::client::target::prepare;

    #[test]
    fn tls_options_must_fit_the_url() {
        let tls = TlsOptions {
            ca_cert_pem: Some(b"x".to_vec()),
            ..Default::default()
        };
        let options = ClientOptions::default().tls(tls.clone());
        assert!(matches!(
            prepare("http://127.0.0.1:1", &options),
            Err(ClientError::Tls { .. })
        ));
        assert!(matches!(
            prepare("unix:/x.sock", &options),
            Err(ClientError::Tls { .. })
        ));
        assert!(matches!(
            prepare("https://127.0.0.1:1", &ClientOptions::default()),
            Err(ClientError::Tls { .. })
        ));
        let cert_only = TlsOptions {
            client_cert_pem: Some(b"x".to_vec()),
            ..tls
        };
        assert!(matches!(
            prepare(
                "https://127.0.0.1:1",
                &ClientOptions::default().tls(cert_only)
            ),
            Err(ClientError::Tls { .. })
        ));
    }

    #[test]
    fn tls_debug_redacts_the_key() {
        let tls = TlsOptions {
            client_key_pem: Some(b"SECRET".to_vec()),
            ..Default::default()
        };
        assert!(!format!("{tls:?}").contains("SECRET"));
    }
}
