//! Real-socket tests of [`super::serve`].

use std::time::Duration;

use serde_json::{Value, json};
use sluice_redirect::ChannelClickSink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::{Config, DEFAULT_TOML};
use crate::serve::{StackExtras, build_stack_app};
use axum::body::Body;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Test/1";

/// A test server: its address, the stop signal, the server task and the click events.
struct Started {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    events: tokio::sync::mpsc::Receiver<sluice_schemas::ClickEvent>,
    app: App,
}

/// Serves a whole stack (SQLite store in `dir`, `api_routes` served with the API) with
/// [`serve_with`] and `opts`.
async fn start_with(dir: &std::path::Path, opts: ServerOptions, api_routes: Vec<Router>) -> Started {
    start_full(dir, opts, api_routes, |_| {}, false).await
}

/// [`start_with`] with the configuration changed by `tweak` and, with `events_log`,
/// `POST /v1/events` served (appending to a click log in `dir`).
async fn start_full(dir: &std::path::Path, opts: ServerOptions, api_routes: Vec<Router>, tweak: impl FnOnce(&mut Config), events_log: bool) -> Started {
    let mut cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    cfg.server.data_dir = dir.to_path_buf();
    cfg.server.base_url = Some("https://sho.rt.example".into());
    tweak(&mut cfg);
    cfg.validate().expect("valid config");
    let store = Arc::new(sluice_connectors::SqliteLinkStore::open_dir(dir).await.expect("store"));
    let (sink, events) = ChannelClickSink::new(1000);
    let events_log = events_log.then(|| sluice_connectors::click_log::ClickLog::open(dir).expect("click log"));
    let extras = StackExtras { api_routes, events_log, ..StackExtras::default() };
    let (_stack, app) = build_stack_app(&cfg, store, Arc::new(sink), [7; 32], extras).expect("stack");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with(listener, app.clone(), opts, async move {
        let _ = stopped.await;
    }));
    // Every request but the health routes is 503 `starting` until the start-up work is done.
    tokio::time::timeout(Duration::from_secs(30), app.start_gate().wait_open()).await.expect("the start-up work is done in time");
    Started { addr, stop, server, events, app }
}

/// [`start_with`] the default options (the same as [`serve`]'s) and no extra routes;
/// returns its address, the stop signal, the server task and the click events.
async fn start(
    dir: &std::path::Path,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>, tokio::sync::mpsc::Receiver<sluice_schemas::ClickEvent>) {
    let s = start_with(dir, ServerOptions::default(), vec![]).await;
    (s.addr, s.stop, s.server, s.events)
}

