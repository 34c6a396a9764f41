//! Integration tests against a ClickHouse HTTP endpoint at `CLICKHOUSE_URL`
//! (`infra/services/clickhouse.sh start`; `CLICKHOUSE_USER`, `CLICKHOUSE_PASSWORD`). Each test
//! uses a fresh database (dropped at the end) and polls with a timeout.
//!
//! Run: `cargo test -p sluice-connectors --features clickhouse-sink,integration-tests clickhouse::integration_tests -- --nocapture`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_schemas::EnrichedClick;
use sluice_schemas::rollup::{RollupBatch, RollupGranularity as G, RollupRow, RollupView as V};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::redis::integration_tests::wait::wait_until;

fn fresh_config(tag: &str) -> ClickHouseConfig {
    let mut c = ClickHouseConfig::default();
    c.apply_env(|k| std::env::var(k).ok());
    if c.url.is_none() {
        c.url = Some("http://127.0.0.1:18123".into());
        c.password = Password("sluice".into());
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    c.database = format!("it_{tag}_{}", &id[..10]);
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c.request_timeout = Duration::from_secs(20);
    c
}

async fn drop_database(c: &ClickHouseConfig) {
    if let Ok(s) = client::server_client(c) {
        let _ = s.query(&format!("DROP DATABASE IF EXISTS {}", c.database)).execute().await;
    }
}

const DAY: i64 = 86_400_000;
const T0: i64 = 20_400 * DAY;

#[allow(clippy::too_many_arguments)] // one argument per column of the row under test
fn row(code: &str, g: G, start: i64, view: V, is_bot: bool, dims: &[&str], clicks: u64, sketch: &[u8]) -> RollupRow {
    RollupRow {
        code: code.into(),
        granularity: g,
        bucket_start_ms: start,
        view,
        is_bot,
        dims: dims.iter().map(|s| s.to_string()).collect(),
        clicks,
        uniques: clicks / 2,
        sketch: sketch.to_vec(),
    }
}

/// Rows of every granularity and view, sketches with every byte value (binary-safe).
fn rows(scale: u64) -> Vec<RollupRow> {
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let mut v = Vec::new();
    for (i, g) in G::ALL.into_iter().enumerate() {
        let start = T0 + i as i64 * g.len_ms();
        v.push(row("a", g, start, V::Total, false, &[], 10 * scale, &all_bytes));
        v.push(row("a", g, start, V::Total, true, &[], scale, &[1, 0, 1, 7]));
        v.push(row("a", g, start, V::Country, false, &["US"], 6 * scale, &[1, 0, 0]));
        v.push(row("a", g, start, V::ReferrerDomain, false, &["bücher.example"], 4 * scale, &[1, 0, 0]));
        v.push(row("a", g, start, V::CountryDevice, false, &["US", "mobile"], 3 * scale, &[1, 0, 0]));
        v.push(row("b", g, start, V::Total, false, &[], scale, &[1, 0, 0]));
    }
    v
}

fn key(r: &RollupRow) -> String {
    format!("{:?}", r.key())
}

/// Every stored row of `code` in every table, by key.
async fn stored(reader: &ClickHouseReader, code: &str) -> BTreeMap<String, RollupRow> {
    let mut out = BTreeMap::new();
    for g in G::ALL {
        let q = RollupQuery { code: code.into(), granularity: g, from_ms: 0, to_ms: i64::MAX / 2, views: V::ALL.to_vec(), include_bots: true };
        for r in reader.rollup_rows(&q).await.expect("read rows") {
            assert!(out.insert(key(&r), r).is_none(), "a key appears twice under FINAL");
        }
    }
    out
}

#[tokio::test]
async fn migrations_apply_once_and_record_their_versions() {
    let c = fresh_config("migrate");
    healthcheck(&c, Duration::from_secs(10)).await.expect("healthcheck");
    let first = migrate(&c).await.expect("migrate");
    assert_eq!(first, MigrationReport { before: vec![], applied: vec![1, 2, 3, 4] });
    let second = migrate(&c).await.expect("migrate again");
    assert_eq!(second, MigrationReport { before: vec![1, 2, 3, 4], applied: vec![] });
    let cl = client(&c).expect("client");
    let mut tables: Vec<String> = cl.query("SELECT name FROM system.tables WHERE database = currentDatabase()").fetch_all::<String>().await.expect("tables");
    tables.sort();
    assert_eq!(tables, ["anomalies", "events_enriched", "rollups_day", "rollups_hour", "rollups_minute", "rollups_quarter", "sluice_migrations"]);
    drop_database(&c).await;
}

/// The same batch twice, then an older batch after a newer one: `FINAL` holds exactly the
/// newest value of every key (no duplicates, no stale value), byte-identical sketches.
#[tokio::test]
async fn replays_leave_one_newest_row_per_key() {
    let c = fresh_config("replay");
    let sink = ClickHouseSink::start(&ClickHouseConfig { flush_interval: Duration::from_millis(50), ..c.clone() }).expect("sink");
    let (old, new) = (rows(1), rows(2));
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 10, watermark_ms: 0, rows: old.clone() })).await.expect("send");
    assert!(sink.wait_applied(10, Duration::from_secs(30)).await, "{:?}", sink.status());
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 20, watermark_ms: 0, rows: new.clone() })).await.expect("send");
    assert!(sink.wait_applied(20, Duration::from_secs(30)).await);
    // Replay: the same new batch again, then the old values with their old version.
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 20, watermark_ms: 0, rows: new.clone() })).await.expect("send");
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 10, watermark_ms: 0, rows: old.clone() })).await.expect("send");
    assert!(wait_until(Duration::from_secs(30), || async { sink.status().pending_rows == 0 && sink.status().rows_written as usize >= 3 * new.len() }).await);

    let reader = ClickHouseReader::new(&c).expect("reader");
    let mut want: BTreeMap<String, RollupRow> = new.iter().filter(|r| r.code == "a").map(|r| (key(r), r.clone())).collect();
    assert_eq!(stored(&reader, "a").await, want);
    want = new.iter().filter(|r| r.code == "b").map(|r| (key(r), r.clone())).collect();
    assert_eq!(stored(&reader, "b").await, want);
    for g in G::ALL {
        let (raw, fin) = reader.rollup_counts(g).await.expect("counts");
        assert_eq!(fin, 6, "one row per key in {g:?}");
        assert!(raw >= fin);
    }

    // Filtering: views and bots.
    let q = RollupQuery { code: "a".into(), granularity: G::Hour, from_ms: T0, to_ms: T0 + 10 * DAY, views: vec![V::Total], include_bots: false };
    let got = reader.rollup_rows(&q).await.expect("read");
    assert_eq!(got, vec![new.iter().find(|r| r.granularity == G::Hour && r.view == V::Total && !r.is_bot && r.code == "a").expect("row").clone()]);
    let bad = RollupQuery { views: vec![], ..q.clone() };
    assert!(matches!(reader.rollup_rows(&bad).await, Err(crate::Error::InvalidValue { field: "views", .. })));
    let st = sink.shutdown(Duration::from_secs(10)).await;
    assert_eq!(st.pending_rows, 0);
    drop_database(&c).await;
}

