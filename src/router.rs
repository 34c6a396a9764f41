//! The served router: API, redirect and health routes composed by [`Role`], JSON 404/405
//! fallbacks, the body limit, and `sluice_http_requests_total{route,status_class}`.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use metrics::Counter;
use parking_lot::RwLock;
use sluice_redirect::RedirectState;
use sluice_serving::ApiState;

use crate::config::Role;
use crate::health::{self, HealthState};

/// Label value of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Routes for `role`: `all` = API + redirects + health; `redirect` = redirects + health;
/// `api` = API + health. `api` must be `Some` for `all`/`api`, `redirect` for
/// `all`/`redirect` (a missing part is simply not served). API bodies are limited to
/// `max_body_bytes` (413 `payload_too_large` above).
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
    let mut router = health::routes(health_state);
    if matches!(role, Role::All | Role::Api)
        && let Some(api) = api
    {
        router = router.merge(sluice_serving::routes(api).layer(DefaultBodyLimit::max(max_body_bytes)));
        if let Some(events) = events {
            router = router.merge(events);
        }
    }
    if matches!(role, Role::All | Role::Redirect)
        && let Some(redirect) = redirect
    {
        router = router.merge(sluice_redirect::routes(redirect));
    }
    sluice_serving::with_fallbacks(router).layer(middleware::from_fn(track_http))
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
    let class = usize::from(resp.status().as_u16() / 100).clamp(1, 5) - 1;
    request_counter(route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str), class).increment(1);
    resp
}
