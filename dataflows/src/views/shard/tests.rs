//! Sealing: values read and emitted equal those of a naive map where every click updates
//! every granularity, whatever the order of clicks, watermark moves and late clicks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sluice_schemas::LinkMeta;

use super::ShardState;
use crate::changes::ChangedRow;
use crate::model::{DimStr, DimSym, Dims, Granularity, View};
use crate::records::{EnrichedRecord, LinkedRecord};

const M: i64 = 60_000;
const Q: i64 = 15 * M;
const BASE: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z
const RETENTION: [i64; 4] = [48 * 60 * M, 400 * 24 * 60 * M, 400 * 24 * 60 * M, 400 * 24 * 60 * M];

/// (code, granularity index, bucket start, view index, is_bot, dimension values).
type Key = (String, usize, i64, usize, bool, Vec<String>);

/// Click `i` at `ts`: one of three codes, 23 visitors, a few countries and devices, every
/// 11th a bot (also the rollup operator's tests' clicks).
pub(crate) fn click(i: i64, ts: i64) -> LinkedRecord {
    let country = ["US", "DE", "IN"][(i % 3) as usize];
    let device = ["mobile", "desktop"][(i % 2) as usize];
    let values = [country, device, "Firefox", "Linux", "(direct)", "direct"].map(DimSym::new);
    LinkedRecord {
        rec: EnrichedRecord {
            code: DimStr::new(["ab", "cd", "ef"][(i % 5 % 3) as usize]),
            ts,
            visitor_id: (i * 7 % 23) as u64,
            dims: Dims { values, is_bot: i % 11 == 0 },
        },
        meta: None,
    }
}

/// Every row key a click updates (all four granularities).
fn keys_of(r: &LinkedRecord) -> Vec<Key> {
    let d = &r.rec.dims;
    let mut out = Vec::new();
    for g in Granularity::ALL {
        let start = g.bucket_start(r.rec.ts);
        for (vi, view) in View::ALL.iter().enumerate() {
            let dims: Vec<String> = view.dimensions().iter().map(|x| d.values[x.index()].to_string()).collect();
            out.push((r.rec.code.to_string(), g.index(), start, vi, d.is_bot, dims));
        }
    }
    out
}

fn key_of(row: &ChangedRow) -> Key {
    let dims = row.dims.iter().map(|s| s.to_string()).collect();
    (row.code.to_string(), row.granularity.index(), row.bucket_start_ms, row.view.index(), row.is_bot, dims)
}

#[test]
fn sealed_and_unsealed_quarters_read_and_emit_like_direct_updates() {
    check_against_direct_updates(|_, _| None);
}

#[test]
fn total_rows_are_emitted_whole_across_metadata_variants_and_unsealed_parts() {
    // A link's tags change back and forth (some clicks before the link store announced it):
    // the shard keeps one total row per variant, but every emitted total-view row — minute,
    // quarter (block ∪ unsealed minutes), hour and day — is the whole total of its bucket.
    // A fresh `Arc` per click for one variant: metadata is interned by value.
    let meta = |code: &str, tag: &str| LinkMeta {
        code: code.into(),
        org: Some("o1".into()),
        tags: vec![tag.into()],
        domain: None,
        target_host: None,
        valid_from_ms: 0,
    };
    let v1: Vec<Arc<LinkMeta>> = ["ab", "cd", "ef"].iter().map(|c| Arc::new(meta(c, "t1"))).collect();
    check_against_direct_updates(move |step, r| {
        let code = r.rec.code.to_string();
        let c = ["ab", "cd", "ef"].iter().position(|x| *x == code).expect("test code");
        match (r.rec.visitor_id + step as u64) % 3 {
            0 => None,
            1 => Some(Arc::clone(&v1[c])),
            _ => Some(Arc::new(meta(&code, "t2"))),
        }
    });
}

