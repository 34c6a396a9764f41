//! Answers on the listener while [`super::system::System`] starts.
//!
//! `sluice serve` binds its port before it opens the data dir, the click log, the link store
//! (for PostgreSQL: connect within `[store] connect-timeout`, then run the migrations) and
//! the dataflow. Without this module, a probe sent meanwhile waited in the listen queue, so
//! a liveness probe of an orchestrator could fail (and restart the process) during a long
//! migration. [`EarlyAnswers`] accepts those connections and answers each request on them
//! with the readiness gate's rules ([`crate::start_gate`]), closing the connection after
//! the answer (HTTP/1.1 without keep-alive) so the client's next request reaches the real
//! server once it is up:
//!
//! * `/healthz` is 200 `{"status": "ok"}` (the process is alive) and `/metrics` the
//!   Prometheus text, in which `sluice_starting` is 1;
//! * `/readyz` is 503 `not_ready` naming `start_up` under `details`;
//! * everything else, redirects and the API, is 503 `starting` with `Retry-After: 1`;
//! * the three probes take GET and HEAD only: another method is 405 `method_not_allowed`,
//!   as the real server answers it.
//!
//! [`EarlyAnswers::finish`] stops accepting and hands the listener back to the real HTTP
//! server; a connection accepted before that still gets its one answer.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::start_gate::StartGate;

/// The key of the start-up under `/readyz`'s `details`.
pub const START_UP: &str = "start_up";

/// What `/readyz` says is not done yet.
const PENDING: &str = "opening the data dir, click log, link store (connection and migrations) and dataflow is not finished yet";

/// How long an early connection may take to send its request head (seconds), so a client
/// that never sends one does not hold a task for the whole start.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The answering task of a starting process (module docs).
pub struct EarlyAnswers {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<TcpListener>,
}

impl EarlyAnswers {
    /// Starts answering on `listener` (module docs) and sets `sluice_starting` to 1.
    pub fn spawn(listener: TcpListener) -> EarlyAnswers {
        // The recorder first, so that the gauge lands in it.
        let prometheus = crate::telemetry::prometheus();
        let gate = StartGate::closed(START_UP, PENDING);
        gate.publish();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let router = router(gate, prometheus);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let service = TowerToHyperService::new(router.clone());
                            tokio::spawn(async move {
                                let served = hyper::server::conn::http1::Builder::new()
                                    .keep_alive(false)
                                    .timer(TokioTimer::new())
                                    .header_read_timeout(HEADER_READ_TIMEOUT)
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                                if let Err(e) = served {
                                    tracing::debug!(error = %e, "connection during start-up ended with an error");
                                }
                            });
                        }
                        // Out of file descriptors, say: the real server's accept loop will
                        // meet the same; do not spin meanwhile.
                        Err(e) => {
                            tracing::debug!(error = %e, "accept during start-up failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                }
            }
            listener
        });
        EarlyAnswers { stop: Some(stop), task }
    }

    /// Stops accepting and returns the listener, for the real HTTP server.
    ///
    /// Errors: the answering task panicked (the listener is lost with it).
    pub async fn finish(mut self) -> anyhow::Result<TcpListener> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(|e| anyhow::anyhow!("the task answering during start-up failed: {e}"))
    }
}

impl Drop for EarlyAnswers {
    /// A start given up (refused, or a stop signal): stop answering, close the listener.
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

/// `/healthz` and `/metrics` as usual, the rest by `gate`'s closed answers. The probes
/// (`/healthz`, `/readyz`, `/metrics`) are GET routes (HEAD included) with the API's
/// method-not-allowed fallback, as on the real server: any other method is 405
/// `method_not_allowed` in the JSON error shape.
fn router(gate: StartGate, prometheus: metrics_exporter_prometheus::PrometheusHandle) -> Router {
    let closed = move |path: &str| gate.answer_closed(path).unwrap_or_else(|| axum::http::StatusCode::NOT_FOUND.into_response());
    let readyz = closed.clone();
    Router::new()
        .route("/healthz", get(|| std::future::ready(crate::health::healthz_response())))
        .route("/metrics", get(move || std::future::ready(crate::health::metrics_response(&prometheus))))
        .route("/readyz", get(move || std::future::ready(readyz("/readyz"))))
        .fallback(move |req: Request| std::future::ready(closed(req.uri().path())))
        .method_not_allowed_fallback(sluice_serving::error::method_not_allowed_fallback)
}

#[cfg(test)]
mod tests;
