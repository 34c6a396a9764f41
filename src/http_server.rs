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
//! Same behaviour as `axum::serve` otherwise: HTTP/1.1 with hyper's defaults (keep-alive,
//! no header read timeout), accept errors handled by axum's listener (a failed `accept`
//! waits 1 s: too many open files), hyper's own 414/431 answers rewritten to the JSON error
//! shape ([`crate::http_listener`]), and a graceful stop: when `signal` resolves, no new
//! connection is accepted, idle keep-alive connections are closed, in-flight requests are
//! answered, then [`serve`] returns. HTTP/2 (h2c) is not served: nothing in Sluice needs it
//! on a plain-text listener, and detecting it costs every connection a read of the
//! preface through a rewinding wrapper.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::Response;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::http_listener::JsonErrorListener;
use crate::router::{App, FastPath};

/// Serves `app` on `listener` until `signal` resolves, then stops gracefully (module docs).
/// Returns once every connection is closed.
pub async fn serve(listener: TcpListener, app: App, signal: impl Future<Output = ()> + Send) {
    let mut listener = JsonErrorListener::new(listener);
    let graceful = GracefulShutdown::new();
    let builder = hyper::server::conn::http1::Builder::new();
    let router = app.router().clone();
    let fast = app.fast_path().cloned();
    let mut signal = std::pin::pin!(signal);
    loop {
        let (io, peer) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut signal => break,
        };
        let service = ConnService { router: router.clone(), fast: fast.clone(), peer };
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
        if let Some(fast) = &self.fast
            && FastPath::takes(req.method(), req.uri().path())
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
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};
    use sluice_redirect::ChannelClickSink;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::{Config, DEFAULT_TOML};
    use crate::serve::{StackExtras, build_stack_app};

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Test/1";

    /// Serves a whole stack (SQLite store in `dir`) with [`serve`]; returns its address,
    /// the stop signal, the server task and the click events.
    async fn start(
        dir: &std::path::Path,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>, tokio::sync::mpsc::Receiver<sluice_schemas::ClickEvent>) {
        let mut cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
        cfg.server.data_dir = dir.to_path_buf();
        cfg.server.base_url = Some("https://sho.rt.example".into());
        cfg.validate().expect("valid config");
        let store = Arc::new(sluice_connectors::SqliteLinkStore::open_dir(dir).await.expect("store"));
        let (sink, events) = ChannelClickSink::new(1000);
        let (_stack, app) = build_stack_app(&cfg, store, Arc::new(sink), [7; 32], StackExtras::default()).expect("stack");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, async move {
            let _ = stopped.await;
        }));
        (addr, stop, server, events)
    }

    async fn next_event(events: &mut tokio::sync::mpsc::Receiver<sluice_schemas::ClickEvent>) -> sluice_schemas::ClickEvent {
        tokio::time::timeout(Duration::from_secs(30), events.recv()).await.expect("a click event in time").expect("sink open")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redirects_take_the_fast_path_with_the_socket_peer_and_other_requests_the_router() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (addr, stop, server, mut events) = start(dir.path()).await;
        let base = format!("http://{addr}");
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

        // The API (router, ConnectInfo) creates a link.
        let created = http.post(format!("{base}/v1/links")).json(&json!({"long_url": "https://example.com/t?a=1"})).send().await.expect("post");
        assert_eq!(created.status(), 201);
        let code = created.json::<Value>().await.expect("json")["code"].as_str().expect("code").to_owned();

        // First GET: L1 miss (store read); second: L1 hit (fills the front); third: answered
        // from the front without a boxed future. All alike, each a click from the peer.
        for i in 0..3 {
            let r = http.get(format!("{base}/{code}?utm=x{i}")).header("user-agent", UA).send().await.expect("get");
            assert_eq!(r.status(), 302, "request {i}");
            assert_eq!(r.headers()["location"], format!("https://example.com/t?a=1&utm=x{i}").as_str(), "request {i}");
            assert_eq!(r.headers()["cache-control"], "private, max-age=0", "request {i}");
            let e = next_event(&mut events).await;
            assert_eq!((e.code.as_str(), e.ip_trunc.as_deref(), e.user_agent.as_str()), (code.as_str(), Some("127.0.0.0"), UA), "request {i}");
        }

        // HEAD: same answer, no click (the next event is the GET after it).
        let r = http.head(format!("{base}/{code}")).header("user-agent", UA).send().await.expect("head");
        assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().expect("ascii")), (302, "https://example.com/t?a=1"));
        http.get(format!("{base}/{code}")).header("user-agent", "after-head").send().await.expect("get");
        assert_eq!(next_event(&mut events).await.user_agent, "after-head");

        // Unknown code and non-code paths: 404 JSON; reserved words and the API: the router.
        let r = http.get(format!("{base}/NoSuchCode")).send().await.expect("get");
        assert_eq!((r.status().as_u16(), r.headers()["content-type"].to_str().expect("ascii")), (404, "application/json"));
        assert_eq!(r.json::<Value>().await.expect("json")["error"]["code"], "not_found");
        assert_eq!(http.get(format!("{base}/healthz")).send().await.expect("get").status(), 200);
        assert_eq!(http.get(format!("{base}/v1/links/{code}")).send().await.expect("get").status(), 200);
        let r = http.post(format!("{base}/{code}")).send().await.expect("post");
        assert_eq!(r.status(), 405, "only GET/HEAD take the fast path; the router answers the rest");

        // Read-after-write through the fast path.
        assert_eq!(http.delete(format!("{base}/v1/links/{code}")).send().await.expect("delete").status(), 204);
        assert_eq!(http.get(format!("{base}/{code}")).send().await.expect("get").status(), 404);

        // hyper's own 414 still gets the JSON body (crate::http_listener).
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let long = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(crate::http_listener::MAX_URI_BYTES + 10));
        c.write_all(long.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut out)).await.expect("answered and closed").expect("read");
        let out = String::from_utf8(out).expect("utf-8");
        assert!(out.starts_with("HTTP/1.1 414 ") && out.contains("\"uri_too_long\""), "{out}");

        // Graceful stop with the client's idle keep-alive connections still open.
        stop.send(()).expect("server running");
        tokio::time::timeout(Duration::from_secs(30), server).await.expect("stops in time").expect("server task");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer listening");
    }
}
