//! Real-socket tests of the express lane ([`crate::http_server::express`]): plain redirect
//! requests get the bytes and click events hyper's path gives them, everything else (and
//! everything after it) is hyper's, and the deadlines and the graceful stop hold.

use super::*;
use crate::http_server::express;

/// A keep-alive client connection read one response at a time.
struct Client {
    s: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client { s: tokio::net::TcpStream::connect(addr).await.expect("connect"), buf: Vec::new() }
    }

    async fn send(&mut self, req: &str) {
        self.s.write_all(req.as_bytes()).await.expect("write");
    }

    /// The next response: its head and `content-length` bytes of body (none when it
    /// answers a `HEAD`, `to_head`). Panics when the server closes first or after 30 s.
    async fn response(&mut self, to_head: bool) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end + 4]).into_owned();
                let len: usize = header_of(&head, "content-length").map_or(0, |v| v.parse().expect("a length"));
                let total = end + 4 + if to_head { 0 } else { len };
                if self.buf.len() >= total {
                    return String::from_utf8(self.buf.drain(..total).collect()).expect("utf-8");
                }
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), self.s.read(&mut chunk)).await.expect("a response in time").expect("read");
            assert!(n > 0, "closed before a whole response: {:?}", String::from_utf8_lossy(&self.buf));
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// `resp` with the value of its `date` field replaced by `-`.
fn without_date(resp: &str) -> String {
    resp.split("\r\n").map(|l| if l.starts_with("date: ") { "date: -" } else { l }).collect::<Vec<_>>().join("\r\n")
}

/// Creates `body`'s link through the API of `addr`.
async fn create(http: &reqwest::Client, addr: SocketAddr, body: Value) {
    let r = http.post(format!("http://{addr}/v1/links")).json(&body).send().await.expect("post");
    assert_eq!(r.status(), 201, "{body}");
}

/// The requests of [`answers_and_clicks`] and whether each is a `HEAD`.
fn requests() -> Vec<(String, bool)> {
    let browser = "host: sho.rt.example\r\nuser-agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0\r\naccept: text/html\r\n\
                   accept-language: de-CH,de;q=0.9\r\nreferer: https://news.example/a\r\nx-forwarded-for: 203.0.113.9\r\n";
    let get = |target: &str, extra: &str| (format!("GET {target} HTTP/1.1\r\n{browser}{extra}\r\n"), false);
    let head = |target: &str, extra: &str| (format!("HEAD {target} HTTP/1.1\r\n{browser}{extra}\r\n"), true);
    vec![
        get("/Expr_1", ""),
        get("/Expr_1", ""),
        get("/Expr_1?utm=x&bad=%ZZ&sp=a+b", ""),
        head("/Expr_1", ""),
        get("/Perm-1", ""),
        head("/Perm-1", ""),
        get("/NoSuch1", ""),
        head("/NoSuch1", ""),
        get("/Off1", ""),
        get("/Expr_1", "sec-purpose: prefetch\r\n"),
        head("/Expr_1", "x-purpose: preview\r\n"),
        get("/Expr_1", "connection: keep-alive\r\n"),
        // hyper's from here on (with express on: handed over), then a redirect through hyper.
        get("/healthz", ""),
        get("/Expr_1", ""),
    ]
}

