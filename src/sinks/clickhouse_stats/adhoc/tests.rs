//! Ad-hoc breakdowns against a real ClickHouse (feature `integration-tests`, `CLICKHOUSE_URL`…
//! as started by `infra/test`): seeded clicks are enriched like the binary does and written
//! to `events_enriched` twice (a replay must not count twice); then
//! * `browser,os` and `country,referrer_medium` (no view maintains them) equal a naive
//!   reference computed here: exact clicks and distinct visitors per (local bucket, values),
//!   totals, dimension totals, bot clicks, order and limit;
//! * `country,device` (maintained by the views too) has the in-memory views' clicks;
//! * a visitor flood is capped (C25) like the dataflow caps it: 30 human, 40 bot clicks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Timelike};
use chrono_tz::Tz;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_connectors::clickhouse::{ClickHouseReader, ClickHouseSink, SinkInput};
use sluice_dataflows::clock::ManualClock;
use sluice_dataflows::config::PipelineConfig;
use sluice_dataflows::enrich::{EnrichConfig, Enricher};
use sluice_dataflows::model::Dimension;
use sluice_dataflows::pipeline::{self, PipelineInputs, PipelineOutputs};
use sluice_dataflows::source::MemoryFeed;
use sluice_dataflows::views::{AsOf, Bucket, OrderBy, StatsQuery, StatsResult};
use sluice_schemas::{ClickEvent, EnrichedClick};

use super::super::ClickHouseStats;
use super::dimension_value;
use crate::sinks::tests::clickhouse_config;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2026-03-01T00:00:00Z (no DST change in New York or Kolkata within the next 3 days).
const D0: i64 = 1_772_323_200_000;
const SPAN: i64 = 3 * DAY;

const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];
const IPS: &[Option<&str>] = &[Some("8.8.8.0"), Some("81.2.69.0"), Some("1.1.1.0"), Some("2a00:1450:4001::"), None];
const REFERRERS: &[Option<&str>] = &[None, Some("https://www.google.com/search?q=x"), Some("https://t.co/abc"), Some("https://news.ycombinator.com/item?id=1")];

fn stream() -> Vec<ClickEvent> {
    let mut rng = ChaCha8Rng::seed_from_u64(0xad_0c);
    let mut out: Vec<ClickEvent> = (0..2_500u128)
        .map(|i| ClickEvent {
            event_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_00ad_0c00_0000 + i),
            code: "adhoc".into(),
            ts: D0 + rng.random_range(0..SPAN),
            ip_trunc: IPS[rng.random_range(0..IPS.len())].map(str::to_string),
            visitor_id: rng.random_range(0..60),
            user_agent: UAS[rng.random_range(0..UAS.len())].into(),
            referrer: REFERRERS[rng.random_range(0..REFERRERS.len())].map(str::to_string),
            accept_language: None,
            edge_region: None,
        })
        .collect();
    // A visitor flood (C25): 70 clicks of one browser visitor on the link within one minute;
    // the dataflow keeps 30 human and flags 40, and so must every ClickHouse path.
    out.extend((0..70u128).map(|i| ClickEvent {
        event_id: uuid::Uuid::from_u128(0x0190_0000_0000_7000_8000_00f1_0000_0000 + i),
        code: "adhoc".into(),
        ts: D0 + 10 * HOUR + ((i as i64 * 7_919) % MIN),
        ip_trunc: Some("81.2.69.0".into()),
        visitor_id: 999,
        user_agent: UAS[0].into(),
        referrer: None,
        accept_language: None,
        edge_region: None,
    }));
    out.sort_by_key(|e| e.ts);
    out
}

/// The flood cap by brute force: a human click is flagged as a bot when 30 or more human
/// clicks of the same visitor in the same UTC minute come before it in (ts, event id) order.
fn capped(events: &[EnrichedClick]) -> Vec<EnrichedClick> {
    events
        .iter()
        .map(|e| {
            let earlier = events
                .iter()
                .filter(|o| !o.is_bot && o.visitor_id == e.visitor_id && o.ts / MIN == e.ts / MIN && (o.ts, o.event_id) < (e.ts, e.event_id))
                .count();
            EnrichedClick { is_bot: e.is_bot || earlier >= 30, ..e.clone() }
        })
        .collect()
}

/// Local bucket start of `ts` in `tz`, computed with chrono alone (no DST change in range).
fn local_bucket(tz: Tz, bucket: Bucket, ts: i64) -> i64 {
    let local = tz.timestamp_millis_opt(ts).single().expect("instant").naive_local();
    let start = match bucket {
        Bucket::Minute => local.with_second(0).and_then(|t| t.with_nanosecond(0)),
        Bucket::Hour => local.with_minute(0).and_then(|t| t.with_second(0)).and_then(|t| t.with_nanosecond(0)),
        Bucket::Day => local.date().and_hms_opt(0, 0, 0),
    }
    .expect("truncated");
    tz.from_local_datetime(&start).single().expect("no DST change in range").timestamp_millis()
}

