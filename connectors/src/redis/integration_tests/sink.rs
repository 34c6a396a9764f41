//! The hot-view sink against real servers: exact values from a naive reference, idempotent
//! replays, catch-up after an outage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::AsyncCommands;
use sluice_schemas::rollup::{RollupBatch, RollupGranularity as G, RollupRow, RollupView as V};

use super::support::*;
use crate::redis::{Keys, RedisViewSink, sink::wanted};

const DAY: i64 = 86_400_000;
const D0: i64 = 20_400 * DAY;
const D1: i64 = D0 + DAY;

fn now_minute() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    now.div_euclid(60_000) * 60_000
}

#[allow(clippy::too_many_arguments)]
fn row(code: &str, g: G, start: i64, view: V, is_bot: bool, dims: &[&str], clicks: u64, ids: &[u64]) -> RollupRow {
    RollupRow {
        code: code.into(),
        granularity: g,
        bucket_start_ms: start,
        view,
        is_bot,
        dims: dims.iter().map(|s| s.to_string()).collect(),
        clicks,
        uniques: decode_exact(&exact_sketch(ids)).expect("ids").len() as u64,
        sketch: exact_sketch(ids),
    }
}

fn batch1(m: i64) -> RollupBatch {
    let rows = vec![
        row("a", G::Minute, m, V::Total, false, &[], 3, &[1, 2]),
        row("a", G::Minute, m, V::Total, true, &[], 1, &[90]),
        row("a", G::Minute, m - 60 * 60_000, V::Total, false, &[], 9, &[1]),
        row("a", G::Day, D0, V::Total, false, &[], 10, &[1, 2, 3, 4, 5]),
        row("a", G::Day, D1, V::Total, false, &[], 4, &[4, 5, 6]),
        row("a", G::Day, D0, V::Total, true, &[], 2, &[90]),
        row("a", G::Day, D0, V::Country, false, &["US"], 7, &[1, 2, 3]),
        row("a", G::Day, D0, V::Country, false, &["DE"], 3, &[4, 5]),
        row("a", G::Day, D1, V::Country, false, &["US"], 4, &[4, 5, 6]),
        row("a", G::Day, D0, V::Country, true, &["US"], 2, &[90]),
        row("a", G::Day, D0, V::ReferrerDomain, false, &["(direct)"], 10, &[1, 2, 3, 4, 5]),
        row("a", G::Day, D1, V::ReferrerDomain, false, &["google.com"], 4, &[4, 5, 6]),
        row("a", G::Day, D0, V::Browser, false, &["Firefox"], 10, &[1, 2, 3, 4, 5]),
        row("a", G::Hour, D0, V::Total, false, &[], 10, &[1, 2, 3, 4, 5]),
        row("b", G::Day, D0, V::Total, false, &[], 1, &[9]),
        row("b", G::Day, D0, V::Country, false, &["FR"], 1, &[9]),
    ];
    RollupBatch { epoch_upper: 100, watermark_ms: m, rows }
}

fn batch2(m: i64) -> RollupBatch {
    let rows = vec![
        row("a", G::Minute, m, V::Total, false, &[], 5, &[1, 2, 3]),
        row("a", G::Day, D1, V::Total, false, &[], 6, &[4, 5, 6, 7]),
        row("a", G::Day, D1, V::Country, false, &["US"], 5, &[4, 5, 6]),
        row("a", G::Day, D1, V::Country, false, &["FR"], 1, &[7]),
        row("b", G::Day, D1, V::Total, false, &[], 2, &[9, 10]),
    ];
    RollupBatch { epoch_upper: 200, watermark_ms: m, rows }
}

/// What Redis must hold after the given batches, computed naively from the latest value of
/// every row key (independently of the sink's difference scripts).
#[derive(Debug, PartialEq, Default)]
struct State {
    totals: BTreeMap<String, BTreeMap<String, i64>>,
    top: BTreeMap<(String, String), BTreeMap<String, i64>>,
    top_links: BTreeMap<String, i64>,
    minutes: BTreeMap<(String, i64), BTreeMap<String, i64>>,
    minute_index: BTreeMap<String, Vec<i64>>,
    days: BTreeMap<(String, i64), BTreeMap<String, i64>>,
}

