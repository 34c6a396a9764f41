//! Shared helpers of the dataflow integration tests: event builders, a seeded realistic
//! stream generator, pipeline runners and result comparison with the HLL error bound.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_dataflows::clock::ManualClock;
use sluice_dataflows::config::PipelineConfig;
use sluice_dataflows::enrich::{EnrichConfig, Enricher};
use sluice_dataflows::operators::ClickEnricher;
use sluice_dataflows::pipeline::{self, LinkMetaFeed, PipelineHandle, PipelineInputs, PipelineOutputs};
use sluice_dataflows::sketch::hll_relative_error;
use sluice_dataflows::source::{MemoryFeed, SourceRecord};
use sluice_dataflows::views::{StatsResult, SummaryResult};
use sluice_schemas::ClickEvent;
use uuid::Uuid;

pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 86_400_000;

/// Milliseconds of an RFC 3339 instant.
pub fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).expect("rfc3339").timestamp_millis()
}

pub const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// Real user agents (browsers, mobiles, bots, link-preview fetchers) plus malformed ones.
pub const USER_AGENTS: &[&str] = &[
    BROWSER_UA,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "",
    "Mozilla/5.0 (",
    "\u{0}\u{1}\u{7f} garbage \u{fffd}",
];

/// Truncated client IPs: real public networks, special-purpose ones, IPv6, garbage, none.
pub const IPS: &[Option<&str>] = &[
    Some("8.8.8.0"),
    Some("81.2.69.0"),
    Some("1.1.1.0"),
    Some("185.60.216.0"),
    Some("41.0.0.0"),
    Some("2a00:1450:4001::"),
    Some("203.0.113.0"),
    Some("10.0.0.0"),
    Some("not-an-ip"),
    None,
];

/// Referrers: search, social, news, direct, malformed.
pub const REFERRERS: &[Option<&str>] = &[
    None,
    Some("https://www.google.com/search?q=sluice"),
    Some("https://t.co/abc"),
    Some("https://news.ycombinator.com/item?id=1"),
    Some("https://mail.google.com/mail/u/0/"),
    Some("https://chatgpt.com/"),
    Some("https://sub.example.co.uk/page"),
    Some("not a url"),
    Some("https:/"),
    Some(""),
];

/// A click event.
pub fn event(id: u128, code: &str, ts: i64, visitor: u64, ua: &str, ip: Option<&str>, referrer: Option<&str>) -> ClickEvent {
    ClickEvent {
        event_id: Uuid::from_u128(id),
        code: code.to_string(),
        ts,
        ip_trunc: ip.map(str::to_string),
        visitor_id: visitor,
        user_agent: ua.to_string(),
        referrer: referrer.map(str::to_string),
        accept_language: None,
        edge_region: None,
    }
}

/// The real enricher (vendored data), built once per test process.
pub fn enricher() -> Enricher {
    static E: OnceLock<Enricher> = OnceLock::new();
    E.get_or_init(|| Enricher::new(&EnrichConfig::default()).expect("bundled enrichment data")).clone()
}

/// Dimensions of an event, as the pipeline derives them.
pub fn dims_of(e: &ClickEvent) -> sluice_dataflows::model::Dims {
    thread_local!(static EN: std::cell::RefCell<Enricher> = std::cell::RefCell::new(enricher()));
    EN.with(|en| en.borrow_mut().dims(e))
}

/// A running pipeline over a memory feed with a manual clock.
pub struct Harness {
    pub handle: PipelineHandle,
    pub feed: MemoryFeed,
    pub clock: ManualClock,
}

impl Harness {
    pub fn start(config: PipelineConfig, partitions: u32, now_ms: i64, meta: Option<LinkMetaFeed>, outputs: PipelineOutputs) -> Harness {
        let feed = MemoryFeed::new(0..partitions);
        let clock = ManualClock::new(now_ms);
        let inputs = PipelineInputs { source: feed.factory(), enricher: enricher(), clock: Arc::new(clock.clone()), link_meta: meta };
        let handle = pipeline::start(&config, inputs, outputs).expect("pipeline starts");
        Harness { handle, feed, clock }
    }

    pub fn sync(&self) {
        self.handle.sync(Duration::from_secs(120)).expect("pipeline catches up");
    }
}

pub fn config(workers: usize) -> PipelineConfig {
    PipelineConfig { workers, ..Default::default() }
}

/// Asserts that `got` equals `want` exactly in everything but uniques (and `as_of`), and
/// that uniques are within the HLL++ bound: ±1 up to 50 visitors, else 3 standard errors.
pub fn assert_close(got: &StatsResult, want: &StatsResult, what: &str) {
    let rows = |r: &StatsResult| r.rows.iter().map(|x| (x.bucket_start_ms, x.dims.clone(), x.clicks)).collect::<Vec<_>>();
    assert_eq!(rows(got), rows(want), "{what}: rows");
    for (g, w) in got.rows.iter().zip(&want.rows) {
        assert_uniques(g.uniques, w.uniques, &format!("{what}: row {} {:?}", g.bucket_start_ms, g.dims));
    }
    assert_eq!(got.totals.clicks, want.totals.clicks, "{what}: total clicks");
    assert_uniques(got.totals.uniques, want.totals.uniques, &format!("{what}: total uniques"));
    let dims = |r: &StatsResult| r.by_dimension.iter().map(|x| (x.dims.clone(), x.clicks)).collect::<Vec<_>>();
    assert_eq!(dims(got), dims(want), "{what}: by dimension");
    for (g, w) in got.by_dimension.iter().zip(&want.by_dimension) {
        assert_uniques(g.uniques, w.uniques, &format!("{what}: dimension {:?}", g.dims));
    }
    assert_eq!(got.truncated, want.truncated, "{what}: truncated");
}