/// A server that comes back without the database (a new data directory, a DROP) gets the
/// migrations again at the next attempt and then every row: the sink does not retry the
/// insert into a missing table for ever.
#[tokio::test]
async fn a_dropped_database_is_migrated_again_and_written() {
    let c = fresh_config("dropped");
    let sink = ClickHouseSink::start(&ClickHouseConfig { flush_interval: Duration::from_millis(50), ..c.clone() }).expect("sink");
    let first = rows(1);
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 10, watermark_ms: 0, rows: first })).await.expect("send");
    assert!(sink.wait_applied(10, Duration::from_secs(30)).await, "{:?}", sink.status());
    drop_database(&c).await;
    let new = rows(3);
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 20, watermark_ms: 0, rows: new.clone() })).await.expect("send");
    assert!(sink.wait_applied(20, Duration::from_secs(60)).await, "written after the database came back: {:?}", sink.status());
    let st = sink.status();
    assert!(st.migrated && st.healthy, "{st:?}");
    let reader = ClickHouseReader::new(&c).expect("reader");
    for code in ["a", "b"] {
        let want: BTreeMap<String, RollupRow> = new.iter().filter(|r| r.code == code).map(|r| (key(r), r.clone())).collect();
        assert_eq!(stored(&reader, code).await, want, "{code}");
    }
    sink.send(SinkInput::Events(vec![event(1)])).await.expect("send");
    assert!(wait_until(Duration::from_secs(30), || async { sink.status().pending_rows == 0 }).await, "{:?}", sink.status());
    let st = sink.shutdown(Duration::from_secs(10)).await;
    assert_eq!(st.pending_rows, 0);
    drop_database(&c).await;
}