async fn next_event(events: &mut tokio::sync::mpsc::Receiver<sluice_schemas::ClickEvent>) -> sluice_schemas::ClickEvent {
    tokio::time::timeout(Duration::from_secs(30), events.recv()).await.expect("a click event in time").expect("sink open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_take_the_fast_path_with_the_socket_peer_and_other_requests_the_router() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (addr, stop, server, mut events) = start(dir.path()).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");

    // The API (router, ConnectInfo) creates a link.
    let created = http.post(format!("{base}/v1/links")).json(&json!({"long_url": "https://example.com/t?a=1"})).send().await.expect("post");
    assert_eq!(created.status(), 201);
    let code = created.json::<Value>().await.expect("json")["code"].as_str().expect("code").to_owned();

    // First GET: L1 miss (store read); second: L1 hit (fills the front); third: answered
    // from the front without a boxed future. All alike, each a click from the peer.
    for i in 0..3 {
        let r = http.get(format!("{base}/{code}?utm=x{i}")).header("user-agent", UA).send().await.expect("get");
        assert_eq!(r.status(), 302, "request {i}");
        assert_eq!(r.headers()["location"], format!("https://example.com/t?a=1&utm=x{i}").as_str(), "request {i}");
        assert_eq!(r.headers()["cache-control"], "private, max-age=0", "request {i}");
        let e = next_event(&mut events).await;
        assert_eq!((e.code.as_str(), e.ip_trunc.as_deref(), e.user_agent.as_str()), (code.as_str(), Some("127.0.0.0"), UA), "request {i}");
    }

    // HEAD: same answer, no click (the next event is the GET after it).
    let r = http.head(format!("{base}/{code}")).header("user-agent", UA).send().await.expect("head");
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().expect("ascii")), (302, "https://example.com/t?a=1"));
    http.get(format!("{base}/{code}")).header("user-agent", "after-head").send().await.expect("get");
    assert_eq!(next_event(&mut events).await.user_agent, "after-head");

    // Unknown code and non-code paths: 404 JSON; reserved words and the API: the router.
    let r = http.get(format!("{base}/NoSuchCode")).send().await.expect("get");
    assert_eq!((r.status().as_u16(), r.headers()["content-type"].to_str().expect("ascii")), (404, "application/json"));
    assert_eq!(r.json::<Value>().await.expect("json")["error"]["code"], "not_found");
    assert_eq!(http.get(format!("{base}/healthz")).send().await.expect("get").status(), 200);
    assert_eq!(http.get(format!("{base}/v1/links/{code}")).send().await.expect("get").status(), 200);
    let r = http.post(format!("{base}/{code}")).send().await.expect("post");
    assert_eq!(r.status(), 405, "only GET/HEAD take the fast path; the router answers the rest");

    // Read-after-write through the fast path.
    assert_eq!(http.delete(format!("{base}/v1/links/{code}")).send().await.expect("delete").status(), 204);
    assert_eq!(http.get(format!("{base}/{code}")).send().await.expect("get").status(), 404);

    // hyper's own 414 still gets the JSON body (crate::http_listener).
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let long = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(crate::http_listener::MAX_URI_BYTES + 10));
    c.write_all(long.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut out)).await.expect("answered and closed").expect("read");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(out.starts_with("HTTP/1.1 414 ") && out.contains("\"uri_too_long\""), "{out}");

    // Graceful stop with the client's idle keep-alive connections still open.
    stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), server).await.expect("stops in time").expect("server task");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer listening");
}

/// Writes `request` on a new connection to `addr` (while reading, so that a server that
/// answers before it has read everything is heard) and returns everything the server sent
/// until it closed (30 s deadline).
async fn raw(addr: SocketAddr, request: Vec<u8>) -> String {
    let c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut r, mut w) = c.into_split();
    let writer = tokio::spawn(async move {
        // The server may close before reading a too-large head to its end.
        let _ = w.write_all(&request).await;
        w
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut out)).await.expect("the server answers and closes");
    drop(writer.await);
    String::from_utf8(out).expect("utf-8")
}

/// Status code and JSON body of a raw response (one response, `connection: close`).
fn status_and_json(resp: &str) -> (u16, Value) {
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or_else(|| panic!("a response head: {resp:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a status line: {head}"));
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A header line of a raw response, by lower-case name.
fn header_of<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split_once("\r\n\r\n")?.0;
    head.split("\r\n").skip(1).find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

/// Reads from `c` until the peer closes it (EOF or reset); panics after 30 s.
async fn closed_by_server(c: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_is_cut_at_the_header_read_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ServerOptions { header_read_timeout: Some(Duration::from_secs(1)), ..ServerOptions::default() };
    let s = start_with(dir.path(), opts, vec![]).await;

    // A whole request in time is answered, and the connection stays open for the next.
    let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf)).await.expect("answered").expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "), "{:?}", String::from_utf8_lossy(&buf[..n]));

    // Half a request: without a header read deadline the server would wait forever (and the
    // 30 s guard in `closed_by_server` would fail the test).
    let mut half = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nuser-agent: slow").await.expect("write");
    let got = closed_by_server(&mut half).await;
    assert!(got.is_empty() || got.starts_with(b"HTTP/1.1 408 "), "closed without an answer: {:?}", String::from_utf8_lossy(&got));
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
}

