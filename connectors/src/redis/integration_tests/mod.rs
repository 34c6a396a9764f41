//! Integration tests against a real `redis-server` at `SLUICE_REDIS_URL`
//! (`infra/services/redis.sh start`). Each test uses a fresh key prefix and polls with a
//! timeout; the outage tests start private servers they kill and restart.
//!
//! Run: `cargo test -p sluice-connectors --features redis,integration-tests redis::integration_tests -- --nocapture`

mod sink;
mod support;
pub(crate) mod wait;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::AsyncCommands;
use parking_lot_free::Collected;
use sluice_schemas::{Link, RedirectType};

use super::*;
use crate::LinkChange;
use crate::link_cache::{Invalidation, L2Lookup, LinkCacheL2};
use support::*;

mod parking_lot_free {
    //! Invalidations a subscriber received, with their arrival instants.
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use crate::link_cache::Invalidation;

    #[derive(Clone, Default)]
    pub struct Collected(pub Arc<Mutex<Vec<(Instant, Invalidation)>>>);

    impl Collected {
        pub fn callback(&self) -> crate::redis::InvalidationCallback {
            let inner = Arc::clone(&self.0);
            Arc::new(move |i| inner.lock().expect("lock").push((Instant::now(), i)))
        }
        pub fn codes(&self) -> Vec<String> {
            self.0
                .lock()
                .expect("lock")
                .iter()
                .filter_map(|(_, i)| match i {
                    Invalidation::Code(c) => Some(c.clone()),
                    Invalidation::All => None,
                })
                .collect()
        }
        pub fn arrival_of(&self, code: &str, after: Instant) -> Option<Instant> {
            self.0.lock().expect("lock").iter().find(|(t, i)| *t >= after && *i == Invalidation::Code(code.into())).map(|(t, _)| *t)
        }
    }
}

fn link(code: &str, target: &str, version: i64) -> Link {
    let t = chrono::DateTime::from_timestamp_millis(1_767_225_600_000).expect("ts");
    Link {
        code: code.into(),
        long_url: target.into(),
        domain: None,
        expires_at: None,
        enabled: true,
        tags: vec!["a".into()],
        redirect_type: RedirectType::Found,
        org: None,
        created_at: t,
        updated_at: t,
        version,
    }
}

async fn subscribers(url: &str, channel: &str) -> i64 {
    let mut c = conn(url).await;
    let v: Vec<(String, i64)> = ::redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut c).await.expect("numsub");
    v.first().map_or(0, |x| x.1)
}

/// Cache-aside with negative entries and jittered TTLs; fills never overwrite.
#[tokio::test]
async fn l2_fill_get_negative_entries_and_ttls() {
    let url = redis_url();
    let cfg = fresh_config("l2", &url);
    let a = RedisLinkCache::start(&cfg).expect("start");
    let b = RedisLinkCache::start(&cfg).expect("start");
    assert_eq!(a.get("x").await, L2Lookup::Miss);

    let x1 = link("x", "https://example.com/1", 1);
    a.fill("x", Some(&x1));
    assert!(wait_until(Duration::from_secs(30), || async { b.get("x").await == L2Lookup::Hit(x1.clone()) }).await);
    a.fill("x", Some(&link("x", "https://example.com/other", 1)));
    a.fill("y", None);
    assert!(wait_until(Duration::from_secs(30), || async { b.get("y").await == L2Lookup::Absent }).await);
    assert_eq!(b.get("x").await, L2Lookup::Hit(x1.clone()), "a fill never overwrites an entry");

    let mut c = conn(&url).await;
    let pttl_x: i64 = c.pttl(a.keys().link("x")).await.expect("pttl");
    let pttl_y: i64 = c.pttl(a.keys().link("y")).await.expect("pttl");
    let ttl = cfg.cache_ttl.as_millis() as f64;
    assert!(pttl_x as f64 <= ttl * 1.15 + 1.0 && pttl_x as f64 >= ttl * 0.85 - 1_000.0, "jittered ttl {pttl_x}");
    assert!(pttl_y > 0 && pttl_y <= cfg.negative_ttl.as_millis() as i64, "negative ttl {pttl_y}");
    // Jitter spreads TTLs: 20 fills do not all get the same TTL.
    let mut ttls = std::collections::BTreeSet::new();
    for i in 0..20 {
        let code = format!("j{i}");
        a.fill(&code, Some(&link(&code, "https://example.com/j", 1)));
    }
    assert!(wait_until(Duration::from_secs(30), || async { b.get("j19").await != L2Lookup::Miss }).await);
    for i in 0..20 {
        let p: i64 = c.pttl(a.keys().link(&format!("j{i}"))).await.expect("pttl");
        ttls.insert(p / 1000);
    }
    assert!(ttls.len() > 3, "ttls not jittered: {ttls:?}");
    assert!(a.available());
}

