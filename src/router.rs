//! The served router: API, redirect and health routes composed by [`Role`], JSON 404/405
//! fallbacks, the body limit, and `sluice_http_requests_total{route,status_class}`.
//!
//! Redirect fast path: `GET`/`HEAD /{code}` is the hot path of the service, so when the
//! redirect is served, [`FastPath`] answers those requests itself — path shaped like a
//! code and not a reserved word — and every other request goes to the full router. The
//! HTTP server ([`crate::http_server`]) dispatches between the two per request
//! ([`build_app`]); as one `Router` (tests, tools), the router is wrapped in
//! [`RedirectFirst`], which does the same. A redirect then costs no route matching, no
//! `MatchedPath`/URL-parameter extensions and no middleware future; it is counted in
//! `sluice_http_requests_total{route="/{code}"}` exactly as the router would count it.
//!
//! Start-up work ([`App::with_before_serving`]): until it is done, the HTTP server's
//! readiness gate ([`crate::start_gate`]) answers ahead of both the fast path and the router
//! (503 `starting` for redirects and the API); once it is open, the fast path's only added
//! cost is one atomic load.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::any;
use metrics::Counter;
use parking_lot::RwLock;
use sluice_redirect::handler::{Answer, AnswerRef};
use sluice_redirect::{RedirectState, RequestHead};
use sluice_serving::ApiState;

use crate::config::Role;
use crate::health::{self, HealthState};
use crate::start_gate::StartGate;

/// Label value of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Routes for `role`: `all` = API + redirects + health; `redirect` = redirects + health;
/// `api` = API + health. `api` must be `Some` for `all`/`api`, `redirect` for
/// `all`/`redirect` (a missing part is simply not served). API bodies are limited to
/// `max_body_bytes` (413 `payload_too_large` above); API requests repeating a single header
/// get 400 `duplicate_header` ([`sluice_serving::single_headers`]).
pub fn build(role: Role, api: Option<ApiState>, redirect: Option<RedirectState>, health_state: HealthState, max_body_bytes: usize) -> Router {
    build_with_events(role, api, redirect, None, health_state, max_body_bytes)
}

/// [`build`] plus the `POST /v1/events` fragment (`sluice_ingest::events_router`), served
/// with the API (it enforces its own body limit, `[ingest] max-body-bytes`).
pub fn build_with_events(
    role: Role,
    api: Option<ApiState>,
    redirect: Option<RedirectState>,
    events: Option<Router>,
    health_state: HealthState,
    max_body_bytes: usize,
) -> Router {
    build_app(role, api, redirect, events, health_state, max_body_bytes).into_router()
}

/// [`build_with_events`] as an [`App`]: the router and the redirect fast path apart, for a
/// server that dispatches to the fast path itself ([`crate::http_server`]).
pub fn build_app(
    role: Role,
    api: Option<ApiState>,
    redirect: Option<RedirectState>,
    events: Option<Router>,
    health_state: HealthState,
    max_body_bytes: usize,
) -> App {
    let mut router = health::routes(health_state);
    if matches!(role, Role::All | Role::Api)
        && let Some(api) = api
    {
        let mut api_routes = sluice_serving::routes(api);
        if let Some(events) = events {
            api_routes = api_routes.merge(events);
        }
        // Every API route's JSON bodies limited to max_body_bytes, however they arrive: the
        // HTTP server answers a Content-Length over it before reading, and a chunked body
        // found too long while read gets the same 413 (POST /v1/events reads its own body,
        // to its own limit).
        let api_routes = sluice_serving::extract::with_body_limit(api_routes, max_body_bytes);
        // Every API route (never a redirect): 415 unsupported_content_encoding for a body
        // with a content coding; 400 duplicate_header for a repeated Content-Type,
        // Authorization or Idempotency-Key (checked first, after the cross-site check: 403
        // cross_origin_request for a state-changing request from another site's page).
        // Every API answer without a Cache-Control of its own: no-store.
        let api_routes = api_routes
            .layer(middleware::from_fn(sluice_serving::cache_control::no_store_by_default))
            .layer(middleware::from_fn(sluice_serving::content_coding::refuse_content_coding))
            .layer(middleware::from_fn(sluice_serving::single_headers::refuse_repeated))
            // Outermost: a forged request from another site's page changes nothing.
            .layer(middleware::from_fn(sluice_serving::cross_origin::refuse_cross_origin));
        router = router.merge(api_routes);
    }
    if role == Role::Redirect {
        router = router.route("/v1", any(api_not_here)).route("/v1/{*rest}", any(api_not_here));
    }
    let redirect = redirect.filter(|_| matches!(role, Role::All | Role::Redirect));
    if let Some(redirect) = &redirect {
        router = router.merge(sluice_redirect::routes(redirect.clone()));
    }
    let router = sluice_serving::with_fallbacks(router).layer(middleware::from_fn(track_http));
    App { router, fast: redirect.map(|r| Arc::new(FastPath::new(r))), before_serving: None, gate: StartGate::opened() }
}