/// Size-triggered and time-triggered flushes; rows buffered until then.
#[tokio::test]
async fn batches_by_size_or_time() {
    let c = fresh_config("batching");
    migrate(&c).await.expect("migrate");
    let sink = ClickHouseSink::start(&ClickHouseConfig { batch_rows: 1_000, flush_interval: Duration::from_secs(3600), ..c.clone() }).expect("sink");
    let mk = |n: usize, off: usize| -> Vec<RollupRow> {
        (0..n).map(|i| row(&format!("c{}", i + off), G::Minute, T0, V::Total, false, &[], 1, &[1, 0, 0])).collect()
    };
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 1, watermark_ms: 0, rows: mk(999, 0) })).await.expect("send");
    assert!(wait_until(Duration::from_secs(10), || async { sink.status().pending_rows == 999 }).await);
    assert_eq!(sink.status().inserts, 0, "below batch-rows and before flush-interval: nothing sent");
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 2, watermark_ms: 0, rows: mk(1, 999) })).await.expect("send");
    // Watched, not `wait_applied` (which has the buffer inserted at once).
    assert!(wait_until(Duration::from_secs(30), || async { sink.status().applied_epoch >= 2 }).await, "{:?}", sink.status());
    let st = sink.status();
    assert_eq!((st.inserts, st.rows_written), (1, 1_000), "one insert of 1000 rows");
    sink.shutdown(Duration::from_secs(10)).await;

    let sink = ClickHouseSink::start(&ClickHouseConfig { batch_rows: 1_000, flush_interval: Duration::from_millis(300), ..c.clone() }).expect("sink");
    let t = Instant::now();
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 3, watermark_ms: 0, rows: mk(10, 2_000) })).await.expect("send");
    // Watched, not `wait_applied` (which has the buffer inserted at once).
    assert!(wait_until(Duration::from_secs(30), || async { sink.status().applied_epoch >= 3 }).await, "{:?}", sink.status());
    assert!(t.elapsed() >= Duration::from_millis(300), "flushed by time, after the interval: {:?}", t.elapsed());
    assert_eq!(sink.status().inserts, 1);
    sink.shutdown(Duration::from_secs(10)).await;
    let reader = ClickHouseReader::new(&c).expect("reader");
    assert_eq!(reader.rollup_counts(G::Minute).await.expect("count").1, 1_010);
    drop_database(&c).await;
}

/// Attack of session 53: with `flush-interval = "10m"` every checkpoint waited for rows the
/// sink held for ten minutes, failed after its 30 s, and every stop exited 1. A wait for the
/// applied epoch has the buffer inserted at once.
#[tokio::test]
async fn a_checkpoint_wait_inserts_at_once_despite_a_long_flush_interval() {
    let c = fresh_config("flushnow");
    migrate(&c).await.expect("migrate");
    let sink = ClickHouseSink::start(&ClickHouseConfig { flush_interval: Duration::from_secs(600), ..c.clone() }).expect("sink");
    let rows: Vec<RollupRow> = (0..10).map(|i| row(&format!("f{i}"), G::Minute, T0, V::Total, false, &[], 1, &[1, 0, 0])).collect();
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 7, watermark_ms: 0, rows })).await.expect("send");
    assert!(wait_until(Duration::from_secs(10), || async { sink.status().pending_rows == 10 }).await, "{:?}", sink.status());
    assert_eq!(sink.status().inserts, 0, "held for the flush interval");
    assert!(sink.wait_applied(7, Duration::from_secs(10)).await, "{:?}", sink.status());
    assert_eq!(sink.status().inserts, 1);
    let reader = ClickHouseReader::new(&c).expect("reader");
    assert_eq!(reader.rollup_counts(G::Minute).await.expect("count").1, 10);
    sink.shutdown(Duration::from_secs(10)).await;
    drop_database(&c).await;
}

