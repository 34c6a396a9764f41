//! Measures the cost of the graph's stages in isolation (development aid).
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_dataflows::enrich::{EnrichConfig, Enricher};
use sluice_dataflows::model::DimStr;
use sluice_dataflows::operators::ClickEnricher;
use sluice_dataflows::records::{EnrichedRecord, LinkedRecord};
use sluice_schemas::ClickEvent;
use std::time::Instant;

fn main() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/useragents/test_ua.yaml")).unwrap();
    let uas: Vec<String> =
        text.lines().filter_map(|l| l.trim_start().strip_prefix("- user_agent_string: ")).map(|v| v.trim_matches('\'').to_string()).take(3000).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = 1_000_000usize;
    use rand_distr::Distribution;
    let zc = rand_distr::Zipf::new(10_000f64, 1.0).unwrap();
    let zv = rand_distr::Zipf::new(300_000f64, 0.8).unwrap();
    let refs = ["https://www.google.com/search?q=x", "https://t.co/abc", "https://news.ycombinator.com/", "https://mail.google.com/mail/u/0/"];
    let events: Vec<ClickEvent> = (0..n)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(rng.random::<u32>() | 0x0100_0000);
            let code_rank = zc.sample(&mut rng) as usize;
            ClickEvent {
                event_id: uuid::Uuid::from_u128(rng.random()),
                code: format!("l{code_rank:05x}"),
                ts: 1_772_323_200_000 + i as i64 * 86,
                ip_trunc: Some(sluice_schemas::truncate_ip(ip.into())),
                visitor_id: zv.sample(&mut rng) as u64,
                user_agent: uas[(rng.random::<f64>().powi(3) * uas.len() as f64) as usize].clone(),
                referrer: if rng.random_bool(0.4) { None } else { Some(refs[rng.random_range(0..4)].to_string()) },
                accept_language: None,
                edge_region: None,
            }
        })
        .collect();
    let mut en = Enricher::new(&EnrichConfig::default()).unwrap();
    let t = Instant::now();
    let recs: Vec<LinkedRecord> = events
        .iter()
        .map(|e| LinkedRecord { rec: EnrichedRecord { code: DimStr::new(&e.code), ts: e.ts, visitor_id: e.visitor_id, dims: en.dims(e) }, meta: None })
        .collect();
    println!("enrich: {:.0} ns/event", t.elapsed().as_nanos() as f64 / n as f64);
    let chunk: usize = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(4096);
    println!("distinct row touches per batch: {:.3}", distinct_fraction(&recs[..200_000], chunk));
    let views = sluice_dataflows::views::Views::single(&Default::default());
    let t = Instant::now();
    for c in recs.chunks(chunk) {
        sluice_dataflows::bench_support::apply(&views, c);
    }
    println!("apply (batches of {chunk}): {:.0} ns/event, rows {}", t.elapsed().as_nanos() as f64 / n as f64, views.rows());
    hot(&recs);
    let mut d = sluice_dataflows::operators::DedupState::new(1, 1, 1);
    let clicks: Vec<_> = events.iter().map(|e| sluice_dataflows::records::GatedClick { partition: 0, offset: 0, backfill: false, event: e.clone() }).collect();
    let t = Instant::now();
    let (mut ok, mut err) = (Vec::new(), Vec::new());
    d.process(clicks, &mut ok, &mut err);
    println!("dedup: {:.0} ns/event", t.elapsed().as_nanos() as f64 / n as f64);
}
#[allow(dead_code)]
fn distinct_fraction(recs: &[LinkedRecord], chunk: usize) -> f64 {
    use std::collections::HashSet;
    let mut distinct = 0usize;
    for c in recs.chunks(chunk) {
        let mut s = HashSet::new();
        for r in c {
            for g in [60_000i64, 900_000, 3_600_000, 86_400_000] {
                let b = r.rec.ts.div_euclid(g);
                for v in 0..8 {
                    let val: String = match v {
                        0 => String::new(),
                        7 => format!("{}{}", r.rec.dims.values[0], r.rec.dims.values[1]),
                        _ => r.rec.dims.values[v - 1].to_string(),
                    };
                    s.insert((r.rec.code.to_string(), g, b, v, val, r.rec.dims.is_bot));
                }
            }
        }
        distinct += s.len();
    }
    distinct as f64 / (recs.len() * 32) as f64
}
/// Applies clicks of one hot code (all blocks stay in cache).
#[allow(dead_code)]
pub fn hot(recs: &[LinkedRecord]) {
    // every click on one code within one hour: all blocks stay hot
    let mut v: Vec<LinkedRecord> = recs.iter().take(500_000).cloned().collect();
    for (i, r) in v.iter_mut().enumerate() {
        r.rec.code = DimStr::new("hot");
        r.rec.ts = 1_772_323_200_000 + (i as i64 % 3_600_000);
    }
    let views = sluice_dataflows::views::Views::single(&Default::default());
    let t = Instant::now();
    for c in v.chunks(16384) {
        sluice_dataflows::bench_support::apply(&views, c);
    }
    println!("apply, one hot code: {:.0} ns/event, rows {}", t.elapsed().as_nanos() as f64 / v.len() as f64, views.rows());
    let mut v2 = v.clone();
    for r in v2.iter_mut() {
        r.rec.visitor_id %= 20;
    }
    let views = sluice_dataflows::views::Views::single(&Default::default());
    let t = Instant::now();
    for c in v2.chunks(16384) {
        sluice_dataflows::bench_support::apply(&views, c);
    }
    println!("apply, one hot code, 20 visitors (exact sets only): {:.0} ns/event", t.elapsed().as_nanos() as f64 / v2.len() as f64);
}
