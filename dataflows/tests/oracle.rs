//! Oracle test: the pipeline against the naive reference on a seeded stream with duplicates,
//! out-of-order, late (some beyond the allowed lateness), future and invalid events, bots,
//! unknown IPs, malformed user agents and referrers, backfill, and link-metadata changes —
//! compared at several frontiers, for 1, 2 and 4 workers, which must agree exactly.

mod support;

use chrono_tz::Tz;
use sluice_dataflows::dead_letter::DeadLetterReason;
use sluice_dataflows::model::Dimension;
use sluice_dataflows::pipeline::{LinkMetaChange, link_meta_channel};
use sluice_dataflows::reference::Reference;
use sluice_dataflows::views::{Bucket, OrderBy, StatsQuery, StatsResult, SummaryQuery, SummaryResult};
use sluice_schemas::LinkMeta;
use support::*;

fn meta(code: &str, org: &str, tags: &[&str]) -> LinkMeta {
    LinkMeta {
        code: code.to_string(),
        org: Some(org.to_string()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        domain: None,
        target_host: None,
        valid_from_ms: 0,
    }
}

fn queries(codes: usize, w: i64, from: i64, to: i64) -> Vec<StatsQuery> {
    let mut qs = Vec::new();
    let zones: [(Tz, Bucket); 4] = [
        (Tz::UTC, Bucket::Day),
        (chrono_tz::America::New_York, Bucket::Hour),
        (chrono_tz::Asia::Kolkata, Bucket::Day),
        (chrono_tz::Asia::Kathmandu, Bucket::Day),
    ];
    let minute_from = (w - 3 * HOUR).div_euclid(MIN) * MIN;
    let dims: [&[Dimension]; 8] = [
        &[Dimension::Country],
        &[Dimension::Device],
        &[Dimension::Browser],
        &[Dimension::Os],
        &[Dimension::ReferrerDomain],
        &[Dimension::ReferrerMedium],
        &[Dimension::Country, Dimension::Device],
        &[Dimension::Device, Dimension::Country],
    ];
    for c in 0..codes {
        let code = format!("c{c}");
        for (i, (tz, bucket)) in zones.iter().enumerate() {
            let mut q = StatsQuery::new(&code, from, to, *bucket);
            q.tz = *tz;
            q.include_bots = i % 2 == 1;
            qs.push(q);
        }
        let mut q = StatsQuery::new(&code, minute_from, minute_from + 4 * HOUR, Bucket::Minute);
        q.include_bots = c % 2 == 0;
        qs.push(q);
        for (i, d) in dims.iter().enumerate() {
            let mut q = StatsQuery::new(&code, from, to, Bucket::Day);
            q.dimensions = d.to_vec();
            q.include_bots = i % 2 == 0;
            qs.push(q);
        }
        let mut q = StatsQuery::new(&code, from, to, Bucket::Hour);
        q.dimensions = vec![Dimension::Browser];
        q.order_by = OrderBy::ClicksDesc;
        q.limit = Some(3);
        qs.push(q);
    }
    qs
}

fn summaries(from: i64, to: i64) -> Vec<SummaryQuery> {
    let base = SummaryQuery { from_ms: from, to_ms: to, include_bots: false, limit: 10, org: None, tag: None, exclude: Default::default() };
    vec![
        base.clone(),
        SummaryQuery { include_bots: true, limit: 5, ..base.clone() },
        SummaryQuery { tag: Some("promo".into()), ..base.clone() },
        SummaryQuery { tag: Some("spring".into()), ..base.clone() },
        SummaryQuery { tag: Some("spring".into()), include_bots: true, ..base.clone() },
        SummaryQuery { org: Some("acme".into()), ..base.clone() },
        // Two links left out (deleted): not listed, their clicks still in the totals.
        SummaryQuery { exclude: ["c0".into(), "c1".into()].into_iter().collect(), ..base },
    ]
}

type Snapshot = (Vec<StatsResult>, Vec<SummaryResult>);

fn run(workers: usize, spec: &StreamSpec, records: &[sluice_dataflows::source::SourceRecord]) -> Vec<Snapshot> {
    let (tx, feed) = link_meta_channel();
    let h = Harness::start(config(workers), spec.partitions, spec.now_ms, Some(feed), Default::default());
    let sem = config(workers).semantics;
    let mut reference = Reference::new(&sem, true, false);
    let send = |m: LinkMeta, diff: isize, r: &mut Reference| {
        r.apply_meta(&LinkMetaChange { meta: m.clone(), diff });
        if diff > 0 { tx.insert(m) } else { tx.retract(m) }
    };
    let org = |c: usize| if c.is_multiple_of(3) { "acme" } else { "globex" };
    for c in 0..spec.codes {
        send(meta(&format!("c{c}"), org(c), &["all"]), 1, &mut reference);
    }
    let third = records.len() / 3;
    let chunks = [&records[..third], &records[third..2 * third], &records[2 * third..]];
    let from = (spec.start_ms - 4 * DAY).div_euclid(DAY) * DAY;
    let to = (spec.now_ms + DAY).div_euclid(DAY) * DAY;
    let mut snapshots = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        if i == 1 {
            for c in 0..6 {
                let code = format!("c{c}");
                send(meta(&code, org(c), &["all"]), -1, &mut reference);
                send(meta(&code, org(c), &["all", "promo"]), 1, &mut reference);
            }
        }
        if i == 1 {
            // Versions by event time (never retracted, as the binary feeds them): codes 6..9
            // get "spring" from the middle of the stream's event time on, so clicks of every
            // chunk (in order, late, backfilled) fall on either side of the change.
            let mid = spec.start_ms + (spec.now_ms - spec.start_ms) / 2;
            for c in 6..9.min(spec.codes) {
                let mut m = meta(&format!("c{c}"), org(c), &["all", "spring"]);
                m.valid_from_ms = mid;
                send(m, 1, &mut reference);
            }
        }
        if i == 2 {
            send(meta("c1", org(1), &["all", "promo"]), -1, &mut reference);
            // A later version fed after its clicks began: clicks already counted keep theirs.
            let mut m = meta("c7", org(7), &["all"]);
            m.valid_from_ms = spec.now_ms - HOUR;
            send(m, 1, &mut reference);
        }
        // metadata first, in its own epochs, then the clicks (a deterministic order)
        h.sync();
        h.feed.push_records(chunk.iter().cloned());
        for r in chunk.iter() {
            reference.push(r, spec.now_ms, dims_of);
        }
        h.sync();
        let views = h.handle.views();
        let w = reference.watermark();
        assert_eq!(views.as_of().watermark_ms, w, "watermark after chunk {i}");
        let mut stats = Vec::new();
        for q in queries(spec.codes, w, from, to) {
            let got = views.query(&q).unwrap_or_else(|e| panic!("query {q:?}: {e}"));
            let want = reference.query(&q);
            assert_close(&got, &want, &format!("{workers} workers, chunk {i}, {q:?}"));
            let mut got = got;
            got.as_of.epoch = 0;
            stats.push(got);
        }
        let mut sums = Vec::new();
        for q in summaries(from, to) {
            let got = views.summary(&q).expect("summary");
            assert_summary_close(&got, &reference.summary(&q), &format!("{workers} workers, chunk {i}, {q:?}"));
            let mut got = got;
            got.as_of.epoch = 0;
            sums.push(got);
        }
        snapshots.push((stats, sums));
    }
    for r in DeadLetterReason::ALL {
        assert_eq!(h.handle.dead_letters().get(r), reference.dead(r), "{workers} workers: dead letters {r:?}");
        assert!(reference.dead(r) > 0, "the stream exercises {r:?}");
    }
    assert_eq!(h.handle.stats().duplicates, reference.duplicates(), "{workers} workers: duplicates");
    assert!(reference.duplicates() > 0);
    snapshots
}

