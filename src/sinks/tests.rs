//! The sinks against real services (feature `integration-tests`; `CLICKHOUSE_URL`… and
//! `SLUICE_REDIS_URL`, started by `infra/test`): a seeded click stream runs through the real
//! dataflow; its change stream goes to ClickHouse (twice: replays must not count twice) and
//! Redis; then
//! * every stats query the in-memory views answer is answered identically from ClickHouse
//!   ([`ClickHouseStats`]) — rows, uniques, dimension totals, order, limits;
//! * ranges whose minute rows the in-memory retention dropped are answered from ClickHouse
//!   exactly as a pipeline that retained them answers;
//! * Redis' per-link totals and all-time top countries equal the in-memory answers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono_tz::Tz;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use redis::AsyncCommands;
use sluice_connectors::clickhouse::{ClickHouseConfig, ClickHouseReader, ClickHouseSink, SinkInput};
use sluice_connectors::redis::{Keys, RedisConfig, RedisUrl, RedisViewSink};
use sluice_dataflows::changes::ChangeBatch;
use sluice_dataflows::clock::ManualClock;
use sluice_dataflows::config::PipelineConfig;
use sluice_dataflows::enrich::{EnrichConfig, Enricher};
use sluice_dataflows::model::{Dimension, Granularity, View};
use sluice_dataflows::pipeline::{self, PipelineHandle, PipelineInputs, PipelineOutputs};
use sluice_dataflows::source::MemoryFeed;
use sluice_dataflows::views::{Bucket, OrderBy, StatsQuery, StatsResult};
use sluice_schemas::ClickEvent;
use sluice_schemas::rollup::RollupBatch;

use super::convert;
use super::{ClickHouseStats, DataflowSketches};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2026-03-01T00:00:00Z.
const D0: i64 = 1_772_323_200_000;
const SPAN_DAYS: i64 = 5;

const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
];
const IPS: &[Option<&str>] = &[Some("8.8.8.0"), Some("81.2.69.0"), Some("1.1.1.0"), Some("2a00:1450:4001::"), None];
const REFERRERS: &[Option<&str>] = &[None, Some("https://www.google.com/search?q=x"), Some("https://t.co/abc"), Some("https://news.ycombinator.com/item?id=1")];

/// Seeded clicks over five days: `small` links with few visitors (exact sets), `mid` with a
/// few hundred (sparse HLL++), `big` with thousands in one hour (dense registers).
fn stream() -> Vec<ClickEvent> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_0006);
    let mut out = Vec::new();
    let mut id = 0u128;
    let mut push = |code: &str, ts: i64, visitor: u64, rng: &mut ChaCha8Rng| {
        id += 1;
        out.push(ClickEvent {
            event_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + id),
            code: code.into(),
            ts,
            ip_trunc: IPS[rng.random_range(0..IPS.len())].map(str::to_string),
            visitor_id: visitor,
            user_agent: UAS[rng.random_range(0..UAS.len())].into(),
            referrer: REFERRERS[rng.random_range(0..REFERRERS.len())].map(str::to_string),
            accept_language: None,
            edge_region: None,
        });
    };
    for _ in 0..3_000 {
        let ts = D0 + rng.random_range(0..SPAN_DAYS * DAY);
        let code = ["small", "mid", "mid"][rng.random_range(0..3)];
        let visitors = if code == "small" { 30 } else { 400 };
        let v = rng.random_range(0..visitors);
        push(code, ts, v, &mut rng);
    }
    for v in 0..6_000u64 {
        let ts = D0 + 3 * DAY + 5 * HOUR + rng.random_range(0..HOUR);
        push("big", ts, v, &mut rng);
    }
    out.sort_by_key(|e| e.ts);
    out
}

struct Run {
    handle: PipelineHandle,
    batches: Arc<Mutex<Vec<ChangeBatch>>>,
}