/// (bucket, values) → (clicks, visitors), value totals and bot clicks, by brute force.
type Cells = BTreeMap<(i64, Vec<String>), (u64, BTreeSet<u64>)>;
/// values → (clicks, visitors) over the whole range.
type ValueTotals = BTreeMap<Vec<String>, (u64, BTreeSet<u64>)>;
fn reference(events: &[EnrichedClick], q: &StatsQuery) -> (Cells, ValueTotals, u64) {
    let (mut cells, mut by_dim, mut bots) = (Cells::new(), BTreeMap::new(), 0);
    for e in events.iter().filter(|e| e.ts >= q.from_ms && e.ts < q.to_ms) {
        bots += u64::from(e.is_bot);
        if e.is_bot && !q.include_bots {
            continue;
        }
        let values: Vec<String> = q.dimensions.iter().map(|&d| dimension_value(e, d).to_string()).collect();
        let c = cells.entry((local_bucket(q.tz, q.bucket, e.ts), values.clone())).or_insert((0, BTreeSet::new()));
        c.0 += 1;
        c.1.insert(e.visitor_id);
        let t = by_dim.entry(values).or_insert((0, BTreeSet::new()));
        t.0 += 1;
        t.1.insert(e.visitor_id);
    }
    (cells, by_dim, bots)
}

