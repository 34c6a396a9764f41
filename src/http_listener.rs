//! A TCP listener for `axum::serve` whose connections give hyper's automatic error
//! responses the JSON error shape of DESIGN.md.
//!
//! hyper answers some malformed requests itself, before any handler runs, with an empty
//! body: a request target longer than 65,534 bytes gets `414 URI Too Long`, and a request
//! head of more than [`MAX_HEAD_BYTES`] bytes (the server sets hyper's `max_header_size` to
//! it, [`crate::http_server`]) or with more than [`MAX_HEADER_FIELDS`] header fields gets
//! `431 Request Header Fields Too Large`. No router layer sees those requests, so this
//! wrapper recognises exactly such a response head on the connection's write side (status
//! 414 or 431, `content-length: 0`, nothing after the head; our handlers never answer with
//! either status) and writes instead the same head with a JSON body `{"error": {"code",
//! "message", "details"}}`:
//!
//! * 414: `uri_too_long`, `details: {"max_bytes": 65534}`;
//! * 431 for the size: `headers_too_large`, `details: {"max_bytes": 417792}`;
//! * 431 for the count: `too_many_headers`, `details: {"max_fields": 100}`.
//!
//! hyper's 431 does not say which limit was hit, so the stream counts the bytes and line
//! feeds it has read since it last wrote (i.e. since the previous response): at least
//! [`MAX_HEAD_BYTES`] bytes is the size; fewer bytes but more than [`MAX_HEADER_FIELDS`]
//! line feeds is the count; anything else (only possible when part of the head arrived
//! before the previous pipelined response was written) names both limits, code
//! `headers_too_large`. Every other byte passes through untouched.
//!
//! Use: `axum::serve(JsonErrorListener::new(tcp).tap_io(|_| {}), router
//! .into_make_service_with_connect_info::<SocketAddr>())` (the `tap_io` gives
//! `ConnectInfo<SocketAddr>` through axum's generic impl).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// hyper's limit on the request target, bytes (`MAX_URI_LEN` in hyper's h1 parser).
pub const MAX_URI_BYTES: usize = 65_534;
/// The limit on a whole request head (request line and header fields), bytes: hyper's
/// default read buffer (`DEFAULT_MAX_BUFFER_SIZE` = 8192 + 4096 × 100 in hyper's h1 io),
/// which the server also sets as hyper's `max_header_size` so that a head arriving in one
/// read is held to the same limit.
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// hyper's limit on the number of header fields of a request (`DEFAULT_MAX_HEADERS`).
pub const MAX_HEADER_FIELDS: usize = 100;

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
        (JsonErrorStream { inner: io, pending: None, read_bytes: 0, read_lines: 0 }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A TCP stream that rewrites hyper's empty 414/431 responses (see the module docs).
#[derive(Debug)]
pub struct JsonErrorStream {
    inner: TcpStream,
    /// A replacement being written: bytes, how many are written, the length of the
    /// original buffer to report once done.
    pending: Option<(Vec<u8>, usize, usize)>,
    /// Bytes read since the last write (saturating).
    read_bytes: usize,
    /// Line feeds among them.
    read_lines: usize,
}

/// Which of hyper's limits a 431 is about, from what was read since the previous response
/// (`read_bytes` bytes holding `read_lines` line feeds; module docs).
fn cause_431(read_bytes: usize, read_lines: usize) -> (&'static str, String, serde_json::Value) {
    if read_bytes >= MAX_HEAD_BYTES {
        ("headers_too_large", format!("the request head is larger than {MAX_HEAD_BYTES} bytes"), serde_json::json!({ "max_bytes": MAX_HEAD_BYTES }))
    } else if read_lines > MAX_HEADER_FIELDS {
        ("too_many_headers", format!("the request has more than {MAX_HEADER_FIELDS} header fields"), serde_json::json!({ "max_fields": MAX_HEADER_FIELDS }))
    } else {
        (
            "headers_too_large",
            format!("the request head is larger than {MAX_HEAD_BYTES} bytes or has more than {MAX_HEADER_FIELDS} header fields"),
            serde_json::json!({ "max_bytes": MAX_HEAD_BYTES, "max_fields": MAX_HEADER_FIELDS }),
        )
    }
}

/// The replacement of `buf` when it is exactly one of hyper's empty 414/431 heads; a 431 is
/// described from the `read_bytes` bytes and `read_lines` line feeds read since the
/// previous response ([`cause_431`]).
fn replacement(buf: &[u8], read_bytes: usize, read_lines: usize) -> Option<Vec<u8>> {
    let (status, code, message, details) = if buf.starts_with(b"HTTP/1.1 414 ") {
        (414, "uri_too_long", format!("the request target is longer than {MAX_URI_BYTES} bytes"), serde_json::json!({ "max_bytes": MAX_URI_BYTES }))
    } else if buf.starts_with(b"HTTP/1.1 431 ") {
        let (code, message, details) = cause_431(read_bytes, read_lines);
        (431, code, message, details)
    } else {
        return None;
    };
    let text = std::str::from_utf8(buf).ok()?;
    let head = text.strip_suffix("\r\n\r\n")?;
    if head.contains("\r\n\r\n") {
        return None;
    }
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut kept = Vec::new();
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            empty = value.trim() == "0";
        } else if !name.eq_ignore_ascii_case("content-type") {
            kept.push(line);
        }
    }
    if !empty {
        return None;
    }
    let body = serde_json::json!({ "error": { "code": code, "message": message, "details": details } }).to_string();
    debug_assert!(status_line.contains(&status.to_string()));
    let mut out = format!("{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n", body.len());
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

