//! The readiness gate of a server with start-up work ([`crate::router::App::with_before_serving`];
//! in `sluice serve`, the configuration's `[links] blocklist` applied to the existing links).
//!
//! The HTTP server ([`crate::http_server::serve_with`]) accepts connections from the start
//! and runs the start-up work beside them. Until it has finished, the gate is closed:
//!
//! * `/healthz` and `/metrics` are answered as usual (the process is alive; the metrics say
//!   why it is not serving: `sluice_starting` is 1);
//! * `/readyz` is 503 `not_ready`, in its usual shape, naming the work not done yet under
//!   `details` (`{"<name>": {"status": "applying"}}`, or `{"status": "retrying", "error":
//!   "<latest failure>"}` once an attempt failed, e.g. the link store not answering);
//! * every other request — redirects (`GET`/`HEAD /{code}`, the fast path included) and
//!   everything under `/v1/` — is 503 `starting` with `Retry-After`: no link the work is
//!   about to hold may be redirected before it is held.
//!
//! Once the work is done the gate opens for good (one atomic flag, [`StartGate::is_open`]:
//! the only cost on the redirect hot path is one atomic load) and `/readyz` follows its
//! usual rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use crate::http_listener::error_response;

/// The `Retry-After` of a 503 `starting` (seconds): the gate opens the moment the start-up
/// work is done, usually within a second of the start.
pub const STARTING_RETRY_AFTER_SECS: u32 = 1;

/// The message of a 503 `starting`.
pub const STARTING_MESSAGE: &str = "the server is starting and does not serve this request yet; retry shortly (GET /readyz says what it waits for)";

/// Whether the server answers every request yet (module docs). Cheap to clone: every clone
/// is the same gate.
#[derive(Clone)]
pub struct StartGate(Arc<Inner>);

struct Inner {
    /// Turns true once, when the start-up work is done (never false again).
    open: AtomicBool,
    /// The key of the work under `/readyz`'s `details` (`configured_blocklist`).
    name: &'static str,
    /// What is not done yet, for `/readyz`'s message.
    pending: &'static str,
    /// The latest failure the work reported ([`StartGate::report_failure`]).
    failure: parking_lot::Mutex<Option<String>>,
    /// Woken when the gate opens ([`StartGate::wait_open`]).
    opened: tokio::sync::Notify,
}

impl StartGate {
    /// A gate that is open from the start (no start-up work).
    pub fn opened() -> StartGate {
        Self::new(true, "", "")
    }

    /// A gate closed until [`Self::open`], for the start-up work `name` (its key under
    /// `/readyz`'s `details`) that has `pending` left to do (`/readyz`'s message).
    pub fn closed(name: &'static str, pending: &'static str) -> StartGate {
        Self::new(false, name, pending)
    }

    fn new(open: bool, name: &'static str, pending: &'static str) -> StartGate {
        let failure = parking_lot::Mutex::new(None);
        StartGate(Arc::new(Inner { open: AtomicBool::new(open), name, pending, failure, opened: tokio::sync::Notify::new() }))
    }

    /// Whether every request is served (one atomic load).
    #[inline]
    pub fn is_open(&self) -> bool {
        // Acquire: a request that sees the gate open sees everything the start-up work did
        // (its link changes, the redirect cache entries it invalidated).
        self.0.open.load(Ordering::Acquire)
    }

    /// Opens the gate for good (the start-up work is done); `sluice_starting` becomes 0.
    pub fn open(&self) {
        self.0.open.store(true, Ordering::Release);
        metrics::gauge!("sluice_starting").set(0.0);
        self.0.opened.notify_waiters();
    }

    /// Sets `sluice_starting` to the gate's state (1 while closed): the server, when it
    /// starts serving.
    pub fn publish(&self) {
        metrics::gauge!("sluice_starting").set(if self.is_open() { 0.0 } else { 1.0 });
    }

    /// Resolves once the gate is open (at once when it is): for a caller that must not send
    /// requests before the start-up work is done (tests, `sluice demo`'s traffic).
    pub async fn wait_open(&self) {
        loop {
            let notified = self.0.opened.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so an `open` in between is not missed.
            notified.as_mut().enable();
            if self.is_open() {
                return;
            }
            notified.await;
        }
    }

    /// Records `error` as the latest failure of the start-up work (it retries), shown by
    /// `/readyz` until the gate opens.
    pub fn report_failure(&self, error: String) {
        *self.0.failure.lock() = Some(error);
    }

    /// The answer to a request for `path` while the gate is closed: `None` for `/healthz`
    /// and `/metrics` (served as usual), 503 `not_ready` for `/readyz`, 503 `starting` with
    /// `Retry-After` for everything else (module docs). Call it only when
    /// [`Self::is_open`] is false.
    pub fn answer_closed(&self, path: &str) -> Option<Response> {
        match path {
            "/healthz" | "/metrics" => None,
            "/readyz" => Some(self.not_ready()),
            _ => Some(starting()),
        }
    }

    /// `/readyz` while the gate is closed.
    fn not_ready(&self) -> Response {
        let state = match self.0.failure.lock().as_ref() {
            None => json!({ "status": "applying" }),
            Some(error) => json!({ "status": "retrying", "error": error }),
        };
        let message = format!("starting: {}; redirects and the API answer 503 starting until it is", self.0.pending);
        let mut details = serde_json::Map::new();
        details.insert(self.0.name.to_owned(), state);
        error_response(StatusCode::SERVICE_UNAVAILABLE, "not_ready", &message, Some(serde_json::Value::Object(details)))
    }
}

/// 503 `starting` with `Retry-After` (module docs).
fn starting() -> Response {
    let mut resp = error_response(StatusCode::SERVICE_UNAVAILABLE, "starting", STARTING_MESSAGE, None);
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(STARTING_RETRY_AFTER_SECS));
    resp
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn parts(resp: Response) -> (u16, Option<String>, serde_json::Value) {
        let status = resp.status().as_u16();
        let retry = resp.headers().get(header::RETRY_AFTER).map(|v| v.to_str().expect("ascii").to_owned());
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, retry, serde_json::from_slice(&body).expect("json"))
    }

    #[tokio::test]
    async fn a_closed_gate_serves_health_and_metrics_and_refuses_the_rest_until_it_opens() {
        let gate = StartGate::closed("work", "the work is not done yet");
        assert!(!gate.is_open());
        assert!(gate.answer_closed("/healthz").is_none());
        assert!(gate.answer_closed("/metrics").is_none());
        let starting = json!({"error": {"code": "starting", "message": STARTING_MESSAGE}});
        for path in ["/abc", "/v1/links/x", "/v1/", "/"] {
            assert_eq!(parts(gate.answer_closed(path).expect("refused")).await, (503, Some("1".into()), starting.clone()), "{path}");
        }
        let message = "starting: the work is not done yet; redirects and the API answer 503 starting until it is";
        let ready = parts(gate.answer_closed("/readyz").expect("readyz")).await;
        assert_eq!(ready, (503, None, json!({"error": {"code": "not_ready", "message": message, "details": {"work": {"status": "applying"}}}})));
        gate.clone().report_failure("database error: no".into());
        let ready = parts(gate.answer_closed("/readyz").expect("readyz")).await;
        let details = json!({"work": {"status": "retrying", "error": "database error: no"}});
        assert_eq!(ready, (503, None, json!({"error": {"code": "not_ready", "message": message, "details": details}})));
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait_open().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        gate.clone().open();
        assert!(gate.is_open());
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter).await.expect("woken").expect("waiter");
        gate.wait_open().await;
        assert!(StartGate::opened().is_open());
    }
}
