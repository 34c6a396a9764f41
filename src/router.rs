//! The served router: API, redirect and health routes composed by [`Role`], JSON 404/405
//! fallbacks, the body limit, and `sluice_http_requests_total{route,status_class}`.

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
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
    let mut router = health::routes(health_state);
    if matches!(role, Role::All | Role::Api)
        && let Some(api) = api
    {
        router = router.merge(sluice_serving::routes(api).layer(DefaultBodyLimit::max(max_body_bytes)));
    }
    if matches!(role, Role::All | Role::Redirect)
        && let Some(redirect) = redirect
    {
        router = router.merge(sluice_redirect::routes(redirect));
    }
    sluice_serving::with_fallbacks(router).layer(middleware::from_fn(track_http))
}

/// Counts every request by matched route template and status class. `Router::layer`
/// wraps each route individually, so the matched path is known here.
async fn track_http(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| UNMATCHED_ROUTE.to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    let class = match resp.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!("sluice_http_requests_total", "route" => route, "status_class" => class).increment(1);
    resp
}
