//! Minute stats over backfilled history with ClickHouse (feature `integration-tests`,
//! ClickHouse at `CLICKHOUSE_URL`…): clicks backfilled further back than the minute retention
//! get quarter and coarser rows but no minute rows (the dataflow applies a click only to
//! retained buckets), so `bucket=minute` and the minute edges of hour queries are answered
//! from `events_enriched` there, and agree with the hour answer and the bot-click count; a
//! minute range with complete minute rows is still read from `rollups_minute`.

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_connectors::clickhouse::{ClickHouseConfig, ClickHouseReader, Password};
use sluice_dataflows::views::{AsOf, Bucket, StatsQuery};

use crate::clickhouse::Ch;
use crate::harness::{BROWSER_UA, Server, clicks, event, ms, now_ms, rows, uniques};

const BOT_UA: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const MIN: i64 = 60_000;
const QUARTER: i64 = 15 * MIN;

/// Polls ClickHouse until `sql` (one number) answers `want`, at most 60 s.
async fn await_number(ch: &Ch, sql: &str, want: u64) {
    let t0 = Instant::now();
    loop {
        let got = ch.query(sql).await.ok().and_then(|t| t.trim().parse::<u64>().ok());
        if got == Some(want) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{sql}: {got:?} after 60 s, want {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until ClickHouse holds `n` enriched clicks of `ch1` and `n` clicks (humans and bots)
/// in its quarter and hour total rows of 2026-06-01 plus `live` in the live quarter.
async fn await_clickhouse(ch: &Ch, n: u64, live: u64) {
    await_number(ch, "SELECT count() FROM events_enriched FINAL WHERE code = 'ch1'", n + live).await;
    for table in ["rollups_quarter", "rollups_hour"] {
        let sql = format!("SELECT sum(clicks) FROM {table} FINAL WHERE code = 'ch1' AND view = 'total' AND toDate(bucket) = '2026-06-01'");
        await_number(ch, &sql, n).await;
    }
}

fn bot_clicks(b: &Value) -> Option<u64> {
    b["totals"]["bot_clicks"].as_u64()
}

fn row(label: &str, clicks: u64, uniques: u64) -> (String, u64, u64) {
    (label.to_string(), clicks, uniques)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minute_stats_over_backfilled_history_come_from_events_enriched() {
    let ch = Ch::fresh("chbf");
    let cfg = ClickHouseConfig {
        url: Some(ch.url.clone()),
        user: ch.user.clone(),
        password: Password(ch.password.clone()),
        database: ch.database.clone(),
        flush_interval: Duration::from_millis(100),
        ..ClickHouseConfig::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let tweak = cfg.clone();
    let s = Server::start_in(dir.path(), move |c| c.clickhouse = tweak).await;
    let code = s.link("ch1").await;

    // A live click first: the watermark is now, so 2026-06-01 is far outside the minute
    // retention (48 h) when the backfill arrives.
    let live_ts = now_ms() - 2 * MIN;
    s.events(&[event("chbf-live", &code, live_ts, "192.0.2.9", BROWSER_UA, None)], false).await;
    s.sync().await;
    s.events(
        &[
            event("chbf-1", &code, ms("2026-06-01T10:15:00Z"), "192.0.2.1", BROWSER_UA, None),
            event("chbf-2", &code, ms("2026-06-01T10:16:00Z"), "192.0.2.2", BROWSER_UA, None),
        ],
        true,
    )
    .await;
    s.sync().await;
    await_clickhouse(&ch, 2, 1).await;
    // The dataflow kept no minute rows for them (what made the minute answer empty).
    await_number(&ch, "SELECT count() FROM rollups_minute FINAL WHERE code = 'ch1' AND toDate(bucket) = '2026-06-01'", 0).await;

    let range = "from=2026-06-01T10:00:00Z&to=2026-06-01T11:00:00Z";
    let minutes = vec![row("2026-06-01T10:15:00Z", 1, 1), row("2026-06-01T10:16:00Z", 1, 1)];
    for bots in ["false", "true"] {
        let b = s.stats(&code, &format!("bucket=minute&{range}&include_bots={bots}")).await;
        assert_eq!(rows(&b, "minute"), minutes, "include_bots={bots}: {b}");
        assert_eq!((clicks(&b), uniques(&b), bot_clicks(&b)), (2, 2, Some(0)), "include_bots={bots}: {b}");
    }
    let b = s.stats(&code, &format!("bucket=hour&{range}")).await;
    assert_eq!((rows(&b, "hour"), clicks(&b), uniques(&b), bot_clicks(&b)), (vec![row("2026-06-01T10:00:00Z", 2, 2)], 2, 2, Some(0)), "{b}");

    // One backfilled bot click.
    s.events(&[event("chbf-3", &code, ms("2026-06-01T10:17:00Z"), "192.0.2.3", BOT_UA, None)], true).await;
    s.sync().await;
    await_clickhouse(&ch, 3, 1).await;
    let b = s.stats(&code, &format!("bucket=minute&{range}")).await;
    assert_eq!((rows(&b, "minute"), clicks(&b), uniques(&b), bot_clicks(&b)), (minutes.clone(), 2, 2, Some(1)), "{b}");
    let b = s.stats(&code, &format!("bucket=minute&{range}&include_bots=true")).await;
    let with_bot = vec![row("2026-06-01T10:15:00Z", 1, 1), row("2026-06-01T10:16:00Z", 1, 1), row("2026-06-01T10:17:00Z", 1, 1)];
    assert_eq!((rows(&b, "minute"), clicks(&b), uniques(&b), bot_clicks(&b)), (with_bot, 3, 3, Some(1)), "{b}");
    let b = s.stats(&code, &format!("bucket=hour&{range}")).await;
    assert_eq!((rows(&b, "hour"), clicks(&b), uniques(&b), bot_clicks(&b)), (vec![row("2026-06-01T10:00:00Z", 2, 2)], 2, 2, Some(1)), "{b}");
    // An hour query with unaligned edges: minutes 10:10..10:20 (the 10:15 quarter's from the raw clicks).
    let b = s.stats(&code, "bucket=hour&from=2026-06-01T10:10:00Z&to=2026-06-01T10:20:00Z").await;
    assert_eq!((rows(&b, "hour"), clicks(&b), uniques(&b), bot_clicks(&b)), (vec![row("2026-06-01T10:00:00Z", 2, 2)], 2, 2, Some(1)), "{b}");

    // The live click's quarter has complete minute rows: read from `rollups_minute`, which
    // still answers after `events_enriched` is emptied; the backfilled minutes then have
    // nothing left to be answered from (they came from `events_enriched`).
    let minute_rows = "SELECT sum(clicks) FROM rollups_minute FINAL WHERE code = 'ch1' AND view = 'total'";
    await_number(&ch, minute_rows, 1).await;
    await_number(&ch, "SELECT sum(clicks) FROM rollups_quarter FINAL WHERE code = 'ch1' AND view = 'total' AND toDate(bucket) != '2026-06-01'", 1).await;
    ch.query("TRUNCATE TABLE events_enriched").await.expect("truncate events_enriched");
    let stats = sluice::sinks::clickhouse_stats::ClickHouseStats::new(ClickHouseReader::new(&cfg).expect("reader"));
    let quarter = live_ts.div_euclid(QUARTER) * QUARTER;
    let live_minute = live_ts.div_euclid(MIN) * MIN;
    let as_of = AsOf { epoch: 0, watermark_ms: i64::MIN };
    let r = stats.query(&StatsQuery::new(&code, quarter, quarter + QUARTER, Bucket::Minute), as_of).await.expect("live minutes");
    let got: Vec<(i64, u64, u64)> = r.rows.iter().map(|r| (r.bucket_start_ms, r.clicks, r.uniques)).collect();
    assert_eq!((got, r.totals.clicks, r.totals.uniques), (vec![(live_minute, 1, 1)], 1, 1));
    let r =
        stats.query(&StatsQuery::new(&code, ms("2026-06-01T10:00:00Z"), ms("2026-06-01T11:00:00Z"), Bucket::Minute), as_of).await.expect("backfilled minutes");
    assert_eq!((r.rows.len(), r.totals.clicks), (0, 0));
    s.stop().await;
    ch.drop_database().await;
}