fn expected(batches: &[RollupBatch]) -> State {
    let mut latest: BTreeMap<String, RollupRow> = BTreeMap::new();
    for b in batches {
        for r in &b.rows {
            latest.insert(format!("{:?}", r.key()), r.clone());
        }
    }
    let cutoff = now_minute() - 59 * 60_000;
    let mut s = State::default();
    let mut union: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in latest.values().filter(|r| wanted(r)) {
        let field = if r.is_bot { "bot_clicks" } else { "clicks" };
        match (r.granularity, r.view) {
            (G::Minute, V::Total) => {
                let m = s.minutes.entry((r.code.clone(), r.bucket_start_ms)).or_default();
                m.insert(field.into(), r.clicks as i64);
                if !r.is_bot {
                    m.insert("uniques".into(), r.uniques as i64);
                }
                let idx = s.minute_index.entry(r.code.clone()).or_default();
                if r.bucket_start_ms >= cutoff && !idx.contains(&r.bucket_start_ms) {
                    idx.push(r.bucket_start_ms);
                    idx.sort_unstable();
                }
            }
            (G::Day, V::Total) => {
                *s.totals.entry(r.code.clone()).or_default().entry(field.into()).or_default() += r.clicks as i64;
                let d = s.days.entry((r.code.clone(), r.bucket_start_ms)).or_default();
                d.insert(field.into(), r.clicks as i64);
                if !r.is_bot {
                    d.insert("uniques".into(), r.uniques as i64);
                    *s.top_links.entry(r.code.clone()).or_default() += r.clicks as i64;
                    union.entry(r.code.clone()).or_default().extend(decode_exact(&r.sketch).expect("sketch"));
                }
            }
            (G::Day, V::Country | V::ReferrerDomain) => {
                let dim = if r.view == V::Country { "country" } else { "referrer" };
                *s.top.entry((r.code.clone(), dim.into())).or_default().entry(r.dims[0].clone()).or_default() += r.clicks as i64;
            }
            _ => unreachable!("wanted() admits no other rows"),
        }
    }
    for (code, mut ids) in union {
        ids.sort_unstable();
        ids.dedup();
        s.totals.entry(code).or_default().insert("uniques".into(), ids.len() as i64);
    }
    s
}

async fn read_state(url: &str, k: &Keys, like: &State) -> State {
    let mut c = conn(url).await;
    let mut s = State::default();
    for code in like.totals.keys() {
        let h: BTreeMap<String, i64> = c.hgetall(k.totals(code)).await.expect("totals");
        s.totals.insert(code.clone(), h);
    }
    for (code, dim) in like.top.keys() {
        let z: Vec<(String, f64)> = c.zrange_withscores(k.top(code, dim), 0, -1).await.expect("top");
        // Members whose all-time score went back to 0 are not expected.
        s.top.insert((code.clone(), dim.clone()), z.into_iter().filter(|x| x.1 != 0.0).map(|(m, v)| (m, v as i64)).collect());
    }
    let z: Vec<(String, f64)> = c.zrange_withscores(k.top_links(), 0, -1).await.expect("top links");
    s.top_links = z.into_iter().map(|(m, v)| (m, v as i64)).collect();
    for (code, m) in like.minutes.keys() {
        let h: BTreeMap<String, i64> = c.hgetall(k.minute(code, *m)).await.expect("minute");
        s.minutes.insert((code.clone(), *m), h);
    }
    for code in like.minute_index.keys() {
        let v: Vec<i64> = c.zrange(k.minutes(code), 0, -1).await.expect("index");
        s.minute_index.insert(code.clone(), v);
    }
    for (code, d) in like.days.keys() {
        let h: BTreeMap<String, i64> = c.hgetall(k.day(code, *d)).await.expect("day");
        s.days.insert((code.clone(), *d), h);
    }
    s
}

