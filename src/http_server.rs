//! The HTTP server of `sluice serve`: an HTTP/1.1 accept loop over hyper that dispatches
//! each request either to the redirect fast path or to the router ([`crate::router::App`]).
//! Ahead of hyper, each connection of a server that serves redirects starts in the express
//! lane (`express.rs`), which parses and answers plain redirect requests itself (the same
//! bytes hyper would write) and hands the connection to hyper at its first other request.
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
//! * **Start-up work**: connections are accepted from the start. The app's task to run
//!   before serving ([`crate::router::App::with_before_serving`]; the configuration's
//!   `[links] blocklist` applied to existing links) runs beside them, and until it is done
//!   the readiness gate ([`crate::start_gate`]) answers ahead of everything else:
//!   `/healthz` and `/metrics` as usual, `/readyz` 503 `not_ready` naming the task (and its
//!   latest failure, e.g. the link store not answering), every other request — redirects
//!   included, ahead of the fast path — 503 `starting` with `Retry-After`. Once the task is
//!   done the gate opens for good; checking it costs a request one atomic load. A stop
//!   meanwhile drops the task and stops the server as usual.
//! * **Header read deadline**: a request head (request line and header fields) must arrive
//!   within `header_read_timeout` (default 30 s) from when the connection starts waiting
//!   for it, also between keep-alive requests; else hyper closes the connection (a client
//!   sending half a request no longer holds it forever).
//! * **Connection limits** ([`limits`]): at most `[server] max-connections` open (default:
//!   the file-descriptor limit less a reserve) and `max-connections-per-client` per client
//!   address (default 1,000; IPv6 per /64; trusted proxies exempt). A connection over a limit
//!   closes one in the limit's scope and is served: the least recently active idle one, else
//!   an SSE stream or a stalled request body; never one with an answer in flight. It is
//!   refused (closed at once) only when none can make room. Idle, half-sent or streaming
//!   connections no longer lock everyone out. The listen backlog is
//!   [`crate::http_listener::LISTEN_BACKLOG`] ([`crate::http_listener::bind`]).
//! * **Head limits**: at most [`MAX_HEAD_BYTES`] bytes (hyper's `max_header_size`, so a head
//!   arriving in one read is held to the same limit as one arriving in pieces) and at most
//!   [`crate::http_listener::MAX_HEADER_FIELDS`] header fields; hyper's own 414/431 answers
//!   get the JSON error shape and name the limit hit ([`crate::http_listener`]).
//! * **Request bodies** (router requests only; a `GET`/`HEAD` without a body costs
//!   nothing): a `Content-Length` over `max_body_bytes` (`[server] max-body-bytes`, the
//!   API's body limit) is answered 413 `payload_too_large` before any of the body is read
//!   (`POST /v1/events` has its own, larger limit, `[ingest] max-body-bytes`, checked the
//!   same way by its handler); a body not read to its end `body_read_timeout` (default
//!   30 s) after its head arrived is answered 408 `request_timeout` with `connection: close`
//!   (a client trickling a body no longer holds a connection and a task forever).
//! * **Body framing** (RFC 9112 §6.1, §7.1): a `Transfer-Encoding` other than `chunked`
//!   alone (`gzip, chunked`: a coding the server does not implement) is answered 501
//!   `unsupported_transfer_encoding`, and `chunked` applied twice 400 `malformed_request`,
//!   before the body is read; a body whose chunked framing turns out malformed while the
//!   handler reads it (a bad chunk size) is answered 400 `malformed_request` whatever the
//!   handler said. All with `connection: close`: the rest of the bytes cannot be framed.
//! * **`Host`**: a request with more than one `Host` header, an HTTP/1.1 request without
//!   one (HTTP/1.0 may omit it) and a `Host` that is not `uri-host [":" port]` (spaces,
//!   `@`, control characters, a bad port) are answered 400 `invalid_host` with
//!   `connection: close` (RFC 9112 §3.2, RFC 9110 §7.2; [`host`]).
//! * **Request-target forms** (RFC 9112 §3.2; [`target`]): `CONNECT` is answered 405
//!   `method_not_allowed` (this is no proxy), `OPTIONS *` 200 with the server's `Allow`, a
//!   `host:port` target with another method and `*` with a method other than `OPTIONS` 400
//!   `invalid_path`, an absolute-form target (`http://host/code`) with another scheme 400
//!   `invalid_path` and with an authority that is no valid `Host` (`user:pass@`, a bad
//!   port) 400 `invalid_host`; all but `OPTIONS *` with `connection: close`.
//! * **Raw `"`**: a request target holding a raw `"` is answered 400 `malformed_request`
//!   with `connection: close` before any lookup, and the connection closes (hyper refuses a
//!   raw space, `<`, `>` and control characters itself, the same way; [`reject_raw_quote`]).
//!   In a query the URI parser refuses the byte before the server sees the request; the
//!   answer says the same ([`crate::http_listener::RAW_QUOTE_MESSAGE`]). A fragment (`#…`)
//!   in a request target, which no client sends, is dropped by the URI parser: `/code#x` is
//!   `/code`.
//! * **Half-close**: a client that shuts down its write side after sending its requests
//!   (pipelined or not) gets every answer, then the connection closes (hyper's
//!   `half_close`; without it hyper closed at the end of the stream, answers pending).
//! * **HTTP/1.0**: answered in HTTP/1.0 (hyper); an answer that says `connection: close` is
//!   its connection's last and says only that, also to a request that asked for
//!   `Connection: keep-alive` ([`closing_in_http10`]).
//! * **Percent-encoding**: a path that is not a code as sent is normalized first
//!   (percent-encoded unreserved characters decoded, RFC 3986 §6.2.2.2,
//!   [`sluice_redirect::path`]), so `/%50abc` is the redirect of `Pabc`; a malformed escape
//!   (a `%` not followed by two hex digits) in any path, `/v1/...` included, is answered 400
//!   `invalid_path`.
//! * **Graceful stop**: when `signal` resolves, no new connection is accepted, idle
//!   keep-alive connections (between requests: nothing read since the last answer,
//!   [`ConnActivity::read_since_write`]) are closed, every server-sent events stream (a response with
//!   `content-type: text/event-stream`, whichever route) ends cleanly and in-flight requests
//!   are answered, and so is a request whose head was arriving at the stop (hyper alone
//!   would close a kept-alive connection in the middle of it). Every answer written from the
//!   stop on carries `connection: close` (RFC 9112 §9.6) and is its connection's last, so a
//!   keep-alive client sends nothing more on it. Connections still open `shutdown_timeout`
//!   (default 10 s) later (a half-sent request, a slow response) are dropped, their number
//!   logged, and [`serve_with`] returns.
//!
//! Otherwise as `axum::serve`: accept errors handled by axum's listener (a failed `accept`
//! waits 1 s: too many open files). HTTP/2 (h2c) is not served: nothing in Sluice needs it
//! on a plain-text listener; a prior-knowledge HTTP/2 connection gets a `GOAWAY`
//! `HTTP_1_1_REQUIRED` ([`crate::http_listener`]). Error answers of the server itself use
//! [`crate::http_listener::error_response`] (JSON, `cache-control: no-store`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, Uri, Version, header};
use axum::response::Response;
use axum::serve::Listener;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use sluice_redirect::path::normalize_unreserved;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::http_listener::{JsonErrorListener, MAX_HEAD_BYTES, error_response};
use crate::router::{App, FastPath};
use crate::start_gate::StartGate;

