//! The express lane of [`super::serve_with`]: a connection's plain redirect requests,
//! answered without hyper.
//!
//! Why: at the maximum rate, hyper's work per request (its dispatcher's state machine, a
//! `HeaderMap` of every header field, a URI, the response encoder, a header-read timer
//! reset) is a large share of a redirect's CPU time (BENCHMARKS.md, session 55). A
//! browser's request for a short link is simple, so every connection of a server that
//! serves redirects starts here: the lane parses request heads itself with `httparse` (the
//! parser hyper uses), answers each one that is plainly a redirect request with the
//! redirect handler ([`FastPath::answer_now_with`], else
//! [`FastPath::answer_unencoded`]) and writes the bytes hyper would write for that answer
//! ([`sluice_redirect::handler::Answer::write_http11`]). The first request that is anything
//! else, and everything after it, is hyper's: the connection, with the bytes read and not
//! answered, is handed to hyper ([`Exit::HandOff`], [`Prefixed`]), and the server goes on
//! exactly as the module docs of [`super`] describe.
//!
//! A request stays in the lane only when all of these hold; any other is handed off
//! untouched, so every edge case keeps the server's answer:
//!
//! * its head parses (`httparse`) with at most [`MAX_FIELDS`] header fields, and arrives
//!   within [`MAX_HEAD_BYTES`] bytes;
//! * `GET` or `HEAD`, `HTTP/1.1`, an origin-form target `/<code>` or `/<code>?<query>`
//!   that [`FastPath::takes`] (the shape of a code, not a reserved word; a path holding a
//!   `%` is not) whose query holds only RFC 3986 query characters (§3.4: unreserved,
//!   sub-delims, `:`, `@`, `/`, `?` and `%`);
//! * exactly one `Host`, a valid one ([`super::host::valid_host`]);
//! * no `Content-Length`, `Transfer-Encoding`, `Expect` or `Upgrade`, and no `Connection`
//!   but `keep-alive`;
//! * the readiness gate is open ([`StartGate`]), the graceful stop has not begun and the
//!   connection is not being closed to make room ([`super::limits`]).
//!
//! The handler gets a request head holding the header fields it reads
//! ([`FastPath::read_headers`]): the same answer, click event and metrics as through
//! hyper. Kept from the server: the header read deadline, counted from the end of the
//! previous answer (or the connection's start), as hyper counts it: a head not complete
//! when it passes closes the connection without an answer (a head handed to hyper after it
//! arrived in pieces gets hyper's own deadline from then on: at most twice the deadline in
//! all); reads and writes go through the connection's [`JsonErrorStream`] (its activity for
//! the connection limits, the pairing of heads and answers); an answer that needs a lookup
//! keeps the connection busy until it is written, and when the graceful stop began
//! meanwhile it says `connection: close` and is the connection's last. A graceful stop or
//! a closing to make room while the lane waits for a request hands the connection to hyper,
//! which then closes it as [`super`] describes (a head arriving is answered first).

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::net::IpAddr;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use axum::http::{HeaderName, Method};
use bytes::{Buf, Bytes, BytesMut};
use sluice_redirect::{HeaderFields, RequestHead};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::ConnActivity;
use super::host::valid_host;
use crate::http_listener::JsonErrorStream;
use crate::router::FastPath;
use crate::start_gate::StartGate;

