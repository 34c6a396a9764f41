//! The shared JSON error builder of the HTTP server ([`error_response`]), and a TCP
//! listener whose connections give hyper's automatic error responses that JSON shape.
//!
//! hyper answers some malformed requests itself, before any handler runs, with an empty
//! body and then closes the connection: a request line or header field it cannot parse
//! (garbage, `HTTP/9.9`, a bad `Content-Length`, an obs-folded field) gets `400 Bad
//! Request`, a request target longer than 65,534 bytes `414 URI Too Long`, and a request
//! head of more than [`MAX_HEAD_BYTES`] bytes (the server sets hyper's `max_header_size` to
//! it, [`crate::http_server`]) or with more than [`MAX_HEADER_FIELDS`] header fields
//! `431 Request Header Fields Too Large`. hyper 1.x offers no hook to give those answers a
//! body (`on_parse_error` in its h1 dispatcher writes a bare `MessageHead`), and no router
//! layer sees those requests, so this wrapper recognises exactly such a response head on the
//! connection's write side (status 400, 414 or 431, no header field but `content-length: 0`,
//! `date` and `connection`, nothing after the head; every response of ours carries a
//! `content-type`) and writes instead the same status with `content-type:
//! application/json`, `cache-control: no-store`, `connection: close` and the JSON body of
//! [`error_body`]:
//!
//! * 400: `malformed_request` (hyper does not say which part was malformed; but a request
//!   target holding a raw byte that hyper refuses there (`<`, `>`, a control character,
//!   DEL, `` ` `` in the path, `"` in the query) is said to be that, naming
//!   the byte and its percent-encoding ([`raw_byte_message`]; for `"` the message of the
//!   server's own answer to one in a path, [`RAW_QUOTE_MESSAGE`]);
//! * 414: `uri_too_long`, `details: {"max_bytes": 65534}`; also a 431 for a request whose
//!   head has no line feed at all in [`MAX_HEAD_BYTES`] bytes: its request line alone is
//!   over the limit, which is a request target too long (RFC 9110 §15.5.15);
//! * 431 for the size: `headers_too_large`, `details: {"max_bytes": 417792}`;
//! * 431 for the count: `too_many_headers`, `details: {"max_fields": 100}`.
//!
//! hyper's 431 does not say which limit was hit (nor its 400 what was malformed), so the
//! stream follows the request heads
//! on the read side (an empty line ends a head) and pairs them with the responses written
//! (hyper answers the requests of a connection in order): the head answered is the oldest
//! complete one not answered yet, or else the one being read, however the pipelined bytes
//! arrived. More than [`MAX_HEADER_FIELDS`] header field lines is the count; else at least
//! [`MAX_HEAD_BYTES`] bytes is the size. A request body read on the same connection counts
//! toward the next head (the stream does not parse framing), and only [`KEPT_HEADS`]
//! pipelined heads are remembered; in those rare cases a 431 names both limits (code
//! `headers_too_large`).
//!
//! **HTTP/2 with prior knowledge** is not served (h2c is not needed on a plain-text
//! listener). A connection whose first bytes are the HTTP/2 preface (`PRI * HTTP/2.0`, RFC
//! 9113 §3.4) is answered in HTTP/2 itself, where an HTTP/1.1 answer would not be
//! understood: an empty `SETTINGS` frame (the server preface) and a `GOAWAY` frame with
//! error code `HTTP_1_1_REQUIRED` (0xd, RFC 9113 §7) and a debug text, then the connection
//! closes. Every other byte passes through untouched.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::serve::Listener;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::http_server::ConnActivity;

/// hyper's limit on the request target, bytes (`MAX_URI_LEN` in hyper's h1 parser).
pub const MAX_URI_BYTES: usize = 65_534;
/// The limit on a whole request head (request line and header fields), bytes: hyper's
/// default read buffer (`DEFAULT_MAX_BUFFER_SIZE` = 8192 + 4096 × 100 in hyper's h1 io),
/// which the server also sets as hyper's `max_header_size` so that a head arriving in one
/// read is held to the same limit.
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// hyper's limit on the number of header fields of a request (`DEFAULT_MAX_HEADERS`).
pub const MAX_HEADER_FIELDS: usize = 100;

