//! TLS and mTLS settings from PEM files.

use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::ServeError;
use super::config::ServerConfig;

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path)
        .map_err(|e| ServeError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

/// The TLS config the flags ask for, or `None` for plaintext.
pub(crate) fn server_tls(config: &ServerConfig) -> Result<Option<ServerTlsConfig>, ServeError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read(cert, "TLS certificate")?,
        read(key, "TLS key")?,
    ));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(Some(tls))
}