/// Every view equals the naive reference; applying the same batches again (and an older
/// batch after a newer one, then the newer again) changes nothing: no double increments.
#[tokio::test]
async fn sink_writes_exact_views_and_replays_are_idempotent() {
    let url = redis_url();
    let cfg = fresh_config("sink", &url);
    let keys = Keys::new(&cfg.key_prefix);
    let sink = RedisViewSink::start(&cfg, Arc::new(ExactUnion)).expect("start");
    let m = now_minute();
    let (b1, b2) = (batch1(m), batch2(m));

    sink.send(b1.clone()).await.expect("send");
    assert!(sink.wait_applied(100, Duration::from_secs(10)).await, "{:?}", sink.status());
    let want1 = expected(std::slice::from_ref(&b1));
    assert_eq!(want1.totals["a"]["clicks"], 14, "reference sanity: 10 + 4");
    assert_eq!(want1.totals["a"]["uniques"], 6);
    assert_eq!(read_state(&url, &keys, &want1).await, want1);

    sink.send(b1.clone()).await.expect("send");
    sink.send(b2.clone()).await.expect("send");
    assert!(sink.wait_applied(200, Duration::from_secs(10)).await);
    let want = expected(&[b1.clone(), b2.clone()]);
    assert_eq!(want.top[&("a".to_string(), "country".to_string())]["US"], 12, "reference sanity: 7 + 5");
    assert_eq!(want.totals["a"]["uniques"], 7);
    assert_eq!(read_state(&url, &keys, &want).await, want);

    for (i, b) in [b1.clone(), b2.clone(), b1, b2].into_iter().enumerate() {
        sink.send(RollupBatch { epoch_upper: 300 + i as u64, ..b }).await.expect("send");
    }
    assert!(sink.wait_applied(303, Duration::from_secs(10)).await);
    assert_eq!(read_state(&url, &keys, &want).await, want, "replays changed nothing");

    // Minute keys expire, day keys carry the day TTL.
    let mut c = conn(&url).await;
    let pttl: i64 = c.pttl(keys.minute("a", m)).await.expect("pttl");
    assert!(pttl > 0 && pttl <= cfg.minute_ttl.as_millis() as i64);
    let pttl: i64 = c.pttl(keys.day("a", D0)).await.expect("pttl");
    assert!(pttl > cfg.minute_ttl.as_millis() as i64);
    let st = sink.shutdown(Duration::from_secs(5)).await;
    assert_eq!((st.pending_rows, st.applied_epoch, st.healthy), (0, 303, true));
}

/// Redis goes away (killed; it restarts with its data): the sink buffers the latest state
/// of the changed rows and, once Redis is back, catches up to exactly the reference state.
#[tokio::test]
async fn sink_catches_up_after_an_outage() {
    let mut server = PrivateRedis::start_persistent();
    let url = server.url();
    let cfg = fresh_config("catchup", &url);
    let keys = Keys::new(&cfg.key_prefix);
    let sink = RedisViewSink::start(&cfg, Arc::new(ExactUnion)).expect("start");
    let m = now_minute();
    let (b1, b2) = (batch1(m), batch2(m));
    sink.send(b1.clone()).await.expect("send");
    assert!(sink.wait_applied(100, Duration::from_secs(10)).await);

    server.stop();
    sink.send(b2.clone()).await.expect("send");
    // Many more changes while down: the buffer keeps only the latest value per row.
    let mut later = Vec::new();
    for i in 1..=50u64 {
        let b = RollupBatch {
            epoch_upper: 200 + i,
            watermark_ms: m,
            rows: vec![row("c", G::Day, D1, V::Total, false, &[], i, &(0..i).collect::<Vec<_>>()), row("c", G::Day, D1, V::Country, false, &["NL"], i, &[1])],
        };
        sink.send(b.clone()).await.expect("send");
        later.push(b);
    }
    assert!(
        wait_until(Duration::from_secs(10), || async { !sink.status().healthy && sink.status().errors >= 2 }).await,
        "sink notices the outage: {:?}",
        sink.status()
    );
    let st = sink.status();
    assert_eq!(st.applied_epoch, 100);
    assert_eq!(st.pending_rows, 5 + 2, "latest value per row key only: {st:?}");

    let t0 = Instant::now();
    server.restart();
    assert!(sink.wait_applied(250, Duration::from_secs(20)).await, "caught up: {:?}", sink.status());
    println!("catch-up after restart: {:?} (backoff cap {:?})", t0.elapsed(), cfg.sink_backoff_max);
    let mut all = vec![b1, b2];
    all.extend(later);
    let want = expected(&all);
    assert_eq!(want.totals["c"]["clicks"], 50);
    assert_eq!(read_state(&url, &keys, &want).await, want);
    assert!(sink.status().healthy);
}

