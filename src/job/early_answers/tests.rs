//! [`EarlyAnswers`] on a real loopback listener, spoken to over raw TCP.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// Sends `request` on a new connection to `addr`, reads until the server closes it.
async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out)).await.expect("the server closes the connection").expect("read");
    String::from_utf8(out).expect("utf-8")
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: sho.rt\r\n\r\n")
}

/// (status line, lower-cased header lines, body) of a whole HTTP/1.1 response.
fn split(resp: &str) -> (String, Vec<String>, String) {
    let (head, body) = resp.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line").to_owned();
    (status, lines.map(str::to_ascii_lowercase).collect(), body.to_owned())
}

#[tokio::test]
async fn health_and_metrics_are_answered_and_the_rest_is_refused_as_starting_one_request_per_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let early = EarlyAnswers::spawn(listener);

    let (status, headers, body) = split(&exchange(addr, &get("/healthz")).await);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains(&"connection: close".to_owned()), "{headers:?}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("json"), serde_json::json!({"status": "ok"}));

    // A client asking for keep-alive still gets one answer, then the connection closes.
    let two = format!("{}{}", get("/healthz"), get("/healthz"));
    let resp = exchange(addr, &two).await;
    assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 1, "{resp}");

    let (status, headers, body) = split(&exchange(addr, &get("/readyz")).await);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(!headers.iter().any(|h| h.starts_with("retry-after")), "{headers:?}");
    let message = format!("starting: {PENDING}; redirects and the API answer 503 starting until it is");
    let want = serde_json::json!({"error": {"code": "not_ready", "message": message, "details": {START_UP: {"status": "applying"}}}});
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("json"), want);

    let starting = serde_json::json!({"error": {"code": "starting", "message": crate::start_gate::STARTING_MESSAGE}});
    for request in [get("/abcdefg"), get("/v1/links/x"), get("/"), "POST /v1/links HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}".to_owned()] {
        let (status, headers, body) = split(&exchange(addr, &request).await);
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable", "{request}");
        assert!(headers.contains(&"retry-after: 1".to_owned()), "{request}: {headers:?}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("json"), starting, "{request}");
    }

    // The probes take GET and HEAD only, as on the real server (tests/http links_requests).
    for path in ["/healthz", "/readyz", "/metrics"] {
        for method in ["POST", "DELETE", "PUT"] {
            let request = format!("{method} {path} HTTP/1.1\r\nHost: sho.rt\r\nContent-Length: 0\r\n\r\n");
            let (status, headers, body) = split(&exchange(addr, &request).await);
            assert_eq!(status, "HTTP/1.1 405 Method Not Allowed", "{request}");
            assert!(headers.contains(&"allow: get,head".to_owned()), "{request}: {headers:?}");
            let message = format!("method {method} is not allowed on this route");
            let want = serde_json::json!({"error": {"code": "method_not_allowed", "message": message}});
            assert_eq!(serde_json::from_str::<serde_json::Value>(&body).expect("json"), want, "{request}");
        }
        let head = format!("HEAD {path} HTTP/1.1\r\nHost: sho.rt\r\n\r\n");
        let (status, _, body) = split(&exchange(addr, &head).await);
        let want = if path == "/readyz" { "HTTP/1.1 503 Service Unavailable" } else { "HTTP/1.1 200 OK" };
        assert_eq!((status.as_str(), body.as_str()), (want, ""), "{head}");
    }

    let (status, headers, body) = split(&exchange(addr, &get("/metrics")).await);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains(&"content-type: text/plain; version=0.0.4; charset=utf-8".to_owned()), "{headers:?}");
    assert!(body.lines().any(|l| l == "sluice_starting 1"), "{body}");

    // Handed back: the caller's own accept gets the next connection, unanswered by the task.
    let listener = early.finish().await.expect("listener");
    assert_eq!(listener.local_addr().expect("addr"), addr);
    let client = tokio::spawn(async move { exchange(addr, &get("/healthz")).await });
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.expect("accepted").expect("accept");
    let mut head = [0u8; 64];
    let n = conn.read(&mut head).await.expect("read");
    assert!(head[..n].starts_with(b"GET /healthz HTTP/1.1\r\n"));
    drop(conn);
    assert_eq!(client.await.expect("client"), "", "nothing but the caller answered");
}

#[tokio::test]
async fn a_start_given_up_closes_the_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let early = EarlyAnswers::spawn(listener);
    assert!(exchange(addr, &get("/healthz")).await.starts_with("HTTP/1.1 200 OK\r\n"));
    drop(early);
    let t0 = std::time::Instant::now();
    while TcpStream::connect(addr).await.is_ok() {
        assert!(t0.elapsed() < Duration::from_secs(10), "still listening after the drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
