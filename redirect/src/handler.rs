//! `GET`/`HEAD /{code}`: the hot path.
//!
//! Per request: one cache lookup (no lock held across an await), header values that were
//! computed when the link was loaded, one bounded non-blocking `try_send` of the click
//! event. Allocation happens only for the event itself and when a query string is appended.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::cache::CachedLink;
use crate::click::{build_event, now_ms};
use crate::head::RequestHead;
use crate::prefetch::{PrefetchPolicy, is_speculative};
use crate::state::RedirectState;

const NOT_FOUND_BODY: &str = r#"{"error":{"code":"not_found","message":"no link with this code"}}"#;
const GONE_BODY: &str = r#"{"error":{"code":"link_expired","message":"this link has expired"}}"#;
const INVALID_PATH_BODY: &str =
    r#"{"error":{"code":"invalid_path","message":"malformed percent-encoding in the path: a '%' must be followed by two hex digits"}}"#;
const UNAVAILABLE_BODY: &str = r#"{"error":{"code":"store_unavailable","message":"link store unavailable, retry later (GET /readyz says why)"}}"#;
/// A speculative `GET` under [`PrefetchPolicy::Refuse`] ([`crate::prefetch`]).
const PREFETCH_BODY: &str = r#"{"error":{"code":"prefetch_refused","message":"speculative requests (a prefetch or preview: Sec-Purpose, Purpose, X-Purpose or X-Moz header) are not redirected; following the link is"}}"#;
/// `Cache-Control` of 302s: every click must reach us.
const CC_FOUND: HeaderValue = HeaderValue::from_static("private, max-age=0");
const CC_ERROR: HeaderValue = HeaderValue::from_static("no-store");
/// [`CC_ERROR`] for borrowing (a `const` borrowed is a temporary).
static CC_ERROR_REF: HeaderValue = CC_ERROR;
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The redirect handler: 301/302 with `Location`; 404 unknown or disabled; 410 expired
/// (from `expires_at` inclusive); 503 when the store is down. `HEAD` answers the same
/// status and headers with an empty body (`Content-Length` included: that of the `GET`
/// answer) and is not a click. A speculative `GET`
/// (`Sec-Purpose: prefetch`, [`crate::prefetch`]) of a link that would redirect is 503
/// `prefetch_refused` by default, and no click.
pub async fn redirect(State(state): State<RedirectState>, req: Request) -> Response {
    respond(&state, req).await
}

/// [`redirect`] for callers that route requests themselves (the `sluice` binary answers
/// `GET`/`HEAD /{code}` ahead of its router): `req` must be a `GET` or `HEAD` whose path is
/// `/` followed by the code; any other path answers 404. Records
/// `sluice_redirect_duration_seconds`; a `ConnectInfo<SocketAddr>` extension, when present,
/// is the socket peer.
pub async fn respond(state: &RedirectState, req: Request) -> Response {
    // Only the head is needed; `Parts` is `Sync`, so borrowing it across the await is `Send`.
    let (parts, _body) = req.into_parts();
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    respond_to(state, &parts, peer).await
}

/// [`respond`] for a request head `req` from the socket peer `peer` (`None`: unknown, as in
/// in-process tests), for servers that read the peer from their own accept loop instead
/// of a `ConnectInfo` extension. Same answers, metrics and click events as [`respond`].
///
/// The code is the path after `/` with percent-encoded unreserved characters decoded
/// ([`crate::path`]: `/%50abc` is `/Pabc`); a malformed escape answers 400 `invalid_path`.
pub async fn respond_to(state: &RedirectState, req: &Parts, peer: Option<IpAddr>) -> Response {
    answer_to(state, req, peer).await.into_response()
}

