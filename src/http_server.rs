//! The HTTP server of `sluice serve`: an HTTP/1.1 accept loop over hyper that dispatches
//! each request either to the redirect fast path or to the router ([`crate::router::App`]).
//!
//! Why not `axum::serve`: on the redirect hot path, every layer between hyper and the
//! handler costs CPU per request: the router's failed route lookup before its fallback,
//! boxing the request body, an extension map allocated for `ConnectInfo`, cloning the
//! per-connection service and boxing its future. Here a `GET`/`HEAD /{code}` goes from
//! hyper straight to [`crate::router::FastPath`] with the socket peer as an argument, and
//! when the redirect cache's front array holds the code the answer is ready without a
//! boxed future. Every other request gets a `ConnectInfo<SocketAddr>` extension and goes to
//! the router, exactly as under
//! `axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())`.
//!
//! Behaviour at the edges ([`ServerOptions`]):
//!
//! * **Header read deadline**: a request head (request line and header fields) must arrive
//!   within `header_read_timeout` (default 30 s) from when the connection starts waiting
//!   for it, also between keep-alive requests; else hyper closes the connection (a client
//!   sending half a request no longer holds it forever).
//! * **Head limits**: at most [`MAX_HEAD_BYTES`] bytes (hyper's `max_header_size`, so a head
//!   arriving in one read is held to the same limit as one arriving in pieces) and at most
//!   [`crate::http_listener::MAX_HEADER_FIELDS`] header fields; hyper's own 414/431 answers
//!   get the JSON error shape and name the limit hit ([`crate::http_listener`]).
//! * **`Host`**: an HTTP/1.1 request without a `Host` header or with more than one is
//!   answered 400 `invalid_host` (RFC 9112 §3.2); HTTP/1.0 may omit it.
//! * **Percent-encoding**: a path that is not a code as sent is normalized first
//!   (percent-encoded unreserved characters decoded, RFC 3986 §6.2.2.2,
//!   [`sluice_redirect::path`]), so `/%50abc` is the redirect of `Pabc`; a malformed escape
//!   goes to the router unchanged (its `/{code}` handler answers 400 `invalid_path`).
//! * **Graceful stop**: when `signal` resolves, no new connection is accepted, idle
//!   keep-alive connections are closed and in-flight requests are answered; connections
//!   still open `shutdown_timeout` (default 10 s) later (a half-sent request, an SSE
//!   stream) are dropped, their number logged, and [`serve_with`] returns.
//!
//! Otherwise as `axum::serve`: accept errors handled by axum's listener (a failed `accept`
//! waits 1 s: too many open files). HTTP/2 (h2c) is not served: nothing in Sluice needs it
//! on a plain-text listener, and detecting it costs every connection a read of the
//! preface through a rewinding wrapper.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, Uri, Version, header};
use axum::response::Response;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use sluice_redirect::path::normalize_unreserved;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::http_listener::{JsonErrorListener, MAX_HEAD_BYTES};
use crate::router::{App, FastPath};

/// Deadlines of [`serve_with`] (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// How long a request head may take to arrive, counted from when the connection starts
    /// waiting for it; `None` = no deadline. Default 30 s (`[server] header-read-timeout`).
    pub header_read_timeout: Option<Duration>,
    /// How long open connections get to finish after the stop signal before they are
    /// dropped. Default 10 s (`[server] shutdown-timeout`).
    pub shutdown_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions { header_read_timeout: Some(Duration::from_secs(30)), shutdown_timeout: Duration::from_secs(10) }
    }
}

impl ServerOptions {
    /// The options of `[server]` in `cfg` (`header-read-timeout = "0s"` = no deadline).
    pub fn from_config(cfg: &crate::config::ServerConfig) -> Self {
        ServerOptions {
            header_read_timeout: Some(cfg.header_read_timeout).filter(|d| !d.is_zero()),
            shutdown_timeout: cfg.shutdown_timeout,
        }
    }
}

/// [`serve_with`] with the default [`ServerOptions`].
pub async fn serve(listener: TcpListener, app: App, signal: impl Future<Output = ()> + Send) {
    serve_with(listener, app, ServerOptions::default(), signal).await;
}