/// Attack of session 50: with the buffer bound reached during an outage the sink dropped
/// rows, then reported itself caught up (`applied_epoch` past them), so the next checkpoint
/// covered rows Redis never got and no restart wrote them. Now the applied epoch stops at the
/// drop: the rows it still holds are written when Redis returns, but no checkpoint can pass
/// the drop, and the next start replays from before it.
#[tokio::test]
async fn rows_dropped_at_the_buffer_bound_stop_the_applied_epoch() {
    let mut server = PrivateRedis::start_persistent();
    let url = server.url();
    let m = now_minute();
    let b1 = batch1(m);
    let bound = b1.rows.len();
    let mut cfg = fresh_config("dropped", &url);
    cfg.sink_max_pending_rows = bound;
    let sink = RedisViewSink::start(&cfg, Arc::new(ExactUnion)).expect("start");
    sink.send(b1).await.expect("send");
    assert!(sink.wait_applied(100, Duration::from_secs(10)).await, "{:?}", sink.status());

    server.stop();
    // The outage is known (a write failed), then twice the bound of distinct rows (one link
    // each) arrives while Redis is down.
    sink.send(RollupBatch { epoch_upper: 150, watermark_ms: m, rows: vec![row("y", G::Day, D1, V::Total, false, &[], 1, &[1])] }).await.expect("send");
    assert!(wait_until(Duration::from_secs(10), || async { !sink.status().healthy }).await, "outage seen: {:?}", sink.status());
    let rows = (0..2 * bound).map(|i| row(&format!("x{i}"), G::Day, D1, V::Total, false, &[], 1, &[i as u64])).collect();
    sink.send(RollupBatch { epoch_upper: 200, watermark_ms: m, rows }).await.expect("send");
    assert!(wait_until(Duration::from_secs(10), || async { sink.status().dropped_rows > 0 }).await, "rows dropped: {:?}", sink.status());
    let dropped = sink.status().dropped_rows;
    server.restart();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            let s = sink.status();
            s.healthy && s.pending_rows == 0 && s.flushes >= 2
        })
        .await,
        "the rows it kept are written: {:?}",
        sink.status()
    );
    let st = sink.status();
    assert_eq!((st.applied_epoch, st.dropped_rows), (100, dropped), "the applied epoch stays before the drop: {st:?}");
    assert!(!sink.wait_applied(200, Duration::from_millis(500)).await);
}

/// Attack of session 53: with a small bound, a replay (batches of more distinct rows than the
/// bound) dropped rows while Redis answered, and every restart replayed and dropped again.
/// While Redis answers nothing is dropped: every row is written, exactly, and the applied
/// epoch reaches the last batch.
#[tokio::test]
async fn nothing_is_dropped_at_the_buffer_bound_while_redis_answers() {
    let server = PrivateRedis::start_persistent();
    let url = server.url();
    let m = now_minute();
    let mut cfg = fresh_config("bound-up", &url);
    cfg.sink_max_pending_rows = 40;
    let keys = Keys::new(&cfg.key_prefix);
    let sink = RedisViewSink::start(&cfg, Arc::new(ExactUnion)).expect("start");
    // Ten batches of 100 new rows each (2.5 times the bound per batch), one link per row.
    let mut all = Vec::new();
    for b in 0..10u64 {
        let rows = (0..100u64).map(|i| row(&format!("r{b}-{i}"), G::Day, D1, V::Total, false, &[], i + 1, &[i])).collect();
        let batch = RollupBatch { epoch_upper: 300 + b, watermark_ms: m, rows };
        sink.send(batch.clone()).await.expect("send");
        all.push(batch);
    }
    assert!(sink.wait_applied(309, Duration::from_secs(20)).await, "{:?}", sink.status());
    let st = sink.status();
    assert_eq!((st.dropped_rows, st.pending_rows, st.healthy), (0, 0, true), "{st:?}");
    let want = expected(&all);
    assert_eq!(want.totals.len(), 1000);
    assert_eq!(want.totals["r9-99"]["clicks"], 100);
    assert_eq!(read_state(&url, &keys, &want).await, want);
}