/// [`respond_to`] as an [`Answer`], for servers that write their responses themselves.
/// `req` ([`RequestHead`]: `Parts`, or a server's own view of the request it parsed) needs
/// only the header fields named by [`RedirectState::read_headers`].
pub async fn answer_to<H: RequestHead + ?Sized>(state: &RedirectState, req: &H, peer: Option<IpAddr>) -> Answer {
    let start = Instant::now();
    let head = req.is_head();
    let code = match crate::path::normalize_unreserved(req.path()) {
        Ok(p) => p,
        Err(_) => {
            state.inner.metrics.duration.record(start.elapsed().as_secs_f64());
            return Answer::error(StatusCode::BAD_REQUEST, INVALID_PATH_BODY, head);
        }
    };
    let code = code.strip_prefix('/').unwrap_or("");
    let answer = if is_code(code) {
        match state.inner.cache.lookup_at(code, start).await {
            Ok(link) => {
                let now = now_ms();
                let outcome = decide(state, req, link.as_deref(), now);
                finish(state, req, peer, code, outcome, now)
            }
            Err(e) => {
                tracing::warn!(error = %e, "redirect lookup failed");
                Answer::error(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_BODY, head)
            }
        }
    } else {
        Answer::error(StatusCode::NOT_FOUND, NOT_FOUND_BODY, head)
    };
    state.inner.metrics.duration.record(start.elapsed().as_secs_f64());
    answer
}

/// [`respond_to`] when it can answer without waiting: `Some` (with the same response,
/// metrics and click event as [`respond_to`]) when the path is not a code (404; a path
/// holding a `%` escape is left to [`respond_to`], which normalizes it) or the
/// redirect cache's front array holds the code ([`crate::cache::LinkCache::with_front`]);
/// `None` (nothing recorded, nothing counted) when the answer needs an L1 cache or store
/// lookup: call [`respond_to`] then. Lets a server answer most redirects without boxing a
/// future.
pub fn respond_now(state: &RedirectState, req: &Parts, peer: Option<IpAddr>) -> Option<Response> {
    answer_now(state, req, peer).map(Answer::into_response)
}

/// [`respond_now`] as an [`Answer`], for servers that write their responses themselves
/// (`None`: call [`answer_to`]). `req` ([`RequestHead`]) needs only the header fields named
/// by [`RedirectState::read_headers`].
pub fn answer_now<H: RequestHead + ?Sized>(state: &RedirectState, req: &H, peer: Option<IpAddr>) -> Option<Answer> {
    let start = Instant::now();
    let code = req.path().strip_prefix('/').unwrap_or("");
    if !is_code(code) && code.contains('%') {
        return None;
    }
    let answer = if is_code(code) {
        let now = now_ms();
        // Decided while the front's slot is locked: only the answer's header values leave it.
        let outcome = state.inner.cache.with_front(code, start, |link| decide(state, req, link.map(|l| &**l), now).into_owned())?;
        finish(state, req, peer, code, outcome, now)
    } else {
        Answer::error(StatusCode::NOT_FOUND, NOT_FOUND_BODY, req.is_head())
    };
    state.inner.metrics.duration.record(start.elapsed().as_secs_f64());
    Some(answer)
}

/// [`answer_now`] for a server that writes the answer right away: `write` gets the answer
/// borrowed ([`AnswerRef`]) while the link is read from the redirect cache's front array,
/// so a redirect's `Location` is written without taking a reference to it (the front's slot
/// is locked meanwhile: `write` must only copy bytes, never wait). Same answers, metrics
/// and click events as [`answer_now`] (the click is minted after `write` returns, before
/// this does); `None` (nothing recorded, `write` not called) when [`answer_now`] is `None`.
pub fn answer_now_with<H: RequestHead + ?Sized, R>(state: &RedirectState, req: &H, peer: Option<IpAddr>, write: impl FnOnce(AnswerRef<'_>) -> R) -> Option<R> {
    let start = Instant::now();
    let code = req.path().strip_prefix('/').unwrap_or("");
    let head = req.is_head();
    let r = if is_code(code) {
        let now = now_ms();
        let (r, fate) = state.inner.cache.with_front(code, start, |link| match decide(state, req, link.map(|l| &**l), now) {
            Outcome::Error(status, body) => (write(AnswerRef::error(status, body, head)), None),
            Outcome::Redirect { status, location, cache_control } => match fate(state, req, head) {
                Fate::Refused => (write(AnswerRef::error(StatusCode::SERVICE_UNAVAILABLE, PREFETCH_BODY, head)), None),
                fate => (write(AnswerRef { status, location: Some(&location), cache_control: &cache_control, body: "", head }), Some(fate)),
            },
        })?;
        if fate == Some(Fate::Click) {
            mint_click(state, req, peer, code, now);
        }
        r
    } else if code.contains('%') {
        return None;
    } else {
        write(AnswerRef::error(StatusCode::NOT_FOUND, NOT_FOUND_BODY, head))
    };
    state.inner.metrics.duration.record(start.elapsed().as_secs_f64());
    Some(r)
}

/// What a lookup's link calls for (no click minted yet); `location` is borrowed from the
/// link unless a query was appended to it.
enum Outcome<'a> {
    /// 301/302 to `location` with `cache_control`.
    Redirect { status: StatusCode, location: Cow<'a, HeaderValue>, cache_control: HeaderValue },
    /// A JSON error with this status and body.
    Error(StatusCode, &'static str),
}

impl Outcome<'_> {
    /// The outcome holding its own `location` (a reference to the link's).
    fn into_owned(self) -> Outcome<'static> {
        match self {
            Outcome::Redirect { status, location, cache_control } => Outcome::Redirect { status, location: Cow::Owned(location.into_owned()), cache_control },
            Outcome::Error(status, body) => Outcome::Error(status, body),
        }
    }
}