/// Serves `app` on `listener` until `signal` resolves, then stops gracefully within
/// `opts.shutdown_timeout` (module docs). Returns once every connection is closed or
/// dropped.
pub async fn serve_with(listener: TcpListener, app: App, opts: ServerOptions, signal: impl Future<Output = ()> + Send) {
    let mut listener = JsonErrorListener::new(listener);
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout).max_header_size(MAX_HEAD_BYTES);
    let router = app.router().clone();
    let fast = app.fast_path().cloned();
    let mut signal = std::pin::pin!(signal);
    let mut conns = JoinSet::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut signal => break,
        };
        // Reap finished connection tasks (the set would otherwise keep their results).
        while conns.try_join_next().is_some() {}
        let service = ConnService { router: router.clone(), fast: fast.clone(), peer };
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        conns.spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(opts.shutdown_timeout, graceful.shutdown()).await.is_err() {
        while conns.try_join_next().is_some() {}
        tracing::warn!(
            connections = conns.len(),
            shutdown_timeout = ?opts.shutdown_timeout,
            "graceful stop deadline passed: dropping the connections still open"
        );
    }
    conns.shutdown().await;
}

const MISSING_HOST_BODY: &str = r#"{"error":{"code":"invalid_host","message":"an HTTP/1.1 request must carry exactly one Host header (RFC 9112 section 3.2)"}}"#;

/// The 400 answer to an HTTP/1.1 request `headers` without exactly one `Host` field
/// (RFC 9112 §3.2); `None` when the request is fine (HTTP/1.0 may omit `Host`).
fn reject_host(version: Version, headers: &axum::http::HeaderMap) -> Option<Response> {
    if version != Version::HTTP_11 {
        return None;
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    if hosts.next().is_some() && hosts.next().is_none() {
        return None;
    }
    let mut resp = Response::new(Body::from(MISSING_HOST_BODY));
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(resp)
}

/// `uri` with its path's percent-encoded unreserved characters decoded; `None` when there
/// is nothing to decode or an escape is malformed (the request then goes on as sent).
fn normalized_uri(uri: &Uri) -> Option<Uri> {
    let path = match normalize_unreserved(uri.path()) {
        Ok(std::borrow::Cow::Owned(p)) => p,
        Ok(std::borrow::Cow::Borrowed(_)) | Err(_) => return None,
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}


/// The service of one connection from `peer`.
struct ConnService {
    router: Router,
    fast: Option<Arc<FastPath>>,
    peer: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = ConnFuture;

    fn call(&self, mut req: hyper::Request<Incoming>) -> ConnFuture {
        if let Some(resp) = reject_host(req.version(), req.headers()) {
            return ConnFuture::Ready(Some(resp));
        }
        let mut takes = FastPath::takes(req.method(), req.uri().path());
        if !takes
            && req.uri().path().contains('%')
            && let Some(uri) = normalized_uri(req.uri())
        {
            *req.uri_mut() = uri;
            takes = FastPath::takes(req.method(), req.uri().path());
        }
        if let Some(fast) = &self.fast
            && takes
        {
            // The body of a GET/HEAD is not read (as in the redirect handler).
            let (parts, _body) = req.into_parts();
            let peer = Some(self.peer.ip());
            if let Some(resp) = fast.answer_now(&parts, peer) {
                return ConnFuture::Ready(Some(resp));
            }
            let fast = Arc::clone(fast);
            return ConnFuture::Boxed(Box::pin(async move { fast.answer(&parts, peer).await }));
        }
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let mut router = self.router.clone();
        // `Router` is always ready (its `poll_ready` returns `Ready(Ok(()))`).
        let fut = tower::Service::call(&mut router, req);
        ConnFuture::Boxed(Box::pin(async move {
            match fut.await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }))
    }
}

/// The response future of [`ConnService`]: ready at once (fast path answered from the
/// cache's front) or a boxed future (anything else).
enum ConnFuture {
    Ready(Option<Response>),
    Boxed(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl Future for ConnFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            ConnFuture::Ready(resp) => match resp.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => panic!("ConnFuture polled after completion"),
            },
            ConnFuture::Boxed(fut) => fut.as_mut().poll(cx).map(Ok),
        }
    }
}

#[cfg(test)]
mod tests;
