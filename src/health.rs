//! `/healthz` (process up), `/readyz` (link store reachable), `/metrics` (Prometheus text).
//!
//! `/readyz` also reports dependencies ([`Dependency`]: the Redis link cache and
//! view sink, ClickHouse, the click log tail) under `dependencies`. Optional ones never make
//! it fail, because redirects and the API keep working without them (their sinks catch up
//! later); a required one (the click log tail, whose failure stops the stats counting)
//! makes it answer 503.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use sluice_connectors::LinkStore;

/// How long `/readyz` waits for the store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// A dependency `/readyz` reports under `dependencies`; it fails readiness only when
/// [`Dependency::required`].
pub trait Dependency: Send + Sync + 'static {
    /// Stable name (`redis_link_cache`, `redis_views`, `clickhouse`).
    fn name(&self) -> &'static str;
    /// Whether it works now, and a JSON object describing its state (`{"status": "up"}`, ...).
    /// Must not block (read cached state only).
    fn status(&self) -> (bool, serde_json::Value);
    /// Whether `/readyz` fails (503 `not_ready`) while this dependency is not working
    /// (default false: reported only). The click log tail is required: without it the
    /// stats stop counting.
    fn required(&self) -> bool {
        false
    }
}

/// State of the health routes.
#[derive(Clone)]
pub struct HealthState {
    /// Probed by `/readyz` with a lookup of a code that cannot exist.
    pub store: Arc<dyn LinkStore>,
    /// Rendered by `/metrics`.
    pub prometheus: PrometheusHandle,
    /// Reported by `/readyz` under `dependencies`; a failed required one fails it.
    pub dependencies: Vec<Arc<dyn Dependency>>,
}

/// `/healthz`, `/readyz` and `/metrics`.
pub fn routes(state: HealthState) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics_text)).with_state(state)
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, json!({ "status": "ok" }))
}

async fn readyz(State(s): State<HealthState>) -> Response {
    // "readyz" is reserved, so this read exercises the store without ever finding a link.
    match tokio::time::timeout(READY_TIMEOUT, s.store.get("readyz")).await {
        Ok(Ok(_)) => {
            if let Some(d) = s.dependencies.iter().find(|d| d.required() && !d.status().0) {
                let (_, state) = d.status();
                tracing::warn!(dependency = d.name(), state = %state, "readiness probe: a required dependency failed");
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": { "code": "not_ready", "message": format!("{} is not working", d.name()), "details": { d.name(): state } } }),
                );
            }
            let mut body = json!({ "status": "ready", "store": s.store.backend() });
            if !s.dependencies.is_empty() {
                let deps: serde_json::Map<String, serde_json::Value> = s.dependencies.iter().map(|d| (d.name().to_string(), d.status().1)).collect();
                body["dependencies"] = serde_json::Value::Object(deps);
            }
            json_response(StatusCode::OK, body)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness probe: link store failed");
            not_ready("link store is not reachable")
        }
        Err(_) => not_ready("link store did not answer in time"),
    }
}

fn not_ready(message: &str) -> Response {
    json_response(StatusCode::SERVICE_UNAVAILABLE, json!({ "error": { "code": "not_ready", "message": message } }))
}

async fn metrics_text(State(s): State<HealthState>) -> Response {
    let mut resp = s.prometheus.render().into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