/// The answers (dates blanked) and click events (without event id and time) of
/// [`requests`], sent one after another on one connection to a server with `express`.
async fn answers_and_clicks(express: bool) -> (Vec<String>, Vec<(String, Option<String>, String, Option<String>, Option<String>, u64)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_with(dir.path(), ServerOptions { express, ..ServerOptions::default() }, vec![]).await;
    let http = reqwest::Client::new();
    create(&http, s.addr, json!({"long_url": "https://example.com/t?a=1#f", "custom_alias": "Expr_1"})).await;
    create(&http, s.addr, json!({"long_url": "https://example.com/p", "custom_alias": "Perm-1", "redirect_type": 301})).await;
    create(&http, s.addr, json!({"long_url": "https://example.com/o", "custom_alias": "Off1"})).await;
    let r = http.patch(format!("http://{}/v1/links/Off1", s.addr)).json(&json!({"enabled": false})).send().await.expect("patch");
    assert_eq!(r.status(), 200);
    let mut c = Client::connect(s.addr).await;
    let mut answers = Vec::new();
    for (req, to_head) in requests() {
        c.send(&req).await;
        answers.push(without_date(&c.response(to_head).await));
    }
    let mut clicks = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), s.events.recv()).await {
        clicks.push((e.code, e.ip_trunc, e.user_agent, e.referrer, e.accept_language, e.visitor_id));
    }
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
    (answers, clicks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_redirect_requests_get_the_bytes_and_clicks_of_hypers_path() {
    let (lane, lane_clicks) = answers_and_clicks(true).await;
    let (hyper, hyper_clicks) = answers_and_clicks(false).await;
    let found = "HTTP/1.1 302 Found\r\nlocation: https://example.com/t?a=1#f\r\ncache-control: private, max-age=0\r\ncontent-length: 0\r\ndate: -\r\n\r\n";
    let not_found = r#"{"error":{"code":"not_found","message":"no link with this code"}}"#;
    let json_head = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {len}\r\ndate: -\r\n\r\n")
    };
    assert_eq!(lane[0], found, "a store read");
    assert_eq!(lane[1], found, "a cache hit");
    assert_eq!(
        lane[2],
        "HTTP/1.1 302 Found\r\nlocation: https://example.com/t?a=1&utm=x&bad=%25ZZ&sp=a+b#f\r\ncache-control: private, max-age=0\r\ncontent-length: 0\r\ndate: -\r\n\r\n"
    );
    assert_eq!(lane[3], found, "HEAD");
    assert_eq!(
        lane[4],
        "HTTP/1.1 301 Moved Permanently\r\nlocation: https://example.com/p\r\ncache-control: public, max-age=3600\r\ncontent-length: 0\r\ndate: -\r\n\r\n"
    );
    assert_eq!(lane[6], format!("{}{not_found}", json_head("404 Not Found", not_found.len())));
    assert_eq!(lane[7], json_head("404 Not Found", not_found.len()), "HEAD: the length of the GET answer, no body");
    assert_eq!(lane[8], lane[6], "disabled");
    assert!(
        lane[9].starts_with("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n") && lane[9].contains("prefetch_refused"),
        "{}",
        lane[9]
    );
    assert!(lane[10].starts_with("HTTP/1.1 503 "), "{}", lane[10]);
    assert_eq!(lane[11], found);
    assert!(lane[12].starts_with("HTTP/1.1 200 OK\r\n"), "{}", lane[12]);
    assert_eq!(lane[13], found);
    assert_eq!(lane, hyper, "every answer byte for byte (dates aside)");
    // GETs 0, 1, 2, 11 and 13 are clicks (4, 6, 7, 8: HEAD, not found, disabled; 9, 10: refused prefetches).
    let ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0";
    let codes: Vec<&str> = lane_clicks.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(codes, ["Expr_1", "Expr_1", "Expr_1", "Perm-1", "Expr_1", "Expr_1"]);
    for c in &lane_clicks {
        assert_eq!(
            (c.1.as_deref(), c.2.as_str(), c.3.as_deref(), c.4.as_deref()),
            (Some("127.0.0.0"), ua, Some("https://news.example/a"), Some("de-CH,de;q=0.9"))
        );
    }
    assert_eq!(lane_clicks, hyper_clicks, "the same click events (visitor ids included)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lane_hands_the_first_other_request_and_what_follows_to_hyper() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    create(&reqwest::Client::new(), s.addr, json!({"long_url": "https://example.com/h", "custom_alias": "Hand1"})).await;
    let mut listener = crate::http_listener::JsonErrorListener::new(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    let addr = Listener::local_addr(&listener).expect("addr");
    let plain = "GET /Hand1 HTTP/1.1\r\nhost: x\r\n\r\n";
    let rest = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /Hand1 HTTP/1.1\r\nhost: x\r\n\r\n";
    let client = tokio::spawn(async move {
        let mut c = Client::connect(addr).await;
        c.send(plain).await;
        let first = c.response(false).await;
        c.send(&format!("{plain}{rest}")).await;
        let second = c.response(false).await;
        (first, second, c)
    });
    let (mut io, peer) = Listener::accept(&mut listener).await;
    let activity = ConnActivity::new();
    io.set_activity(activity.clone());
    let (_stop_tx, stop) = watch::channel(false);
    let fast = s.app.fast_path().expect("redirects served");
    let lane = express::Lane { fast, peer: peer.ip(), gate: s.app.start_gate(), activity: &activity, stop: &stop, header_read_timeout: None };
    let exit = tokio::time::timeout(Duration::from_secs(30), express::serve(&mut io, lane)).await.expect("the lane returns");
    let express::Exit::HandOff(prefix) = exit else { panic!("handed off") };
    let (first, second, _c) = client.await.expect("client");
    assert!(first.starts_with("HTTP/1.1 302 Found\r\nlocation: https://example.com/h\r\n"), "{first}");
    assert!(second.starts_with("HTTP/1.1 302 Found\r\n"), "the pipelined plain request before the other one: {second}");
    let prefix = std::str::from_utf8(&prefix).expect("utf-8");
    assert!(prefix.starts_with("GET /healthz ") && rest.starts_with(prefix), "the bytes not answered, from the other request on: {prefix:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_in_the_lane_close_at_the_header_read_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ServerOptions { header_read_timeout: Some(Duration::from_secs(1)), ..ServerOptions::default() };
    let s = start_with(dir.path(), opts, vec![]).await;
    create(&reqwest::Client::new(), s.addr, json!({"long_url": "https://example.com/d", "custom_alias": "Dead1"})).await;
    let mut idle = Client::connect(s.addr).await;
    idle.send("GET /Dead1 HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(idle.response(false).await.starts_with("HTTP/1.1 302 "));
    let answered = std::time::Instant::now();
    assert!(closed_by_server(&mut idle.s).await.is_empty(), "closed without another answer");
    assert!(answered.elapsed() >= Duration::from_millis(900), "not before the deadline: {:?}", answered.elapsed());
    let mut half = Client::connect(s.addr).await;
    half.send("GET /Dead1 HTTP/1.1\r\nhost: x\r\nuser-agent: slo").await;
    assert!(closed_by_server(&mut half.s).await.is_empty(), "a half-sent head is cut without an answer");
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_graceful_stop_idle_lane_connections_close_and_a_head_arriving_is_answered_last() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ServerOptions { header_read_timeout: None, shutdown_timeout: Duration::from_secs(3600), ..ServerOptions::default() };
    let s = start_with(dir.path(), opts, vec![]).await;
    create(&reqwest::Client::new(), s.addr, json!({"long_url": "https://example.com/s", "custom_alias": "Stop1"})).await;
    let mut idle = Client::connect(s.addr).await;
    idle.send("GET /Stop1 HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(idle.response(false).await.starts_with("HTTP/1.1 302 "));
    let mut arriving = Client::connect(s.addr).await;
    arriving.send("GET /Stop1 HTTP/1.1\r\nhost: x\r\n").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.stop.send(()).expect("server running");
    assert!(closed_by_server(&mut idle.s).await.is_empty(), "the idle connection closes at the stop");
    arriving.send("\r\n").await;
    let last = arriving.response(false).await;
    assert!(last.starts_with("HTTP/1.1 302 ") && header_of(&last, "connection") == Some("close"), "{last}");
    assert!(closed_by_server(&mut arriving.s).await.is_empty());
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("the stop does not wait for its deadline").expect("server task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_before_a_half_close_are_all_answered() {
    for express in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = start_with(dir.path(), ServerOptions { express, ..ServerOptions::default() }, vec![]).await;
        create(&reqwest::Client::new(), s.addr, json!({"long_url": "https://example.com/h", "custom_alias": "Half1"})).await;
        let redirect = "GET /Half1 HTTP/1.1\r\nhost: x\r\n\r\n";
        let health = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
        // Plain redirects only (the lane), hyper's from the first request, and a mix.
        for (i, pipeline) in [redirect.repeat(3), format!("{health}{health}{redirect}"), format!("{redirect}{health}{redirect}")].iter().enumerate() {
            // The race this covers (the end of the stream read before the answers went out)
            // shows within a few connections.
            for round in 0..8 {
                let mut c = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
                c.write_all(pipeline.as_bytes()).await.expect("write");
                c.shutdown().await.expect("half-close");
                let got = String::from_utf8(closed_by_server(&mut c).await).expect("utf-8");
                assert_eq!(got.matches("HTTP/1.1 ").count(), 3, "express {express}, pipeline {i}, round {round}: {got}");
            }
        }
        s.stop.send(()).expect("server running");
        tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_graceful_stop_a_head_begun_in_the_read_of_the_previous_request_is_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ServerOptions { header_read_timeout: None, shutdown_timeout: Duration::from_secs(3600), ..ServerOptions::default() };
    let s = start_with(dir.path(), opts, vec![]).await;
    create(&reqwest::Client::new(), s.addr, json!({"long_url": "https://example.com/b", "custom_alias": "Begun1"})).await;
    let mut c = Client::connect(s.addr).await;
    c.send("GET /Begun1?n=1 HTTP/1.1\r\nhost: x\r\n\r\nGET /Begun1?n=2 HTTP/1.1\r\nho").await;
    assert!(c.response(false).await.contains("location: https://example.com/b?n=1\r\n"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.stop.send(()).expect("server running");
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send("st: x\r\n\r\n").await;
    let last = c.response(false).await;
    assert!(last.contains("location: https://example.com/b?n=2\r\n") && header_of(&last, "connection") == Some("close"), "{last}");
    assert!(closed_by_server(&mut c.s).await.is_empty());
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("the stop does not wait for its deadline").expect("server task");
}

/// The edge requests of [`edges_get_the_same_bytes_and_clicks_on_both_paths`], each on a new
/// connection, and the status each gets.
fn edge_requests() -> Vec<(String, u16)> {
    let get = |fields: &str| format!("GET /Edge1 HTTP/1.1\r\n{fields}user-agent: UA/1\r\n\r\n");
    let host = |h: &str| get(&format!("host: {h}\r\n"));
    let from = |field: &str| get(&format!("host: sho.rt.example\r\n{field}\r\n"));
    let chunked =
        |body: &str| format!("GET /Edge1 HTTP/1.1\r\nhost: x\r\nuser-agent: UA/1\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    vec![
        (host("sho.rt.example:0080"), 302),
        (host("sho.rt.example:000080"), 302),
        (host("[::1]:0000000443"), 302),
        (host("sho.rt.example:0065536"), 400),
        (host("sho.rt.example:8o"), 400),
        (from(r#"forwarded: for="[2001:db8::\1]:4711""#), 302),
        (from(r#"forwarded: for="192.0.2.\61";proto=http"#), 302),
        (from("forwarded: for=[2001:db8::2]"), 302),
        (from(r#"forwarded: for="[fe80::1%eth0]""#), 302),
        (from("x-forwarded-for: fe80::1%eth0"), 302),
        (from("forwarded: for=198.51.100.7, proto=https"), 302),
        (from("forwarded: for=198.51.100.8, for=unknown, for=127.0.0.1"), 302),
        (chunked(&"z".repeat(2049)), 413),
        (chunked("GET /NoSuch1 HTTP/1.1\r\nhost: x\r\n\r\n"), 302),
    ]
}

/// Host ports with leading zeros, RFC 7239 nodes (quoted-pairs, unquoted brackets, zone ids,
/// an element without `for`) from a trusted proxy, and chunked bodies on a redirect: the
/// express lane and hyper's path give the same bytes and the same clicks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_get_the_same_bytes_and_clicks_on_both_paths() {
    let mut runs = Vec::new();
    for express in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = ServerOptions { express, max_body_bytes: 2048, ..ServerOptions::default() };
        let tweak = |c: &mut Config| {
            c.server.trusted_proxies = vec!["127.0.0.1/32".into()];
            c.server.max_body_bytes = 2048;
        };
        let mut s = start_full(dir.path(), opts, vec![], tweak, false).await;
        create(&reqwest::Client::new(), s.addr, json!({"long_url": "https://example.com/e", "custom_alias": "Edge1"})).await;
        let mut answers = Vec::new();
        for (req, status) in edge_requests() {
            let mut c = Client::connect(s.addr).await;
            c.send(&req).await;
            let answer = without_date(&c.response(false).await);
            assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "express {express}: {req:?}: {answer}");
            answers.push(answer);
        }
        let mut clicks = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), s.events.recv()).await {
            clicks.push((e.code, e.ip_trunc, e.visitor_id));
        }
        s.stop.send(()).expect("server running");
        tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
        runs.push((answers, clicks));
    }
    let (lane, lane_clicks) = &runs[0];
    let (hyper, hyper_clicks) = &runs[1];
    assert_eq!(lane[0], "HTTP/1.1 302 Found\r\nlocation: https://example.com/e\r\ncache-control: private, max-age=0\r\ncontent-length: 0\r\ndate: -\r\n\r\n");
    assert!(lane[3].contains(r#""code":"invalid_host""#), "{}", lane[3]);
    assert!(
        lane[12].ends_with(r#"{"error":{"code":"payload_too_large","details":{"max_body_bytes":2048},"message":"request body is larger than 2048 bytes"}}"#),
        "{}",
        lane[12]
    );
    assert_eq!(lane, hyper, "every answer byte for byte (dates aside)");
    let nets: Vec<Option<&str>> = lane_clicks.iter().map(|c| c.1.as_deref()).collect();
    let local = Some("127.0.0.0");
    // Requests 0-2 and 5-11 and 13 are clicks: 3, 4 are refused hosts, 12 a body over the limit.
    assert_eq!(nets, [local, local, local, Some("2001:db8::"), Some("192.0.2.0"), local, local, local, local, local, local]);
    assert!(lane_clicks.iter().all(|c| c.0 == "Edge1"));
    assert_eq!(lane_clicks, hyper_clicks, "the same click events (visitor ids included)");
}