/// Start-up work an [`App`] needs done before it serves everything
/// ([`App::with_before_serving`]).
#[derive(Clone)]
pub struct BeforeServing {
    /// Its key under `/readyz`'s `details` while it runs (`configured_blocklist`).
    pub name: &'static str,
    /// What is not done yet, for `/readyz`'s message while it runs.
    pub pending: &'static str,
    /// The work: called once per server with the server's [`StartGate`] (to report each
    /// failure it retries, [`StartGate::report_failure`]). It must finish by itself,
    /// retrying what fails: until it does, the server answers only `/healthz`, `/readyz`
    /// (503) and `/metrics` ([`crate::start_gate`]).
    pub run: StartupWork,
}

/// The work of a [`BeforeServing`].
pub type StartupWork = Arc<dyn Fn(StartGate) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// `/v1/...` on a redirect-only process: 404 `not_found` saying where the API is, instead
/// of a bare "no such route" (README, "Split roles").
async fn api_not_here(uri: axum::http::Uri) -> sluice_serving::error::ApiError {
    let message = if uri.path() == sluice_ingest::http::EVENTS_PATH { EVENTS_NOT_ON_REDIRECT } else { API_NOT_HERE };
    sluice_serving::error::ApiError::route_not_found(uri.path()).with_message(message)
}

/// The message of [`api_not_here`].
pub const API_NOT_HERE: &str =
    "this process serves redirects only (role redirect): the API under /v1/, the stats included, is served by a process with role all or api";

/// The message of [`api_not_here`] for `/v1/events` (which a role api process serves only
/// with `[kafka]` brokers configured).
pub const EVENTS_NOT_ON_REDIRECT: &str = "this process serves redirects only (role redirect): POST /v1/events is served by the process with role all \
     that holds the click log, or by any process with role all or api when [kafka] brokers are configured";

/// `/v1/events` on a process without a click log or Kafka to append to (role api on the
/// embedded defaults): the route answering 404 `not_found` saying which process takes
/// events, instead of a bare "no such route" (README, "Split roles"). Merged in place of
/// `sluice_ingest::events_router` by [`crate::serve`].
pub fn events_not_here_routes() -> Router {
    Router::new().route(sluice_ingest::http::EVENTS_PATH, any(events_not_here))
}

async fn events_not_here(uri: axum::http::Uri) -> sluice_serving::error::ApiError {
    sluice_serving::error::ApiError::route_not_found(uri.path()).with_message(EVENTS_NOT_HERE)
}

/// The message of [`events_not_here`].
pub const EVENTS_NOT_HERE: &str = "this process holds no click log (role api): POST /v1/events is served by the process with role all that holds \
     the click log, or by any process with role all or api when [kafka] brokers are configured";

/// What a server answers with: the full router (every route, `/{code}` included, with the
/// JSON fallbacks and `sluice_http_requests_total`) and, when redirects are served, the
/// fast path that answers `GET`/`HEAD /{code}` ahead of it (module docs).
#[derive(Clone)]
pub struct App {
    router: Router,
    fast: Option<Arc<FastPath>>,
    before_serving: Option<BeforeServing>,
    /// Closed while [`Self::before_serving`] has not run to its end under a server.
    gate: StartGate,
}

