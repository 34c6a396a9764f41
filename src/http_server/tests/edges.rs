//! Real-socket tests of malformed and hostile requests: hyper's own errors in the JSON
//! shape, `Host` values, malformed escapes in API paths, oversized heads, pipelining, HTTP/2.

use super::*;

/// Status, JSON `error.code` and the caching/connection headers of a raw response.
fn summary(resp: &str) -> (u16, String, Option<&str>, Option<&str>, Option<&str>) {
    let (status, body) = status_and_json(resp);
    let code = body["error"]["code"].as_str().unwrap_or_default().to_owned();
    (status, code, header_of(resp, "content-type"), header_of(resp, "cache-control"), header_of(resp, "connection"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypers_own_400s_get_the_json_shape_and_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    for (what, req) in [
        ("garbage", "GARBAGE\r\n\r\n"),
        ("unknown version", "GET /healthz HTTP/9.9\r\nhost: x\r\n\r\n"),
        ("bad content-length", "POST /v1/links HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n"),
        ("two content-lengths", "POST /v1/links HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"),
        ("obs-fold", "GET /healthz HTTP/1.1\r\nhost: x\r\nx-a: b\r\n  c\r\n\r\n"),
        ("space in header name", "GET /healthz HTTP/1.1\r\nhost: x\r\nx a: b\r\n\r\n"),
    ] {
        let resp = raw(s.addr, req.as_bytes().to_vec()).await;
        let want = (400, "malformed_request".to_owned(), Some("application/json"), Some("no-store"), Some("close"));
        assert_eq!(summary(&resp), want, "{what}: {resp}");
        let message = status_and_json(&resp).1["error"]["message"].clone();
        assert_eq!(message, "the request is not valid HTTP/1.1: malformed request line or header field (RFC 9112)", "{what}");
    }
    s.stop.send(()).expect("server running");
}

/// A raw `"` in the request target (no URI may hold one; hyper lets it through in a path) is 400
/// `malformed_request` before any lookup, in a code, a query or an API path, like the raw
/// `<`, `>`, `` ` `` or DEL that hyper refuses itself (each named); `%22` is fine. No click
/// is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_quote_in_the_request_target_is_400_malformed_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let quote = json!({"error": {"code": "malformed_request", "message": "the request target holds a raw '\"', which no URI may contain (RFC 3986 section 2, RFC 9112 section 3.2): send it percent-encoded as %22"}});
    for target in ["/Yf9EAYq\"", "/v1/links/a\"b", "/\""] {
        let resp = raw(s.addr, format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes()).await;
        assert_eq!(status_and_json(&resp), (400, quote.clone()), "{target}: {resp}");
    }
    // In a query the URI parser refuses the byte before the server sees the request: its
    // answer says the same (finding: it said "malformed request line or header field"),
    // pipelined behind an answered request too.
    for target in ["/Yf9EAYq?q=\"x\"", "/v1/links?tag=\"a", "/?\"", "/healthz?a=%22&b=\""] {
        let resp = raw(s.addr, format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes()).await;
        assert_eq!(status_and_json(&resp), (400, quote.clone()), "{target}: {resp}");
        assert_eq!(summary(&resp), (400, "malformed_request".to_owned(), Some("application/json"), Some("no-store"), Some("close")), "{target}: {resp}");
    }
    let resp = raw(s.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /?q=\"x\" HTTP/1.1\r\nhost: x\r\n\r\n".to_vec()).await;
    let second = resp.find("HTTP/1.1 400 ").map(|at| &resp[at..]).unwrap_or_else(|| panic!("a 400 after the 200: {resp}"));
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert_eq!(status_and_json(second), (400, quote.clone()), "{resp}");
    // A '"' outside the target (a header value, the method) is not said to be in it.
    let resp = raw(s.addr, b"G\"ET /healthz HTTP/1.1\r\nhost: x\r\n\r\n".to_vec()).await;
    assert_eq!(status_and_json(&resp).1["error"]["message"], "the request is not valid HTTP/1.1: malformed request line or header field (RFC 9112)", "{resp}");
    // Finding: the other bytes hyper refuses in a target got the generic message; they are
    // named with their percent-encoding.
    let rfc = "which no URI may contain (RFC 3986 section 2, RFC 9112 section 3.2): send it percent-encoded as";
    for (target, named) in [
        (&b"/Yf9EAYq<"[..], format!("a raw '<', {rfc} %3C")),
        (b"/a?q=>", format!("a raw '>', {rfc} %3E")),
        (b"/Yf9`EAYq", format!("a raw '`', {rfc} %60")),
        (b"/a\x7f", format!("a raw byte 0x7F, {rfc} %7F")),
    ] {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let resp = raw(s.addr, req).await;
        let want = json!({"error": {"code": "malformed_request", "message": format!("the request target holds {named}")}});
        assert_eq!(status_and_json(&resp), (400, want), "{target:?}: {resp}");
    }
    // A '`' in the query and valid UTF-8 pass hyper (an unknown code here); bytes that are
    // not UTF-8 are refused with the generic message.
    for target in [&b"/Yf9EAYq?q=`"[..], b"/caf\xc3\xa9"] {
        let mut req = b"GET ".to_vec();
        req.extend_from_slice(target);
        req.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let resp = raw(s.addr, req).await;
        assert_eq!(summary(&resp).0, 404, "{target:?}: {resp}");
    }
    let resp = raw(s.addr, b"GET /a\xc3b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec()).await;
    assert_eq!(status_and_json(&resp).1["error"]["message"], "the request is not valid HTTP/1.1: malformed request line or header field (RFC 9112)", "{resp}");
    let resp = raw(s.addr, b"GET /Yf9EAYq%22 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec()).await;
    assert_eq!(summary(&resp).0, 404, "an escaped quote is an (unknown) code: {resp}");
    assert!(s.events.try_recv().is_err(), "no clicks");
    s.stop.send(()).expect("server running");
}

/// A raw `"` ends its connection like every `malformed_request` (README, "The HTTP server"):
/// the answer says `connection: close` and is the connection's last. A keep-alive client's
/// second request, pipelined behind it or sent after the answer, gets no answer: the server
/// closes the connection (EOF) at once, instead of serving the next request on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_quote_in_the_request_target_closes_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let quote = json!({"error": {"code": "malformed_request", "message": "the request target holds a raw '\"', which no URI may contain (RFC 3986 section 2, RFC 9112 section 3.2): send it percent-encoded as %22"}});
    let second = "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
    for target in ["/pg5\"", "/v1/links/a\"b", "/\""] {
        let first = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        // Pipelined: both requests in one write.
        let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(format!("{first}{second}").as_bytes()).await.expect("write");
        let got = tokio::time::timeout(Duration::from_secs(5), closed_by_server(&mut c)).await.expect("closed at once, not at the idle deadline");
        let got = String::from_utf8(got).expect("utf-8");
        assert_eq!(got.matches("HTTP/1.1 ").count(), 1, "one answer only, {target}: {got}");
        assert_eq!(status_and_json(&got), (400, quote.clone()), "{target}: {got}");
        assert_eq!(summary(&got), (400, "malformed_request".to_owned(), Some("application/json"), Some("no-store"), Some("close")), "{target}: {got}");
        // One request, its answer read, then the second one: the connection is already closed.
        let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(first.as_bytes()).await.expect("write");
        let got = tokio::time::timeout(Duration::from_secs(5), closed_by_server(&mut c)).await.expect("closed at once, not at the idle deadline");
        let got = String::from_utf8(got).expect("utf-8");
        assert_eq!(summary(&got), (400, "malformed_request".to_owned(), Some("application/json"), Some("no-store"), Some("close")), "{target}: {got}");
        let _ = c.write_all(second.as_bytes()).await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest)).await.expect("EOF");
        assert!(rest.is_empty(), "no answer to a request after the close, {target}: {}", String::from_utf8_lossy(&rest));
    }
    assert!(s.events.try_recv().is_err(), "no clicks");
    s.stop.send(()).expect("server running");
}

