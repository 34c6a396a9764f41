//! The `[server] drain-timeout` bound of a graceful stop ([`System::shutdown`]): when the
//! part after the HTTP server cannot finish — here the shutdown checkpoint waits for a Redis
//! view sink whose server is down to apply its cut (it never does) — the stop gives up at
//! the bound and returns [`StopTimedOut`], instead of waiting for the sink's own timeouts.
//!
//! A correctness bound, not a performance measurement: the stop must end no earlier than
//! the drain timeout (it did wait for the drain) and well before the 30 s the checkpoint
//! alone would wait for the sink, with a generous margin for a loaded machine.

use std::time::{Duration, Instant};

use sluice::job::system::StopTimedOut;

use crate::harness::{BROWSER_UA, Server, event, now_ms};

/// The configured drain timeout.
const DRAIN: Duration = Duration::from_secs(1);
/// Allowed beyond `DRAIN` for the HTTP stop (no open connection) and scheduling.
const MARGIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_cannot_finish_stops_with_stop_timed_out_at_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A loopback port nothing listens on: the Redis view sink can never write (connection
    // refused), so the shutdown checkpoint waits for it.
    let dead_redis = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        format!("redis://127.0.0.1:{port}")
    };
    let s = Server::start_in(dir.path(), |cfg| {
        cfg.redis.url = Some(sluice_connectors::redis::RedisUrl(dead_redis));
        cfg.redis.views = true;
        cfg.server.drain_timeout = DRAIN;
    })
    .await;
    // Some clicks, so the views (and the change stream the sink never applies) move.
    s.link("drain-a").await;
    let now = now_ms();
    let evs: Vec<_> = (0..20).map(|i| event(&format!("drain-{i}"), "drain-a", now - i * 1000, &format!("81.2.69.{i}"), BROWSER_UA, None)).collect();
    s.events(&evs, false).await;
    s.system.sync(Duration::from_secs(60)).await.expect("the dataflow counts the clicks");

    let t0 = Instant::now();
    let err = s.system.shutdown().await.expect_err("the drain cannot finish: the stop must time out");
    let took = t0.elapsed();
    let timed_out = err.downcast_ref::<StopTimedOut>().unwrap_or_else(|| panic!("StopTimedOut expected, got: {err:#}"));
    assert_eq!(timed_out.drain_timeout, DRAIN);
    assert!(took >= DRAIN, "the stop gave up before the drain timeout: {took:?}");
    assert!(took < DRAIN + MARGIN, "the stop took {took:?}, past drain-timeout {DRAIN:?} + {MARGIN:?}");
}