/// The message of the 400 `malformed_request` to a request target holding a raw `"`,
/// wherever it is (path, query): the server's own answer (`crate::http_server`) and the
/// replacement of hyper's (its URI parser refuses the byte in a query).
pub const RAW_QUOTE_MESSAGE: &str =
    "the request target holds a raw '\"', which no URI may contain (RFC 3986 section 2, RFC 9112 section 3.2): send it percent-encoded as %22";

/// The JSON error body of DESIGN.md: `{"error": {"code", "message", "details"?}}`
/// (`details` left out when `None`). Echoed input is bounded as in the API's errors: the
/// message by `sluice_serving::error::bound_message`, the strings of details by
/// `bound_details` (256 bytes, `"truncated": true`).
pub fn error_body(code: &str, message: &str, details: Option<Value>) -> String {
    let mut err = serde_json::json!({ "code": code, "message": sluice_serving::error::bound_message(message.to_owned()) });
    if let Some(d) = details {
        err["details"] = sluice_serving::error::bound_details(d);
    }
    serde_json::json!({ "error": err }).to_string()
}

/// An error response of the server itself: `status`, the body of [`error_body`],
/// `content-type: application/json` and `cache-control: no-store` (as the API's errors).
pub fn error_response(status: StatusCode, code: &str, message: &str, details: Option<Value>) -> Response {
    let mut resp = Response::new(Body::from(error_body(code, message, details)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The listen backlog of [`bind`]: connections the kernel completes before the server
/// accepts them (capped by `net.core.somaxconn`, 4,096 by default since Linux 5.4). The
/// standard library's 128 overflows under a burst of connections, and a client whose
/// handshake the kernel then drops waits for a SYN retransmission (1 s, then 3 s, ...).
pub const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listener on `addr` with `SO_REUSEADDR` (as `tokio::net::TcpListener::bind`) and a
/// backlog of [`LISTEN_BACKLOG`].
///
/// Errors: the socket, bind or listen error (address in use, permission denied, ...).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A [`TcpListener`] whose streams are [`JsonErrorStream`]s.
#[derive(Debug)]
pub struct JsonErrorListener {
    inner: TcpListener,
}

impl JsonErrorListener {
    /// Wraps `inner`.
    pub fn new(inner: TcpListener) -> Self {
        JsonErrorListener { inner }
    }
}

impl Listener for JsonErrorListener {
    type Io = JsonErrorStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.inner).await;
        // Answers go out as soon as they are written (no Nagle delay behind an unacknowledged
        // segment), as nginx's `tcp_nodelay on` default does for keep-alive connections.
        if let Err(e) = io.set_nodelay(true) {
            tracing::debug!(error = %e, %addr, "could not set TCP_NODELAY");
        }
        let stream = JsonErrorStream { inner: io, pending: None, head: HeadScan::default(), fresh: true, refused_h2: false, activity: ConnActivity::new() };
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Size of one request head as read: bytes (line ends included), line feeds of non-empty
/// lines (the request line and each header field line), the length of its first line
/// (`None` while it has no line feed), and whether its request target holds a raw `"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HeadStats {
    bytes: usize,
    lines: usize,
    first_line: Option<usize>,
    target: TargetScan,
}

/// The request line's bytes as read, looked at for a raw byte that no URI may hold in the
/// request target: between the line's first and second space (`method SP request-target SP
/// version`, RFC 9112 §3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TargetScan {
    /// Spaces seen so far (at most 2: nothing after the second is looked at).
    spaces: u8,
    /// A `?` seen after the first space: the target's query has begun.
    in_query: bool,
    /// The first byte of the target so far that [`refused_in_target`] names.
    first_refused: Option<u8>,
    /// The request target, complete (its second space seen), holds this refused byte (the
    /// first one).
    raw_byte: Option<u8>,
}

/// Whether hyper's parsers answer a request target holding the raw byte `b` with their bare
/// 400 (checked against hyper 1.x: its request-line parser refuses control characters, DEL,
/// `<` and `>`, its URI parser a `` ` `` in the path and a `"` in the query), or the server
/// itself answers it 400 (a `"` in the path, [`crate::http_server`]). RFC 3986 §2 has no
/// place for any of them. `\`, `^`, `{`, `|`, `}`, a `` ` `` in the query and non-ASCII
/// bytes forming valid UTF-8 pass both parsers, so they are not named; nor are bytes that
/// are not UTF-8, which hyper refuses (telling them apart would take the whole target:
/// those 400s keep the generic message).
fn refused_in_target(b: u8, in_query: bool) -> bool {
    match b {
        b'"' | b'<' | b'>' | 0x7f | ..=0x20 => true,
        b'`' => !in_query,
        _ => false,
    }
}

/// The message of the 400 `malformed_request` to a request target holding the raw byte `b`
/// ([`refused_in_target`]): [`RAW_QUOTE_MESSAGE`] for `"`, the same words for the others,
/// with the percent-encoding to send instead (RFC 3986 §2.1: `%` and the byte in hex).
pub fn raw_byte_message(b: u8) -> String {
    let shown = if b.is_ascii_graphic() { format!("'{}'", b as char) } else { format!("byte 0x{b:02X}") };
    format!("the request target holds a raw {shown}, which no URI may contain (RFC 3986 section 2, RFC 9112 section 3.2): send it percent-encoded as %{b:02X}")
}

impl TargetScan {
    /// Follows `bytes`, the next bytes of the request line: finds its spaces with
    /// [`memchr::memchr`] and looks at the target's bytes only while no refused byte has
    /// been seen; nothing once the target is complete.
    fn feed(&mut self, mut bytes: &[u8]) {
        while self.spaces < 2 && !bytes.is_empty() {
            let space = memchr::memchr(b' ', bytes);
            if self.spaces == 1 && self.first_refused.is_none() {
                for &b in &bytes[..space.unwrap_or(bytes.len())] {
                    self.in_query |= b == b'?';
                    if refused_in_target(b, self.in_query) {
                        self.first_refused = Some(b);
                        break;
                    }
                }
            }
            let Some(i) = space else { return };
            self.spaces += 1;
            if self.spaces == 2 {
                self.raw_byte = self.first_refused;
            }
            bytes = &bytes[i + 1..];
        }
    }
}

/// How many complete heads waiting for their answer are remembered (pipelining depth).
const KEPT_HEADS: usize = 4;

/// The request heads on the read side (module docs): the one being read, and the complete
/// ones not answered yet (hyper answers requests in order, one response each).
#[derive(Debug, Clone, Copy)]
struct HeadScan {
    cur: HeadStats,
    /// No byte but `\r` since the last line feed (so the next `\n` ends a head).
    line_blank: bool,
    /// Complete heads read and not answered yet.
    pending: usize,
    /// The first of them (oldest first); `None` past [`KEPT_HEADS`].
    kept: [Option<HeadStats>; KEPT_HEADS],
}

impl Default for HeadScan {
    fn default() -> Self {
        // A connection starts at a head boundary; leading empty lines (RFC 9112 §2.2) keep it there.
        HeadScan { cur: HeadStats::default(), line_blank: true, pending: 0, kept: [None; KEPT_HEADS] }
    }
}

impl HeadScan {
    /// Follows `new`, the bytes just read. Runs on every read of every connection, so it
    /// visits line ends only ([`memchr`]) and looks at a line's bytes just far enough to
    /// tell an empty line (nothing but `\r`) from a field line: usually its first byte;
    /// only the request line's spaces and its target's bytes are visited too ([`TargetScan`]).
    fn feed(&mut self, new: &[u8]) {
        let mut start = 0;
        // Where the current line's bytes in `new` begin.
        let mut line_from = 0;
        for i in memchr::memchr_iter(b'\n', new) {
            if self.line_blank && new[line_from..i].iter().any(|&b| b != b'\r') {
                self.line_blank = false;
            }
            if self.cur.first_line.is_none() {
                self.cur.target.feed(&new[line_from..i]);
            }
            let upto = self.cur.bytes.saturating_add(i + 1 - start);
            if self.line_blank {
                // An empty line: the end of a head (or an empty line before one).
                if self.cur.lines > 0 {
                    let head = HeadStats { bytes: upto, ..self.cur };
                    if let Some(slot) = self.kept.get_mut(self.pending) {
                        *slot = Some(head);
                    }
                    self.pending = self.pending.saturating_add(1);
                }
                self.cur = HeadStats::default();
                start = i + 1;
            } else {
                self.cur.first_line.get_or_insert(upto);
                self.cur.lines = self.cur.lines.saturating_add(1);
                self.line_blank = true;
            }
            line_from = i + 1;
        }
        if self.line_blank && new[line_from..].iter().any(|&b| b != b'\r') {
            self.line_blank = false;
        }
        if self.cur.first_line.is_none() {
            self.cur.target.feed(&new[line_from..]);
        }
        self.cur.bytes = self.cur.bytes.saturating_add(new.len() - start);
    }

    /// A response was written: the oldest pending head is answered.
    fn answered(&mut self) {
        if self.pending > 0 {
            self.pending -= 1;
            self.kept.copy_within(1.., 0);
            self.kept[KEPT_HEADS - 1] = None;
        }
    }

    /// The head hyper is answering now: the oldest pending complete one (`true`), else the
    /// one being read (`false`); `None` when not remembered.
    fn answering(&self) -> Option<(HeadStats, bool)> {
        if self.pending > 0 { self.kept[0].map(|h| (h, true)) } else { Some((self.cur, false)) }
    }
}

/// A TCP stream that rewrites hyper's empty 400/414/431 responses and refuses HTTP/2 (see
/// the module docs).
#[derive(Debug)]
pub struct JsonErrorStream {
    inner: TcpStream,
    /// A replacement being written: bytes, how many are written, the length of the
    /// original buffer to report once done.
    pending: Option<(Vec<u8>, usize, usize)>,
    head: HeadScan,
    /// Nothing read yet (the HTTP/2 preface check).
    fresh: bool,
    /// The connection was an HTTP/2 one and is answered: reads return end of stream.
    refused_h2: bool,
    /// Reads and writes are noted here (the graceful stop, connection limits).
    activity: ConnActivity,
}

impl JsonErrorStream {
    /// Makes `activity` the state this connection's reads and writes are noted in (the
    /// server's connection registry made it, [`crate::http_server::limits`]).
    pub fn set_activity(&mut self, activity: ConnActivity) {
        self.activity = activity;
    }
}

/// The start of the HTTP/2 client preface (RFC 9113 §3.4).
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0\r\n";

/// An empty `SETTINGS` frame and a `GOAWAY` frame (last stream 0, `HTTP_1_1_REQUIRED`,
/// debug text), RFC 9113 §4.1, §6.5, §6.8.
fn h2_refusal() -> Vec<u8> {
    const DEBUG: &[u8] = b"HTTP/2 is not served here; use HTTP/1.1";
    let mut out = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    let len = 8 + DEBUG.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x7, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x0d]);
    out.extend_from_slice(DEBUG);
    out
}

