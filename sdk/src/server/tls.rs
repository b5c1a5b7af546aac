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

/// The same TLS / mTLS settings as a rustls server config, for the HTTP listeners
/// (`--harbor-listen`), or `None` for plaintext.
pub(crate) fn rustls_config(
    config: &ServerConfig,
) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ServeError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let bad = |what: &str, e: &dyn std::fmt::Display| ServeError::Config(format!("{what}: {e}"));
    let chain = CertificateDer::pem_slice_iter(&read(cert, "TLS certificate")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("TLS certificate", &e))?;
    let key =
        PrivateKeyDer::from_pem_slice(&read(key, "TLS key")?).map_err(|e| bad("TLS key", &e))?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?;
    let builder = match &config.tls_client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read(ca, "client CA")?) {
                roots
                    .add(c.map_err(|e| bad("client CA", &e))?)
                    .map_err(|e| bad("client CA", &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| bad("client CA", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut tls = builder
        .with_single_cert(chain, key)
        .map_err(|e| bad("TLS certificate and key", &e))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(std::sync::Arc::new(tls)))
}