/// Attack of session 53: with a small `max-pending-rows`, a replay (batches of more distinct
/// rows than the bound) dropped rows while ClickHouse answered. Nothing is dropped now: every
/// row is inserted and the applied epoch reaches the last batch.
#[tokio::test]
async fn nothing_is_dropped_at_the_buffer_bound_while_clickhouse_answers() {
    let c = fresh_config("boundup");
    migrate(&c).await.expect("migrate");
    let sink = ClickHouseSink::start(&ClickHouseConfig { max_pending_rows: 50, ..c.clone() }).expect("sink");
    for b in 0..10u64 {
        let rows = (0..100).map(|i| row(&format!("r{b}-{i}"), G::Minute, T0, V::Total, false, &[], 1, &[1, 0, 0])).collect();
        sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 10 + b, watermark_ms: 0, rows })).await.expect("send");
    }
    sink.send(SinkInput::Events((0..120).map(event).collect())).await.expect("send events");
    assert!(sink.wait_applied(19, Duration::from_secs(30)).await, "{:?}", sink.status());
    let st = sink.status();
    assert_eq!((st.dropped_rows, st.pending_rows, st.healthy), (0, 0, true), "{st:?}");
    let reader = ClickHouseReader::new(&c).expect("reader");
    assert_eq!(reader.rollup_counts(G::Minute).await.expect("count").1, 1_000);
    assert_eq!(reader.events("ev", T0, T0 + DAY).await.expect("events").len(), 120);
    sink.shutdown(Duration::from_secs(10)).await;
    drop_database(&c).await;
}

/// Attack of session 53: `events_enriched` is partitioned by day, and one insert of a
/// backfill over more than 100 days was refused (`TOO_MANY_PARTS`, 252) on every retry,
/// holding every later row. 150 days of events are inserted in one batch.
#[tokio::test]
async fn a_backfill_over_more_than_100_days_is_inserted() {
    let c = fresh_config("days150");
    let sink = ClickHouseSink::start(&ClickHouseConfig { flush_interval: Duration::from_millis(20), ..c.clone() }).expect("sink");
    let evs: Vec<EnrichedClick> = (0..150).map(|i| EnrichedClick { ts: T0 - i as i64 * DAY, ..event(i) }).collect();
    sink.send(SinkInput::Events(evs.clone())).await.expect("send");
    assert!(
        wait_until(Duration::from_secs(30), || async { sink.status().rows_written >= 150 && sink.status().pending_rows == 0 }).await,
        "{:?}",
        sink.status()
    );
    let st = sink.status();
    assert!(st.healthy && st.errors == 0, "{st:?}");
    let reader = ClickHouseReader::new(&c).expect("reader");
    let mut got = reader.events("ev", T0 - 150 * DAY, T0 + DAY).await.expect("events");
    got.sort_by_key(|e| std::cmp::Reverse(e.ts));
    assert_eq!(got, evs);
    sink.shutdown(Duration::from_secs(10)).await;
    drop_database(&c).await;
}

/// A TCP forwarder to ClickHouse that can refuse traffic (closes new and open connections).
struct Switch {
    port: u16,
    up: Arc<AtomicBool>,
}

async fn switch_to(target: String) -> Switch {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let up = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&up);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if !flag.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = TcpStream::connect(target).await {
                    let _ = copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    Switch { port, up }
}

/// ClickHouse unreachable at start (migrations and inserts fail): the sink retries with
/// capped backoff, keeps merging input, and inserts exactly the newest rows once reachable.
#[tokio::test]
async fn retries_with_backoff_until_clickhouse_is_reachable() {
    let c = fresh_config("retry");
    let target = c.url.as_deref().expect("url").trim_start_matches("http://").trim_end_matches('/').to_string();
    let sw = switch_to(target).await;
    let via = ClickHouseConfig { url: Some(format!("http://127.0.0.1:{}", sw.port)), flush_interval: Duration::from_millis(20), ..c.clone() };
    let sink = ClickHouseSink::start(&via).expect("sink");
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 1, watermark_ms: 0, rows: rows(1) })).await.expect("send");
    assert!(wait_until(Duration::from_secs(10), || async { sink.status().errors >= 3 }).await, "{:?}", sink.status());
    sink.send(SinkInput::Rollups(RollupBatch { epoch_upper: 2, watermark_ms: 0, rows: rows(3) })).await.expect("send");
    let st = sink.status();
    assert!(!st.healthy && !st.migrated && st.inserts == 0, "{st:?}");
    assert!(st.last_error.is_some());

    let t = Instant::now();
    sw.up.store(true, Ordering::SeqCst);
    assert!(sink.wait_applied(2, Duration::from_secs(30)).await, "{:?}", sink.status());
    println!("caught up {:?} after ClickHouse became reachable", t.elapsed());
    let reader = ClickHouseReader::new(&c).expect("reader");
    let want: BTreeMap<String, RollupRow> = rows(3).into_iter().filter(|r| r.code == "a").map(|r| (key(&r), r)).collect();
    assert_eq!(stored(&reader, "a").await, want);
    let st = sink.status();
    assert!(st.healthy && st.migrated && st.errors >= 3);
    sink.shutdown(Duration::from_secs(10)).await;
    drop_database(&c).await;
}

