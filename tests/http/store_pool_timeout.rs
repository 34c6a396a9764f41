//! The real `sluice serve` against a PostgreSQL server that answers the first connection and
//! then none (a server at its connection limit behind a proxy that holds the rest, a stalled
//! pooler): opening the store makes one direct connection (answered: login succeeds), then
//! the pool's first connection, which never completes. The pool gives up after its acquire
//! timeout (3 s), before `[store] connect-timeout` (10 s here) passes, and the start is
//! refused with `StoreConnectTimeout` naming that 3 s bound (commit bc9fbe2; before, sqlx's
//! "pool timed out while waiting for an open connection"): exit code 1, the exact line, the
//! new data dir removed (feature `integration-tests`, server at `SLUICE_POSTGRES_URL`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::store_connect::{SilentServer, exit_within, serve};

#[test]
fn a_pool_that_cannot_connect_while_the_store_opens_is_a_connect_timeout_of_3s() {
    let server = std::env::var("SLUICE_POSTGRES_URL").expect("feature integration-tests is on: SLUICE_POSTGRES_URL must name a PostgreSQL server");
    let mut url = url::Url::parse(&server).expect("SLUICE_POSTGRES_URL is a URL");
    let upstream = url.socket_addrs(|| Some(5432)).expect("address")[0];
    let proxy = SilentServer::start_relaying_first(Some(upstream));
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
