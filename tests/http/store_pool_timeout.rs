//! The real `sluice serve` against a PostgreSQL server that answers the first connection and
//! then none (a server at its connection limit behind a proxy that holds the rest, a stalled
//! pooler): opening the store makes one direct connection (answered: login succeeds), then
//! the pool's first connection, which never completes. The pool gives up after its acquire
//! timeout (3 s), before `[store] connect-timeout` (10 s here) passes, and the start is
//! refused with `StoreConnectTimeout` naming that 3 s bound (commit bc9fbe2; before, sqlx's
//! "pool timed out while waiting for an open connection"): exit code 1, the exact line, the
//! new data dir removed (feature `integration-tests`, server at `SLUICE_POSTGRES_URL`).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::store_connect::{exit_within, serve};

/// A loopback TCP proxy that relays its first connection to `upstream` and holds every later
/// one open without a byte either way.
struct FirstOnlyProxy {
    addr: SocketAddr,
    /// Connections accepted (the first relayed, the rest held).
    accepted: Arc<AtomicUsize>,
}

impl FirstOnlyProxy {
    fn start(upstream: SocketAddr) -> FirstOnlyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        // Detached: the accept loop (and every connection it holds) ends with the test process.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    relay(conn, upstream);
                } else {
                    std::thread::spawn(move || {
                        let mut conn = conn;
                        let mut buf = [0u8; 1024];
                        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                    });
                }
            }
        });
        FirstOnlyProxy { addr, accepted }
    }
}

/// Copies `client` to `upstream` and back, each way on its own thread, until either closes.
fn relay(client: TcpStream, upstream: SocketAddr) {
    let server = TcpStream::connect(upstream).expect("connect to SLUICE_POSTGRES_URL");
    let (mut client_read, mut server_write) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
    let (mut server_read, mut client_write) = (server, client);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(std::net::Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_read, &mut client_write);
        let _ = client_write.shutdown(std::net::Shutdown::Write);
    });
}

#[test]
fn a_pool_that_cannot_connect_while_the_store_opens_is_a_connect_timeout_of_3s() {
    let server = std::env::var("SLUICE_POSTGRES_URL").expect("feature integration-tests is on: SLUICE_POSTGRES_URL must name a PostgreSQL server");
    let mut url = url::Url::parse(&server).expect("SLUICE_POSTGRES_URL is a URL");
    let upstream = url.socket_addrs(|| Some(5432)).expect("address")[0];
    let proxy = FirstOnlyProxy::start(upstream);
    url.set_port(Some(proxy.addr.port())).expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));

    let t0 = Instant::now();
    let mut child = serve(&data, url.as_str(), "10s", &log);
    let status = exit_within(&mut child, Duration::from_secs(60), &log);
    let took = t0.elapsed();
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(1), "{log_text}");
    let error = sluice_connectors::Error::StoreConnectTimeout {
        store: format!("postgres://{}@127.0.0.1:{}{}", url.username(), proxy.addr.port(), url.path()),
        timeout: Duration::from_secs(3),
    };
    assert_eq!(log_text.lines().last().unwrap_or_default(), format!("error: could not open the link store: {error}"), "{log_text}");
    assert!(log_text.lines().last().unwrap_or_default().contains(" did not complete a connection within 3s (TCP connect, TLS and login); "), "{log_text}");
    assert!(!log_text.contains("pool timed out"), "{log_text}");
    // The pool's 3 s, not the 10 s connect timeout (the start itself takes a moment first).
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(10), "refused after {took:?}: {log_text}");
    // The direct connection, then at least one of the pool's, held.
    assert!(proxy.accepted.load(Ordering::SeqCst) >= 2, "{} connections", proxy.accepted.load(Ordering::SeqCst));
    assert!(!data.exists(), "the data dir this start created is removed");
}