#[test]
fn pipeline_equals_reference_at_every_frontier_for_1_2_4_workers() {
    let t0 = ms("2024-07-01T00:00:00Z");
    let spec = StreamSpec { seed: 42, events: 12_000, codes: 25, partitions: 4, start_ms: t0, span_ms: 4 * DAY, now_ms: t0 + 4 * DAY + HOUR, visitors: 3_000 };
    let records = generate(&spec);
    let one = run(1, &spec, &records);
    for workers in [2, 4] {
        let many = run(workers, &spec, &records);
        assert!(one == many, "{workers} workers differ from 1 worker");
    }
}

/// Large rows: hot links reach dense HLL++ sketches; uniques must stay within 3 standard
/// errors while clicks stay exact, identically for 1 and 2 workers.
#[test]
fn dense_sketches_stay_within_the_error_bound() {
    let t0 = ms("2024-03-01T00:00:00Z");
    let spec = StreamSpec { seed: 7, events: 60_000, codes: 4, partitions: 3, start_ms: t0, span_ms: 2 * DAY, now_ms: t0 + 2 * DAY + HOUR, visitors: 200_000 };
    let records = generate(&spec);
    let one = run(1, &spec, &records);
    let two = run(2, &spec, &records);
    assert!(one == two, "2 workers differ from 1 worker");
}
