//! A tiny in-process HTTP/1 server on 127.0.0.1:0 with its own Tokio runtime thread,
//! so it works from sync and async tests alike and dies (connections included) on drop.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// Response body type used by the in-process servers.
pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

/// A boxed response future.
pub(crate) type BoxFut = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// A full (non-streaming) body.
pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|e| match e {}).boxed()
}

/// A response with `status`, optional content type and body.
pub(crate) fn response(
    status: u16,
    content_type: Option<&str>,
    data: impl Into<Bytes>,
) -> Response<Body> {
    let mut b = Response::builder().status(status);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(full(data)).expect("response")
}

/// Running server; stops on drop.
pub(crate) struct HttpServer {
    addr: SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
}

impl HttpServer {
    /// Binds 127.0.0.1:0 and serves every request with `handler`.
    pub(crate) fn start<F>(name: &str, handler: F) -> Self
    where
        F: Fn(Request<Incoming>) -> BoxFut + Send + Sync + 'static,
    {
        Self::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0)), handler)
            .expect("bind 127.0.0.1:0")
    }

    /// Binds `addr` and serves every request with `handler`; errors when the address cannot
    /// be bound.
    pub(crate) fn start_on<F>(name: &str, addr: SocketAddr, handler: F) -> std::io::Result<Self>
    where
        F: Fn(Request<Incoming>) -> BoxFut + Send + Sync + 'static,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("sidescan-{name}"))
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let handler = Arc::new(handler);
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let h = handler.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let h = h.clone();
                        async move { Ok::<_, Infallible>(h(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, rt: Some(rt) })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