mod bodies;
mod express;
pub mod host;
pub mod limits;
pub mod target;

pub use limits::{ConnActivity, ConnectionLimits};

/// Deadlines and limits of [`serve_with`] (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// How long a request head may take to arrive, counted from when the connection starts
    /// waiting for it; `None` = no deadline. Default 30 s (`[server] header-read-timeout`).
    pub header_read_timeout: Option<Duration>,
    /// How long a request body may take to arrive, counted from when its head was read;
    /// `None` = no deadline. Default 30 s (`[server] body-read-timeout`).
    pub body_read_timeout: Option<Duration>,
    /// The largest `Content-Length` taken (bytes; 413 above, except `POST /v1/events`).
    /// Default 262,144 (`[server] max-body-bytes`).
    pub max_body_bytes: usize,
    /// How long open connections get to finish after the stop signal before they are
    /// dropped. Default 10 s (`[server] shutdown-timeout`).
    pub shutdown_timeout: Duration,
    /// Most connections open, in all and per client ([`limits`]). Default: derived from
    /// the file-descriptor limit, 1,000 per client, no peer exempt.
    pub limits: ConnectionLimits,
    /// Whether plain redirect requests take the express lane (`http_server/express.rs`; default true,
    /// `[server] express`). Off, hyper answers every request.
    pub express: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_read_timeout: Some(Duration::from_secs(30)),
            body_read_timeout: Some(Duration::from_secs(30)),
            max_body_bytes: 256 << 10,
            shutdown_timeout: Duration::from_secs(10),
            limits: ConnectionLimits { max_connections: 0, max_per_client: limits::DEFAULT_MAX_PER_CLIENT, exempt: Vec::new() },
            express: true,
        }
    }
}

