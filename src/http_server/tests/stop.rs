//! Real-socket tests of the graceful stop and server-sent events.

use super::*;

/// An endless `text/event-stream` response (as the live stats stream: it never ends by
/// itself).
async fn endless_sse() -> Response {
    let mut resp = endless().await;
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("text/event-stream"));
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_end_cleanly_at_the_graceful_stop() {
    let routes = vec![Router::new().route("/v1/test/sse", axum::routing::get(endless_sse)).route("/v1/test/endless", axum::routing::get(endless))];
    let dir = tempfile::tempdir().expect("tempdir");
    // A one-hour stop deadline: the server can only stop in time if the stream ends.
    let opts = ServerOptions { shutdown_timeout: Duration::from_secs(3600), ..ServerOptions::default() };
    let s = start_with(dir.path(), opts.clone(), routes).await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    stream.write_all(b"GET /v1/test/sse HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut first)).await.expect("response head").expect("read");
    first.truncate(n);
    assert!(first.starts_with(b"HTTP/1.1 200 "), "{:?}", String::from_utf8_lossy(&first));
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("the server stops without waiting for its deadline").expect("server task");
    first.extend(closed_by_server(&mut stream).await);
    let text = String::from_utf8(first).expect("utf-8");
    assert!(text.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{text}");
    assert!(text.ends_with("\r\n0\r\n\r\n"), "the stream ends with the last chunk: {text:?}");

    // Control: an endless response that is not SSE holds the stop until its deadline.
    let routes = vec![Router::new().route("/v1/test/endless", axum::routing::get(endless))];
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), opts, routes).await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    stream.write_all(b"GET /v1/test/endless HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await.expect("response head").expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    s.stop.send(()).expect("server running");
    let mut server = s.server;
    assert!(tokio::time::timeout(Duration::from_secs(2), &mut server).await.is_err(), "a plain endless response holds the stop");
    server.abort();
}

/// A response that takes `ms` milliseconds (a request still in flight at the stop).
async fn slow(axum::extract::Path(ms): axum::extract::Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "done"
}

/// A keep-alive connection to `addr` that has had one answer (from the router).
async fn used_connection(addr: SocketAddr) -> tokio::net::TcpStream {
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf)).await.expect("answered").expect("read");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 200 ") && header_of(&first, "connection").is_none(), "kept alive: {first}");
    c
}

/// Every answer written once the graceful stop has begun says `connection: close` (RFC 9112
/// §9.6) and is its connection's last, so a keep-alive client sends nothing more on it: the
/// answer to a request in flight at the stop, and to requests whose heads were arriving at
/// the stop (on a kept-alive connection, which used to be closed without an answer, and on
/// a new one, through the redirect fast path). An idle kept-alive connection closes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_written_during_the_graceful_stop_say_connection_close() {
    let routes = vec![Router::new().route("/v1/test/slow/{ms}", axum::routing::get(slow))];
    let dir = tempfile::tempdir().expect("tempdir");
    // A one-minute stop deadline: the server stops in time only if every connection closes.
    let opts = ServerOptions { shutdown_timeout: Duration::from_secs(60), header_read_timeout: None, ..ServerOptions::default() };
    let s = start_with(dir.path(), opts, routes).await;
    let mut in_flight = used_connection(s.addr).await;
    in_flight.write_all(b"GET /v1/test/slow/1000 HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut arriving = used_connection(s.addr).await;
    arriving.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("write");
    let mut idle = used_connection(s.addr).await;
    let mut fresh = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    fresh.write_all(b"HEAD /NoSuchCode HTTP/1.1\r\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop.send(()).expect("server running");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = arriving.write_all(b"host: x\r\n\r\n").await;
    let _ = fresh.write_all(b"host: x\r\n\r\n").await;
    for (what, c, status) in [("in flight", &mut in_flight, 200), ("arriving", &mut arriving, 200), ("fresh, fast path", &mut fresh, 404)] {
        let got = String::from_utf8(closed_by_server(c).await).expect("utf-8");
        assert_eq!(got.matches("HTTP/1.1 ").count(), 1, "{what}: one answer: {got}");
        assert_eq!(status_and_json(&got).0, status, "{what}: {got}");
        assert_eq!(header_of(&got, "connection"), Some("close"), "{what}: {got}");
    }
    assert!(closed_by_server(&mut idle).await.is_empty(), "the idle connection closes without an answer");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops before its deadline").expect("server task");
}