impl AsyncRead for JsonErrorStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        this.read_bytes = this.read_bytes.saturating_add(new.len());
        this.read_lines = this.read_lines.saturating_add(new.iter().filter(|&&b| b == b'\n').count());
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for JsonErrorStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() {
            match replacement(buf, this.read_bytes, this.read_lines) {
                Some(bytes) => this.pending = Some((bytes, 0, buf.len())),
                None => {
                    let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
                    this.read_bytes = 0;
                    this.read_lines = 0;
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
mod tests {
    use super::*;
    use axum::serve::ListenerExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends raw `request` to a router served through the wrapper; returns the raw response.
    async fn raw(request: Vec<u8>) -> String {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let router = axum::Router::new().route(
            "/{*rest}",
            axum::routing::get(|axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>| async move { format!("peer {}", peer.ip()) }),
        );
        let server = tokio::spawn(async move {
            axum::serve(JsonErrorListener::new(tcp).tap_io(|_| {}), router.into_make_service_with_connect_info::<SocketAddr>()).await.expect("serve");
        });
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(&request).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), c.read_to_end(&mut out)).await.expect("the server answers and closes");
        server.abort();
        String::from_utf8(out).expect("utf-8")
    }

    fn split(resp: &str) -> (&str, serde_json::Value) {
        let (head, body) = resp.split_once("\r\n\r\n").expect("head");
        (head, serde_json::from_str(body).expect("json body"))
    }

    #[tokio::test]
    async fn a_too_long_uri_gets_a_json_414() {
        let path = format!("/{}", "a".repeat(MAX_URI_BYTES + 10));
        let resp = raw(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").into_bytes()).await;
        let (head, body) = split(&resp);
        assert!(head.starts_with("HTTP/1.1 414 "), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
        assert_eq!(body["error"]["code"], "uri_too_long");
        assert_eq!(body["error"]["details"]["max_bytes"], MAX_URI_BYTES);
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("65534")));
    }

    #[tokio::test]
    async fn other_responses_pass_through_with_the_peer_address() {
        let resp = raw(b"GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec()).await;
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
        assert!(resp.ends_with("peer 127.0.0.1"), "{resp}");
    }

    #[test]
    fn only_empty_414_and_431_heads_are_replaced() {
        assert!(replacement(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n", 0, 0).is_some());
        assert!(replacement(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 5\r\n\r\n", 0, 0).is_none());
        assert!(replacement(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\nextra", 0, 0).is_none());
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", 0, 0).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 0, 0).is_none());
    }

    #[test]
    fn a_431_names_the_limit_that_was_hit() {
        assert_eq!(cause_431(MAX_HEAD_BYTES, 3).0, "headers_too_large");
        assert_eq!(cause_431(MAX_HEAD_BYTES + 1, 500).0, "headers_too_large", "size first: the head reached the byte limit");
        let (code, message, details) = cause_431(5_000, MAX_HEADER_FIELDS + 2);
        assert_eq!((code, message.as_str(), details), ("too_many_headers", "the request has more than 100 header fields", serde_json::json!({"max_fields": 100})));
        let (code, _, details) = cause_431(5_000, 20);
        assert_eq!((code, details), ("headers_too_large", serde_json::json!({"max_bytes": MAX_HEAD_BYTES, "max_fields": 100})));
    }
}
