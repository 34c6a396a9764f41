//! Times the rollup stage alone on a stream shaped like `sluice bench dataflow`'s default
//! (development aid): 10,000 links with Zipf(1) popularity, 300,000 visitors with Zipf(0.8),
//! each visitor with a fixed IP and real user agent, 25 referrers (40 % direct), 20,000
//! clicks per second of event time with up to 30 s of disorder, applied in batches.
//!
//! It allocates with mimalloc like the `sluice` binary; run it with
//! `MIMALLOC_PURGE_DELAY=10000` to match the binary's start-up setting (`src/main.rs`).
//!
//! `MIMALLOC_PURGE_DELAY=10000 cargo run --release -p sluice-dataflows --example rollup_costs -- [events] [batch]`
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution;
use sluice_dataflows::enrich::{EnrichConfig, Enricher};
use sluice_dataflows::model::DimStr;
use sluice_dataflows::operators::ClickEnricher;
use sluice_dataflows::records::{EnrichedRecord, LinkedRecord};
use sluice_schemas::ClickEvent;

fn main() {
    let n: usize = std::env::args().nth(1).map_or(1_000_000, |a| a.parse().expect("events"));
    let batch: usize = std::env::args().nth(2).map_or(16_384, |a| a.parse().expect("batch"));
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/useragents/test_ua.yaml")).expect("corpus");
    let uas: Vec<String> =
        text.lines().filter_map(|l| l.trim_start().strip_prefix("- user_agent_string: ")).map(|v| v.trim_matches('\'').to_string()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let zc = rand_distr::Zipf::new(10_000f64, 1.0).expect("zipf");
    let zv = rand_distr::Zipf::new(300_000f64, 0.8).expect("zipf");
    let zu = rand_distr::Zipf::new(uas.len() as f64, 1.1).expect("zipf");
    let visitors: Vec<(u32, usize)> = (0..300_000).map(|_| (rng.random::<u32>() | 0x0100_0000, zu.sample(&mut rng) as usize - 1)).collect();
    let refs: Vec<String> = (0..25).map(|i| format!("https://site{i}.example.com/page")).collect();
    let start = 1_772_323_200_000i64;
    let events: Vec<(ClickEvent, u64)> = (0..n)
        .map(|i| {
            let code_rank = zc.sample(&mut rng) as usize;
            let v = zv.sample(&mut rng) as usize - 1;
            let (ip, ua) = visitors[v];
            let ts = start + (i as i64 * 1000) / 20_000 - rng.random_range(0..30_000);
            let ev = ClickEvent {
                event_id: uuid::Uuid::from_u128(rng.random()),
                code: format!("l{code_rank:05x}"),
                ts,
                ip_trunc: Some(sluice_schemas::truncate_ip(std::net::Ipv4Addr::from(ip).into())),
                visitor_id: v as u64 * 0x9e37_79b9_7f4a_7c15,
                user_agent: uas[ua].clone(),
                referrer: if rng.random_bool(0.4) { None } else { Some(refs[rng.random_range(0..refs.len())].clone()) },
                accept_language: None,
                edge_region: None,
            };
            (ev, v as u64)
        })
        .collect();
    let mut en = Enricher::new(&EnrichConfig::default()).expect("enricher");
    let recs: Vec<LinkedRecord> = events
        .iter()
        .map(|(e, _)| LinkedRecord { rec: EnrichedRecord { code: DimStr::new(&e.code), ts: e.ts, visitor_id: e.visitor_id, dims: en.dims(e) }, meta: None })
        .collect();
    drop(events);
    for round in 0..2 {
        let views = sluice_dataflows::views::Views::single(&Default::default());
        let t = Instant::now();
        for c in recs.chunks(batch) {
            sluice_dataflows::bench_support::apply(&views, c);
        }
        let el = t.elapsed();
        let size = views.size();
        println!(
            "round {round}: apply (batches of {batch}): {:.0} ns/event, rows {}, {:.1} bytes/row",
            el.as_nanos() as f64 / n as f64,
            size.rows,
            size.bytes as f64 / size.rows.max(1) as f64
        );
    }
}