/// Most header fields of a request the lane answers (browsers send 10–20); a request
/// with more is handed to hyper, which takes up to
/// [`crate::http_listener::MAX_HEADER_FIELDS`].
pub const MAX_FIELDS: usize = 32;
/// Most bytes a request head the lane answers may take (bytes); a longer one is handed to
/// hyper, which takes up to [`crate::http_listener::MAX_HEAD_BYTES`].
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields the handler reads that one request may carry (repeated fields
/// included); more are handed to hyper.
const MAX_KEPT: usize = 16;
/// Free buffer space ensured before each read (bytes).
const READ_RESERVE: usize = 4096;

/// How the lane left a connection.
pub(super) enum Exit {
    /// Closed: the peer closed it, a read or write failed, the header read deadline passed,
    /// or the last answer said `connection: close`.
    Closed,
    /// For hyper, with the bytes read and not answered (they come first).
    HandOff(Bytes),
}

/// What the lane needs of the server for one connection.
pub(super) struct Lane<'a> {
    /// The redirect fast path.
    pub fast: &'a FastPath,
    /// The socket peer.
    pub peer: IpAddr,
    /// The readiness gate.
    pub gate: &'a StartGate,
    /// The connection's activity.
    pub activity: &'a ConnActivity,
    /// Turns true at the graceful stop.
    pub stop: &'a watch::Receiver<bool>,
    /// [`super::ServerOptions::header_read_timeout`].
    pub header_read_timeout: Option<Duration>,
}

/// What the buffered bytes start with.
enum Head {
    /// A whole request head the lane answers.
    Plain(PlainHead),
    /// The start of a head (or nothing): more bytes are needed.
    Partial,
    /// A request for hyper.
    Other,
}

/// A request head the lane answers, as positions in the buffer it was parsed from.
struct PlainHead {
    /// Length of the head, its empty line included (bytes).
    len: usize,
    /// `HEAD` (else `GET`).
    head: bool,
    /// The request target's start and end.
    target: (u16, u16),
    /// The header fields the handler reads: index into the names, value's start and end
    /// (offsets fit: a head is at most [`MAX_HEAD_BYTES`] long).
    kept: [(u8, u16, u16); MAX_KEPT],
    /// How many of `kept` are set.
    n_kept: usize,
}

/// Whether `b` may appear in a query (RFC 3986 §3.4: pchar / "/" / "?", with `%` for
/// escapes, which the handler re-encodes when malformed).
fn query_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@' | b'/' | b'?' | b'%'
        )
}

/// Start and end of `part` (a subslice of `whole`) in `whole`; `None` past 65,535.
fn span(whole: &[u8], part: &[u8]) -> Option<(u16, u16)> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    Some((u16::try_from(start).ok()?, u16::try_from(start + part.len()).ok()?))
}

/// What `buf` starts with, given the header `names` the handler reads.
fn classify(buf: &[u8], names: &[HeaderName]) -> Head {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Complete(_)) => return Head::Other,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    let head = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Head::Other,
    };
    let method = if head { Method::HEAD } else { Method::GET };
    let (Some(1), Some(target)) = (req.version, req.path) else { return Head::Other };
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    if !FastPath::takes(&method, path) || !query.is_none_or(|q| q.bytes().all(query_byte)) {
        return Head::Other;
    }
    let Some(target) = span(buf, target.as_bytes()) else { return Head::Other };
    let mut plain = PlainHead { len, head, target, kept: [(0, 0, 0); MAX_KEPT], n_kept: 0 };
    let mut hosts = 0;
    for field in req.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if hosts > 1 || !valid_host(field.value) {
                return Head::Other;
            }
        } else if ["content-length", "transfer-encoding", "expect", "upgrade"].iter().any(|n| name.eq_ignore_ascii_case(n)) {
            return Head::Other;
        } else if name.eq_ignore_ascii_case("connection") {
            if !field.value.trim_ascii().eq_ignore_ascii_case(b"keep-alive") {
                return Head::Other;
            }
        } else if let Some(i) = names.iter().position(|n| name.eq_ignore_ascii_case(n.as_str())) {
            let (Some(slot), Ok(i), Some((start, end))) = (plain.kept.get_mut(plain.n_kept), u8::try_from(i), span(buf, field.value)) else {
                return Head::Other;
            };
            *slot = (i, start, end);
            plain.n_kept += 1;
        }
    }
    if hosts != 1 {
        return Head::Other;
    }
    Head::Plain(plain)
}

