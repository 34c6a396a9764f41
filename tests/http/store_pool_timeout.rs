//! The real `sluice serve` against a PostgreSQL server that answers the first connection and
//! then none (a server at its connection limit behind a proxy that holds the rest, a stalled
//! pooler): opening the store makes one direct connection (answered: login succeeds), then
//! the pool's first connection, which never completes. The pool gives up after its acquire
//! timeout (3 s), before `[store] connect-timeout` (10 s here) passes, and the start is
//! refused with `StoreConnectTimeout` naming that 3 s bound (commit bc9fbe2; before, sqlx's
//! "pool timed out while waiting for an open connection"): exit code 1, the exact line, the
//! new data dir removed (feature `integration-tests`, server at `SLUICE_POSTGRES_URL`).
//! A server that answers every pooled connection, but each after 4 s, is as unusable with
//! the default `[store] acquire-timeout` (3 s) and serves with `acquire-timeout = "10s"`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::child::free_port;
use crate::store_connect::{SilentServer, exit_within, serve, serve_with};

/// `SLUICE_POSTGRES_URL`, and the address of its server.
fn postgres() -> (url::Url, std::net::SocketAddr) {
    let server = std::env::var("SLUICE_POSTGRES_URL").expect("feature integration-tests is on: SLUICE_POSTGRES_URL must name a PostgreSQL server");
    let url = url::Url::parse(&server).expect("SLUICE_POSTGRES_URL is a URL");
    let upstream = url.socket_addrs(|| Some(5432)).expect("address")[0];
    (url, upstream)
}

#[test]
fn a_pool_that_cannot_connect_while_the_store_opens_is_a_connect_timeout_of_3s() {
    let (mut url, upstream) = postgres();
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
        acquire_timeout: Duration::from_secs(3),
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

/// Each pooled connection completes only after `SLOW` (a distant server, a pooler that queues
/// logins); the first, direct one at once.
const SLOW: Duration = Duration::from_secs(4);

#[test]
fn pooled_connections_slower_than_the_default_acquire_timeout_fail_the_start_naming_it() {
    let (mut url, upstream) = postgres();
    let proxy = SilentServer::start_relaying(Some(upstream), Some(SLOW));
    url.set_port(Some(proxy.addr.port())).expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let mut child = serve(&data, url.as_str(), "10s", &log);
    let status = exit_within(&mut child, Duration::from_secs(60), &log);
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(1), "{log_text}");
    assert!(log_text.lines().last().unwrap_or_default().ends_with(" did not complete a connection within 3s (TCP connect, TLS and login); check that this host and port are those of a running PostgreSQL server that answers (not another service, a stalled proxy or a firewall dropping the packets); a slow server: [store] connect-timeout bounds the first connection, and every pooled connection must be made within 3s ([store] acquire-timeout)"), "{log_text}");
    assert!(!data.exists(), "the data dir this start created is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_slower_than_the_default_serve_with_a_larger_acquire_timeout() {
    let (mut url, upstream) = postgres();
    let proxy = SilentServer::start_relaying(Some(upstream), Some(SLOW));
    url.set_port(Some(proxy.addr.port())).expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, log) = (dir.path().join("data"), dir.path().join("serve.log"));
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = serve_with(&listen, &data, url.as_str(), "10s", &[("SLUICE__STORE__ACQUIRE_TIMEOUT", "10s")], &log);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    crate::child::await_ready(&mut child, &http, &listen, &log, Duration::from_secs(90)).await;
    let created =
        http.post(format!("http://{listen}/v1/links")).json(&serde_json::json!({ "long_url": "https://example.com/slow-pool" })).send().await.expect("create");
    let status = created.status();
    let body: serde_json::Value = created.json().await.expect("json");
    assert_eq!(status, 201, "{body}");
    let code = body["code"].as_str().expect("code");
    let got = http.get(format!("http://{listen}/v1/links/{code}")).send().await.expect("get");
    assert_eq!(got.status(), 200);
    assert_eq!(got.json::<serde_json::Value>().await.expect("json")["long_url"], "https://example.com/slow-pool");
    // The direct connection, then the pool's, each relayed.
    assert!(proxy.accepted.load(Ordering::SeqCst) >= 2, "{} connections", proxy.accepted.load(Ordering::SeqCst));
    child.terminate();
}