impl ServerOptions {
    /// The options of `[server]` in `cfg` (`header-read-timeout = "0s"` or
    /// `body-read-timeout = "0s"` = no deadline; `trusted-proxies` exempt from the
    /// per-client connection limit).
    ///
    /// Errors: a `trusted-proxies` entry that is no CIDR or address (the message of
    /// [`crate::config::Config::trusted_proxies`]).
    pub fn from_config(cfg: &crate::config::Config) -> anyhow::Result<Self> {
        let exempt = cfg.trusted_proxies()?;
        let cfg = &cfg.server;
        Ok(ServerOptions {
            header_read_timeout: Some(cfg.header_read_timeout).filter(|d| !d.is_zero()),
            body_read_timeout: Some(cfg.body_read_timeout).filter(|d| !d.is_zero()),
            max_body_bytes: cfg.max_body_bytes,
            shutdown_timeout: cfg.shutdown_timeout,
            limits: ConnectionLimits { max_connections: cfg.max_connections, max_per_client: cfg.max_connections_per_client, exempt },
            express: cfg.express,
        })
    }
}

/// [`serve_with`] with the default [`ServerOptions`].
pub async fn serve(listener: TcpListener, app: App, signal: impl Future<Output = ()> + Send) {
    serve_with(listener, app, ServerOptions::default(), signal).await;
}

/// Serves `app` on `listener` until `signal` resolves, then stops gracefully within
/// `opts.shutdown_timeout` (module docs). Accepts connections at once and runs the app's
/// start-up task ([`App::before_serving`]) beside them: until it is done, only `/healthz`,
/// `/readyz` (503) and `/metrics` are served, every other request is 503 `starting`
/// ([`crate::start_gate`]); a stop meanwhile drops the task. Returns once every connection
/// is closed or dropped.
pub async fn serve_with(listener: TcpListener, app: App, opts: ServerOptions, signal: impl Future<Output = ()> + Send) {
    let mut listener = JsonErrorListener::new(listener);
    let mut builder = hyper::server::conn::http1::Builder::new();
    // half_close: a client that shuts its write side down after its requests still gets
    // every answer (hyper's default closes at the end of the stream, answers pending).
    builder.timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout).max_header_size(MAX_HEAD_BYTES).half_close(true);
    let router = app.router().clone();
    let fast = app.fast_path().cloned();
    let mut signal = std::pin::pin!(signal);
    // Start-up work of the app (crate::router::App::with_before_serving) beside the accept
    // loop: the gate refuses all but the health routes until it is done (crate::start_gate).
    let gate = app.start_gate().clone();
    gate.publish();
    let startup = app.before_serving().map(|task| {
        let work = (task.run)(gate.clone());
        let (opened, name) = (gate.clone(), task.name);
        let started = tokio::time::Instant::now();
        tokio::spawn(async move {
            work.await;
            opened.open();
            tracing::info!(task = name, took = ?started.elapsed(), "start-up work done: serving every request");
        })
    });
    let mut conns = JoinSet::new();
    // Turns true at the stop: closes idle connections, ends the SSE streams
    // (bodies::until_stop), answers say `connection: close` (module docs).
    let (stopping, stop_rx) = watch::channel(false);
    // Connection limits (limits): the activity clock runs while the server does.
    let registry = limits::ConnRegistry::new(&opts.limits);
    let clock = limits::spawn_clock();
    let (max_body_bytes, body_read_timeout) = (opts.max_body_bytes, opts.body_read_timeout);
    loop {
        let (mut io, peer) = tokio::select! {
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut signal => break,
        };
        // Reap finished connection tasks (the set would otherwise keep their results).
        while conns.try_join_next().is_some() {}
        let admitted = match registry.admit(peer.ip()) {
            Ok(a) => a,
            Err(limit) => {
                tracing::debug!(%peer, ?limit, "connection refused: over the limit, every connection in its scope is being answered");
                continue;
            }
        };
        let activity = admitted.activity;
        io.set_activity(activity.clone());
        let service = ConnService {
            router: router.clone(),
            fast: fast.clone(),
            gate: gate.clone(),
            peer,
            max_body_bytes,
            body_read_timeout,
            stop: stop_rx.clone(),
            activity: activity.clone(),
        };
        let stop = stop_rx.clone();
        let registration = admitted.registration;
        let builder = builder.clone();
        let (header_read_timeout, express) = (opts.header_read_timeout, opts.express);
        conns.spawn(async move {
            // Plain redirect requests first (express), then hyper for everything else.
            let mut prefix = axum::body::Bytes::new();
            if let Some(fast) = service.fast.as_deref().filter(|_| express) {
                let lane = express::Lane { fast, peer: peer.ip(), gate: &service.gate, activity: &activity, stop: &stop, header_read_timeout };
                match express::serve(&mut io, lane).await {
                    express::Exit::Closed => return drop(registration),
                    express::Exit::HandOff(rest) => prefix = rest,
                }
            }
            let conn = builder.serve_connection(TokioIo::new(express::Prefixed::new(prefix, io)), service);
            if let Err(e) = until_drained(conn, stop, activity).await {
                tracing::trace!(error = %e, %peer, "connection ended with an error");
            }
            drop(registration);
        });
    }
    clock.abort();
    drop(listener);
    // A stop while starting: the start-up work is dropped (it retries until it succeeds).
    if let Some(startup) = startup {
        startup.abort();
    }
    stopping.send_replace(true);
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(opts.shutdown_timeout, drained).await.is_err() {
        while conns.try_join_next().is_some() {}
        tracing::warn!(
            connections = conns.len(),
            shutdown_timeout = ?opts.shutdown_timeout,
            "graceful stop deadline passed: dropping the connections still open"
        );
    }
    conns.shutdown().await;
}