/// An endless response body (an SSE-like stream that never ends by itself).
async fn endless() -> Response {
    let chunks = futures::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Some((Ok::<_, Infallible>(axum::body::Bytes::from_static(b"data: tick\n\n")), ()))
    });
    Response::new(Body::from_stream(chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graceful_stop_drops_connections_still_open_at_its_deadline() {
    let routes = || vec![Router::new().route("/v1/test/endless", axum::routing::get(endless))];
    let half_request = b"GET /healthz HTTP/1.1\r\nhost: x\r\nuser-agent: slo";
    let no_header_deadline = |shutdown_timeout| ServerOptions { header_read_timeout: None, shutdown_timeout, ..ServerOptions::default() };

    // Control: with a one-hour deadline a half-sent request holds the graceful stop.
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), no_header_deadline(Duration::from_secs(3600)), routes()).await;
    let mut half = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    half.write_all(half_request).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.stop.send(()).expect("server running");
    let mut server = s.server;
    assert!(tokio::time::timeout(Duration::from_secs(2), &mut server).await.is_err(), "the control server waits for the half request");
    server.abort();
    drop(half);

    // A 1 s deadline: a half-sent request and an endless response are dropped, the server
    // returns.
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), no_header_deadline(Duration::from_secs(1)), routes()).await;
    let mut half = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    half.write_all(half_request).await.expect("write");
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    stream.write_all(b"GET /v1/test/endless HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await.expect("response head").expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "), "{:?}", String::from_utf8_lossy(&buf[..n]));
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("the server stops after its deadline").expect("server task");
    closed_by_server(&mut half).await;
    closed_by_server(&mut stream).await;
    assert!(tokio::net::TcpStream::connect(s.addr).await.is_err(), "no longer listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http11_request_needs_exactly_one_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let want = json!({"error": {"code": "invalid_host", "message": "an HTTP/1.1 request must carry exactly one Host header (RFC 9112 section 3.2)"}});
    for (what, req) in [
        ("router, no Host", "GET /healthz HTTP/1.1\r\nconnection: close\r\n\r\n"),
        ("router, two Hosts", "GET /healthz HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n"),
        ("fast path, no Host", "GET /SomeCode HTTP/1.1\r\nconnection: close\r\n\r\n"),
    ] {
        let resp = raw(s.addr, req.as_bytes().to_vec()).await;
        assert_eq!(status_and_json(&resp), (400, want.clone()), "{what}: {resp}");
        assert_eq!(header_of(&resp, "content-type"), Some("application/json"), "{what}");
    }
    // HTTP/1.0 may omit Host; HTTP/1.1 with one Host is served.
    let resp = raw(s.addr, b"GET /healthz HTTP/1.0\r\n\r\n".to_vec()).await;
    assert_eq!(status_and_json(&resp).0, 200, "{resp}");
    let resp = raw(s.addr, b"GET /NoSuchCode HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec()).await;
    assert_eq!(status_and_json(&resp).1["error"]["code"], "not_found", "{resp}");
    assert!(s.events.try_recv().is_err(), "no clicks");
}

/// A request for `/healthz` with `fields` header fields in all (`host` included), each
/// field's value `value_len` bytes long.
fn request_with_fields(fields: usize, value_len: usize) -> Vec<u8> {
    let mut req = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    let v = "v".repeat(value_len);
    for i in 2..fields {
        req.push_str(&format!("x-f{i}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_431_names_the_limit_hit_and_the_byte_limit_holds_for_one_big_header() {
    use crate::http_listener::{MAX_HEAD_BYTES, MAX_HEADER_FIELDS};
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), ServerOptions::default(), vec![]).await;

    // Exactly the field limit: served. One more: 431 too_many_headers.
    let resp = raw(s.addr, request_with_fields(MAX_HEADER_FIELDS, 8)).await;
    assert_eq!(status_and_json(&resp).0, 200, "{}", &resp[..resp.len().min(300)]);
    let resp = raw(s.addr, request_with_fields(MAX_HEADER_FIELDS + 1, 8)).await;
    let want = json!({"error": {"code": "too_many_headers", "message": "the request has more than 100 header fields", "details": {"max_fields": 100}}});
    assert_eq!(status_and_json(&resp), (431, want), "{resp}");

    // One header field of 500,000 bytes: over the advertised byte limit, 431.
    let big = |len: usize| format!("GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {}\r\n\r\n", "b".repeat(len)).into_bytes();
    let resp = raw(s.addr, big(500_000)).await;
    let want = json!({"error": {"code": "headers_too_large", "message": "the request head is larger than 417792 bytes", "details": {"max_bytes": 417792}}});
    assert_eq!(status_and_json(&resp), (431, want), "{resp}");
    assert_eq!(MAX_HEAD_BYTES, 417_792);
    // Just over the limit in total (the head is MAX_HEAD_BYTES + 1 bytes): 431; just under: served.
    let head_len = |value_len: usize| big(value_len).len();
    let at_limit = MAX_HEAD_BYTES - head_len(0);
    assert_eq!(head_len(at_limit + 1), MAX_HEAD_BYTES + 1);
    assert_eq!(status_and_json(&raw(s.addr, big(at_limit + 1)).await).0, 431);
    let resp = raw(s.addr, big(at_limit - 1000)).await;
    assert_eq!(status_and_json(&resp).0, 200, "{}", &resp[..resp.len().min(300)]);
    s.stop.send(()).expect("server running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_encoded_unreserved_characters_in_a_code_are_normalized() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let created = http
        .post(format!("http://{}/v1/links", s.addr))
        .json(&json!({"long_url": "https://example.com/t", "custom_alias": "Pa-b_c"}))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), 201);
    let get = |path: &str, method: &str| format!("{method} {path} HTTP/1.1\r\nhost: x\r\nuser-agent: {UA}\r\nconnection: close\r\n\r\n").into_bytes();

    // Twice each (the second from the cache's front), through the server's dispatch.
    for path in ["/%50a-b_c", "/%50%61%2d%62%5F%63", "/%50a-b_c", "/Pa%2Db%5fc"] {
        let resp = raw(s.addr, get(path, "GET")).await;
        assert_eq!((status_and_json(&resp).0, header_of(&resp, "location")), (302, Some("https://example.com/t")), "{path}: {resp}");
        assert_eq!(next_event(&mut s.events).await.code, "Pa-b_c", "{path}");
    }
    let resp = raw(s.addr, get("/%50a-b_c?utm=1", "GET")).await;
    assert_eq!(header_of(&resp, "location"), Some("https://example.com/t?utm=1"), "{resp}");
    assert_eq!(next_event(&mut s.events).await.code, "Pa-b_c");
    let resp = raw(s.addr, get("/%50a-b_c", "HEAD")).await;
    assert_eq!((status_and_json(&resp).0, header_of(&resp, "location")), (302, Some("https://example.com/t")), "{resp}");
    // A reserved word spelled with escapes is the reserved route.
    assert_eq!(status_and_json(&raw(s.addr, get("/%68ealthz", "GET")).await).0, 200);

    // Escaped reserved, non-ASCII or control bytes stay escaped: not a code, 404; a
    // malformed escape: 400 invalid_path.
    for path in ["/Pa-b_c%2F", "/%2FPa-b_c", "/Pa%20b", "/%C3%BC", "/%00", "/Pa-b_c%7E"] {
        let resp = raw(s.addr, get(path, "GET")).await;
        assert_eq!(status_and_json(&resp), (404, json!({"error": {"code": "not_found", "message": "no link with this code"}})), "{path}: {resp}");
    }
    for path in ["/Pa-b_c%", "/%5", "/%zz", "/Pa-b_c%4g"] {
        let resp = raw(s.addr, get(path, "GET")).await;
        let (status, body) = status_and_json(&resp);
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_path")), "{path}: {resp}");
    }
    assert!(s.events.try_recv().is_err(), "only the redirects above were clicks");

    // The same through the router alone (`App::into_router`: the `/{code}` handler
    // normalizes the code itself).
    let router = s.app.clone().into_router();
    for (path, status) in [("/%50a-b_c", 302), ("/%2FPa-b_c", 404), ("/%zz", 400)] {
        let req = axum::http::Request::get(path).header("host", "x").body(Body::empty()).expect("request");
        let resp = tower::ServiceExt::oneshot(router.clone(), req).await.expect("infallible");
        assert_eq!(resp.status().as_u16(), status, "{path}");
    }
    assert_eq!(next_event(&mut s.events).await.code, "Pa-b_c");
    s.stop.send(()).expect("server running");
}

mod bodies;
mod edges;
mod express;
mod framing;
mod gate;
mod head;
mod limits;
mod stop;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_are_not_paths_are_answered_by_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let code = |status: u16, code: &str, message: &str| (status, json!({"error": {"code": code, "message": message}}));
    let connect = code(405, "method_not_allowed", target::CONNECT_MESSAGE);
    for (what, req, want) in [
        ("CONNECT authority-form", "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n", connect.clone()),
        ("CONNECT to a path", "CONNECT /SomeCode HTTP/1.1\r\nhost: x\r\n\r\n", connect),
        ("GET authority-form", "GET example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n", code(400, "invalid_path", target::AUTHORITY_FORM_MESSAGE)),
        ("GET *", "GET * HTTP/1.1\r\nhost: x\r\n\r\n", code(400, "invalid_path", target::ASTERISK_FORM_MESSAGE)),
        ("GET a bare name", "GET SomeCode HTTP/1.1\r\nhost: x\r\n\r\n", code(400, "invalid_path", target::AUTHORITY_FORM_MESSAGE)),
        ("GET ftp://", "GET ftp://x/SomeCode HTTP/1.1\r\nhost: x\r\n\r\n", code(400, "invalid_path", target::ABSOLUTE_SCHEME_MESSAGE)),
        ("GET userinfo", "GET http://u:p@evil/SomeCode HTTP/1.1\r\nhost: x\r\n\r\n", code(400, "invalid_host", target::ABSOLUTE_AUTHORITY_MESSAGE)),
        ("GET bad port", "GET http://h:99999/SomeCode HTTP/1.1\r\nhost: x\r\n\r\n", code(400, "invalid_host", target::ABSOLUTE_AUTHORITY_MESSAGE)),
    ] {
        // No `connection: close` sent: the server closes the connection itself.
        let resp = raw(s.addr, req.as_bytes().to_vec()).await;
        assert_eq!(status_and_json(&resp), want, "{what}: {resp}");
        assert_eq!(header_of(&resp, "connection"), Some("close"), "{what}");
        if want.0 == 405 {
            assert_eq!(header_of(&resp, "allow"), Some(target::SERVER_METHODS), "{what}");
        }
    }
    let resp = raw(s.addr, b"OPTIONS * HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec()).await;
    assert_eq!(resp.split("\r\n").next(), Some("HTTP/1.1 200 OK"), "{resp}");
    assert_eq!((header_of(&resp, "allow"), header_of(&resp, "content-length")), (Some(target::SERVER_METHODS), Some("0")), "{resp}");
    // An absolute-form target is a path like any other (RFC 9112 section 3.2.2).
    let resp = raw(s.addr, b"GET http://x/healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec()).await;
    assert_eq!(status_and_json(&resp).0, 200, "{resp}");
    assert!(s.events.try_recv().is_err(), "no clicks");
}
