//! Real-socket tests of request framing: transfer codings (RFC 9112 §6.1), malformed
//! chunked bodies (§7.1), and the connection closing after a framing or `Host` error.

use super::*;

/// Sends `req` on a keep-alive connection (no `connection: close` asked) and returns all
/// bytes until the server closes it: one answer, then the close.
async fn answer_then_close(addr: SocketAddr, req: &str) -> String {
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(req.as_bytes()).await.expect("write");
    String::from_utf8(closed_by_server(&mut c).await).expect("utf-8")
}

fn assert_json_error_and_close(resp: &str, status: u16, want: &Value) {
    assert_eq!(status_and_json(resp), (status, want.clone()), "{resp}");
    assert_eq!(header_of(resp, "connection"), Some("close"), "{resp}");
    assert_eq!(header_of(resp, "content-type"), Some("application/json"), "{resp}");
    assert_eq!(header_of(resp, "cache-control"), Some("no-store"), "{resp}");
    // Status lines only: a message may itself mention "HTTP/1.1 ".
    assert_eq!(resp.split("\r\n").filter(|l| l.starts_with("HTTP/1.1 ")).count(), 1, "one answer, then the close: {resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_coding_other_than_chunked_alone_is_501_and_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let body = r#"{"long_url": "https://example.com/te"}"#;
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    for (te, shown) in [("gzip, chunked", r#"["gzip","chunked"]"#), ("deflate\r\ntransfer-encoding: chunked", r#"["deflate","chunked"]"#)] {
        let req = format!(
            "POST /v1/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: {te}\r\n\r\n{chunked}GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
        );
        let codings: Value = serde_json::from_str(shown).expect("json");
        let listed = codings.as_array().expect("array").iter().map(|c| c.as_str().expect("str")).collect::<Vec<_>>().join(", ");
        let want = json!({"error": {
            "code": "unsupported_transfer_encoding",
            "message": format!("Transfer-Encoding \"{listed}\": only \"chunked\" alone is implemented (RFC 9112 section 6.1)"),
            "details": {"transfer_encoding": codings, "supported": ["chunked"]},
        }});
        assert_json_error_and_close(&answer_then_close(s.addr, &req).await, 501, &want);
    }
    // The redirect fast path too (a GET /{code} with such a body).
    let resp = answer_then_close(s.addr, "GET /SomeCode HTTP/1.1\r\nhost: x\r\ntransfer-encoding: br, chunked\r\n\r\n0\r\n\r\n").await;
    assert_eq!((status_and_json(&resp).0, header_of(&resp, "connection")), (501, Some("close")), "{resp}");
    let req = format!("POST /v1/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked, chunked\r\n\r\n{chunked}");
    let want = json!({"error": {"code": "malformed_request", "message": "the chunked transfer coding is applied more than once (RFC 9112 section 7)"}});
    assert_json_error_and_close(&answer_then_close(s.addr, &req).await, 400, &want);
    // `chunked` alone (any case) is served.
    let req =
        format!("POST /v1/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: Chunked\r\nconnection: close\r\n\r\n{chunked}");
    assert_eq!(status_and_json(&raw(s.addr, req.into_bytes()).await).0, 201);
    s.stop.send(()).expect("server running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_400_malformed_request_and_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    for opts in [ServerOptions::default(), ServerOptions { body_read_timeout: None, ..ServerOptions::default() }] {
        let s = start_with(dir.path(), opts, vec![]).await;
        let want = json!({"error": {
            "code": "malformed_request",
            "message": "the request body is not valid HTTP/1.1: malformed chunked framing or a body cut short (RFC 9112 section 7.1)",
        }});
        for bad in ["zz\r\n{}\r\n0\r\n\r\n", "2\r\n{}xx\r\n0\r\n\r\n", "fffffffffffffffffff\r\n{}\r\n0\r\n\r\n"] {
            let req = format!("POST /v1/links HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{bad}");
            assert_json_error_and_close(&answer_then_close(s.addr, &req).await, 400, &want);
        }
        s.stop.send(()).expect("server running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_host_closes_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let bad =
        json!({"error": {"code": "invalid_host", "message": "the Host header is not a valid host[:port] (RFC 9110 section 7.2, RFC 3986 section 3.2.2)"}});
    let none = json!({"error": {"code": "invalid_host", "message": "an HTTP/1.1 request must carry exactly one Host header (RFC 9112 section 3.2)"}});
    for (head, want) in [
        ("GET /healthz HTTP/1.1\r\nhost: a@b\r\n\r\n", &bad),
        ("GET /SomeCode HTTP/1.1\r\nhost: x:99999\r\n\r\n", &bad),
        ("GET /healthz HTTP/1.1\r\n\r\n", &none),
        ("GET /healthz HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", &none),
    ] {
        // A second, valid request pipelined behind: not answered.
        let resp = answer_then_close(s.addr, &format!("{head}GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")).await;
        assert_json_error_and_close(&resp, 400, want);
    }
    s.stop.send(()).expect("server running");
}