/// The answer to `req` given `link` (`None`: no such code) at `now` (ms since the epoch,
/// UTC): 404 unknown or disabled, 410 expired, else the redirect with its headers.
fn decide<'a, H: RequestHead + ?Sized>(state: &RedirectState, req: &H, link: Option<&'a CachedLink>, now: i64) -> Outcome<'a> {
    let Some(link) = link else { return Outcome::Error(StatusCode::NOT_FOUND, NOT_FOUND_BODY) };
    if !link.enabled {
        return Outcome::Error(StatusCode::NOT_FOUND, NOT_FOUND_BODY);
    }
    if is_expired(link.expires_at_ms, now) {
        return Outcome::Error(StatusCode::GONE, GONE_BODY);
    }
    let location = match req.query() {
        Some(q) if state.inner.config.append_query && !q.is_empty() => location_with_query(link, q).map_or_else(
            || {
                // Too long to forward: the redirect goes to the target alone.
                state.inner.metrics.query_dropped.increment(1);
                Cow::Borrowed(&link.location)
            },
            Cow::Owned,
        ),
        _ => Cow::Borrowed(&link.location),
    };
    let cache_control = if link.status == StatusCode::MOVED_PERMANENTLY { state.permanent_cache_control(link.expires_at_ms, now) } else { CC_FOUND };
    Outcome::Redirect { status: link.status, location, cache_control }
}

/// The answer for `outcome`; a `GET` that redirects also mints the click event (at `now`)
/// and hands it off without waiting — unless it is a browser's prefetch, which gets what
/// [`RedirectConfig::prefetch`](crate::RedirectConfig::prefetch) says.
fn finish<H: RequestHead + ?Sized>(state: &RedirectState, req: &H, peer: Option<IpAddr>, code: &str, outcome: Outcome<'_>, now: i64) -> Answer {
    let head = req.is_head();
    let (status, location, cache_control) = match outcome {
        Outcome::Redirect { status, location, cache_control } => (status, location, cache_control),
        Outcome::Error(status, body) => return Answer::error(status, body, head),
    };
    match fate(state, req, head) {
        Fate::Refused => return Answer::error(StatusCode::SERVICE_UNAVAILABLE, PREFETCH_BODY, head),
        Fate::Click => mint_click(state, req, peer, code, now),
        Fate::NotClick => {}
    }
    Answer { status, location: Some(location.into_owned()), cache_control, body: "", head }
}

/// What becomes of a redirect answered to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// A speculative request under [`PrefetchPolicy::Refuse`]: 503 `prefetch_refused`.
    Refused,
    /// Redirected, and a click.
    Click,
    /// Redirected, not a click (`HEAD`, or a prefetch not counted).
    NotClick,
}

/// The [`Fate`] of a redirect answered to `req` (`head`: a `HEAD`), counted in the
/// prefetch metrics. A browser's prefetch is nobody's click ([`crate::prefetch`]); a
/// speculative `HEAD` is refused as the same `GET` would be (C02: `HEAD` is answered
/// exactly like `GET`).
fn fate<H: RequestHead + ?Sized>(state: &RedirectState, req: &H, head: bool) -> Fate {
    let policy = state.inner.config.prefetch;
    let speculative = policy != PrefetchPolicy::Count && is_speculative(req);
    if speculative && policy == PrefetchPolicy::Refuse {
        state.inner.metrics.prefetches_refused.increment(1);
        return Fate::Refused;
    }
    if speculative {
        // Answered without a click, a `HEAD` as a `GET`.
        state.inner.metrics.prefetches_redirected.increment(1);
        Fate::NotClick
    } else if head {
        Fate::NotClick
    } else {
        Fate::Click
    }
}

