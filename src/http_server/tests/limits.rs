//! Real-socket tests of the connection limits ([`super::limits`]): idle connections make
//! room for new ones, busy ones never do, and a client over its limit cannot lock others
//! out.

use super::*;

/// Options with the connection limits `max_connections` (total) and `max_per_client`.
fn limited(max_connections: usize, max_per_client: usize) -> ServerOptions {
    ServerOptions { limits: ConnectionLimits { max_connections, max_per_client, exempt: vec![] }, ..ServerOptions::default() }
}

/// A connection to `addr` from the loopback address `from` (Linux routes all of
/// 127.0.0.0/8 to the loopback interface).
async fn connect_from(from: std::net::Ipv4Addr, addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from.into(), 0)).expect("bind");
    socket.connect(addr).await.expect("connect")
}

/// Sends `GET /healthz` on `c` and returns the status of the answer (30 s deadline).
async fn healthz(c: &mut tokio::net::TcpStream) -> u16 {
    c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf)).await.expect("answered in time").expect("read");
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a status line: {head:?}"))
}

/// Whether the server closed `c` within `wait` (EOF or reset; bytes before it ignored).
async fn closed_within(c: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(wait, async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Lets the server accept what is in its listen queue.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_limit_closes_its_own_least_recently_active_idle_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), limited(0, 2), vec![]).await;
    let mut first = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    settle().await;
    let mut second = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    settle().await;
    // Another client is not counted with them.
    let mut other = connect_from([127, 0, 0, 2].into(), s.addr).await;
    settle().await;
    let mut third = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    assert_eq!(healthz(&mut third).await, 200, "the new connection is served");
    assert!(closed_within(&mut first, Duration::from_secs(10)).await, "the least recently active idle connection made room");
    settle().await;
    assert_eq!(healthz(&mut second).await, 200, "the other idle connection stays");
    assert_eq!(healthz(&mut other).await, 200, "another client's connection stays");
    // `second` just answered; `third` too, earlier: a fourth closes `third`.
    settle().await;
    let mut fourth = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    assert_eq!(healthz(&mut fourth).await, 200);
    assert!(closed_within(&mut third, Duration::from_secs(10)).await, "third was the least recently active");
    assert_eq!(healthz(&mut second).await, 200);
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_still_arriving_is_idle_and_makes_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), limited(0, 1), vec![]).await;
    // Slowloris: half a head, the rest never sent (the header deadline is 30 s).
    let mut slow = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nuser-agent: slo").await.expect("write");
    settle().await;
    let mut next = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    assert_eq!(healthz(&mut next).await, 200);
    assert!(closed_within(&mut slow, Duration::from_secs(10)).await, "the half-sent head made room");
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
}

/// A handler that takes 3 s.
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(3)).await;
    "slow"
}

/// An 8 MiB answer.
async fn big() -> Vec<u8> {
    vec![b'x'; 8 << 20]
}

/// An SSE stream that never ends by itself.
async fn events() -> Response {
    let mut resp = endless().await;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp
}

fn test_routes() -> Vec<Router> {
    vec![
        Router::new()
            .route("/v1/test/slow", axum::routing::get(slow))
            .route("/v1/test/big", axum::routing::get(big))
            .route("/v1/test/events", axum::routing::get(events))
            .route("/v1/test/upload", axum::routing::post(|body: String| async move { body.len().to_string() })),
    ]
}

/// Whether a connection to `addr` is refused: closed without an answer.
async fn refused(addr: SocketAddr) -> bool {
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect (the kernel completes the handshake)");
    let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut got)).await.expect("closed in time");
    closed.is_err() || got.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_with_an_answer_in_flight_is_never_closed_and_the_newcomer_is_refused() {
    let metrics = crate::telemetry::prometheus();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), limited(0, 1), test_routes()).await;
    let mut busy = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    busy.write_all(b"GET /v1/test/slow HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    settle().await;
    assert!(refused(s.addr).await, "the handler runs: nothing can make room");
    // Another client is served.
    let mut other = connect_from([127, 0, 0, 3].into(), s.addr).await;
    assert_eq!(healthz(&mut other).await, 200);
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), busy.read(&mut buf)).await.expect("answered").expect("read");
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with("HTTP/1.1 200 ") && got.ends_with("slow"), "{got:?}");
    let text = metrics.render();
    assert!(text.contains("sluice_http_connections_refused_total{limit=\"client\"} 1\n"), "{text}");
    assert!(text.contains("sluice_http_connections_refused_total{limit=\"server\"} 0\n"), "every series from the start: {text}");
    assert!(text.contains("sluice_http_connections 2\n"), "{text}");
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
}

