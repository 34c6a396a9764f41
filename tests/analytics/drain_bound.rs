//! The `[server] drain-timeout` bound of a graceful stop ([`System::shutdown`]) when a view
//! sink's service is down: the shutdown checkpoint waits for the sink to apply its cut (it
//! never does) for half of what is left of the drain, the sinks get the rest, and the stop
//! ends inside the bound with [`CheckpointNotWritten`], whose message names the sink and its
//! rows not written — not with the generic [`StopTimedOut`] past it. Nothing is lost: the
//! next start (feature `integration-tests`: with the real Redis up) replays the clicks after
//! the last checkpoint the sink had applied and writes them.
//!
//! A correctness bound, not a performance measurement: the stop must end well before the
//! 30 s the checkpoint alone would wait for the sink, with a generous margin for a loaded
//! machine.

use std::time::{Duration, Instant};

use sluice::job::CheckpointNotWritten;
use sluice::job::system::{StopTimedOut, System};

use crate::harness::{BROWSER_UA, Server, event, now_ms};

/// The configured drain timeout.
const DRAIN: Duration = Duration::from_secs(2);
/// Allowed beyond `DRAIN` for the HTTP stop (no open connection) and scheduling.
const MARGIN: Duration = Duration::from_secs(5);
/// Clicks posted: one visitor (IP) each.
const CLICKS: i64 = 20;

/// A loopback Redis URL nothing listens on (connection refused).
fn dead_redis() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("redis://127.0.0.1:{port}")
}

/// Starts on `dir` with the Redis view sink on `redis_url` (key prefix `prefix`).
async fn start(dir: &std::path::Path, redis_url: String, prefix: &str) -> Server {
    let prefix = prefix.to_string();
    Server::start_in(dir, move |cfg| {
        cfg.redis.url = Some(sluice_connectors::redis::RedisUrl(redis_url));
        cfg.redis.views = true;
        cfg.redis.key_prefix = prefix;
        cfg.server.drain_timeout = DRAIN;
    })
    .await
}

/// Stops with the sink down: the error, and how long the stop took.
async fn stop_with_the_sink_down(system: System) -> (anyhow::Error, Duration) {
    let t0 = Instant::now();
    let err = system.shutdown().await.expect_err("the sink is down: the shutdown checkpoint cannot be written");
    (err, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_is_down_ends_the_stop_in_time_with_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = "it:drain:";
    let s = start(dir.path(), dead_redis(), prefix).await;
    // Some clicks, so the views (and the change stream the sink never applies) move.
    s.link("drain-a").await;
    let now = now_ms();
    let evs: Vec<_> = (0..CLICKS).map(|i| event(&format!("drain-{i}"), "drain-a", now - i * 1000, &format!("81.2.69.{i}"), BROWSER_UA, None)).collect();
    s.events(&evs, false).await;
    s.system.sync(Duration::from_secs(60)).await.expect("the dataflow counts the clicks");

    let (err, took) = stop_with_the_sink_down(s.system).await;
    assert!(err.downcast_ref::<StopTimedOut>().is_none(), "the stop ran into drain-timeout instead of ending inside it: {err:#}");
    let not_written = err.downcast_ref::<CheckpointNotWritten>().unwrap_or_else(|| panic!("CheckpointNotWritten expected, got: {err:#}"));
    let msg = not_written.to_string();
    assert!(msg.contains("the view sinks did not apply the checkpoint's cut within"), "{msg}");
    assert!(msg.contains("; still behind: the Redis view sink ("), "names the sink: {msg}");
    assert!(msg.contains(" not written; last error: "), "says what it holds and why: {msg}");
    assert!(msg.contains("nothing is lost: the next start resumes from the previous checkpoint"), "{msg}");
    assert!(took < DRAIN + MARGIN, "the stop took {took:?}, past drain-timeout {DRAIN:?} + {MARGIN:?}");
}

/// With the real Redis of `infra/test`: the clicks the stop could not hand to a dead Redis
/// reach the live one at the next start (the dataflow replays them from the click log).
#[cfg(feature = "integration-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_start_writes_what_a_dead_sink_did_not_get() {
    use redis::AsyncCommands;

    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = format!("it:drain:{}:{}:", std::process::id(), now_ms());
    let s = start(dir.path(), dead_redis(), &prefix).await;
    s.link("drain-b").await;
    let now = now_ms();
    let evs: Vec<_> = (0..CLICKS).map(|i| event(&format!("drain-b-{i}"), "drain-b", now - i * 1000, &format!("81.2.69.{i}"), BROWSER_UA, None)).collect();
    s.events(&evs, false).await;
    s.system.sync(Duration::from_secs(60)).await.expect("the dataflow counts the clicks");
    let (err, _) = stop_with_the_sink_down(s.system).await;
    assert!(err.is::<CheckpointNotWritten>(), "{err:#}");

    let live = std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into());
    let s = start(dir.path(), live.clone(), &prefix).await;
    s.sync().await;
    let keys = sluice_connectors::redis::Keys::new(&prefix);
    let mut c = redis::Client::open(live.as_str()).expect("url").get_multiplexed_async_connection().await.expect("redis");
    let deadline = Instant::now() + Duration::from_secs(60);
    let want = (Some(CLICKS as u64), Some(CLICKS as u64));
    loop {
        let totals: std::collections::BTreeMap<String, u64> = c.hgetall(keys.totals("drain-b")).await.expect("hgetall");
        let got = (totals.get("clicks").copied(), totals.get("uniques").copied());
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "redis totals of drain-b after the restart: {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
    let stale: Vec<String> = c.keys(format!("{prefix}*")).await.expect("keys");
    if !stale.is_empty() {
        let _: () = c.del(stale).await.expect("del");
    }
}