pub fn assert_uniques(got: u64, exact: u64, what: &str) {
    let tol = if exact <= 50 { 1.0 } else { 3.0 * hll_relative_error() * exact as f64 };
    assert!((got as f64 - exact as f64).abs() <= tol, "{what}: uniques {got} vs exact {exact} (tolerance {tol:.1})");
}

pub fn assert_summary_close(got: &SummaryResult, want: &SummaryResult, what: &str) {
    let links = |r: &SummaryResult| r.top_links.iter().map(|l| (l.code.clone(), l.clicks)).collect::<Vec<_>>();
    assert_eq!(links(got), links(want), "{what}: top links");
    for (g, w) in got.top_links.iter().zip(&want.top_links) {
        assert_uniques(g.uniques, w.uniques, &format!("{what}: link {}", g.code));
    }
    assert_eq!(got.links, want.links, "{what}: links");
    assert_eq!(got.totals.clicks, want.totals.clicks, "{what}: clicks");
    assert_uniques(got.totals.uniques, want.totals.uniques, &format!("{what}: uniques"));
    for (a, b, n) in [(&got.top_countries, &want.top_countries, "countries"), (&got.top_referrers, &want.top_referrers, "referrers")] {
        let k = |v: &Vec<sluice_dataflows::views::DimensionTotal>| v.iter().map(|d| (d.dims.clone(), d.clicks)).collect::<Vec<_>>();
        assert_eq!(k(a), k(b), "{what}: {n}");
        for (g, w) in a.iter().zip(b.iter()) {
            assert_uniques(g.uniques, w.uniques, &format!("{what}: {n} {:?}", g.dims));
        }
    }
}

/// Knobs of the generated stream.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub seed: u64,
    pub events: usize,
    pub codes: usize,
    pub partitions: u32,
    pub start_ms: i64,
    pub span_ms: i64,
    pub now_ms: i64,
    pub visitors: u64,
}

/// A seeded stream: Zipf-ish codes (partitioned by code, like a keyed Kafka topic), real and
/// malformed user agents/IPs/referrers, out-of-order and late events (some beyond 48 h),
/// future and invalid events, duplicates (some with a different payload, same partition),
/// and a few backfill records.
pub fn generate(spec: &StreamSpec) -> Vec<SourceRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let weights: Vec<f64> = (0..spec.codes).map(|i| 1.0 / (i as f64 + 1.0)).collect();
    let total: f64 = weights.iter().sum();
    let mut offsets = vec![0u64; spec.partitions as usize];
    let mut out: Vec<SourceRecord> = Vec::with_capacity(spec.events);
    let mut by_partition: Vec<Vec<usize>> = vec![Vec::new(); spec.partitions as usize];
    let mut next_id: u128 = (spec.seed as u128) << 64;
    for i in 0..spec.events {
        let progress = spec.start_ms + (spec.span_ms as f64 * i as f64 / spec.events as f64) as i64;
        let roll: f64 = rng.random();
        // duplicates of an earlier record of some partition
        let dup_p = rng.random_range(0..spec.partitions) as usize;
        if roll < 0.12 && !by_partition[dup_p].is_empty() {
            let p = dup_p;
            let j = by_partition[p][rng.random_range(0..by_partition[p].len())];
            let mut e = out[j].event.clone();
            if roll < 0.02 {
                // E′: same id, different payload
                e.user_agent = USER_AGENTS[rng.random_range(0..USER_AGENTS.len())].to_string();
                e.referrer = REFERRERS[rng.random_range(0..REFERRERS.len())].map(str::to_string);
            }
            let off = offsets[p];
            offsets[p] += 1;
            let backfill = out[j].backfill;
            by_partition[p].push(out.len());
            out.push(SourceRecord { partition: p as u32, offset: off, event: e, backfill, arrival_ms: None });
            continue;
        }
        let mut x = rng.random::<f64>() * total;
        let mut c = 0;
        while x > weights[c] && c + 1 < spec.codes {
            x -= weights[c];
            c += 1;
        }
        let code = format!("c{c}");
        let p = (sluice_dataflows::hash::route_str(&code) % u64::from(spec.partitions)) as usize;
        let mut backfill = false;
        let ts = match rng.random_range(0..1000) {
            0..10 => spec.now_ms + 10 * MIN,                             // future
            10..30 => progress - rng.random_range(40 * HOUR..60 * HOUR), // late, some beyond 48 h
            30..40 => {
                backfill = true;
                spec.start_ms - rng.random_range(DAY..3 * DAY)
            }
            _ => progress - (rng.random::<f64>().powi(3) * 3.0 * HOUR as f64) as i64,
        };
        let code = if rng.random_range(0..100) == 0 { "bad code!".to_string() } else { code };
        let visitor = (rng.random::<f64>().powi(2) * spec.visitors as f64) as u64;
        let e = event(
            next_id,
            &code,
            ts,
            visitor,
            USER_AGENTS[rng.random_range(0..USER_AGENTS.len())],
            IPS[rng.random_range(0..IPS.len())],
            REFERRERS[rng.random_range(0..REFERRERS.len())],
        );
        next_id += 1;
        let off = offsets[p];
        offsets[p] += 1;
        by_partition[p].push(out.len());
        out.push(SourceRecord { partition: p as u32, offset: off, event: e, backfill, arrival_ms: None });
    }
    out
}