fn run(events: &[ClickEvent], minute_retention: Duration) -> Run {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&batches);
    let mut cfg = PipelineConfig { workers: 2, change_interval: Duration::ZERO, ..PipelineConfig::default() };
    cfg.semantics.minute_retention = minute_retention;
    let feed = MemoryFeed::new(0..1);
    let clock = ManualClock::new(D0 + SPAN_DAYS * DAY + MIN);
    let inputs = PipelineInputs {
        source: feed.factory(),
        enricher: Enricher::new(&EnrichConfig::default()).expect("bundled enrichment data"),
        clock: Arc::new(clock),
        link_meta: None,
    };
    let outputs = PipelineOutputs { changes: Some(Arc::new(move |b: ChangeBatch| sink.lock().expect("lock").push(b))), ..PipelineOutputs::default() };
    let handle = pipeline::start(&cfg, inputs, outputs).expect("pipeline starts");
    for e in events {
        feed.push(0, e.clone(), false);
    }
    let as_of = handle.sync(Duration::from_secs(300)).expect("pipeline catches up");
    // `sync` returns once the views reflect every epoch below `as_of.epoch`; each worker
    // deposits its changed rows just after publishing them to the views, so the change batch
    // covering the same epochs may still be on its way: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let upper = batches.lock().expect("lock").last().map_or(0, |b| b.epoch_upper);
        if upper >= as_of.epoch {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no change batch reached epoch {} (last {upper})", as_of.epoch);
        std::thread::sleep(Duration::from_millis(5));
    }
    Run { handle, batches }
}