/// A request head of the lane as the handler reads it ([`RequestHead`]): slices of the
/// bytes it was parsed from, no copy and no `HeaderMap`.
struct LaneHead<'a> {
    /// The head's bytes.
    bytes: &'a [u8],
    /// What [`classify`] found in them.
    plain: &'a PlainHead,
    /// The header names the handler reads ([`FastPath::read_headers`]), indexed by `kept`.
    names: &'a [HeaderName],
    /// The target's path.
    path: &'a str,
    /// The target's query (after `?`).
    query: Option<&'a str>,
}

impl<'a> LaneHead<'a> {
    /// The head `plain` of `bytes`; `None` when its target is not text (the checks of
    /// [`classify`] exclude it).
    fn new(bytes: &'a [u8], plain: &'a PlainHead, names: &'a [HeaderName]) -> Option<Self> {
        let target = std::str::from_utf8(bytes.get(usize::from(plain.target.0)..usize::from(plain.target.1))?).ok()?;
        let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
        Some(LaneHead { bytes, plain, names, path, query })
    }
}

impl<'h> HeaderFields for LaneHead<'h> {
    fn all<'b>(&'b self, name: &HeaderName) -> impl Iterator<Item = &'b [u8]> + use<'b, 'h> {
        let index = self.names.iter().position(|n| n == name);
        let kept = self.plain.kept.get(..self.plain.n_kept).unwrap_or_default();
        kept.iter().filter(move |k| Some(usize::from(k.0)) == index).filter_map(|&(_, start, end)| self.bytes.get(usize::from(start)..usize::from(end)))
    }
}

impl RequestHead for LaneHead<'_> {
    fn is_head(&self) -> bool {
        self.plain.head
    }

    fn path(&self) -> &str {
        self.path
    }

    fn query(&self) -> Option<&str> {
        self.query
    }
}

/// Calls `f` with the current `Date` value (IMF-fixdate, RFC 9110 §5.6.7), formatted once
/// per second and thread (as hyper caches it). The second is read from
/// `CLOCK_REALTIME_COARSE` (the wall clock as of the last timer tick, a few ms behind, no
/// TSC read): a `Date` has whole seconds.
fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let secs = u64::try_from(rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec).unwrap_or(0);
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs || text.is_empty() {
            *at = secs;
            *text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
        }
        f(text.as_bytes())
    })
}

/// What ended a wait for request bytes.
enum Woke {
    /// `n` bytes read (0: the peer closed its side).
    Read(usize),
    /// The read failed.
    Failed,
    /// The graceful stop began, or the connection is being closed to make room.
    Interrupted,
    /// The header read deadline passed.
    TimedOut,
}