/// Applies clicks (late ones too) and moves the watermark in uneven steps; after every step the
/// emitted rows (last value per key, total-view keys without metadata) and the values read
/// through [`ShardState::blocks`] equal those of a naive map updated at every granularity by
/// every click. `meta_of(step, click)` is the link metadata the click is counted under.
fn check_against_direct_updates(meta_of: impl Fn(i64, &LinkedRecord) -> Option<Arc<LinkMeta>>) {
    let mut shard = ShardState::new(RETENTION, true);
    let mut expected: BTreeMap<Key, (u64, BTreeSet<u64>)> = BTreeMap::new();
    let mut emitted: BTreeMap<Key, (u64, u64)> = BTreeMap::new();
    let mut i = 0i64;
    for step in 0..14i64 {
        let now = BASE + step * 10 * M;
        let mut batch = Vec::new();
        for j in 0..60 {
            i += 1;
            // Mostly near `now` (some ahead of the watermark), every 7th late into an older,
            // possibly sealed, quarter.
            let ts = if j % 7 == 0 { BASE + (i * 13 % (step + 1)) * Q + i % Q } else { now - 4 * M + (i * 37 % (6 * M)) };
            let mut c = click(i, ts);
            c.meta = meta_of(step, &c);
            batch.push(c);
        }
        shard.apply(&batch);
        for r in &batch {
            for k in keys_of(r) {
                let e = expected.entry(k).or_default();
                e.0 += 1;
                e.1.insert(r.rec.visitor_id);
            }
        }
        // Watermark moves in uneven steps, sometimes across several quarters at once.
        if step % 3 != 1 {
            shard.advance_watermark(now - 2 * M + step * M);
        }
        let mut out = Vec::new();
        shard.drain_changes(&mut out);
        for row in &out {
            emitted.insert(key_of(row), (row.clicks, row.uniques));
        }
        // Every row ever changed has been emitted at its current value.
        let want: BTreeMap<Key, (u64, u64)> = expected.iter().map(|(k, (c, v))| (k.clone(), (*c, v.len() as u64))).collect();
        assert_eq!(emitted, want, "step {step}");
        // Reads through `blocks` give the same values.
        for (k, (clicks, visitors)) in &expected {
            let code = shard.code(&k.0).expect("code present");
            let g = Granularity::ALL[k.1];
            let (mut c, mut sk) = (0u64, crate::sketch::VisitorSketch::new());
            for b in shard.blocks(code, g, k.2) {
                b.for_view(k.3, |key, row| {
                    let (_, a, bb, bot) = crate::views::rows::split_key(key);
                    let names: Vec<String> = match View::ALL[k.3] {
                        View::Total => Vec::new(),
                        View::Single(d) => vec![shard.value_name(d.index(), a).to_string()],
                        View::CountryDevice => vec![shard.value_name(0, a).to_string(), shard.value_name(1, bb).to_string()],
                    };
                    if bot == k.4 && names == k.5 {
                        c += row.clicks();
                        sk.merge(&row.sketch);
                    }
                });
            }
            assert_eq!((c, sk.uniques()), (*clicks, visitors.len() as u64), "{k:?} at step {step}");
        }
    }
    // The run sealed quarters and also applied clicks to sealed ones directly.
    assert!(shard.sealed_before >= BASE + 2 * Q);
}

#[test]
fn unsealed_clicks_update_only_their_minute_until_sealed() {
    let mut shard = ShardState::new(RETENTION, false);
    shard.advance_watermark(BASE);
    shard.apply(&[click(1, BASE + M)]);
    let code = shard.code("cd").expect("code present");
    assert!(code.grans[1..].iter().all(|g| g.is_empty()), "no quarter, hour or day block yet");
    assert_eq!(shard.rows(), 8);
    let quarter = shard.blocks(code, Granularity::Quarter, BASE).collect::<Vec<_>>();
    assert_eq!(quarter.len(), 1, "the quarter reads its unsealed minute");
    // Sealing the minute folds its rows into a new quarter block.
    shard.advance_watermark(BASE + 2 * M);
    let code = shard.code("cd").expect("code present");
    assert_eq!(code.grans.iter().map(|g| g.len()).collect::<Vec<_>>(), vec![1, 1, 0, 0]);
    assert_eq!(shard.rows(), 16);
    // A late click into the sealed minute goes to its minute and quarter directly (click 19
    // has click 1's row keys: no new rows).
    shard.apply(&[click(19, BASE + M + 1)]);
    assert_eq!(shard.rows(), 16);
    let code = shard.code("cd").expect("code present");
    let mut minute_and_quarter = [0, 0];
    for (n, g) in minute_and_quarter.iter_mut().zip([Granularity::Minute, Granularity::Quarter]) {
        shard.blocks(code, g, g.bucket_start(BASE + M)).for_each(|b| b.for_view(0, |_, r| *n += r.clicks()));
    }
    assert_eq!(minute_and_quarter, [2, 2]);
    // Sealing the quarter folds its rows into one new hour and one new day block.
    shard.advance_watermark(BASE + Q);
    let code = shard.code("cd").expect("code present");
    assert_eq!((code.grans[2].len(), code.grans[3].len()), (1, 1));
    assert_eq!(shard.rows(), 32);
    // A late click into the sealed quarter goes to every granularity directly.
    shard.apply(&[click(6, BASE + 2 * M)]);
    let code = shard.code("cd").expect("code present");
    let hour = shard.blocks(code, Granularity::Hour, BASE).collect::<Vec<_>>();
    assert_eq!(hour.len(), 1, "hour block only: its quarter is sealed");
    let mut clicks = 0;
    hour[0].for_view(0, |_, r| clicks += r.clicks());
    assert_eq!(clicks, 3);
}

/// Exported rows of `shard`, sorted: key → (clicks, uniques, sketch bytes).
fn exported(shard: &ShardState) -> Vec<(Key, u64, u64, Vec<u8>)> {
    let mut rows = Vec::new();
    shard.export_rows(&mut rows);
    let mut out: Vec<_> = rows.iter().map(|r| (key_of(r), r.clicks, r.uniques, r.sketch.clone())).collect();
    out.sort();
    out
}