/// A change published by one process is in Redis and invalidates the other process's L1;
/// when the invalidation arrives the new value is already readable; a process ignores its
/// own messages. (How fast is a benchmark's business, not a test's: the latency is printed.)
#[tokio::test]
async fn publish_invalidates_other_processes() {
    let url = redis_url();
    let cfg = fresh_config("inval", &url);
    let a = RedisLinkCache::start(&cfg).expect("start");
    let b = RedisLinkCache::start(&cfg).expect("start");
    let (got_a, got_b) = (Collected::default(), Collected::default());
    a.subscribe(got_a.callback()).expect("subscribe a");
    b.subscribe(got_b.callback()).expect("subscribe b");
    let channel = a.keys().invalidation_channel();
    assert!(wait_until(Duration::from_secs(30), || async { subscribers(&url, &channel).await == 2 }).await, "both subscribed");

    let mut lat = Vec::new();
    for v in 1..=30i64 {
        let l = link("z", &format!("https://example.com/v{v}"), v);
        let t0 = Instant::now();
        a.publish(&LinkChange::Upserted(l.clone()));
        assert!(
            wait_until(Duration::from_secs(30), || async { got_b.arrival_of("z", t0).is_some() }).await,
            "b never received the invalidation of version {v}"
        );
        lat.push(got_b.arrival_of("z", t0).expect("arrival") - t0);
        // When the message arrives the new value is already readable.
        assert_eq!(b.get("z").await, L2Lookup::Hit(l));
    }
    lat.sort();
    println!("invalidation latency over 30 publishes: p50 {:?}, max {:?}", lat[15], lat[29]);

    a.publish(&LinkChange::Deleted("z".into()));
    assert!(wait_until(Duration::from_secs(30), || async { b.get("z").await == L2Lookup::Absent }).await);
    assert!(got_a.codes().is_empty(), "a process ignores its own invalidations: {:?}", got_a.codes());
    assert_eq!(got_b.codes().len(), 31);
}