/// Mints the click event of `req` on `code` at `now` and hands it off without waiting
/// (dropped events are counted by the sink).
fn mint_click<H: RequestHead + ?Sized>(state: &RedirectState, req: &H, peer: Option<IpAddr>, code: &str, now: i64) {
    let client_ip = state.inner.resolver.resolve(peer, req);
    let event = build_event(code, now, client_ip, req, &state.inner.salt, state.inner.config.edge_region.as_deref());
    let _sent = state.inner.sink.try_send(event);
}

/// An answer of the redirect path before it is a [`Response`]: a redirect (`location`) or a
/// JSON error (`body`). A server turns it into a response ([`Self::into_response`]) or
/// writes it as HTTP/1.1 bytes itself ([`Self::write_http11`]); both carry the same status,
/// header fields and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// 301/302 for a redirect; the error's status otherwise.
    pub status: StatusCode,
    /// The redirect's `Location` (`None`: an error).
    pub location: Option<HeaderValue>,
    /// `Cache-Control`: fitting the redirect's status; `no-store` for errors.
    pub cache_control: HeaderValue,
    /// The JSON error body (empty for a redirect).
    pub body: &'static str,
    /// The answer to a `HEAD`: no body, but the `Content-Length` of the `GET` answer
    /// (RFC 9110 §9.3.2).
    pub head: bool,
}

impl Answer {
    /// An error answer with the JSON `body` (`head`: to a `HEAD`, no body).
    fn error(status: StatusCode, body: &'static str, head: bool) -> Answer {
        Answer { status, location: None, cache_control: CC_ERROR, body, head }
    }

    /// The response: a redirect with `Location` and `Cache-Control` and no body, or an
    /// error with `content-type: application/json`, `cache-control: no-store` and its body;
    /// to a `HEAD` an empty body with the `Content-Length` of the `GET` answer (hyper writes
    /// that of a `GET` itself).
    pub fn into_response(self) -> Response {
        let mut resp = Response::new(if self.head || self.body.is_empty() { Body::empty() } else { Body::from(self.body) });
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        match self.location {
            Some(location) => {
                h.insert(header::LOCATION, location);
            }
            None => {
                h.insert(header::CONTENT_TYPE, JSON);
            }
        }
        h.insert(header::CACHE_CONTROL, self.cache_control);
        if self.head {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        resp
    }

    /// The answer borrowed.
    pub fn borrowed(&self) -> AnswerRef<'_> {
        AnswerRef { status: self.status, location: self.location.as_ref(), cache_control: &self.cache_control, body: self.body, head: self.head }
    }

    /// Appends the answer as an HTTP/1.1 response to `out` ([`AnswerRef::write_http11`]).
    pub fn write_http11(&self, date: &[u8], close: bool, out: &mut Vec<u8>) {
        self.borrowed().write_http11(date, close, out);
    }
}

/// An [`Answer`] borrowed (fields as there), as [`answer_now_with`] hands it to its writer.
#[derive(Debug, Clone, Copy)]
pub struct AnswerRef<'a> {
    /// 301/302 for a redirect; the error's status otherwise.
    pub status: StatusCode,
    /// The redirect's `Location` (`None`: an error).
    pub location: Option<&'a HeaderValue>,
    /// `Cache-Control`: fitting the redirect's status; `no-store` for errors.
    pub cache_control: &'a HeaderValue,
    /// The JSON error body (empty for a redirect).
    pub body: &'static str,
    /// The answer to a `HEAD` (no body written).
    pub head: bool,
}