/// Every `connection` header line of a raw response, by value.
fn connection_lines(resp: &str) -> Vec<&str> {
    let head = resp.split_once("\r\n\r\n").map_or(resp, |(h, _)| h);
    head.split("\r\n").skip(1).filter_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("connection")).map(|(_, v)| v.trim())).collect()
}

/// Finding: an HTTP/1.0 request asking for `Connection: keep-alive` whose answer closes the
/// connection (a raw '"' in the target, an invalid `Host`) got `connection: close` and
/// `connection: keep-alive` (hyper added the token the request asked for). Now the answer
/// says `close` alone, is HTTP/1.0 and the connection's last; an HTTP/1.0 keep-alive
/// request answered normally still keeps its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_keep_alive_request_refused_with_close_says_close_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let quote = json!({"error": {"code": "malformed_request", "message": crate::http_listener::RAW_QUOTE_MESSAGE}});
    let bad_host =
        json!({"error": {"code": "invalid_host", "message": "the Host header is not a valid host[:port] (RFC 9110 section 7.2, RFC 3986 section 3.2.2)"}});
    let second = "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    for (first, status_line, want) in [
        ("GET /pg5\" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "HTTP/1.0 400 Bad Request\r\n", &quote),
        ("GET /v1/links/a\"b HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", "HTTP/1.0 400 Bad Request\r\n", &quote),
        ("GET /healthz HTTP/1.0\r\nHost: a b\r\nConnection: keep-alive\r\n\r\n", "HTTP/1.0 400 Bad Request\r\n", &bad_host),
        // Refused by the URI parser (hyper answers before any version is known).
        ("GET /pg5?q=\" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", &quote),
    ] {
        let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(format!("{first}{second}").as_bytes()).await.expect("write");
        let got = tokio::time::timeout(Duration::from_secs(5), closed_by_server(&mut c)).await.expect("closed at once, not at the idle deadline");
        let got = String::from_utf8(got).expect("utf-8");
        assert!(got.starts_with(status_line), "{first:?}: {got}");
        assert_eq!(connection_lines(&got), ["close"], "{first:?}: {got}");
        assert_eq!(status_and_json(&got), (400, want.clone()), "one answer only, {first:?}: {got}");
    }
    // Answered normally: keep-alive, and the connection serves the next request.
    let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(second.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.expect("answer").expect("read");
    let got = String::from_utf8(buf[..n].to_vec()).expect("utf-8");
    assert!(got.starts_with("HTTP/1.0 200 OK\r\n"), "{got}");
    assert_eq!(connection_lines(&got), ["keep-alive"], "{got}");
    c.write_all(second.as_bytes()).await.expect("write");
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.expect("answer").expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.0 200 OK\r\n"), "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(s.events.try_recv().is_err(), "no clicks");
    s.stop.send(()).expect("server running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_host_values_and_repeated_hosts_are_400_invalid_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let bad_value =
        json!({"error": {"code": "invalid_host", "message": "the Host header is not a valid host[:port] (RFC 9110 section 7.2, RFC 3986 section 3.2.2)"}});
    for host in ["a b", "user@sho.rt", "sho.rt:99999", "sho.rt:8o", "sho.rt:80:80", "a\tb", "[::1", "sho.rt/x"] {
        for path in ["/healthz", "/SomeCode"] {
            let resp = raw(s.addr, format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").into_bytes()).await;
            assert_eq!(status_and_json(&resp), (400, bad_value.clone()), "{host:?} {path}: {resp}");
            assert_eq!(header_of(&resp, "cache-control"), Some("no-store"), "{host:?}");
        }
    }
    // HTTP/1.0: no Host is fine, two are not (as in HTTP/1.1).
    let two = json!({"error": {"code": "invalid_host", "message": "a request must not carry more than one Host header (RFC 9112 section 3.2)"}});
    let resp = raw(s.addr, b"GET /healthz HTTP/1.0\r\nhost: a\r\nhost: b\r\n\r\n".to_vec()).await;
    assert_eq!(status_and_json(&resp), (400, two), "{resp}");
    assert_eq!(status_and_json(&raw(s.addr, b"GET /healthz HTTP/1.0\r\n\r\n".to_vec()).await).0, 200);
    // Valid values are served.
    for host in ["sho.rt.example", "sho.rt.example:8080", "127.0.0.1:1", "[::1]:443", "xn--bcher-kva.example"] {
        let resp = raw(s.addr, format!("GET /healthz HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").into_bytes()).await;
        assert_eq!(status_and_json(&resp).0, 200, "{host}: {resp}");
    }
    assert!(s.events.try_recv().is_err(), "no clicks");
    s.stop.send(()).expect("server running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_escape_in_an_api_path_is_400_invalid_path_as_for_a_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let want = json!({"error": {"code": "invalid_path", "message": "malformed percent-encoding in the path: a '%' must be followed by two hex digits"}});
    for (method, path) in [("GET", "/%zz"), ("GET", "/v1/links/%zz"), ("DELETE", "/v1/links/ab%4"), ("GET", "/v1/links/%zz/stats"), ("HEAD", "/v1/%")] {
        let resp = raw(s.addr, format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").into_bytes()).await;
        if method == "HEAD" {
            assert_eq!(status_and_json(&resp).0, 400, "{method} {path}: {resp}");
        } else {
            assert_eq!(status_and_json(&resp), (400, want.clone()), "{method} {path}: {resp}");
        }
    }
    // A well-formed escape in an API path is served as before (an unknown link: 404).
    let resp = raw(s.addr, b"GET /v1/links/%41bc HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec()).await;
    assert_eq!(status_and_json(&resp).1["error"]["code"], "not_found", "{resp}");
    s.stop.send(()).expect("server running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_request_line_is_414_and_head_limit_answers_are_not_cached() {
    use crate::http_listener::{MAX_HEADER_FIELDS, MAX_URI_BYTES};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    // 500 KB request line: over the whole head limit before its line feed.
    let resp = raw(s.addr, format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(500_000)).into_bytes()).await;
    assert_eq!(summary(&resp), (414, "uri_too_long".to_owned(), Some("application/json"), Some("no-store"), Some("close")), "{resp}");
    assert_eq!(status_and_json(&resp).1["error"]["details"], json!({"max_bytes": MAX_URI_BYTES}));
    // hyper's own 414 (a target over 65,534 bytes in a head that fits).
    let resp = raw(s.addr, format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(MAX_URI_BYTES + 10)).into_bytes()).await;
    assert_eq!(summary(&resp), (414, "uri_too_long".to_owned(), Some("application/json"), Some("no-store"), Some("close")), "{resp}");
    let resp = raw(s.addr, request_with_fields(MAX_HEADER_FIELDS + 1, 8)).await;
    assert_eq!(summary(&resp), (431, "too_many_headers".to_owned(), Some("application/json"), Some("no-store"), Some("close")), "{resp}");
    s.stop.send(()).expect("server running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_431_after_pipelined_requests_names_the_limit_hit() {
    use crate::http_listener::MAX_HEADER_FIELDS;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let ok = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    let too_many = String::from_utf8(request_with_fields(MAX_HEADER_FIELDS + 1, 8)).expect("ascii");
    let too_big = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "b".repeat(500_000));
    // In one write (so the server reads the oversized head with the ones before it) and
    // also with the first requests answered before the rest is sent.
    for (tail, code) in [(too_many.as_str(), "too_many_headers"), (too_big.as_str(), "headers_too_large")] {
        let resp = raw(s.addr, format!("{ok}{ok}{tail}").into_bytes()).await;
        let parts: Vec<&str> = resp.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(parts.len(), 3, "{resp}");
        assert!(parts[0].starts_with("200 ") && parts[1].starts_with("200 "), "{resp}");
        let last = format!("HTTP/1.1 {}", parts[2]);
        assert_eq!(summary(&last), (431, code.to_owned(), Some("application/json"), Some("no-store"), Some("close")), "{last}");

        let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
        c.write_all(format!("{ok}GET /hea").as_bytes()).await.expect("write");
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf)).await.expect("answered").expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "), "{:?}", String::from_utf8_lossy(&buf[..n]));
        let rest = tail.strip_prefix("GET /hea").expect("same start");
        let _ = c.write_all(rest.as_bytes()).await;
        let got = String::from_utf8(closed_by_server(&mut c).await).expect("utf-8");
        assert_eq!(summary(&got).0, 431, "{got}");
        assert_eq!(summary(&got).1, code, "{got}");
    }
    s.stop.send(()).expect("server running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_prior_knowledge_connection_gets_goaway_http_1_1_required() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    // The client preface, then an empty SETTINGS frame (RFC 9113 §3.4).
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.expect("write");
    let got = closed_by_server(&mut c).await;
    let debug = b"HTTP/2 is not served here; use HTTP/1.1";
    let mut want = vec![0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, (8 + debug.len()) as u8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0d];
    want.extend_from_slice(debug);
    assert_eq!(got, want, "SETTINGS, then GOAWAY(last stream 0, HTTP_1_1_REQUIRED)");
    // HTTP/1.1 on the same server still works.
    assert_eq!(status_and_json(&raw(s.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec()).await).0, 200);
    s.stop.send(()).expect("server running");
}