/// Serves the plain redirect requests at the start of `io` (module docs) until the
/// connection ends or another request comes.
pub(super) async fn serve(io: &mut JsonErrorStream, lane: Lane<'_>) -> Exit {
    let names = lane.fast.read_headers();
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    let mut out = Vec::with_capacity(512);
    // The header read deadline's origin, and a timer that only moves when it goes off
    // early (no timer is touched per request).
    let mut waiting_since = coarse_monotonic_ns();
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut stop_rx = lane.stop.clone();
    let mut stopped = pin!(stop_rx.wait_for(|s| *s));
    let mut evicted = pin!(lane.activity.evicted());
    loop {
        // Every whole head buffered, in order.
        loop {
            let plain = match classify(&buf, names) {
                Head::Plain(plain) => plain,
                Head::Partial => break,
                Head::Other => return hand_off(buf, lane.activity),
            };
            if !lane.gate.is_open() || lane.stop.has_changed().unwrap_or(true) || lane.activity.is_evicted() {
                return hand_off(buf, lane.activity);
            }
            let peer = Some(lane.peer);
            out.clear();
            let (close, busy) = {
                let Some(head) = LaneHead::new(&buf[..plain.len], &plain, names) else {
                    return hand_off(buf, lane.activity);
                };
                match lane.fast.answer_now_with(&head, peer, |answer| with_date(|date| answer.write_http11(date, false, &mut out))) {
                    Some(()) => (false, false),
                    None => {
                        lane.activity.on_request();
                        let answer = lane.fast.answer_unencoded(&head, peer).await;
                        // The graceful stop began meanwhile: this answer is the connection's last.
                        let close = lane.stop.has_changed().unwrap_or(true);
                        with_date(|date| answer.write_http11(date, close, &mut out));
                        (close, true)
                    }
                }
            };
            buf.advance(plain.len);
            let written = io.write_all(&out).await;
            if busy {
                lane.activity.on_answered();
            }
            if written.is_err() || close {
                return Exit::Closed;
            }
            waiting_since = coarse_monotonic_ns();
        }
        if lane.stop.has_changed().unwrap_or(true) || lane.activity.is_evicted() || buf.len() >= MAX_HEAD_BYTES {
            return hand_off(buf, lane.activity);
        }
        buf.reserve(READ_RESERVE);
        let deadline = lane.header_read_timeout.map(|t| waiting_since.saturating_add(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)));
        let woke = poll_fn(|cx| {
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut buf) {
                Poll::Ready(Ok(n)) => return Poll::Ready(Woke::Read(n)),
                Poll::Ready(Err(_)) => return Poll::Ready(Woke::Failed),
                Poll::Pending => {}
            }
            if stopped.as_mut().poll(cx).is_ready() || evicted.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Woke::Interrupted);
            }
            match deadline {
                Some(deadline) if deadline_passed(&mut timer, deadline, cx) => Poll::Ready(Woke::TimedOut),
                _ => Poll::Pending,
            }
        })
        .await;
        match woke {
            Woke::Read(0) if buf.is_empty() => return Exit::Closed,
            Woke::Read(0) | Woke::Interrupted => return hand_off(buf, lane.activity),
            Woke::Read(_) => {}
            Woke::Failed | Woke::TimedOut => return Exit::Closed,
        }
    }
}

/// [`Exit::HandOff`] of `buf`, the bytes read and not answered. Bytes left make the
/// connection one with a request arriving ([`ConnActivity::read_since_write`]), even when
/// they came in the read of an answered request: at a graceful stop hyper then answers the
/// request they start instead of closing the connection as idle.
fn hand_off(buf: BytesMut, activity: &ConnActivity) -> Exit {
    if !buf.is_empty() {
        activity.on_read(buf.len());
    }
    Exit::HandOff(buf.freeze())
}

/// Whether `deadline` ([`coarse_monotonic_ns`]) has passed, polling `timer` (made on first
/// use) to be woken when it does. The timer is set to the deadline of its first wait and
/// reset only when it goes off before the deadline now in force (deadlines only move later).
fn deadline_passed(timer: &mut Option<Pin<Box<tokio::time::Sleep>>>, deadline: u64, cx: &mut Context<'_>) -> bool {
    let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(instant_at(deadline))));
    if sleep.as_mut().poll(cx).is_pending() {
        return false;
    }
    if coarse_monotonic_ns() >= deadline {
        return true;
    }
    sleep.as_mut().reset(instant_at(deadline));
    sleep.as_mut().poll(cx).is_ready()
}

/// The monotonic clock as of the kernel's last timer tick (`CLOCK_MONOTONIC_COARSE`, the
/// clock of `Instant` read at tick resolution, a few ms), in ns since boot. Read after every
/// answer for the header read deadline: it needs no TSC read, and a deadline of seconds no
/// finer clock.
fn coarse_monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    u64::try_from(t.tv_sec).unwrap_or(0).saturating_mul(1_000_000_000).saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

/// The tokio instant of `deadline` ([`coarse_monotonic_ns`]).
fn instant_at(deadline: u64) -> Instant {
    Instant::now() + Duration::from_nanos(deadline.saturating_sub(coarse_monotonic_ns()))
}

/// A connection handed to hyper by the lane: the bytes the lane read and did not answer
/// come first, then the stream's. Writes go to the stream.
pub(super) struct Prefixed {
    prefix: Bytes,
    inner: JsonErrorStream,
}

impl Prefixed {
    /// `inner`, read from after `prefix`.
    pub(super) fn new(prefix: Bytes, inner: JsonErrorStream) -> Self {
        Prefixed { prefix, inner }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