/// Serves `conn` to its end. Once `stop` turns true, the connection closes as soon as it is
/// between requests ([`ConnActivity::read_since_write`] false: hyper's graceful shutdown,
/// which also makes an answer in flight say `connection: close`); a request arriving at
/// the stop is answered first (with `connection: close`, [`ConnService`]), then the
/// connection closes. Closed to make room for another ([`limits`]), the connection reads
/// what is waiting for it once, then is dropped when nothing is being answered (a request
/// head still arriving included) or only an SSE stream or a request body still arriving
/// is; with an answer in flight it shuts down gracefully after it.
async fn until_drained(
    conn: hyper::server::conn::http1::Connection<TokioIo<express::Prefixed>, ConnService>,
    mut stop: watch::Receiver<bool>,
    activity: ConnActivity,
) -> hyper::Result<()> {
    let mut conn = std::pin::pin!(conn);
    let mut stopped = std::pin::pin!(stop.wait_for(|s| *s));
    let evicted = activity.clone();
    let mut evicted = std::pin::pin!(evicted.evicted());
    let (mut stopping, mut shut_down, mut evicting) = (false, false, false);
    std::future::poll_fn(|cx| {
        if !evicting && evicted.as_mut().poll(cx).is_ready() {
            evicting = true;
        }
        // An error: the sender is gone, which only happens once serve_with has returned.
        if !stopping && stopped.as_mut().poll(cx).is_ready() {
            stopping = true;
        }
        if stopping && !shut_down && !activity.read_since_write() {
            shut_down = true;
            conn.as_mut().graceful_shutdown();
        }
        let polled = conn.as_mut().poll(cx);
        if polled.is_ready() {
            return polled;
        }
        // Closed to make room, after this poll read what was waiting (a request already
        // sent and answered at once is answered): now unless an answer is in flight.
        if evicting && !shut_down {
            if activity.closable_now() {
                return Poll::Ready(Ok(()));
            }
            shut_down = true;
            conn.as_mut().graceful_shutdown();
            return conn.as_mut().poll(cx);
        }
        // An answer written in this poll may have left the connection between requests.
        if stopping && !shut_down && !activity.read_since_write() {
            shut_down = true;
            conn.as_mut().graceful_shutdown();
            return conn.as_mut().poll(cx);
        }
        polled
    })
    .await
}

