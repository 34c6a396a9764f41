//! Real-socket tests of request bodies: the limits (the upfront 413, the same 413 for a
//! chunked body, the read deadline) and content codings (415).

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
    let s = start_with(dir.path(), opts.clone(), vec![]).await;
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
    let events = format!("POST /v1/events HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}", limit + 1, "x".repeat(limit + 1));
    let resp = raw(s.addr, events.into_bytes()).await;
    assert_eq!(status_and_json(&resp).1["error"]["code"], "not_found", "{}", &resp[..resp.len().min(400)]);
    s.stop.send(()).expect("server running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_announcing_a_body_over_the_limit_gets_413_and_is_no_click() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let limit = ServerOptions::default().max_body_bytes;
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/links", s.addr))
        .json(&json!({"long_url": "https://example.com/b", "custom_alias": "Body1"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(format!("GET /Body1 HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", limit + 1).as_bytes()).await.expect("write");
    let got = String::from_utf8(closed_by_server(&mut c).await).expect("utf-8");
    let want = json!({"error": {"code": "payload_too_large", "message": "request body is larger than 262144 bytes", "details": {"max_body_bytes": 262144}}});
    assert_eq!(status_and_json(&got), (413, want), "{got}");
    let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(b"HEAD /Body1 HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\n\r\n").await.expect("write");
    let got = String::from_utf8(closed_by_server(&mut c).await).expect("utf-8");
    assert!(got.starts_with("HTTP/1.1 413 "), "{got}");
    // At the limit: redirected (the body is not read) and a click.
    let at_limit = format!("GET /Body1 HTTP/1.1\r\nhost: x\r\ncontent-length: {limit}\r\nconnection: close\r\n\r\n{}", "x".repeat(limit));
    let resp = raw(s.addr, at_limit.into_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 302 Found\r\n"), "{}", &resp[..resp.len().min(300)]);
    let click = tokio::time::timeout(Duration::from_secs(10), s.events.recv()).await.expect("a click in time").expect("channel open");
    assert_eq!(click.code, "Body1");
    assert!(tokio::time::timeout(Duration::from_millis(500), s.events.recv()).await.is_err(), "the refused requests are no clicks");
    s.stop.send(()).expect("server running");
}

/// `method /code` with `chunks` sent chunked (no `Content-Length`), each as one chunk, then
/// the last chunk.
fn chunked_redirect(method: &str, code: &str, chunks: &[&str]) -> String {
    let mut req = format!("{method} /{code} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n");
    for c in chunks {
        req.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
    }
    req.push_str("0\r\n\r\n");
    req
}

/// A redirect reads no body, but one sent chunked (its size known only once read) is read
/// and dropped before the answer: over `max-body-bytes` it is the 413 of a `Content-Length`
/// over the limit, no click (it used to be redirected and counted, whatever its size); within
/// it, the answer and the click of the request without it, and the body (a request line
/// inside it included) is never taken for the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_with_a_chunked_body_over_the_limit_gets_413_and_is_no_click() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ServerOptions { max_body_bytes: 2048, ..ServerOptions::default() };
    let mut s = start_full(dir.path(), opts, vec![], |c| c.server.max_body_bytes = 2048, false).await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/links", s.addr))
        .json(&json!({"long_url": "https://example.com/c", "custom_alias": "Chunk1"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    let want = json!({"error": {"code": "payload_too_large", "message": "request body is larger than 2048 bytes", "details": {"max_body_bytes": 2048}}});
    let over = "x".repeat(1025);
    for method in ["GET", "HEAD"] {
        let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(chunked_redirect(method, "Chunk1", &[&over, &over]).as_bytes()).await.expect("write");
        let got = String::from_utf8(closed_by_server(&mut c).await).expect("utf-8");
        let json = if method == "GET" { status_and_json(&got) } else { (status_and_json(&got).0, want.clone()) };
        assert_eq!(json, (413, want.clone()), "{method}: {got}");
        assert_eq!(header_of(&got, "connection"), Some("close"), "{got}");
        assert_eq!(got.matches("HTTP/1.1 ").count(), 1, "one answer: {got}");
    }
    assert!(tokio::time::timeout(Duration::from_millis(500), s.events.recv()).await.is_err(), "the refused requests are no clicks");

    // Within the limit: dropped unread by the handler; a request line inside the body is
    // body, not the next request; the connection goes on with the request after it.
    let smuggled = "GET /NoSuch1 HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut req = chunked_redirect("GET", "Chunk1", &[smuggled, &"y".repeat(2048 - smuggled.len())]);
    req.push_str("GET /Chunk1?n=2 HTTP/1.1\r\nhost: x\r\nuser-agent: second\r\nconnection: close\r\n\r\n");
    let got = raw(s.addr, req.into_bytes()).await;
    let statuses: Vec<&str> = got.match_indices("HTTP/1.1 ").map(|(i, _)| &got[i..i + 12]).collect();
    assert_eq!(statuses, ["HTTP/1.1 302", "HTTP/1.1 302"], "{got}");
    assert!(got.contains("location: https://example.com/c?n=2\r\n"), "{got}");
    assert!(!got.contains("not_found"), "{got}");
    for ua in ["", "second"] {
        let click = tokio::time::timeout(Duration::from_secs(10), s.events.recv()).await.expect("a click in time").expect("channel open");
        assert_eq!((click.code.as_str(), click.user_agent.as_str()), ("Chunk1", ua));
    }
    // Malformed chunked framing: 400, no click.
    let got = raw(s.addr, b"GET /Chunk1 HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n".to_vec()).await;
    assert_eq!(status_and_json(&got).0, 400, "{got}");
    assert_eq!(status_and_json(&got).1["error"]["code"], "malformed_request", "{got}");
    assert!(tokio::time::timeout(Duration::from_millis(500), s.events.recv()).await.is_err(), "no click");
    s.stop.send(()).expect("server running");
}

/// `POST path` with `body` sent chunked (no `Content-Length`), as one chunk.
fn chunked(path: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    )
    .into_bytes()
}

/// `POST path` with `body` and a `Content-Length`, plus `extra` header lines.
fn with_length(path: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A body over the limit gets one answer whether it announces its length (`POST /v1/links`:
/// the server's 413 before reading) or arrives chunked (413 once the limit is passed while
/// reading), on `POST /v1/links` (`[server] max-body-bytes`) and `POST /v1/events`
/// (`[ingest] max-body-bytes`, checked by its handler both ways); exactly the limit is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_gets_the_same_413_with_or_without_a_content_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ServerOptions { max_body_bytes: 2048, ..ServerOptions::default() };
    let tweak = |c: &mut Config| {
        c.server.max_body_bytes = 2048;
        c.ingest.max_body_bytes = 1024;
    };
    let s = start_full(dir.path(), opts, vec![], tweak, true).await;
    let too_large = |limit: usize| json!({"error": {"code": "payload_too_large", "message": format!("request body is larger than {limit} bytes"), "details": {"max_body_bytes": limit}}});
    for (path, content_type, limit) in [("/v1/links", "application/json", 2048), ("/v1/events", "application/x-ndjson", 1024)] {
        let over = " ".repeat(limit + 1);
        let resp = raw(s.addr, with_length(path, content_type, "", over.as_bytes())).await;
        assert_eq!(status_and_json(&resp), (413, too_large(limit)), "{path} with content-length: {resp}");
        let resp = raw(s.addr, chunked(path, content_type, &over)).await;
        assert_eq!(status_and_json(&resp), (413, too_large(limit)), "{path} chunked: {resp}");
        assert_eq!(header_of(&resp, "content-type"), Some("application/json"), "{resp}");
        // Exactly the limit is read and judged (all whitespace: no JSON, no events).
        let at = " ".repeat(limit);
        let resp = raw(s.addr, chunked(path, content_type, &at)).await;
        let code = if path == "/v1/links" { "malformed_json" } else { "empty_batch" };
        assert_eq!((status_and_json(&resp).0, status_and_json(&resp).1["error"]["code"].as_str()), (400, Some(code)), "{path}: {resp}");
    }
    s.stop.send(()).expect("server running");
}

/// A request body with a content coding is refused with 415 `unsupported_content_encoding`
/// and `Accept-Encoding: identity` on `POST /v1/links` and `POST /v1/events` (it used to
/// be read as JSON: 400 `malformed_json`); `identity` is no coding; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_with_a_content_coding_is_415() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_full(dir.path(), ServerOptions::default(), vec![], |_| {}, true).await;
    // `{"long_url": "https://example.com/gz"}`, gzip-compressed bytes (a gzip header then
    // anything: the body is never read).
    let gz = [0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0x56];
    for (path, content_type) in [("/v1/links", "application/json"), ("/v1/events", "application/x-ndjson")] {
        for (coding, shown) in [("gzip", "gzip"), ("br", "br"), ("identity, deflate", "deflate")] {
            let resp = raw(s.addr, with_length(path, content_type, &format!("content-encoding: {coding}\r\n"), &gz)).await;
            let want = json!({"error": {
                "code": "unsupported_content_encoding",
                "message": format!("content codings are not supported: send the request body uncompressed, without Content-Encoding (got \"{shown}\")"),
                "details": {"content_encoding": shown},
            }});
            assert_eq!(status_and_json(&resp), (415, want), "{path} {coding}: {resp}");
            assert_eq!(header_of(&resp, "accept-encoding"), Some("identity"), "{resp}");
            assert_eq!(header_of(&resp, "cache-control"), Some("no-store"), "{resp}");
        }
    }
    // `identity` is no coding: the body is read as sent.
    let body = br#"{"long_url": "https://example.com/plain", "custom_alias": "plain"}"#;
    let resp = raw(s.addr, with_length("/v1/links", "application/json", "content-encoding: identity\r\n", body)).await;
    assert_eq!(status_and_json(&resp).0, 201, "{resp}");
    let resp = raw(s.addr, b"GET /v1/links?limit=10 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec()).await;
    let codes: Vec<String> =
        status_and_json(&resp).1["items"].as_array().expect("items").iter().map(|l| l["code"].as_str().expect("code").to_owned()).collect();
    assert_eq!(codes, vec!["plain"], "only the uncoded create stored a link");
    s.stop.send(()).expect("server running");
}