/// A large answer to a client that does not read it yet: never cut to make room, and it
/// arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_still_going_out_to_a_slow_reader_is_never_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), limited(0, 1), test_routes()).await;
    let mut reader = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    reader.write_all(b"GET /v1/test/big HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    // The socket buffers fill; the rest waits in the server.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(refused(s.addr).await, "the answer is in flight: nothing can make room");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let whole = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = reader.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n")
                && got.len() - (i + 4) >= 8 << 20
            {
                return (i + 4, got.len());
            }
        }
    })
    .await
    .expect("all of it in time");
    assert_eq!(whole.1 - whole.0, 8 << 20, "exactly the body");
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
}

/// SSE streams do not lock others out: one makes room when nothing idle is left (its
/// client reconnects), after the idle connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_makes_room_once_no_idle_connection_is_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), limited(0, 2), test_routes()).await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    stream.write_all(b"GET /v1/test/events HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await.expect("head").expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "), "{:?}", String::from_utf8_lossy(&buf[..n]));
    let mut idle = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    settle().await;
    let mut second = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    assert_eq!(healthz(&mut second).await, 200);
    assert!(closed_within(&mut idle, Duration::from_secs(10)).await, "the idle connection goes first");
    second.write_all(b"GET /v1/test/slow HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    settle().await;
    let mut third = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    assert_eq!(healthz(&mut third).await, 200, "the stream made room");
    assert!(closed_within(&mut stream, Duration::from_secs(10)).await, "the stream was closed");
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
}

/// A request whose body stalls can be interrupted (it would otherwise hold its slot for
/// the whole body read deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_makes_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), limited(0, 1), test_routes()).await;
    let mut upload = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    upload.write_all(b"POST /v1/test/upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n1234567").await.expect("write");
    settle().await;
    let mut next = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    assert_eq!(healthz(&mut next).await, 200);
    assert!(closed_within(&mut upload, Duration::from_secs(10)).await, "the stalled upload made room");
    // A whole upload on the new connection is answered.
    next.write_all(b"POST /v1/test/upload HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello").await.expect("write");
    let n = tokio::time::timeout(Duration::from_secs(30), next.read(&mut [0u8; 4096])).await.expect("answered").expect("read");
    assert!(n > 0);
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
}

/// The outage this guards against: idle connections from many addresses fill the server;
/// new clients are served at once, the least recently active idle connections close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_many_clients_cannot_lock_new_clients_out() {
    let metrics = crate::telemetry::prometheus();
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), limited(40, 0), vec![]).await;
    let mut idle = Vec::new();
    for i in 0..40u8 {
        idle.push(connect_from([127, 0, 1, 1 + i].into(), s.addr).await);
    }
    settle().await;
    let mut served = Vec::new();
    for i in 0..10u8 {
        let mut c = connect_from([127, 0, 2, 1 + i].into(), s.addr).await;
        assert_eq!(healthz(&mut c).await, 200, "new client {i}");
        served.push(c);
    }
    // Each new client closed the least recently active idle connection: the ten oldest.
    for (i, c) in idle.iter_mut().enumerate().take(10) {
        assert!(closed_within(c, Duration::from_secs(10)).await, "idle connection {i} made room");
    }
    for (i, c) in idle.iter_mut().enumerate().skip(10) {
        assert_eq!(healthz(c).await, 200, "idle connection {i} is still open");
    }
    let text = metrics.render();
    assert!(text.contains("sluice_http_connections_closed_for_room_total{limit=\"server\"} 10\n"), "{text}");
    assert!(text.contains("sluice_http_connections 40\n"), "{text}");
    s.stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(30), s.server).await.expect("stops").expect("server task");
}

#[test]
fn server_options_take_the_limits_and_exempt_the_trusted_proxies() {
    let mut cfg: Config = toml::from_str(DEFAULT_TOML).expect("defaults");
    let opts = ServerOptions::from_config(&cfg).expect("options");
    assert_eq!(opts.limits, ConnectionLimits { max_connections: 0, max_per_client: 1000, exempt: vec![] });
    assert_eq!(opts, ServerOptions::default());
    cfg.server.max_connections = 5000;
    cfg.server.max_connections_per_client = 0;
    cfg.server.trusted_proxies = vec!["10.0.0.0/8".into(), "192.0.2.1".into()];
    let opts = ServerOptions::from_config(&cfg).expect("options");
    let exempt = vec!["10.0.0.0/8".parse().expect("net"), "192.0.2.1/32".parse().expect("net")];
    assert_eq!(opts.limits, ConnectionLimits { max_connections: 5000, max_per_client: 0, exempt });
    let text = DEFAULT_TOML.replace("max-connections-per-client = 1000", "max-connections-per-client = \"many\"");
    assert!(toml::from_str::<Config>(&text).is_err());
}
