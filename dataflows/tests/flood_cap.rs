//! Oracle test of the flood cap (`[abuse.flood-cap]`, case C25 step 4): the pipeline against
//! the naive reference ([`Reference`] with the same cap) on seeded streams dense enough that
//! visitors exceed the cap per link and minute — out of order, late, duplicated, with bots
//! and backfill — for 1 and 3 workers.
//!
//! Which clicks of a flooding visitor are flagged follows arrival order (the operator's
//! docs); how many is exact. So the comparison is on what only depends on counts: human and
//! all clicks per link and minute, hour and range, plus uniques.

mod support;

use sluice_dataflows::config::PipelineConfig;
use sluice_dataflows::reference::Reference;
use sluice_dataflows::views::{Bucket, StatsQuery};
use support::{DAY, HOUR, Harness, MIN, StreamSpec, assert_close, config, dims_of, generate, ms};

fn run(cfg: PipelineConfig, spec: &StreamSpec) -> (u64, u64) {
    let records = generate(spec);
    let cap = cfg.abuse.flood_cap.cap();
    let workers = cfg.workers;
    let h = Harness::start(cfg.clone(), spec.partitions, spec.now_ms, None, Default::default());
    let mut reference = Reference::new(&cfg.semantics, true, false).with_flood_cap(cap);
    let mut uncapped = Reference::new(&cfg.semantics, true, false).with_flood_cap(None);
    let third = records.len() / 3;
    let from = (spec.start_ms - 4 * DAY).div_euclid(DAY) * DAY;
    let to = (spec.now_ms + DAY).div_euclid(DAY) * DAY;
    for chunk in [&records[..third], &records[third..2 * third], &records[2 * third..]] {
        h.feed.push_records(chunk.iter().cloned());
        for r in chunk {
            reference.push(r, spec.now_ms, dims_of);
            uncapped.push(r, spec.now_ms, dims_of);
        }
        h.sync();
        for c in 0..spec.codes {
            let code = format!("c{c}");
            for (bucket, f, t) in [(Bucket::Minute, spec.start_ms - 3 * HOUR, spec.now_ms), (Bucket::Hour, from, to), (Bucket::Day, from, to)] {
                for include_bots in [false, true] {
                    let q = StatsQuery { include_bots, ..StatsQuery::new(&code, f.div_euclid(MIN) * MIN, t.div_euclid(MIN) * MIN, bucket) };
                    let got = h.handle.views().query(&q).expect("query");
                    assert_close(&got, &reference.query(&q), &format!("{workers} workers, cap {cap:?}, {q:?}"));
                }
            }
        }
    }
    // How much the cap did, by the references: (clicks flagged, human clicks left).
    let human = |r: &Reference| r.clicks().iter().filter(|c| !c.dims.is_bot).count() as u64;
    (human(&uncapped) - human(&reference), human(&reference))
}

fn spec(seed: u64) -> StreamSpec {
    let t0 = ms("2025-02-03T10:00:00Z");
    StreamSpec { seed, events: 20_000, codes: 3, partitions: 4, start_ms: t0, span_ms: 20 * MIN, now_ms: t0 + 20 * MIN + HOUR, visitors: 4 }
}

#[test]
fn flagged_clicks_match_the_reference_for_1_and_3_workers() {
    let (flagged, human) = run(config(1), &spec(7));
    assert!(flagged > 100 && human > 100, "the default cap (30) flags part of the stream: {flagged} flagged, {human} human");
    let mut cfg = config(3);
    cfg.abuse.flood_cap.clicks_per_minute = 4;
    let (flagged, human) = run(cfg, &spec(8));
    assert!(flagged > 1000 && human > 100, "cap 4: {flagged} flagged, {human} human");
}

#[test]
fn without_the_cap_every_click_of_a_flood_is_human() {
    let mut cfg = config(2);
    cfg.abuse.flood_cap.enabled = false;
    let (flagged, _) = run(cfg, &spec(9));
    assert_eq!(flagged, 0);
}