impl AnswerRef<'_> {
    /// An error answer with the JSON `body` (`head`: to a `HEAD`, no body).
    fn error(status: StatusCode, body: &'static str, head: bool) -> AnswerRef<'static> {
        AnswerRef { status, location: None, cache_control: &CC_ERROR_REF, body, head }
    }

    /// Appends the answer as an HTTP/1.1 response to `out`: the status line, the header
    /// fields of [`Answer::into_response`] in that order, `content-length`, `connection:
    /// close` when `close`, `date: <date>` (an IMF-fixdate, RFC 9110 §5.6.7), the empty line
    /// and the body (none to a `HEAD`): what hyper writes for [`Answer::into_response`].
    pub fn write_http11(&self, date: &[u8], close: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        match &self.location {
            Some(location) => push_field(out, b"location", location.as_bytes()),
            None => push_field(out, b"content-type", JSON.as_bytes()),
        }
        push_field(out, b"cache-control", self.cache_control.as_bytes());
        match self.body.len() {
            0 => push_field(out, b"content-length", b"0"),
            n => push_field(out, b"content-length", n.to_string().as_bytes()),
        }
        if close {
            push_field(out, b"connection", b"close");
        }
        push_field(out, b"date", date);
        out.extend_from_slice(b"\r\n");
        if !self.head {
            out.extend_from_slice(self.body.as_bytes());
        }
    }
}

/// Appends `name: value` and its line end to `out`.
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether a link with expiry `expires_at_ms` has expired at `now_ms`: from the expiry
/// instant on, inclusive (a request exactly at `expires_at` is already 410).
pub fn is_expired(expires_at_ms: Option<i64>, now_ms: i64) -> bool {
    expires_at_ms.is_some_and(|exp| now_ms >= exp)
}