impl App {
    /// One router answering everything: the fast path wrapped around the router
    /// ([`RedirectFirst`]) when redirects are served, else the router itself.
    pub fn into_router(self) -> Router {
        match self.fast {
            Some(fast) => Router::new().fallback_service(RedirectFirst { fast, router: self.router }),
            None => self.router,
        }
    }

    /// The full router (it serves `/{code}` too, through the axum handler).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The redirect fast path, when redirects are served.
    pub fn fast_path(&self) -> Option<&Arc<FastPath>> {
        self.fast.as_ref()
    }

    /// The app with `task` to run before serving everything: the HTTP server
    /// ([`crate::http_server::serve_with`]) accepts connections at once and runs `task`
    /// beside them; until it is done, the readiness gate ([`crate::start_gate`]) answers
    /// every request but `/healthz` and `/metrics` with 503 (`/readyz`: `not_ready`, naming
    /// the task; the rest, redirects included: `starting`), so no redirect or API request is
    /// served before it. Replaces an earlier task. The router of [`Self::into_router`]
    /// (tests, tools) neither runs it nor is gated.
    pub fn with_before_serving(mut self, task: BeforeServing) -> App {
        self.gate = StartGate::closed(task.name, task.pending);
        self.before_serving = Some(task);
        self
    }

    /// The readiness gate of [`Self::with_before_serving`] (open when there is no task;
    /// every clone of the app shares it): [`StartGate::wait_open`] waits until a server
    /// running the task serves every request.
    pub fn start_gate(&self) -> &StartGate {
        &self.gate
    }

    /// The task to run before serving ([`Self::with_before_serving`]), if any.
    pub fn before_serving(&self) -> Option<&BeforeServing> {
        self.before_serving.as_ref()
    }
}

/// Route template label of redirects.
const REDIRECT_ROUTE: &str = "/{code}";

/// Answers `GET`/`HEAD /{code}` with the redirect handler and hands every other request to
/// the full router (module docs). A first path segment that is a reserved word
/// ([`sluice_serving::alias::is_reserved`]: `healthz`, `metrics`, …) always goes to the
/// router, which serves those paths ahead of `/{code}`.
#[derive(Clone)]
pub struct RedirectFirst {
    fast: Arc<FastPath>,
    router: Router,
}

/// The redirect fast path: the redirect handler plus its
/// `sluice_http_requests_total{route="/{code}"}` counts.
pub struct FastPath {
    redirect: RedirectState,
    /// `sluice_http_requests_total{route="/{code}"}` by status class.
    counters: [Counter; 5],
}

impl FastPath {
    fn new(redirect: RedirectState) -> Self {
        let counters = [0, 1, 2, 3, 4].map(|class| request_counter(REDIRECT_ROUTE, class));
        Self { redirect, counters }
    }

    /// Whether the fast path answers a request with `method` and `path`: `GET` or `HEAD`
    /// of `/<code>` without further segments, where `<code>` has the shape of a code and is
    /// not a reserved word. Other requests go to the router.
    pub fn takes(method: &Method, path: &str) -> bool {
        if method != Method::GET && method != Method::HEAD {
            return false;
        }
        path.strip_prefix('/').is_some_and(|code| sluice_redirect::handler::is_code(code) && !sluice_serving::alias::is_reserved(code))
    }

    /// The answer to `req` (one [`Self::takes`] accepts) from socket peer `peer` when it
    /// needs no wait ([`sluice_redirect::handler::respond_now`]), counted; `None` (nothing
    /// counted) otherwise: call [`Self::answer`].
    pub fn answer_now(&self, req: &Parts, peer: Option<IpAddr>) -> Option<Response> {
        self.answer_now_unencoded(req, peer).map(Answer::into_response)
    }