/// A slow Redis costs a lookup its deadline, not the server's stall; a dead one costs no
/// I/O once the breaker is open; publishes made during the outage land after it, and
/// re-subscribing drops every L1.
///
/// No wall-clock bounds besides a blackhole: the server stalls for 60 s, and 20 lookups must
/// all have returned long before that. "No I/O while open" is counted: with the breaker open
/// for an hour every lookup is a `skipped` one (exact under nextest's process per test).
#[tokio::test]
async fn breaker_bounds_latency_and_outage_publishes_are_repaired() {
    crate::kafka::test_metrics::install();
    let mut server = PrivateRedis::start_persistent();
    let url = server.url();
    let cfg = fresh_config("breaker", &url);
    let a = RedisLinkCache::start(&cfg).expect("start");
    let b = RedisLinkCache::start(&cfg).expect("start");
    // The process under the slow and dead server: once open, its breaker stays open for the test.
    let c = RedisLinkCache::start(&RedisConfig { breaker_open_for: Duration::from_secs(3600), ..cfg.clone() }).expect("start");
    let got_b = Collected::default();
    b.subscribe(got_b.callback()).expect("subscribe");
    let channel = a.keys().invalidation_channel();
    assert!(wait_until(Duration::from_secs(30), || async { subscribers(&url, &channel).await == 1 }).await);
    let l1 = link("k", "https://example.com/before", 1);
    a.publish(&LinkChange::Upserted(l1.clone()));
    assert!(wait_until(Duration::from_secs(30), || async { b.get("k").await == L2Lookup::Hit(l1.clone()) }).await);
    assert!(wait_until(Duration::from_secs(30), || async { c.get("k").await == L2Lookup::Hit(l1.clone()) }).await);

    // Slow: DEBUG SLEEP stalls the server for 60 s (a blackhole); every lookup gives up at
    // its deadline, so all 20 return long before the stall ends, and the breaker opens.
    // Connected before the stall (a connection handshake to a stalled server times out).
    let mut probe = conn(&url).await;
    // Sent over a plain socket from a thread (no client-side timeouts or reconnects): the
    // reply comes when the sleep ends or the server dies.
    let sleeper = std::thread::spawn({
        let addr = format!("127.0.0.1:{}", server.port);
        move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(addr).expect("connect for DEBUG SLEEP");
            s.write_all(b"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$2\r\n60\r\n").expect("send DEBUG SLEEP");
            let mut reply = [0u8; 256];
            // The server dies mid-sleep (killed below): an error or EOF is expected.
            let n = s.read(&mut reply).unwrap_or(0);
            String::from_utf8_lossy(&reply[..n]).into_owned()
        }
    });
    // The stall has begun once a PING goes unanswered.
    let t = Instant::now();
    // (An answered PING is `Ok(Ok(_))`; the client's own response timeout gives `Ok(Err(_))`.)
    while matches!(tokio::time::timeout(Duration::from_millis(500), ::redis::cmd("PING").query_async::<String>(&mut probe)).await, Ok(Ok(_))) {
        assert!(!sleeper.is_finished(), "DEBUG SLEEP returned at once: {:?}", sleeper.join());
        assert!(t.elapsed() < Duration::from_secs(30), "the server never stalled");
    }
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(c.get("k").await, L2Lookup::Miss);
    }
    let slow = t.elapsed();
    println!("20 lookups against a stalled redis: {slow:?} (op timeout {:?})", cfg.op_timeout);
    assert!(slow < Duration::from_secs(30), "lookups waited on the stalled server: {slow:?}");
    assert!(!c.available(), "breaker opened");

    // Dead: after the breaker opened, lookups are refused without I/O.
    server.stop();
    sleeper.join().expect("sleeper");
    let skipped = || crate::kafka::test_metrics::counter("sluice_redis_l2_lookups_total", &[("result", "skipped")]);
    let before = skipped();
    for _ in 0..1000 {
        assert_eq!(c.get("k").await, L2Lookup::Miss);
    }
    assert_eq!(skipped() - before, 1000, "every lookup with the breaker open was skipped, none sent");
    assert!(!c.available(), "still open");

    // A change published while Redis is down lands once it is back.
    let l2 = link("k", "https://example.com/after", 2);
    a.publish(&LinkChange::Upserted(l2.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t_restart = Instant::now();
    server.restart();
    assert!(wait_until(Duration::from_secs(30), || async { b.get("k").await == L2Lookup::Hit(l2.clone()) }).await, "outage publish repaired");
    assert!(
        wait_until(Duration::from_secs(30), || async { got_b.0.lock().expect("lock").iter().any(|(t, i)| *t >= t_restart && *i == Invalidation::All) }).await,
        "re-subscription drops the whole L1"
    );
    assert!(wait_until(Duration::from_secs(30), || async { a.get("k").await == L2Lookup::Hit(l2.clone()) }).await);
    assert!(a.available());
}

#[tokio::test]
async fn healthcheck_pings_and_fails_fast_on_a_closed_port() {
    let cfg = fresh_config("health", &redis_url());
    healthcheck(&cfg, Duration::from_secs(10)).await.expect("healthy");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let dead = fresh_config("health", &format!("redis://127.0.0.1:{port}/"));
    let e = healthcheck(&dead, Duration::from_secs(2)).await.expect_err("nothing listens");
    assert!(e.retryable(), "{e}");
    assert_eq!(e.kind(), "external");
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Arc<RedisLinkCache>>();
}
