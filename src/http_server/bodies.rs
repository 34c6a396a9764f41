//! Request and response body wrappers of [`super::serve_with`]: the request body read
//! deadline and SSE streams that end at the graceful stop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::sync::watch;

use crate::http_listener::error_response;

/// A request body that records when it has been read to its end (see
/// [`with_body_deadline`]).
pub(super) struct TrackedBody {
    inner: Incoming,
    done: Arc<AtomicBool>,
}

impl TrackedBody {
    /// Wraps `inner`; `done` turns true once its last frame has been read.
    pub(super) fn new(inner: Incoming, done: Arc<AtomicBool>) -> Self {
        TrackedBody { inner, done }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.done.store(true, Ordering::Release);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The 408 `request_timeout` answer to a request whose body did not arrive within
/// `timeout`; `connection: close` (RFC 9110 §15.5.9: the rest of the body is not read).
fn request_timeout(timeout: Duration) -> Response {
    let message = format!("the request body did not fully arrive within {} ms (body-read-timeout)", timeout.as_millis());
    let details = serde_json::json!({ "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX) });
    let mut resp = error_response(StatusCode::REQUEST_TIMEOUT, "request_timeout", &message, Some(details));
    resp.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    resp
}

/// `handler` (the answer to a request whose body is a [`TrackedBody`] with flag `done`),
/// unless the body has not been read to its end `timeout` after the call: then the handler
/// is dropped (and the body with it) and the answer is 408 `request_timeout`. A handler
/// still working after it has read the whole body is not cut.
pub(super) async fn with_body_deadline(handler: impl Future<Output = Response>, done: Arc<AtomicBool>, timeout: Duration) -> Response {
    let mut handler = std::pin::pin!(handler);
    tokio::select! {
        resp = &mut handler => resp,
        () = tokio::time::sleep(timeout) => {
            if done.load(Ordering::Acquire) {
                handler.await
            } else {
                tracing::debug!(?timeout, "request body read deadline passed: 408");
                request_timeout(timeout)
            }
        }
    }
}

/// The 413 `payload_too_large` answer to a request whose `Content-Length` is over `limit`
/// bytes (sent before any of the body is read; `connection: close`, the body is not read).
pub(super) fn payload_too_large(limit: usize) -> Response {
    let message = format!("request body is larger than {limit} bytes");
    let mut resp = error_response(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &message, Some(serde_json::json!({ "max_body_bytes": limit })));
    resp.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    resp
}

/// Whether `resp` is a server-sent events stream (`content-type: text/event-stream`).
pub(super) fn is_event_stream(resp: &Response) -> bool {
    resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// `resp` with a body that ends (cleanly: the last chunk, then the connection closes at
/// the graceful stop) once `stop` turns true or its sender is gone.
pub(super) fn until_stop(resp: Response, mut stop: watch::Receiver<bool>) -> Response {
    let stopped = Box::pin(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    resp.map(|inner| Body::new(UntilStop { inner, stopped }))
}

struct UntilStop {
    inner: Body,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl hyper::body::Body for UntilStop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if self.stopped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }
}