/// `resp` with `connection: close` when the graceful stop has begun (`stop` changed: it
/// only ever turns true), so that it is its connection's last answer (module docs).
fn close_if_stopping(mut resp: Response, stop: &watch::Receiver<bool>) -> Response {
    if stop.has_changed().unwrap_or(true) {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// `resp` to an HTTP/1.0 request (`http10`), made an HTTP/1.0 response when it says
/// `connection: close`. hyper answers an HTTP/1.0 request in HTTP/1.0 and, to one that asked
/// for `Connection: keep-alive`, adds `keep-alive` to the `Connection` of a response of
/// version HTTP/1.1 that does not carry that token, a `close` one included: the answer said
/// `connection: close` and `connection: keep-alive` at once. A response of version HTTP/1.0
/// without `keep-alive` is the connection's last instead, and its `Connection` stays
/// `close`. Every other response is left as it is (keep-alive still honoured).
fn closing_in_http10(mut resp: Response, http10: bool) -> Response {
    if http10
        && resp.headers().get_all(header::CONNECTION).iter().any(|v| v.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))))
    {
        *resp.version_mut() = Version::HTTP_10;
    }
    resp
}

/// The 400 `malformed_request` answer of a request target holding a raw `"`: RFC 3986 §2
/// has no place for the byte in a URI (the request-target is one, RFC 9112 §3.2), and
/// clients send it as `%22`, but hyper's parser lets it through (it refuses a raw space,
/// `<`, `>` and control characters itself). With `connection: close`, like every
/// `malformed_request` (hyper's own included): a request line that is not HTTP/1.1 is the
/// connection's last, nothing after it is read. `None` for every other target.
fn reject_raw_quote(uri: &Uri) -> Option<Response> {
    let target = uri.path_and_query()?.as_str();
    if !target.as_bytes().contains(&b'"') {
        return None;
    }
    let mut resp = error_response(StatusCode::BAD_REQUEST, "malformed_request", crate::http_listener::RAW_QUOTE_MESSAGE, None);
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(resp)
}

