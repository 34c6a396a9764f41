//! Enrichment cost per event: the cached hot path the dataflow runs (≥ 500k events/s per
//! worker is the graph's target, so enrichment must stay well under 2 µs), and the
//! uncached paths (first sight of a user agent or referrer).
//!
//! Run: `cargo bench -p sluice-dataflows --bench enrich`.

use std::hint::black_box;
use std::io::{BufRead, BufReader};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_dataflows::enrich::{CountryMemo, EnrichConfig, Enricher, GeoIp};
use sluice_schemas::ClickEvent;

/// Deterministic 64-bit generator (splitmix64), so runs are comparable.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Skewed index in `0..n`: u³ puts most draws on the first few entries, like real
    /// traffic where a handful of browsers and referrers dominate.
    fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u) * n as f64) as usize % n
    }
}

fn real_user_agents(n: usize) -> Vec<String> {
    let path = format!("{}/tests/data/bots/crawlerdetect-fixture-devices.txt.gz", env!("CARGO_MANIFEST_DIR"));
    let f = std::fs::File::open(path).expect("fixture");
    let mut uas: Vec<String> = BufReader::new(flate2::read::GzDecoder::new(f)).lines().take(n).map(|l| l.expect("utf-8")).collect();
    let bots = format!("{}/tests/data/bots/crawlerdetect-fixture-crawlers.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(bots).expect("fixture");
    uas.extend(text.lines().take(n / 20).map(str::to_owned));
    uas
}

const REFERRERS: &[&str] = &[
    "https://www.google.com/",
    "https://www.google.co.uk/search?q=short+links",
    "https://t.co/AbCdEf123",
    "https://l.facebook.com/l.php?u=https%3A%2F%2Fsho.rt%2Fx&h=AT0",
    "https://www.linkedin.com/feed/",
    "https://www.reddit.com/r/rust/comments/abc/some_post/",
    "https://news.ycombinator.com/item?id=123456",
    "https://chatgpt.com/",
    "https://mail.google.com/mail/u/0/",
    "https://duckduckgo.com/",
    "https://www.bing.com/search?q=x&form=QBLH",
    "android-app://com.slack/",
    "https://blog.example.org/2024/05/post.html",
    "https://github.com/org/repo/issues/42",
    "https://outlook.live.com/mail/0/inbox",
];

fn events(n: usize, seed: u64) -> Vec<ClickEvent> {
    let uas = real_user_agents(2_000);
    let mut rng = SplitMix(seed);
    (0..n)
        .map(|i| {
            let ua = uas[rng.skewed(uas.len())].clone();
            let referrer = match rng.next() % 3 {
                0 => None,
                _ => Some(REFERRERS[rng.skewed(REFERRERS.len())].to_owned()),
            };
            let r = rng.next();
            let ip = format!("{}.{}.{}.0", 1 + r % 223, (r >> 8) % 256, (r >> 16) % 256);
            ClickEvent {
                event_id: uuid::Uuid::from_u128(i as u128),
                code: "bench".to_owned(),
                ts: 1_720_000_000_000 + i as i64,
                ip_trunc: Some(ip),
                visitor_id: r,
                user_agent: ua,
                referrer,
                accept_language: None,
                edge_region: None,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let base = Enricher::new(&EnrichConfig::default()).expect("compiles");
    let evs = events(20_000, 7);

    let mut g = c.benchmark_group("enrich");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(20);

    // Hot path: caches warmed by one pass, as in a long-running worker.
    let mut warm = base.clone();
    evs.iter().for_each(|e| {
        warm.enrich(e);
    });
    g.bench_function("cached_ua_and_referrer", |b| {
        b.iter(|| {
            for e in &evs {
                black_box(warm.enrich(e));
            }
        })
    });

    g.bench_function("country_lookup_only", |b| {
        b.iter(|| {
            for e in &evs {
                black_box(warm.country(e.ip_trunc.as_deref()));
            }
        })
    });

    let geo = GeoIp::bundled().expect("bundled db");
    let mut memo = CountryMemo::default();
    g.bench_function("country_lookup_memo", |b| {
        b.iter(|| {
            for e in &evs {
                black_box(geo.lookup_str_memo(e.ip_trunc.as_deref(), &mut memo));
            }
        })
    });

    g.bench_function("referrer_uncached_only", |b| {
        b.iter(|| {
            for e in &evs {
                black_box(warm.referrer(e.referrer.as_deref()));
            }
        })
    });
    g.finish();

    // Cold path: every user agent is new to the cache (capacity 1, distinct UAs in turn).
    let uas = real_user_agents(2_000);
    let mut cold = Enricher::new(&EnrichConfig { ua_cache_capacity: 1, ..EnrichConfig::default() }).expect("compiles");
    let mut g = c.benchmark_group("enrich_uncached");
    g.throughput(Throughput::Elements(uas.len() as u64));
    g.sample_size(10);
    g.bench_function("user_agent_parse_and_bot_check", |b| {
        b.iter(|| {
            for ua in &uas {
                black_box(cold.user_agent(ua));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