fn check(got: &StatsResult, got_bots: u64, events: &[EnrichedClick], q: &StatsQuery) {
    let (cells, by_dim, bots) = reference(&capped(events), q);
    assert_eq!(got_bots, bots, "bot clicks {q:?}");
    let mut want: Vec<(i64, Vec<String>, u64, u64)> = cells.into_iter().map(|((b, v), (c, u))| (b, v, c, u.len() as u64)).collect();
    match q.order_by {
        OrderBy::Bucket => want.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then_with(|| a.1.cmp(&b.1))),
        OrderBy::ClicksDesc => want.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then_with(|| a.1.cmp(&b.1))),
        OrderBy::UniquesDesc => want.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(&b.0)).then_with(|| a.1.cmp(&b.1))),
    }
    let all_rows = want.len();
    let limit = q.limit.unwrap_or(usize::MAX);
    want.truncate(limit);
    let rows: Vec<(i64, Vec<String>, u64, u64)> =
        got.rows.iter().map(|r| (r.bucket_start_ms, r.dims.iter().map(|s| s.to_string()).collect(), r.clicks, r.uniques)).collect();
    assert_eq!(rows, want, "rows {q:?}");
    assert_eq!(got.truncated, all_rows > limit, "truncated {q:?}");
    let clicks: u64 = by_dim.values().map(|t| t.0).sum();
    let visitors: BTreeSet<u64> = by_dim.values().flat_map(|t| t.1.iter().copied()).collect();
    assert_eq!((got.totals.clicks, got.totals.uniques), (clicks, visitors.len() as u64), "totals {q:?}");
    let mut dims: Vec<(Vec<String>, u64, u64)> = by_dim.into_iter().map(|(v, (c, u))| (v, c, u.len() as u64)).collect();
    dims.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    dims.truncate(limit);
    let got_dims: Vec<(Vec<String>, u64, u64)> =
        got.by_dimension.iter().map(|d| (d.dims.iter().map(|s| s.to_string()).collect(), d.clicks, d.uniques)).collect();
    assert_eq!(got_dims, dims, "dimension totals {q:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adhoc_breakdowns_equal_a_naive_reference_and_the_views_clicks() {
    let clicks = stream();
    let mut enricher = Enricher::new(&EnrichConfig::default()).expect("bundled enrichment data");
    let events: Vec<EnrichedClick> = clicks.iter().map(|c| crate::sinks::events::enriched(&mut enricher, c)).collect();
    assert!(events.iter().any(|e| e.is_bot) && events.iter().any(|e| !e.is_bot), "bots and humans");
    let flood = capped(&events).iter().filter(|e| e.visitor_id == 999).map(|e| e.is_bot).fold((0, 0), |(h, b), bot| if bot { (h, b + 1) } else { (h + 1, b) });
    assert_eq!(flood, (30, 40), "the reference flags 40 of the flood's 70 clicks");

    let cfg = clickhouse_config("adhoc");
    let sink = ClickHouseSink::start(&cfg).expect("sink");
    for _ in 0..2 {
        for chunk in events.chunks(700) {
            sink.send(SinkInput::Events(chunk.to_vec())).await.expect("send");
        }
    }
    let reader = ClickHouseReader::new(&cfg).expect("reader");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = reader.events("adhoc", D0, D0 + SPAN).await.map(|v| v.len()).unwrap_or(0);
        if n == events.len() {
            break;
        }
        assert!(Instant::now() < deadline, "{n} of {} events in clickhouse: {:?}", events.len(), sink.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ch = ClickHouseStats::new(reader);
    let as_of = AsOf { epoch: 0, watermark_ms: i64::MIN };

    let ny: Tz = "America/New_York".parse().expect("tz");
    let kolkata: Tz = "Asia/Kolkata".parse().expect("tz");
    let q = |dims: Vec<Dimension>, from: i64, to: i64, bucket: Bucket, tz: Tz, bots: bool, order_by: OrderBy, limit: Option<usize>| {
        let mut q = StatsQuery::new("adhoc", from, to, bucket);
        (q.dimensions, q.tz, q.include_bots, q.order_by, q.limit) = (dims, tz, bots, order_by, limit);
        q
    };
    use Dimension::*;
    let cases = [
        q(vec![Browser, Os], D0, D0 + SPAN, Bucket::Day, Tz::UTC, false, OrderBy::Bucket, None),
        q(vec![Country, ReferrerMedium], D0 + 3 * HOUR + 7 * MIN, D0 + 2 * DAY + 45 * MIN, Bucket::Hour, ny, false, OrderBy::Bucket, None),
        q(vec![ReferrerMedium, Country], D0 + 90 * MIN, D0 + SPAN - 30 * MIN, Bucket::Day, kolkata, true, OrderBy::ClicksDesc, Some(9)),
        q(vec![Country, Device, Browser], D0, D0 + DAY, Bucket::Hour, kolkata, true, OrderBy::UniquesDesc, None),
        q(vec![Os, ReferrerDomain], D0 + 5 * HOUR + 3 * MIN, D0 + 9 * HOUR + 11 * MIN, Bucket::Minute, Tz::UTC, false, OrderBy::Bucket, Some(40)),
        // The flood's hour, minute by minute, with and without bots.
        q(vec![Browser, Os], D0 + 10 * HOUR, D0 + 11 * HOUR, Bucket::Minute, Tz::UTC, false, OrderBy::Bucket, None),
        q(vec![Browser], D0 + 10 * HOUR, D0 + 11 * HOUR, Bucket::Hour, Tz::UTC, true, OrderBy::Bucket, None),
    ];
    for case in &cases {
        let (got, bots) = ch.adhoc(case, as_of).await.expect("adhoc answer");
        assert!(!got.rows.is_empty(), "the range has clicks: {case:?}");
        check(&got, bots, &events, case);
    }
    let dup = q(vec![Os, Os], D0, D0 + DAY, Bucket::Day, Tz::UTC, false, OrderBy::Bucket, None);
    assert!(matches!(ch.adhoc(&dup, as_of).await, Err(super::super::HistoryError::InvalidQuery { code: "invalid_dimensions", .. })));

    // `country,device`: the views' clicks (their uniques are HLL++ estimates).
    let views = tokio::task::spawn_blocking(move || {
        let mut cfg = PipelineConfig { workers: 2, change_interval: Duration::ZERO, ..PipelineConfig::default() };
        cfg.semantics.minute_retention = Duration::from_secs(30 * 86_400);
        let feed = MemoryFeed::new(0..1);
        let inputs = PipelineInputs {
            source: feed.factory(),
            enricher: Enricher::new(&EnrichConfig::default()).expect("bundled enrichment data"),
            clock: Arc::new(ManualClock::new(D0 + SPAN + MIN)),
            link_meta: None,
        };
        let handle = pipeline::start(&cfg, inputs, PipelineOutputs::default()).expect("pipeline starts");
        for c in &clicks {
            feed.push(0, c.clone(), false);
        }
        handle.sync(Duration::from_secs(300)).expect("pipeline catches up");
        handle
    })
    .await
    .expect("pipeline");
    let strip = |r: &StatsResult| {
        let rows: Vec<_> = r.rows.iter().map(|r| (r.bucket_start_ms, r.dims.clone(), r.clicks)).collect();
        let dims: Vec<_> = r.by_dimension.iter().map(|d| (d.dims.clone(), d.clicks)).collect();
        (rows, dims, r.totals.clicks)
    };
    for case in [
        q(vec![Country, Device], D0, D0 + SPAN, Bucket::Day, Tz::UTC, false, OrderBy::Bucket, None),
        q(vec![Device, Country], D0 + 3 * HOUR, D0 + 2 * DAY + 45 * MIN, Bucket::Hour, ny, true, OrderBy::Bucket, None),
    ] {
        let want = views.views().query(&case).expect("in-memory answer");
        let (got, _) = ch.adhoc(&case, as_of).await.expect("adhoc answer");
        assert!(!want.rows.is_empty(), "{case:?}");
        assert_eq!(strip(&got), strip(&want), "country,device clicks {case:?}");
    }
    sink.shutdown(Duration::from_secs(30)).await;
    if let Ok(s) = sluice_connectors::clickhouse::client::server_client(&cfg) {
        let _ = s.query(&format!("DROP DATABASE IF EXISTS {}", cfg.database)).execute().await;
    }
}