/// Status, code, message and details of hyper's 431 for `head` (complete or not; `None`:
/// unknown): 414 when its request line alone reaches [`MAX_HEAD_BYTES`] (module docs).
fn cause_431(head: Option<(HeadStats, bool)>) -> (u16, &'static str, String, Value) {
    let size =
        || (431, "headers_too_large", format!("the request head is larger than {MAX_HEAD_BYTES} bytes"), serde_json::json!({ "max_bytes": MAX_HEAD_BYTES }));
    let count = || {
        (
            431,
            "too_many_headers",
            format!("the request has more than {MAX_HEADER_FIELDS} header fields"),
            serde_json::json!({ "max_fields": MAX_HEADER_FIELDS }),
        )
    };
    match head {
        Some((h, _complete)) => {
            let fields = h.lines.saturating_sub(1);
            // Complete or not: one read can bring a whole oversized head, its line feeds
            // included, before hyper gives up on it.
            if h.first_line.unwrap_or(h.bytes) >= MAX_HEAD_BYTES {
                (414, "uri_too_long", format!("the request target is longer than {MAX_URI_BYTES} bytes"), serde_json::json!({ "max_bytes": MAX_URI_BYTES }))
            } else if fields > MAX_HEADER_FIELDS {
                count()
            } else if h.bytes >= MAX_HEAD_BYTES {
                size()
            } else {
                both()
            }
        }
        None => both(),
    }
}

