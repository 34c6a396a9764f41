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
    let s = start_with(dir.path(), opts, routes).await;
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
