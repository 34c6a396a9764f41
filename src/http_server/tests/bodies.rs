//! Real-socket tests of the request body limits: the upfront 413 and the read deadline.

use super::*;

/// A `POST /v1/links` head announcing `len` body bytes.
fn post_head(len: usize) -> String {
    format!("POST /v1/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_a_408_at_the_body_read_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ServerOptions { body_read_timeout: Some(Duration::from_secs(1)), ..ServerOptions::default() };
    let s = start_with(dir.path(), opts, vec![]).await;

    // A whole body in time is served.
    let body = r#"{"long_url": "https://example.com/in-time"}"#;
    let resp = raw(s.addr, format!("{}{body}", post_head(body.len()).replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n")).into_bytes()).await;
    assert_eq!(status_and_json(&resp).0, 201, "{resp}");

    // 1,000 bytes announced, one sent, then nothing: without the deadline the server would
    // wait forever (and the 30 s guard of `closed_by_server` would fail the test).
    let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(format!("{}{{", post_head(1000)).as_bytes()).await.expect("write");
    let got = String::from_utf8(closed_by_server(&mut c).await).expect("utf-8");
    let want = json!({"error": {"code": "request_timeout", "message": "the request body did not fully arrive within 1000 ms (body-read-timeout)", "details": {"timeout_ms": 1000}}});
    assert_eq!(status_and_json(&got), (408, want), "{got}");
    assert_eq!(header_of(&got, "connection"), Some("close"), "{got}");
    assert_eq!(header_of(&got, "cache-control"), Some("no-store"), "{got}");
    assert_eq!(header_of(&got, "content-type"), Some("application/json"), "{got}");

    // A chunked body that stops arriving: the same.
    let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    let head = "POST /v1/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n1\r\n{\r\n";
    c.write_all(head.as_bytes()).await.expect("write");
    let got = String::from_utf8(closed_by_server(&mut c).await).expect("utf-8");
    assert_eq!(status_and_json(&got).1["error"]["code"], "request_timeout", "{got}");
    s.stop.send(()).expect("server running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_over_the_body_limit_gets_413_before_the_body_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A one-hour body deadline: an answer in time can only be the upfront 413.
    let opts = ServerOptions { body_read_timeout: Some(Duration::from_secs(3600)), ..ServerOptions::default() };
    let s = start_with(dir.path(), opts, vec![]).await;
    let limit = opts.max_body_bytes;
    let cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    assert_eq!(limit, cfg.server.max_body_bytes, "the default is [server] max-body-bytes");

    let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(post_head(limit + 1).as_bytes()).await.expect("write");
    let got = String::from_utf8(closed_by_server(&mut c).await).expect("utf-8");
    let want = json!({"error": {"code": "payload_too_large", "message": "request body is larger than 262144 bytes", "details": {"max_body_bytes": 262144}}});
    assert_eq!(status_and_json(&got), (413, want), "{got}");
    assert_eq!(header_of(&got, "cache-control"), Some("no-store"), "{got}");
    let huge = "POST /v1/links HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999\r\n\r\n";
    let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(huge.as_bytes()).await.expect("write");
    let got = String::from_utf8(closed_by_server(&mut c).await).expect("utf-8");
    assert_eq!(status_and_json(&got).0, 413, "{got}");

    // Exactly the limit: read, then judged as JSON (not valid JSON here: 400, not 413).
    let resp = raw(s.addr, format!("{}{}", post_head(limit).replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n"), "x".repeat(limit)).into_bytes()).await;
    assert_eq!(status_and_json(&resp).0, 400, "{}", &resp[..resp.len().min(400)]);
    // POST /v1/events has its own limit ([ingest] max-body-bytes, checked by its handler):
    // not served by this stack, so the router's 404 answers, not the server's 413.
    let events = format!("POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}", limit + 1, "x".repeat(limit + 1));
    let resp = raw(s.addr, events.into_bytes()).await;
    assert_eq!(status_and_json(&resp).1["error"]["code"], "not_found", "{}", &resp[..resp.len().min(400)]);
    s.stop.send(()).expect("server running");
}
