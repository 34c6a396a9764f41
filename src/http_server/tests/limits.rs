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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_connection_is_never_closed_to_make_room_and_the_newcomer_is_refused() {
    let metrics = crate::telemetry::prometheus();
    let dir = tempfile::tempdir().expect("tempdir");
    let routes = vec![Router::new().route("/v1/test/endless", axum::routing::get(endless))];
    let s = start_with(dir.path(), limited(0, 1), routes).await;
    // A streaming answer in progress: busy while it streams.
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.expect("connect");
    stream.write_all(b"GET /v1/test/endless HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await.expect("head in time").expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "), "{:?}", String::from_utf8_lossy(&buf[..n]));
    // A second connection of the same client: refused (closed without an answer).
    let mut refused = tokio::net::TcpStream::connect(s.addr).await.expect("connect (the kernel completes the handshake)");
    let _ = refused.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), refused.read_to_end(&mut got)).await.expect("closed in time");
    assert!(closed.is_err() || got.is_empty(), "refused without an answer: {:?}", String::from_utf8_lossy(&got));
    // The stream goes on.
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.expect("more ticks").expect("read");
    assert!(n > 0 && String::from_utf8_lossy(&buf[..n]).contains("data: tick"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    // Another client is served.
    let mut other = connect_from([127, 0, 0, 3].into(), s.addr).await;
    assert_eq!(healthz(&mut other).await, 200);
    let text = metrics.render();
    assert!(text.contains("sluice_http_connections_refused_total{limit=\"client\"} 1\n"), "{text}");
    assert!(text.contains("sluice_http_connections 2\n"), "the stream and the other client: {text}");
    drop(stream);
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
