//! Request and response body wrappers of [`super::serve_with`]: the request body read
//! deadline, SSE streams that end at the graceful stop, and the end of a response that
//! makes its connection idle again ([`super::limits`]).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::sync::watch;

use super::ConnActivity;
use crate::http_listener::error_response;
use crate::router::FastPath;

/// What a [`TrackedBody`] saw: read to its end (see [`with_body_deadline`]), or failed
/// (malformed framing or a connection cut mid-body, see [`unless_malformed`]).
#[derive(Debug, Default)]
pub(super) struct BodyState {
    done: AtomicBool,
    failed: AtomicBool,
}

/// A request body that records in its [`BodyState`] when it has been read to its end and
/// when reading it failed, and in its connection's [`ConnActivity`] that it is arriving
/// until then (or until dropped).
pub(super) struct TrackedBody {
    inner: Incoming,
    state: Arc<BodyState>,
    activity: ConnActivity,
}

impl TrackedBody {
    /// Wraps `inner`; `state` records its end and its failure, `activity` that it arrives.
    pub(super) fn new(inner: Incoming, state: Arc<BodyState>, activity: ConnActivity) -> Self {
        activity.on_body(true);
        TrackedBody { inner, state, activity }
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.activity.on_body(false);
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(Some(Err(_)))) {
            self.state.failed.store(true, Ordering::Release);
            self.activity.on_body(false);
        }
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.state.done.store(true, Ordering::Release);
            self.activity.on_body(false);
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

/// `resp`, unless reading the request body failed (`state`): then 400 `malformed_request`
/// with `connection: close`, whatever the handler made of the failed read. hyper fails a
/// body on malformed chunked framing (a bad chunk size or chunk end, RFC 9112 §7.1) and on a
/// body cut short by the client, who then does not read the answer anyway.
pub(super) fn unless_malformed(resp: Response, state: &BodyState) -> Response {
    if !state.failed.load(Ordering::Acquire) {
        return resp;
    }
    malformed_body()
}

/// The 400 `malformed_request` answer (`connection: close`) of [`unless_malformed`].
fn malformed_body() -> Response {
    let message = "the request body is not valid HTTP/1.1: malformed chunked framing or a body cut short (RFC 9112 section 7.1)";
    let mut resp = error_response(StatusCode::BAD_REQUEST, "malformed_request", message, None);
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The answer to a request with a body whose `Transfer-Encoding` (all its fields, in order)
/// is not exactly `chunked` (RFC 9112 §6.1; hyper has already refused one that does not end
/// in `chunked`): 501 `unsupported_transfer_encoding` naming the codings when another coding
/// is listed (`gzip, chunked`), 400 `malformed_request` for `chunked` listed more than once.
/// Both with `connection: close` (the body is not read). `None`: no `Transfer-Encoding`, or
/// `chunked` alone.
pub(super) fn reject_transfer_coding(headers: &HeaderMap) -> Option<Response> {
    let mut fields = headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
    fields.peek()?;
    let mut codings = Vec::new();
    for field in fields {
        let Ok(text) = field.to_str() else {
            codings.push(String::from_utf8_lossy(field.as_bytes()).into_owned());
            continue;
        };
        codings.extend(text.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned));
    }
    let chunked = codings.iter().filter(|c| c.eq_ignore_ascii_case("chunked")).count();
    let mut resp = if chunked == codings.len() && chunked == 1 {
        return None;
    } else if chunked == codings.len() {
        let message = "the chunked transfer coding is applied more than once (RFC 9112 section 7)";
        error_response(StatusCode::BAD_REQUEST, "malformed_request", message, None)
    } else {
        let message = format!("Transfer-Encoding \"{}\": only \"chunked\" alone is implemented (RFC 9112 section 6.1)", codings.join(", "));
        let details = serde_json::json!({ "transfer_encoding": codings, "supported": ["chunked"] });
        error_response(StatusCode::NOT_IMPLEMENTED, "unsupported_transfer_encoding", &message, Some(details))
    };
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(resp)
}

/// The 408 `request_timeout` answer to a request whose body did not arrive within
/// `timeout`; `connection: close` (RFC 9110 §15.5.9: the rest of the body is not read).
fn request_timeout(timeout: Duration) -> Response {
    let message = format!("the request body did not fully arrive within {} ms (body-read-timeout)", timeout.as_millis());
    let details = serde_json::json!({ "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX) });
    let mut resp = error_response(StatusCode::REQUEST_TIMEOUT, "request_timeout", &message, Some(details));
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// `handler` (the answer to a request whose body is a [`TrackedBody`] with `state`),
/// unless the body has not been read to its end `timeout` after the call: then the handler
/// is dropped (and the body with it) and the answer is 408 `request_timeout`. A handler
/// still working after it has read the whole body is not cut.
pub(super) async fn with_body_deadline(handler: impl Future<Output = Response>, state: Arc<BodyState>, timeout: Duration) -> Response {
    let mut handler = std::pin::pin!(handler);
    tokio::select! {
        resp = &mut handler => resp,
        () = tokio::time::sleep(timeout) => {
            if state.done.load(Ordering::Acquire) {
                handler.await
            } else {
                tracing::debug!(?timeout, "request body read deadline passed: 408");
                request_timeout(timeout)
            }
        }
    }
}

/// How a redirect request's chunked body is read and dropped before its answer
/// ([`Self::then_redirect`]).
pub(super) struct Discarded {
    /// [`super::ServerOptions::max_body_bytes`].
    pub limit: usize,
    /// [`super::ServerOptions::body_read_timeout`].
    pub timeout: Option<Duration>,
    /// The connection's activity (a body arriving).
    pub activity: ConnActivity,
}

impl Discarded {
    /// The answer to a `GET`/`HEAD` redirect request `req` from `peer` whose body is chunked:
    /// the body is read to its end and dropped (a redirect uses none), then `fast` answers as
    /// for the request without it (a click for a `GET`). Its size is known only once read, so
    /// that a body over `limit` gets the 413 `payload_too_large` of a `Content-Length` over it
    /// (as soon as the limit is passed, `connection: close`) and is no click; malformed
    /// framing is 400 `malformed_request`, a body not read to its end within `timeout` 408
    /// `request_timeout`. Read to its end, the body is never taken for a next request.
    pub(super) async fn then_redirect(self, req: hyper::Request<Incoming>, fast: Arc<FastPath>, peer: Option<IpAddr>, stop: watch::Receiver<bool>) -> Response {
        let (parts, body) = req.into_parts();
        let state = Arc::new(BodyState::default());
        let body = TrackedBody::new(body, Arc::clone(&state), self.activity);
        let limit = self.limit;
        let answer = async move {
            match drop_within(body, limit).await {
                Ok(()) => fast.answer(&parts, peer).await,
                Err(resp) => resp,
            }
        };
        let resp = match self.timeout {
            Some(timeout) => with_body_deadline(answer, state, timeout).await,
            None => answer.await,
        };
        super::close_if_stopping(resp, &stop)
    }
}

/// Reads `body` to its end, dropping its bytes: `Err` with the 413 once more than `limit`
/// bytes came, with the 400 of [`malformed_body`] when reading fails.
async fn drop_within(body: TrackedBody, limit: usize) -> Result<(), Response> {
    let mut body = std::pin::pin!(body);
    let mut read = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| hyper::body::Body::poll_frame(body.as_mut(), cx)).await {
        let Ok(frame) = frame else { return Err(malformed_body()) };
        read = read.saturating_add(frame.data_ref().map_or(0, Bytes::len));
        if read > limit {
            return Err(payload_too_large(limit));
        }
    }
    Ok(())
}

/// The 413 `payload_too_large` answer to a request whose `Content-Length` is over `limit`
/// bytes (sent before any of the body is read; `connection: close`, the body is not read),
/// or whose chunked body passed it while read.
pub(super) fn payload_too_large(limit: usize) -> Response {
    let message = format!("request body is larger than {limit} bytes");
    let mut resp = error_response(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &message, Some(serde_json::json!({ "max_body_bytes": limit })));
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
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

/// `resp` with a body that marks its connection idle ([`ConnActivity::on_answered`]) when
/// hyper is done with it: written to its end, or dropped with the connection. Until then
/// the connection is busy ([`ConnActivity::on_request`]) and never closed to make room for
/// another ([`super::limits`]): an SSE stream stays busy while it streams. Size hint and
/// end of stream are the inner body's (hyper derives `content-length` from them).
pub(super) fn busy_until_sent(resp: Response, activity: ConnActivity) -> Response {
    resp.map(|inner| Body::new(BusyUntilSent { inner, activity }))
}

struct BusyUntilSent {
    inner: Body,
    activity: ConnActivity,
}

impl Drop for BusyUntilSent {
    fn drop(&mut self) {
        self.activity.on_answered();
    }
}

impl hyper::body::Body for BusyUntilSent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
