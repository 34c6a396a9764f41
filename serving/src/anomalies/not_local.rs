//! The anomaly and webhook routes of a process that holds no anomaly store: every request
//! (after the admin check) gets 503 `anomalies_not_local`, naming the role that serves them.
//!
//! The store (`<data dir>/anomalies.redb`) belongs to the process that runs the dataflow
//! (role `all`, `[dataflow] enabled = true`): the detectors run there and redb allows one
//! process per file, so a role `api` process cannot read it. A clear 503 (rather than the
//! 404 of an unknown route) tells a client the API exists and where to ask instead.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::any;
use serde_json::json;

use crate::auth::{AdminAuth, AdminPrincipal};
use crate::error::ApiError;

/// Why this process has no anomaly store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotLocalReason {
    /// `[server] role = "api"`: no click log, no dataflow.
    ApiRole,
    /// `[dataflow] enabled = false`: the detectors do not run here.
    DataflowOff,
}

impl NotLocalReason {
    fn error(self) -> ApiError {
        let (message, role) = match self {
            NotLocalReason::ApiRole => (
                "this process runs with role \"api\" and holds no anomaly store; anomalies and webhooks are served by the process that runs the dataflow (role \"all\")",
                "api",
            ),
            NotLocalReason::DataflowOff => (
                "this process runs no dataflow ([dataflow] enabled = false), so no abuse detectors and no anomaly store; anomalies and webhooks are served by a process with role \"all\" and the dataflow enabled",
                "all",
            ),
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "anomalies_not_local", message).with_details(json!({ "role": role, "served_by_role": "all" }))
    }
}

/// `/v1/anomalies`, `/v1/anomalies/stream` and `/v1/webhooks...` answering 503
/// `anomalies_not_local` (module docs) to authenticated admins (401/403 as usual otherwise).
pub fn routes(auth: AdminAuth, reason: NotLocalReason) -> Router {
    async fn refuse(_admin: AdminPrincipal, State(s): State<NotLocalState>) -> ApiError {
        s.reason.error()
    }
    Router::new()
        .route("/v1/anomalies", any(refuse))
        .route("/v1/anomalies/stream", any(refuse))
        .route("/v1/webhooks", any(refuse))
        .route("/v1/webhooks/{id}", any(refuse))
        .route("/v1/webhooks/{id}/deliveries", any(refuse))
        .with_state(NotLocalState { auth, reason })
}

#[derive(Clone)]
struct NotLocalState {
    auth: AdminAuth,
    reason: NotLocalReason,
}

impl axum::extract::FromRef<NotLocalState> for AdminAuth {
    fn from_ref(s: &NotLocalState) -> AdminAuth {
        s.auth.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_route_answers_503_anomalies_not_local_after_the_admin_check() {
        let base = crate::anomalies::tests::serve(routes(AdminAuth::new(Some("tok-0123456789abcdef".into())), NotLocalReason::ApiRole)).await;
        let http = reqwest::Client::new();
        for (method, path) in [
            ("GET", "/v1/anomalies?kind=visitor_flood"),
            ("GET", "/v1/anomalies/stream"),
            ("GET", "/v1/webhooks"),
            ("POST", "/v1/webhooks"),
            ("DELETE", "/v1/webhooks/abc"),
            ("GET", "/v1/webhooks/abc/deliveries"),
        ] {
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let r = http.request(m.clone(), format!("{base}{path}")).send().await.expect("request");
            assert_eq!(r.status(), 401, "{method} {path} without the token");
            let r = http.request(m, format!("{base}{path}")).bearer_auth("tok-0123456789abcdef").send().await.expect("request");
            assert_eq!(r.status(), 503, "{method} {path}");
            let body: serde_json::Value = r.json().await.expect("json");
            assert_eq!(body["error"]["code"], "anomalies_not_local", "{body}");
            assert_eq!(body["error"]["details"], json!({"role": "api", "served_by_role": "all"}));
            assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("role \"all\"")), "{body}");
        }
    }
}