/// `uri` with its path's percent-encoded unreserved characters decoded: `Ok(None)` when
/// there is nothing to decode (the request then goes on as sent); the 400 `invalid_path`
/// answer when an escape is malformed.
#[allow(clippy::result_large_err, reason = "the error is the finished 400 response, built only for a malformed path")]
fn normalized_uri(uri: &Uri) -> Result<Option<Uri>, Response> {
    let path = match normalize_unreserved(uri.path()) {
        Ok(std::borrow::Cow::Owned(p)) => p,
        Ok(std::borrow::Cow::Borrowed(_)) => return Ok(None),
        Err(_) => {
            let message = "malformed percent-encoding in the path: a '%' must be followed by two hex digits";
            return Err(error_response(StatusCode::BAD_REQUEST, "invalid_path", message, None));
        }
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    let Ok(pq) = path_and_query.parse() else { return Ok(None) };
    parts.path_and_query = Some(pq);
    Ok(Uri::from_parts(parts).ok())
}

/// The service of one connection from `peer`.
struct ConnService {
    router: Router,
    fast: Option<Arc<FastPath>>,
    /// Closed until the app's start-up work is done (module docs).
    gate: StartGate,
    peer: SocketAddr,
    /// [`ServerOptions::max_body_bytes`].
    max_body_bytes: usize,
    /// [`ServerOptions::body_read_timeout`].
    body_read_timeout: Option<Duration>,
    /// The graceful stop has begun (module docs).
    stop: watch::Receiver<bool>,
    /// The connection's activity: a request is being handled from here to its answer.
    activity: ConnActivity,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = ConnFuture;

    fn call(&self, req: hyper::Request<Incoming>) -> ConnFuture {
        let http10 = req.version() == Version::HTTP_10;
        match self.answer(req) {
            ConnFuture::Ready(Some(resp)) => ConnFuture::Ready(Some(closing_in_http10(close_if_stopping(resp, &self.stop), http10))),
            // The boxed futures check the stop themselves, when their answer is ready. The
            // connection is busy until the answer is written (limits: never closed to make
            // room meanwhile).
            ConnFuture::Boxed(fut) => {
                self.activity.on_request();
                let activity = self.activity.clone();
                ConnFuture::Boxed(Box::pin(async move { bodies::busy_until_sent(closing_in_http10(fut.await, http10), activity) }))
            }
            ready => ready,
        }
    }
}

impl ConnService {
    /// The answer to `req` ([`hyper::service::Service::call`] before the graceful stop's
    /// `connection: close` on answers ready at once).
    fn answer(&self, mut req: hyper::Request<Incoming>) -> ConnFuture {
        if let Some(resp) = host::reject_host(req.version(), req.headers()) {
            return ConnFuture::Ready(Some(resp));
        }
        if let Some(resp) = target::reject_target_form(req.method(), req.uri()) {
            return ConnFuture::Ready(Some(resp));
        }
        // A body whose transfer coding is not understood is refused on every path (a cheap
        // check first: `Transfer-Encoding` implies a body that is not already at its end).
        if !req.body().is_end_stream()
            && let Some(resp) = bodies::reject_transfer_coding(req.headers())
        {
            return ConnFuture::Ready(Some(resp));
        }
        // The readiness gate, ahead of the fast path: one atomic load once it is open.
        if !self.gate.is_open()
            && let Some(resp) = self.gate.answer_closed(req.uri().path())
        {
            return ConnFuture::Ready(Some(resp));
        }
        let mut takes = FastPath::takes(req.method(), req.uri().path());
        // A redirect's path is a code, whose characters exclude '"': only other requests
        // are scanned (nothing added to the redirect path).
        if !takes && let Some(resp) = reject_raw_quote(req.uri()) {
            return ConnFuture::Ready(Some(resp));
        }
        if !takes && req.uri().path().contains('%') {
            match normalized_uri(req.uri()) {
                Ok(Some(uri)) => {
                    *req.uri_mut() = uri;
                    takes = FastPath::takes(req.method(), req.uri().path());
                }
                Ok(None) => {}
                Err(resp) => return ConnFuture::Ready(Some(resp)),
            }
        }
        if let Some(fast) = &self.fast
            && takes
        {
            // The body of a GET/HEAD is not the redirect handler's; one announced over the
            // limit is refused as everywhere (413 before any of it is read), no click.
            if let Some(len) = req.body().size_hint().exact()
                && len > self.max_body_bytes as u64
            {
                return ConnFuture::Ready(Some(bodies::payload_too_large(self.max_body_bytes)));
            }
            // A chunked one (its size unknown until read) is read and dropped first, within
            // the limit and the body deadline: over the limit it gets the same 413, no click.
            if !req.body().is_end_stream() && req.body().size_hint().exact().is_none() {
                let body = bodies::Discarded { limit: self.max_body_bytes, timeout: self.body_read_timeout, activity: self.activity.clone() };
                return ConnFuture::Boxed(Box::pin(body.then_redirect(req, Arc::clone(fast), Some(self.peer.ip()), self.stop.clone())));
            }
            let (parts, _body) = req.into_parts();
            let peer = Some(self.peer.ip());
            if let Some(resp) = fast.answer_now(&parts, peer) {
                return ConnFuture::Ready(Some(resp));
            }
            let fast = Arc::clone(fast);
            let stop = self.stop.clone();
            return ConnFuture::Boxed(Box::pin(async move { close_if_stopping(fast.answer(&parts, peer).await, &stop) }));
        }
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let mut router = self.router.clone();
        let stop = self.stop.clone();
        if req.body().is_end_stream() {
            // `Router` is always ready (its `poll_ready` returns `Ready(Ok(()))`).
            let fut = tower::Service::call(&mut router, req);
            let activity = self.activity.clone();
            return ConnFuture::Boxed(Box::pin(async move { sse_until_stop(infallible(fut.await), stop, &activity) }));
        }
        // A request body: its size upfront, then its read deadline.
        if let Some(len) = req.body().size_hint().exact()
            && len > self.max_body_bytes as u64
            && req.uri().path() != sluice_ingest::http::EVENTS_PATH
        {
            return ConnFuture::Ready(Some(bodies::payload_too_large(self.max_body_bytes)));
        }
        let state = Arc::new(bodies::BodyState::default());
        let req = req.map(|b| bodies::TrackedBody::new(b, Arc::clone(&state), self.activity.clone()));
        let activity = self.activity.clone();
        let fut = tower::Service::call(&mut router, req);
        let timeout = self.body_read_timeout;
        ConnFuture::Boxed(Box::pin(async move {
            let handler = async { infallible(fut.await) };
            let resp = match timeout {
                Some(timeout) => bodies::with_body_deadline(handler, Arc::clone(&state), timeout).await,
                None => handler.await,
            };
            sse_until_stop(bodies::unless_malformed(resp, &state), stop, &activity)
        }))
    }
}

fn infallible(r: Result<Response, Infallible>) -> Response {
    match r {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// `resp`, ending at the graceful stop when it is an SSE stream (and noted as one in
/// `activity`), and with `connection: close` when the stop has begun (module docs).
fn sse_until_stop(resp: Response, stop: watch::Receiver<bool>, activity: &ConnActivity) -> Response {
    let resp = close_if_stopping(resp, &stop);
    if bodies::is_event_stream(&resp) {
        activity.on_stream();
        bodies::until_stop(resp, stop)
    } else {
        resp
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