    /// The answer to `req` (one [`Self::takes`] accepts) from socket peer `peer`, counted.
    pub async fn answer(&self, req: &Parts, peer: Option<IpAddr>) -> Response {
        self.answer_unencoded(req, peer).await.into_response()
    }

    /// [`Self::answer_now`] before it is a response, for a server that writes it itself;
    /// `req` (`Parts`, or the server's own view of the head it parsed) needs only the header
    /// fields of [`Self::read_headers`].
    pub fn answer_now_unencoded<H: RequestHead + ?Sized>(&self, req: &H, peer: Option<IpAddr>) -> Option<Answer> {
        let answer = sluice_redirect::handler::answer_now(&self.redirect, req, peer)?;
        self.counters[status_class(answer.status)].increment(1);
        Some(answer)
    }

    /// [`Self::answer_now_unencoded`] for a server that writes the answer right away:
    /// `write` gets it borrowed ([`sluice_redirect::handler::answer_now_with`]: called with
    /// a front-array slot locked, it must only copy bytes); counted as the others.
    pub fn answer_now_with<H: RequestHead + ?Sized, R>(&self, req: &H, peer: Option<IpAddr>, write: impl FnOnce(AnswerRef<'_>) -> R) -> Option<R> {
        sluice_redirect::handler::answer_now_with(&self.redirect, req, peer, |answer| {
            self.counters[status_class(answer.status)].increment(1);
            write(answer)
        })
    }

    /// [`Self::answer`] before it is a response, for a server that writes it itself; `req`
    /// (as for [`Self::answer_now_unencoded`]) needs only the header fields of
    /// [`Self::read_headers`].
    pub async fn answer_unencoded<H: RequestHead + ?Sized>(&self, req: &H, peer: Option<IpAddr>) -> Answer {
        let answer = sluice_redirect::handler::answer_to(&self.redirect, req, peer).await;
        self.counters[status_class(answer.status)].increment(1);
        answer
    }

    /// Every request header field the redirect handler reads
    /// ([`sluice_redirect::RedirectState::read_headers`]).
    pub fn read_headers(&self) -> &[HeaderName] {
        self.redirect.read_headers()
    }
}

impl RedirectFirst {
    /// Wraps `router` (which must serve `/{code}` with the same `redirect` state, so that
    /// the requests it still receives are answered alike).
    pub fn new(redirect: RedirectState, router: Router) -> Self {
        Self { fast: Arc::new(FastPath::new(redirect)), router }
    }
}

impl tower::Service<Request> for RedirectFirst {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if !FastPath::takes(req.method(), req.uri().path()) {
            return Box::pin(self.router.call(req));
        }
        let fast = Arc::clone(&self.fast);
        Box::pin(async move {
            let (parts, _body) = req.into_parts();
            let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
            Ok(fast.answer(&parts, peer).await)
        })
    }
}

/// Index into [`STATUS_CLASSES`] of `status`.
fn status_class(status: StatusCode) -> usize {
    usize::from(status.as_u16() / 100).clamp(1, 5) - 1
}

/// Status class label values, indexed by `status / 100 - 1`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// `sluice_http_requests_total` handles per route template (a bounded set: the routes of
/// this router plus `unmatched`), resolved once so a request costs one map lookup under a
/// read lock instead of building a metric key.
static HTTP_REQUESTS: LazyLock<RwLock<HashMap<String, [Counter; 5]>>> = LazyLock::new(|| RwLock::new(HashMap::new()));

fn request_counter(route: &str, class: usize) -> Counter {
    if let Some(c) = HTTP_REQUESTS.read().get(route) {
        return c[class].clone();
    }
    let counters = STATUS_CLASSES.map(|sc| metrics::counter!("sluice_http_requests_total", "route" => route.to_owned(), "status_class" => sc));
    let c = counters[class].clone();
    HTTP_REQUESTS.write().entry(route.to_owned()).or_insert(counters);
    c
}

/// Counts every request by matched route template and status class. `Router::layer`
/// wraps each route individually, so the matched path is known here.
async fn track_http(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    request_counter(route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str), status_class(resp.status())).increment(1);
    resp
}
