//! How a plugin address is parsed (`http://host:port`, `https://host:port`, `unix:/path`) and
//! dialled: over TCP by tonic, or over a Unix socket with a connector of our own.

use std::{
    path::{Path, PathBuf},
    pin::Pin,
};

use hyper_util::rt::TokioIo;
use tonic::{
    metadata::AsciiMetadataValue,
    transport::{Channel, Endpoint, Uri},
};

use super::error::ClientError;
use super::{ClientOptions, parse_request_id, tls};

/// A parsed plugin address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// `http://` or (`tls`) `https://` host and port.
    Tcp {
        /// The URL, path-less.
        uri: Uri,
        /// Whether the scheme is `https`.
        tls: bool,
    },
    /// A Unix socket path.
    Unix(PathBuf),
}

/// Parses a plugin URL; [`ClientError::InvalidUrl`] says what is wrong with it.
pub(super) fn parse_target(url: &str) -> Result<Target, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if let Some(rest) = url.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(invalid("no socket path after \"unix:\""));
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err(invalid(&format!(
                "unsupported scheme {other:?}; expected http://host:port, https://host:port or unix:/path"
            )));
        }
        None => {
            return Err(invalid(
                "no scheme; expected http://host:port, https://host:port or unix:/path",
            ));
        }
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("a plugin URL has no path or query"));
    }
    Ok(Target::Tcp { uri, tls })
}

impl Target {
    /// Connects now (the caller bounds the wait with the connect timeout).
    pub(super) async fn dial(
        &self,
        endpoint: &Endpoint,
    ) -> Result<Channel, tonic::transport::Error> {
        match self {
            Target::Tcp { .. } => endpoint.connect().await,
            Target::Unix(path) => endpoint.connect_with_connector(unix_connector(path)).await,
        }
    }

    /// A channel that connects on first use.
    pub(super) fn dial_lazy(&self, endpoint: &Endpoint) -> Channel {
        match self {
            Target::Tcp { .. } => endpoint.connect_lazy(),
            Target::Unix(path) => endpoint.connect_with_connector_lazy(unix_connector(path)),
        }
    }
}

/// Checks everything a connection needs before dialling: the URL, the request id, the TLS
/// options against the URL. Returns the endpoint (with the connect timeout), the target and the
/// request id as metadata.
pub(super) fn prepare(
    url: &str,
    options: &ClientOptions,
) -> Result<(Endpoint, Target, Option<AsciiMetadataValue>), ClientError> {
    let target = parse_target(url)?;
    let request_id = options
        .request_id
        .as_deref()
        .map(parse_request_id)
        .transpose()?;
    let tls = options.tls.as_ref().filter(|t| !t.is_empty());
    let endpoint = tls::endpoint(url, &target, tls)?;
    Ok((
        endpoint.connect_timeout(options.connect_timeout),
        target,
        request_id,
    ))
}

type UnixConnector = tower::util::ServiceFn<
    Box<
        dyn FnMut(
                Uri,
            ) -> Pin<
                Box<dyn Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send>,
            > + Send,
    >,
>;

/// A connector that dials the Unix socket at `path`, whatever the URI.
fn unix_connector(path: &Path) -> UnixConnector {
    let path = path.to_path_buf();
    tower::service_fn(Box::new(move |_: Uri| {
        let path = path.clone();
        Box::pin(async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok(TokioIo::new(stream))
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plugin_urls() {
        assert!(matches!(
            parse_target("http://127.0.0.1:9100"),
            Ok(Target::Tcp { tls: false, .. })
        ));
        assert!(matches!(
            parse_target("https://localhost:9100/"),
            Ok(Target::Tcp { tls: true, .. })
        ));
        assert_eq!(
            parse_target("unix:/run/p.sock").ok(),
            Some(Target::Unix("/run/p.sock".into()))
        );
        assert_eq!(
            parse_target("unix:///run/p.sock").ok(),
            Some(Target::Unix("/run/p.sock".into()))
        );
        for bad in [
            "",
            "127.0.0.1:9100",
            "ftp://x:1",
            "unix:",
            "http://h:1/path",
            "http://",
        ] {
            assert!(
                matches!(parse_target(bad), Err(ClientError::InvalidUrl { .. })),
                "{bad:?} accepted"
            );
        }
    }
}