/// The ClickHouse of the test environment (`CLICKHOUSE_URL`…, else the local dev server of
/// `infra/services/clickhouse.sh`) with a fresh database `it_<tag>_<random>` and a 50 ms
/// flush interval. Shared with the other ClickHouse tests below `sinks`.
pub(super) fn clickhouse_config(tag: &str) -> ClickHouseConfig {
    let mut c = ClickHouseConfig::default();
    c.apply_env(|k| std::env::var(k).ok());
    if c.url.is_none() {
        c.url = Some("http://127.0.0.1:18123".into());
        c.password = sluice_connectors::clickhouse::Password("sluice".into());
    }
    c.database = format!("it_{tag}_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    c.flush_interval = Duration::from_millis(50);
    c
}

fn queries(codes: &[&str]) -> Vec<StatsQuery> {
    let end = D0 + SPAN_DAYS * DAY;
    let mut out = Vec::new();
    let dims: [&[Dimension]; 6] = [
        &[],
        &[Dimension::Country],
        &[Dimension::Device, Dimension::Country],
        &[Dimension::Country, Dimension::Device],
        &[Dimension::ReferrerDomain],
        &[Dimension::Browser],
    ];
    for code in codes {
        for (i, d) in dims.iter().enumerate() {
            for include_bots in [false, true] {
                let mut base = |from: i64, to: i64, bucket: Bucket, tz: Tz| {
                    let mut q = StatsQuery::new(code, from, to, bucket);
                    q.tz = tz;
                    q.dimensions = d.to_vec();
                    q.include_bots = include_bots;
                    q.order_by = [OrderBy::Bucket, OrderBy::ClicksDesc, OrderBy::UniquesDesc][i % 3];
                    q.limit = (i == 4).then_some(7);
                    out.push(q);
                };
                // Minute edges inside the in-memory retention (the last 40 hours).
                base(end - 40 * HOUR + 7 * MIN, end - 3 * MIN, Bucket::Hour, Tz::UTC);
                base(end - 2 * HOUR - 13 * MIN, end - 20 * MIN, Bucket::Minute, Tz::UTC);
                // Whole days and quarter-aligned edges over the whole stream.
                base(D0, end, Bucket::Day, Tz::UTC);
                base(D0 - DAY, end + DAY, Bucket::Day, "Asia/Kolkata".parse().expect("tz"));
                base(D0 + 45 * MIN, end - 15 * MIN, Bucket::Hour, "America/New_York".parse().expect("tz"));
            }
        }
    }
    out
}

fn same(got: &StatsResult, want: &StatsResult, q: &StatsQuery) {
    let got = StatsResult { as_of: want.as_of, ..got.clone() };
    assert_eq!(&got, want, "query {q:?}");
    // Uniques never exceed the clicks of the same rows (the `big` link's dense sketches may
    // estimate more visitors than there are).
    let figures = got.rows.iter().map(|r| (r.clicks, r.uniques)).chain(got.by_dimension.iter().map(|d| (d.clicks, d.uniques)));
    for (clicks, uniques) in figures.chain([(got.totals.clicks, got.totals.uniques)]) {
        assert!(uniques <= clicks, "{uniques} uniques > {clicks} clicks in {q:?}");
    }
}

async fn load_clickhouse(cfg: &ClickHouseConfig, batches: &[ChangeBatch], times: usize) {
    let sink = ClickHouseSink::start(cfg).expect("sink");
    let mut last = 0;
    for _ in 0..times {
        for b in batches {
            let mut rb: RollupBatch = convert::batch(b.clone());
            rb.dedup_keep_last();
            last = last.max(rb.epoch_upper);
            sink.send(SinkInput::Rollups(rb)).await.expect("send");
        }
    }
    assert!(sink.wait_applied(last, Duration::from_secs(120)).await, "{:?}", sink.status());
    sink.shutdown(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_answers_equal_the_in_memory_views_and_cover_dropped_ranges() {
    // `keep` retains every minute row of the stream; `short` drops minute rows older than
    // 48 h. In a live deployment every row reaches ClickHouse while it is fresh, so
    // ClickHouse is loaded from the change stream of `keep` (here the whole stream arrives
    // at once, and `short` never materializes the old minutes at all).
    let events = stream();
    let keep = tokio::task::spawn_blocking({
        let e = events.clone();
        move || run(&e, Duration::from_secs(30 * 86_400))
    })
    .await
    .expect("run");
    let short = tokio::task::spawn_blocking(move || run(&events, Duration::from_secs(48 * 3600))).await.expect("run");
    let batches = keep.batches.lock().expect("lock").clone();
    assert!(batches.len() > 1, "several change batches");
    let cfg = clickhouse_config("sinks");
    // Every batch twice: the replay after a crash must not count anything twice.
    load_clickhouse(&cfg, &batches, 2).await;
    let ch = ClickHouseStats::new(ClickHouseReader::new(&cfg).expect("reader"));

    let mut compared = 0;
    for q in queries(&["small", "mid", "big", "nope"]) {
        let want = keep.handle.views().query(&q).expect("in-memory answer");
        // Where the 48 h pipeline answers too, it answers the same.
        same(&short.handle.views().query(&q).expect("retained range"), &want, &q);
        let got = ch.query(&q, want.as_of).await.expect("clickhouse answer");
        same(&got, &want, &q);
        compared += 1;
    }
    println!("{compared} stats queries: ClickHouse == in-memory");

    // Minute edges 4 days back: dropped from the 48 h memory, answered from ClickHouse
    // exactly as the pipeline that kept every minute answers.
    let old = |code: &str, dims: Vec<Dimension>| {
        let mut q = StatsQuery::new(code, D0 + 10 * HOUR + 3 * MIN, D0 + 13 * HOUR + 41 * MIN, Bucket::Minute);
        q.dimensions = dims;
        q
    };
    let err = short.handle.views().query(&old("mid", vec![])).expect_err("minute rows are gone from memory");
    assert!(matches!(err, sluice_dataflows::Error::InvalidQuery { code: "range_not_retained", .. }), "{err}");
    for q in [old("mid", vec![]), old("small", vec![Dimension::Country]), old("mid", vec![Dimension::Country, Dimension::Device])] {
        let want = keep.handle.views().query(&q).expect("the long-retention pipeline answers");
        assert!(!want.rows.is_empty(), "the range has clicks: {q:?}");
        same(&ch.query(&q, want.as_of).await.expect("clickhouse"), &want, &q);
    }
    if let Ok(s) = sluice_connectors::clickhouse::client::server_client(&cfg) {
        let _ = s.query(&format!("DROP DATABASE IF EXISTS {}", cfg.database)).execute().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_totals_and_top_countries_equal_the_in_memory_views() {
    let events = stream();
    let a = tokio::task::spawn_blocking(move || run(&events, Duration::from_secs(48 * 3600))).await.expect("run");
    let batches = a.batches.lock().expect("lock").clone();
    // The change stream itself: the last emitted value of every human day row of the
    // country view is the views' answer for that day.
    let mut last: BTreeMap<(String, i64, String), u64> = BTreeMap::new();
    for r in batches.iter().flat_map(|b| &b.rows) {
        if r.granularity == Granularity::Day && r.view == View::Single(Dimension::Country) && !r.is_bot {
            last.insert((r.code.to_string(), r.bucket_start_ms, r.dims[0].to_string()), r.clicks);
        }
    }
    let mut want = BTreeMap::new();
    for code in ["small", "mid", "big"] {
        let mut q = StatsQuery::new(code, D0, D0 + SPAN_DAYS * DAY, Bucket::Day);
        q.dimensions = vec![Dimension::Country];
        for row in a.handle.views().query(&q).expect("query").rows {
            want.insert((code.to_string(), row.bucket_start_ms, row.dims[0].to_string()), row.clicks);
        }
    }
    last.retain(|_, c| *c > 0);
    assert_eq!(last, want, "last emitted day country rows vs the views");
    let url = std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into());
    let cfg = RedisConfig {
        url: Some(RedisUrl(url.clone())),
        key_prefix: format!("it:sinks:{}:", &uuid::Uuid::new_v4().simple().to_string()[..10]),
        ..RedisConfig::default()
    };
    let sink = RedisViewSink::start(&cfg, Arc::new(DataflowSketches)).expect("sink");
    let mut last = 0;
    // Twice: replays must not double anything.
    for _ in 0..2 {
        for b in &batches {
            let mut rb = convert::batch(b.clone());
            rb.dedup_keep_last();
            last = last.max(rb.epoch_upper);
            sink.send(rb).await.expect("send");
        }
    }
    assert!(sink.wait_applied(last, Duration::from_secs(60)).await, "{:?}", sink.status());
    // The replay repeats the same epochs, so `wait_applied` may already hold while it is
    // still being written (with older values first): wait for the writer to drain it all.
    let status = sink.shutdown(Duration::from_secs(60)).await;
    assert_eq!((status.pending_rows, status.dropped_rows, status.last_error), (0, 0, None), "sink drained");
    let keys = Keys::new(&cfg.key_prefix);
    let mut c = redis::Client::open(url.as_str()).expect("url").get_multiplexed_async_connection().await.expect("redis");
    for code in ["small", "mid", "big"] {
        let mut q = StatsQuery::new(code, D0, D0 + SPAN_DAYS * DAY, Bucket::Day);
        let all = a.handle.views().query(&q).expect("query");
        let totals: BTreeMap<String, u64> = c.hgetall(keys.totals(code)).await.expect("totals");
        assert_eq!(totals.get("clicks"), Some(&all.totals.clicks), "{code} clicks");
        assert_eq!(totals.get("uniques"), Some(&all.totals.uniques), "{code} uniques (union of day sketches)");
        q.include_bots = true;
        let with_bots = a.handle.views().query(&q).expect("query");
        assert_eq!(totals.get("bot_clicks").copied().unwrap_or(0), with_bots.totals.clicks - all.totals.clicks, "{code} bots");
        q.include_bots = false;
        q.dimensions = vec![Dimension::Country];
        let by_country = a.handle.views().query(&q).expect("query");
        let top: Vec<(String, f64)> = c.zrevrange_withscores(keys.top(code, "country"), 0, -1).await.expect("top");
        let mut got: BTreeMap<String, u64> = top.into_iter().filter(|x| x.1 > 0.0).map(|(k, v)| (k, v as u64)).collect();
        let want: BTreeMap<String, u64> = by_country.by_dimension.iter().map(|d| (d.dims[0].to_string(), d.clicks)).collect();
        assert_eq!(std::mem::take(&mut got), want, "{code} top countries");
        let score: Option<f64> = c.zscore(keys.top_links(), code).await.expect("zscore");
        assert_eq!(score.map(|s| s as u64), Some(all.totals.clicks));
    }
}

/// `rows` synthetic rollup rows (minute total and day country rows of 1,000 links, each with
/// a 3-visitor sketch), in change batches of 10,000.
fn synthetic_batches(rows: usize) -> Vec<RollupBatch> {
    use sluice_schemas::rollup::{RollupGranularity, RollupRow, RollupView};
    let sketch = {
        let mut s = sluice_dataflows::sketch::VisitorSketch::new();
        for v in 1..=3 {
            s.insert(v);
        }
        s.to_bytes()
    };
    let countries = ["DE", "US", "GB", "FR", "IN", "BR", "JP", "ZZ"];
    let mut out = Vec::new();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..rows {
        let minute = i % 2 == 0;
        batch.push(RollupRow {
            code: format!("bench{}", i % 1000),
            granularity: if minute { RollupGranularity::Minute } else { RollupGranularity::Day },
            bucket_start_ms: if minute { D0 + ((i / 1000) as i64) * MIN } else { D0 + ((i / 8000) as i64) * DAY },
            view: if minute { RollupView::Total } else { RollupView::Country },
            is_bot: false,
            dims: if minute { Vec::new() } else { vec![countries[(i / 1000) % 8].to_string()] },
            clicks: 3 + (i % 7) as u64,
            uniques: 3,
            sketch: sketch.clone(),
        });
        if batch.len() == 10_000 {
            out.push(RollupBatch { epoch_upper: out.len() as u64 + 1, watermark_ms: D0, rows: std::mem::take(&mut batch) });
        }
    }
    if !batch.is_empty() {
        out.push(RollupBatch { epoch_upper: out.len() as u64 + 1, watermark_ms: D0, rows: batch });
    }
    out
}

/// Sink throughput for BENCHMARKS.md (ignored by default; run with
/// `cargo nextest run -p sluice --features sluice/integration-tests --run-ignored only -E 'test(sink_throughput)' --no-capture`):
/// 200,000 rollup rows into ClickHouse and 100,000 into Redis, from the first send until
/// the sink reports every batch written; then the stored rows are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints rows/s (BENCHMARKS.md)"]
async fn sink_throughput() {
    let cfg = clickhouse_config("sinks");
    // Migrations first, outside the measurement.
    sluice_connectors::clickhouse::migrate(&cfg).await.expect("migrations");

    let batches = synthetic_batches(200_000);
    let rows: usize = batches.iter().map(|b| b.rows.len()).sum();
    let sink = ClickHouseSink::start(&cfg).expect("sink");
    let t0 = std::time::Instant::now();
    let last = batches.last().expect("batches").epoch_upper;
    for b in batches {
        sink.send(SinkInput::Rollups(b)).await.expect("send");
    }
    assert!(sink.wait_applied(last, Duration::from_secs(300)).await, "{:?}", sink.status());
    let ch_secs = t0.elapsed().as_secs_f64();
    sink.shutdown(Duration::from_secs(10)).await;
    let client = sluice_connectors::clickhouse::client::server_client(&cfg).expect("client");
    let mut stored = 0u64;
    for table in ["rollups_minute", "rollups_day"] {
        stored += client.query(&format!("SELECT count() FROM {}.{table} FINAL", cfg.database)).fetch_one::<u64>().await.expect("count");
    }
    assert_eq!(stored, rows as u64);
    println!("clickhouse: {rows} rollup rows in {ch_secs:.2} s = {:.0} rows/s", rows as f64 / ch_secs);
    let _ = client.query(&format!("DROP DATABASE IF EXISTS {}", cfg.database)).execute().await;

    let url = std::env::var("SLUICE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379/".into());
    let rcfg = RedisConfig {
        url: Some(RedisUrl(url.clone())),
        key_prefix: format!("it:bench:{}:", &uuid::Uuid::new_v4().simple().to_string()[..10]),
        ..RedisConfig::default()
    };
    let batches = synthetic_batches(100_000);
    let rows: usize = batches.iter().map(|b| b.rows.len()).sum();
    let last = batches.last().expect("batches").epoch_upper;
    let sink = RedisViewSink::start(&rcfg, Arc::new(DataflowSketches)).expect("sink");
    let t0 = std::time::Instant::now();
    for b in batches {
        sink.send(b).await.expect("send");
    }
    assert!(sink.wait_applied(last, Duration::from_secs(300)).await, "{:?}", sink.status());
    let r_secs = t0.elapsed().as_secs_f64();
    let written = sink.status().rows_written;
    sink.shutdown(Duration::from_secs(10)).await;
    assert_eq!(written, rows as u64);
    let keys = Keys::new(&rcfg.key_prefix);
    let mut c = redis::Client::open(url.as_str()).expect("url").get_multiplexed_async_connection().await.expect("redis");
    let top: Vec<(String, f64)> = c.zrevrange_withscores(keys.top("bench1", "country"), 0, -1).await.expect("top");
    assert_eq!(top.len(), 8, "bench1 has day rows in 8 countries");
    println!("redis: {rows} view rows in {r_secs:.2} s = {:.0} rows/s", rows as f64 / r_secs);
    let all: Vec<String> = c.keys(format!("{}*", rcfg.key_prefix)).await.expect("keys");
    for chunk in all.chunks(1000) {
        let _: () = c.del(chunk).await.expect("del");
    }
}