/// Whether `s` can be a code at all (`[A-Za-z0-9_-]{1,64}`); anything else is 404 without
/// a lookup (so hostile paths never reach the cache or the store).
pub fn is_code(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Longest `Location` a forwarded query may produce, in bytes: the `long_url` limit
/// (README, C09). A longer result is not built; the redirect goes to the target alone.
pub const MAX_LOCATION_BYTES: usize = 8192;

/// The target with the request's query string appended: before the target's fragment,
/// after its own query with `&`. Bytes that may not appear raw in a query (controls, space,
/// `"`, `<`, `>`, `\`, `^`, the backquote, `{`, `|`, `}`, `#`, non-ASCII) are percent-encoded, and so is a `%` not followed by two hex
/// digits (as `%25`, RFC 3986 §2.1); valid `%XX` escapes and `+` are kept.
///
/// `None` when the result would be longer than [`MAX_LOCATION_BYTES`] (nothing is
/// allocated then). One allocation for a result: its exact length is computed first.
pub fn location_with_query(link: &CachedLink, query: &str) -> Option<HeaderValue> {
    let sep = if !link.target_has_query {
        "?"
    } else if link.target_before_fragment.ends_with('?') || link.target_before_fragment.ends_with('&') {
        ""
    } else {
        "&"
    };
    let len = link.target_before_fragment.len() + sep.len() + escaped_query_len(query.as_bytes()) + link.fragment.len();
    if len > MAX_LOCATION_BYTES {
        return None;
    }
    let mut s = Vec::with_capacity(len);
    s.extend_from_slice(link.target_before_fragment.as_bytes());
    s.extend_from_slice(sep.as_bytes());
    push_query_escaped(&mut s, query.as_bytes());
    s.extend_from_slice(link.fragment.as_bytes());
    debug_assert_eq!(s.len(), len);
    // `Vec` → `Bytes` takes the buffer over without copying.
    HeaderValue::from_maybe_shared(axum::body::Bytes::from(s)).ok()
}

/// Whether query byte `b` is written as is (when not a `%`).
fn query_byte_kept(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' | b'#')
}

/// Whether the `%` at `q[i]` starts a valid escape (two hex digits follow).
fn is_escape(q: &[u8], i: usize) -> bool {
    q.len() > i + 2 && q[i + 1].is_ascii_hexdigit() && q[i + 2].is_ascii_hexdigit()
}

/// Length in bytes of `query` as [`push_query_escaped`] writes it.
fn escaped_query_len(query: &[u8]) -> usize {
    query
        .iter()
        .enumerate()
        .map(|(i, &b)| match b {
            b'%' if is_escape(query, i) => 1,
            b'%' => 3,
            b if query_byte_kept(b) => 1,
            _ => 3,
        })
        .sum()
}

fn push_query_escaped(out: &mut Vec<u8>, query: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (i, &b) in query.iter().enumerate() {
        let keep = if b == b'%' { is_escape(query, i) } else { query_byte_kept(b) };
        if keep {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(url: &str) -> CachedLink {
        let l = crate::test_link("c", url);
        CachedLink::from_link(&l).expect("valid")
    }

    fn loc(url: &str, q: &str) -> String {
        location_with_query(&cached(url), q).expect("header").to_str().expect("ascii").to_owned()
    }

    #[test]
    fn query_is_appended_before_fragment() {
        assert_eq!(loc("https://e.example/p", "utm=1"), "https://e.example/p?utm=1");
        assert_eq!(loc("https://e.example/p?x=1", "utm=1"), "https://e.example/p?x=1&utm=1");
        assert_eq!(loc("https://e.example/p?", "utm=1"), "https://e.example/p?utm=1");
        assert_eq!(loc("https://e.example/p?x=1#frag", "a=b+c&d=%20"), "https://e.example/p?x=1&a=b+c&d=%20#frag");
        assert_eq!(loc("https://e.example/p#f?g", "a=1"), "https://e.example/p?a=1#f?g");
    }

    #[test]
    fn unsafe_query_bytes_are_escaped() {
        assert_eq!(loc("https://e.example/", "q=a b\"<>"), "https://e.example/?q=a%20b%22%3C%3E");
        assert_eq!(loc("https://e.example/", "q=ü"), "https://e.example/?q=%C3%BC");
        assert_eq!(loc("https://e.example/", "q=\r\nSet-Cookie:x"), "https://e.example/?q=%0D%0ASet-Cookie:x");
    }

    #[test]
    fn stray_percent_is_reencoded() {
        assert_eq!(loc("https://example.com/hello?x=1", "%ZZ"), "https://example.com/hello?x=1&%25ZZ");
        assert_eq!(loc("https://e.example/", "a=%"), "https://e.example/?a=%25");
        assert_eq!(loc("https://e.example/", "a=%4"), "https://e.example/?a=%254");
        assert_eq!(loc("https://e.example/", "a=%4g&b=%4F%e9"), "https://e.example/?a=%254g&b=%4F%e9");
        assert_eq!(loc("https://e.example/", "%%41"), "https://e.example/?%25%41");
        assert_eq!(loc("https://e.example/#f", "a=%2"), "https://e.example/?a=%252#f");
    }

    #[test]
    fn escaped_length_is_exact() {
        for q in ["", "a=1", "%ZZ", "%", "%4", "%41", "q=a b\"<>", "ü%zz%20\r\n"] {
            let mut out = Vec::new();
            push_query_escaped(&mut out, q.as_bytes());
            assert_eq!(escaped_query_len(q.as_bytes()), out.len(), "{q:?}");
        }
        assert_eq!(escaped_query_len(b"a b%ZZ%20"), 13);
    }

    #[test]
    fn query_making_location_too_long_is_not_appended() {
        // "https://e.example/" is 18 bytes: 18 + "?" + query + "#f" (2 bytes).
        let link = cached("https://e.example/#f");
        let fits = "a".repeat(MAX_LOCATION_BYTES - 18 - 1 - 2);
        let at_limit = location_with_query(&link, &fits).expect("exactly 8192 bytes");
        assert_eq!(at_limit.len(), 8192);
        assert_eq!(at_limit.to_str().expect("ascii"), format!("https://e.example/?{fits}#f"));
        assert!(location_with_query(&link, &format!("{fits}a")).is_none(), "8193 bytes");
        // a space is 3 bytes once escaped: one short of the limit raw, two over escaped
        let spaced = format!("{} ", &fits[1..]);
        assert!(location_with_query(&link, &spaced).is_none());
        // a 60 KB query on an 8,170-byte target
        let target = format!("https://e.example/{}", "p".repeat(8170 - 18));
        assert!(location_with_query(&cached(&target), &"q".repeat(60 * 1024)).is_none());
        assert_eq!(loc(&target, "abc"), format!("{target}?abc"));
    }

    #[test]
    fn expiry_boundary_is_inclusive() {
        assert!(!is_expired(None, i64::MAX));
        assert!(!is_expired(Some(1_000), 999));
        assert!(is_expired(Some(1_000), 1_000), "exactly at expires_at");
        assert!(is_expired(Some(1_000), 1_001));
    }

    #[test]
    fn code_shape() {
        assert!(is_code("MyPromo") && is_code("a-b_c") && is_code(&"x".repeat(64)));
        assert!(!is_code("") && !is_code("robots.txt") && !is_code("a%20b") && !is_code(&"x".repeat(65)) && !is_code("a/b"));
    }
}