/// A TCP forwarder to ClickHouse whose new connections, while `hang` is set, are accepted
/// and never answered (a ClickHouse that hangs).
async fn hanging_proxy_to(target: String) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hang = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&hang);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            if flag.load(Ordering::SeqCst) {
                held.push(inbound);
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = TcpStream::connect(target).await {
                    let _ = copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    (port, hang)
}

/// Finding: `pending_rows` left out rows handed to the sink while an insert was in flight to
/// a ClickHouse that does not answer (the writer takes no input meanwhile). They count, with
/// the insert's own rows, until ClickHouse acknowledges them; then the count is 0 again.
#[tokio::test]
async fn pending_rows_count_an_unanswered_insert_and_what_waits_behind_it() {
    let c = fresh_config("inflight");
    let target = c.url.as_deref().expect("url").trim_start_matches("http://").trim_end_matches('/').to_string();
    let (port, hang) = hanging_proxy_to(target).await;
    let via = ClickHouseConfig {
        url: Some(format!("http://127.0.0.1:{port}")),
        flush_interval: Duration::from_millis(20),
        request_timeout: Duration::from_secs(3),
        ..c.clone()
    };
    let sink = ClickHouseSink::start(&via).expect("sink");
    assert!(wait_until(Duration::from_secs(30), || async { sink.status().migrated }).await, "{:?}", sink.status());
    hang.store(true, Ordering::SeqCst);
    sink.send(SinkInput::Events((0..5).map(event).collect())).await.expect("send");
    // The insert is in flight (its connection held) well before the request timeout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sink.send(SinkInput::Events((5..8).map(event).collect())).await.expect("send");
    for _ in 0..10 {
        let st = sink.status();
        assert_eq!((st.pending_rows, st.inserts, st.errors), (8, 0, 0), "{st:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hang.store(false, Ordering::SeqCst);
    // The held insert times out; the retry is acknowledged.
    assert!(wait_until(Duration::from_secs(30), || async { sink.status().pending_rows == 0 }).await, "{:?}", sink.status());
    let st = sink.status();
    assert!(st.healthy && st.errors >= 1 && st.rows_written == 8, "{st:?}");
    let reader = ClickHouseReader::new(&c).expect("reader");
    assert_eq!(reader.events("ev", T0, T0 + DAY).await.expect("events").len(), 8);
    sink.shutdown(Duration::from_secs(10)).await;
    drop_database(&c).await;
}

fn event(i: u64) -> EnrichedClick {
    EnrichedClick {
        event_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(i)),
        code: "ev".into(),
        ts: T0 + i as i64 * 1_000,
        visitor_id: i * 7,
        country: "DE".into(),
        device: "mobile".into(),
        browser: "Firefox".into(),
        os: "Android".into(),
        referrer_domain: "(direct)".into(),
        referrer_medium: "direct".into(),
        is_bot: i.is_multiple_of(10),
        org: i.is_multiple_of(2).then(|| "acme".to_string()),
    }
}

/// Events and anomalies round-trip; replayed events collapse to one row per event id.
#[tokio::test]
async fn events_and_anomalies_round_trip_without_duplicates() {
    let c = fresh_config("events");
    let sink = ClickHouseSink::start(&ClickHouseConfig { flush_interval: Duration::from_millis(20), ..c.clone() }).expect("sink");
    let evs: Vec<EnrichedClick> = (0..500).map(event).collect();
    sink.send(SinkInput::Events(evs.clone())).await.expect("send");
    sink.send(SinkInput::Events(evs[100..300].to_vec())).await.expect("send replay");
    let an = AnomalyRecord {
        anomaly_id: "0191e3c2-0000-7000-8000-000000000001".into(),
        revision: 0,
        status: "open".into(),
        key: "link:ev".into(),
        severity: "warning".into(),
        code: "ev".into(),
        kind: "burst".into(),
        window_start: T0,
        window_end: T0 + 60_000,
        detected_at: T0 + 61_000,
        score: 9.5,
        observed: 1200.0,
        expected: 40.0,
        details: r#"{"why":"10x"}"#.into(),
        version: 1,
    };
    let an2 = AnomalyRecord { score: 11.0, version: 2, revision: 1, status: "updated".into(), ..an.clone() };
    // Another anomaly of the same code, kind and window (a second flooding visitor): its own row.
    let other = AnomalyRecord { anomaly_id: "0191e3c2-0000-7000-8000-000000000002".into(), key: "visitor:2".into(), version: 1, ..an.clone() };
    sink.send(SinkInput::Anomalies(vec![an.clone(), other.clone()])).await.expect("send");
    sink.send(SinkInput::Anomalies(vec![an2.clone()])).await.expect("send");
    assert!(wait_until(Duration::from_secs(30), || async { sink.status().rows_written >= 703 && sink.status().pending_rows == 0 }).await);
    let reader = ClickHouseReader::new(&c).expect("reader");
    let got = reader.events("ev", T0, T0 + DAY).await.expect("events");
    assert_eq!(got, evs);
    assert_eq!(reader.anomalies(Some("ev"), T0, T0 + 1).await.expect("anomalies"), vec![an2, other]);
    assert!(reader.anomalies(None, T0 + 1, T0 + 2).await.expect("anomalies").is_empty());
    sink.shutdown(Duration::from_secs(10)).await;
    drop_database(&c).await;
}

/// Migration 0004 on a database at version 3: the old rows are kept, one per anomaly id, and
/// from then on distinct anomalies of one (code, kind, window) keep their own rows.
#[tokio::test]
async fn migration_4_keys_anomalies_by_id_and_keeps_old_rows() {
    let c = fresh_config("anom4");
    healthcheck(&c, Duration::from_secs(10)).await.expect("healthcheck");
    assert_eq!(migrate_up_to(&c, 3).await.expect("migrate to 3").applied, vec![1, 2, 3]);
    let cl = client(&c).expect("client");
    // Two events of one anomaly (ids in `details`, as the sink wrote them) and a row without one.
    let old = "INSERT INTO anomalies (code, kind, window_start, window_end, detected_at, score, observed, expected, details, version) VALUES \
        ('ev', 'visitor_flood', fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 1, 40, 0, ?, 5), \
        ('ev', 'visitor_flood', fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 2, 80, 0, ?, 6), \
        ('zz', 'burst', fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), fromUnixTimestamp64Milli(toInt64(?), 'UTC'), 3, 9, 1, '{}', 1)";
    let d1 = r#"{"anomaly_id":"0191e3c2-0000-7000-8000-00000000000a","revision":0,"status":"open","key":"visitor:a","severity":"info"}"#;
    let d2 = r#"{"anomaly_id":"0191e3c2-0000-7000-8000-00000000000a","revision":1,"status":"updated","key":"visitor:a","severity":"warning"}"#;
    cl.query(old)
        .bind(T0)
        .bind(T0 + 60_000)
        .bind(T0 + 1_000)
        .bind(d1)
        .bind(T0)
        .bind(T0 + 60_000)
        .bind(T0 + 2_000)
        .bind(d2)
        .bind(T0)
        .bind(T0 + 60_000)
        .bind(T0 + 3_000)
        .execute()
        .await
        .expect("old rows");
    assert_eq!(migrate(&c).await.expect("migrate").applied, vec![4]);
    let reader = ClickHouseReader::new(&c).expect("reader");
    let got = reader.anomalies(None, T0, T0 + 1).await.expect("anomalies");
    let summary: Vec<(String, u32, String, String, String, u64)> =
        got.iter().map(|a| (a.anomaly_id.clone(), a.revision, a.status.clone(), a.key.clone(), a.severity.clone(), a.version)).collect();
    assert_eq!(
        summary,
        vec![
            ("0191e3c2-0000-7000-8000-00000000000a".into(), 1, "updated".into(), "visitor:a".into(), "warning".into(), 6),
            (format!("legacy:zz:burst:{T0}"), 0, String::new(), String::new(), String::new(), 1),
        ]
    );
    let tables: Vec<String> =
        cl.query("SELECT name FROM system.tables WHERE database = currentDatabase() AND name LIKE 'anomalies%'").fetch_all::<String>().await.expect("tables");
    assert_eq!(tables, vec!["anomalies".to_string()]);
    drop_database(&c).await;
}