#[test]
fn checkpointed_rows_restore_to_the_same_values_with_unsealed_minutes() {
    // Two shards see the same clicks; one is exported and restored midway. Each batch has
    // clicks in unsealed minutes, in sealed minutes of an unsealed quarter and (mostly) in
    // sealed quarters.
    let mut a = ShardState::new(RETENTION, false);
    let mut i = 0i64;
    let mut batch = |n: i64, base: i64| -> Vec<LinkedRecord> {
        (0..n)
            .map(|j| {
                i += 1;
                click(i, base + (i * 7919 % (3 * M)) - j % 3 * 4 * M)
            })
            .collect()
    };
    let first = batch(400, BASE + 20 * M);
    a.advance_watermark(BASE + 19 * M + 30_000);
    a.apply(&first);
    let snapshot = {
        let mut rows = Vec::new();
        a.export_rows(&mut rows);
        rows
    };
    let mut b = ShardState::new(RETENTION, false);
    for row in &snapshot {
        b.import_row(row).expect("row imports");
    }
    b.resume_at(a.watermark_ms, a.retained_from);
    assert_eq!(exported(&b), exported(&a), "restored rows equal the exported ones");
    for (w, n) in [(BASE + 21 * M, 300), (BASE + 31 * M, 300), (BASE + 62 * M, 200)] {
        let more = batch(n, w);
        for s in [&mut a, &mut b] {
            s.apply(&more);
            s.advance_watermark(w);
        }
        assert_eq!(exported(&b), exported(&a), "after W = {w}");
    }
}

#[test]
fn a_full_resend_emits_every_retained_row_of_every_granularity_at_its_value() {
    // Clicks over two hours, the watermark past most of them (sealed minutes, quarters and
    // hours) and a few unsealed: after a drain, `mark_all_for_resend` makes the next drain
    // emit every row key ever changed, at its current value; the partial resend leaves the
    // sealed quarter and hour rows out.
    let mut shard = ShardState::new(RETENTION, true);
    let batch: Vec<LinkedRecord> = (1..400i64).map(|i| click(i, BASE + i * 18_000)).collect();
    shard.apply(&batch);
    shard.advance_watermark(BASE + 100 * M);
    let mut first = Vec::new();
    shard.drain_changes(&mut first);
    let all: BTreeMap<Key, (u64, u64)> = first.iter().map(|r| (key_of(r), (r.clicks, r.uniques))).collect();
    assert!(shard.mark_all_for_resend() > 0);
    let mut again = Vec::new();
    shard.drain_changes(&mut again);
    let resent: BTreeMap<Key, (u64, u64)> = again.iter().map(|r| (key_of(r), (r.clicks, r.uniques))).collect();
    assert_eq!(resent, all, "every row again, at its value");
    for g in Granularity::ALL {
        assert!(resent.keys().any(|k| k.1 == g.index()), "{g:?} rows resent");
    }
    // The partial resend (an emptied Redis) skips sealed quarters and hours.
    shard.mark_for_resend(i64::MIN);
    let mut partial = Vec::new();
    shard.drain_changes(&mut partial);
    let sealed_quarter = |r: &ChangedRow| r.granularity == Granularity::Quarter && r.bucket_start_ms + Q <= BASE + 90 * M;
    assert!(first.iter().any(sealed_quarter) && !partial.iter().any(sealed_quarter));
    // Without change tracking nothing is marked.
    assert_eq!(ShardState::new(RETENTION, false).mark_all_for_resend(), 0);
}

#[test]
fn batches_applied_together_make_the_rows_of_one_batch_and_of_one_at_a_time() {
    // Clicks of a few codes over several minutes, some in sealed minutes: applied as one
    // concatenated batch, as uneven slices in one `apply_batches` call, and slice by slice.
    let clicks: Vec<LinkedRecord> = (1..700i64).map(|i| click(i, BASE + 20 * M + (i * 7919 % (6 * M)) - i % 4 * 3 * M)).collect();
    let cuts = [0, 1, 2, 90, 91, 400, 699];
    let slices: Vec<&[LinkedRecord]> = cuts.windows(2).map(|w| &clicks[w[0]..w[1]]).collect();
    let fresh = || {
        let mut s = ShardState::new(RETENTION, false);
        s.advance_watermark(BASE + 18 * M);
        s
    };
    let mut whole = fresh();
    whole.apply(&clicks);
    let mut together = fresh();
    together.apply_batches(slices.iter().copied());
    let mut apart = fresh();
    for s in &slices {
        apart.apply(s);
    }
    let want = exported(&whole);
    let minute_totals: u64 = want.iter().filter(|r| r.0.1 == Granularity::Minute.index() && r.0.3 == 0).map(|r| r.1).sum();
    assert_eq!(minute_totals, 699, "every click once in the minute rows of the total view");
    assert_eq!(exported(&together), want);
    assert_eq!(exported(&apart), want);
}