/// The 431 description naming both limits (the head that hit one is not known).
fn both() -> (u16, &'static str, String, Value) {
    (
        431,
        "headers_too_large",
        format!("the request head is larger than {MAX_HEAD_BYTES} bytes or has more than {MAX_HEADER_FIELDS} header fields"),
        serde_json::json!({ "max_bytes": MAX_HEAD_BYTES, "max_fields": MAX_HEADER_FIELDS }),
    )
}

/// The replacement of `buf` when it is exactly one of hyper's empty 400/414/431 heads; a
/// 431 is described from the head being answered, per `scan` ([`cause_431`]).
fn replacement(buf: &[u8], scan: &HeadScan) -> Option<Vec<u8>> {
    // Cheap rejection of everything else (every response of ours passes here).
    if buf.len() < 13 || &buf[..9] != b"HTTP/1.1 " || !matches!(&buf[9..13], b"400 " | b"414 " | b"431 ") {
        return None;
    }
    let text = std::str::from_utf8(buf).ok()?;
    let head = text.strip_suffix("\r\n\r\n")?;
    if head.contains("\r\n\r\n") {
        return None;
    }
    let mut lines = head.split("\r\n");
    lines.next()?;
    let mut date = None;
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            empty = value.trim() == "0";
        } else if name.eq_ignore_ascii_case("date") {
            date = Some(line);
        } else if !name.eq_ignore_ascii_case("connection") {
            // Not one of hyper's bare answers.
            return None;
        }
    }
    if !empty {
        return None;
    }
    let (status, code, message, details) = match &buf[9..12] {
        // A raw byte hyper refuses in the target (a raw '"' in the path passes it, and the
        // server answers it: `crate::http_server`): said which, and how to send it.
        b"400" if let Some(b) = scan.answering().and_then(|(h, _)| h.target.raw_byte) => (400, "malformed_request", raw_byte_message(b), None),
        b"400" => (400, "malformed_request", "the request is not valid HTTP/1.1: malformed request line or header field (RFC 9112)".to_owned(), None),
        b"414" => {
            (414, "uri_too_long", format!("the request target is longer than {MAX_URI_BYTES} bytes"), Some(serde_json::json!({ "max_bytes": MAX_URI_BYTES })))
        }
        _ => {
            let (status, code, message, details) = cause_431(scan.answering());
            (status, code, message, Some(details))
        }
    };
    let reason = StatusCode::from_u16(status).ok()?.canonical_reason().unwrap_or("");
    let body = error_body(code, &message, details);
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(d) = date {
        out.push_str(d);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

impl AsyncRead for JsonErrorStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.refused_h2 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if std::mem::take(&mut this.fresh) && new.starts_with(H2_PREFACE_START) {
            // The preface is tiny and the socket fresh: the frames fit its send buffer.
            if let Err(e) = this.inner.try_write(&h2_refusal()) {
                tracing::debug!(error = %e, "could not answer an HTTP/2 preface");
            }
            tracing::debug!("HTTP/2 prior-knowledge connection refused with GOAWAY HTTP_1_1_REQUIRED");
            this.refused_h2 = true;
            // hyper sees the end of the stream before any request and closes the connection.
            buf.set_filled(before);
            return Poll::Ready(Ok(()));
        }
        this.activity.on_read(new.len());
        this.head.feed(new);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for JsonErrorStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() {
            match replacement(buf, &this.head) {
                Some(bytes) => this.pending = Some((bytes, 0, buf.len())),
                None => {
                    let n = match Pin::new(&mut this.inner).poll_write(cx, buf) {
                        Poll::Ready(r) => r?,
                        Poll::Pending => {
                            this.activity.on_write_blocked();
                            return Poll::Pending;
                        }
                    };
                    this.activity.on_write(n, buf.len());
                    // The start of a final response (not `100 Continue`): a head is answered.
                    // An HTTP/1.0 request is answered in HTTP/1.0 (hyper).
                    if n > 0 && (buf.starts_with(b"HTTP/1.1 ") || buf.starts_with(b"HTTP/1.0 ")) && buf.get(9) != Some(&b'1') {
                        this.head.answered();
                    }
                    return Poll::Ready(Ok(n));
                }
            }
        }
        // Writing a replacement: hyper calls again with the same buffer until we report it
        // written.
        let (bytes, written, reported) = this.pending.as_mut().expect("set above");
        while *written < bytes.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let n = *reported;
        this.pending = None;
        this.activity.on_write(n, n);
        Poll::Ready(Ok(n))
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
