use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::model::{DimSym, Dims};
use crate::records::EnrichedRecord;

const L: i64 = 10 * MINUTE_MS;

fn click(code: &str, visitor: u64, ts: i64, bot: bool) -> LinkedRecord {
    let dims = Dims { values: ["US", "desktop", "Chrome", "Windows", "(direct)", "direct"].map(DimSym::new), is_bot: bot };
    LinkedRecord { rec: EnrichedRecord { code: DimStr::new(code), ts, visitor_id: visitor, dims }, meta: None }
}

type Key = (String, u64, i64);

fn key(r: &LinkedRecord) -> Key {
    (r.rec.code.to_string(), r.rec.visitor_id, r.rec.ts.div_euclid(MINUTE_MS))
}

/// Naive expectation: per (code, visitor, minute), `max(0, n − cap)` of the `n` non-bot clicks.
fn expected(recs: &[LinkedRecord], cap: u64) -> HashMap<Key, u64> {
    let mut n: HashMap<Key, u64> = HashMap::new();
    for r in recs.iter().filter(|r| !r.rec.dims.is_bot) {
        *n.entry(key(r)).or_default() += 1;
    }
    n.into_iter().map(|(k, n)| (k, n.saturating_sub(cap))).filter(|(_, f)| *f > 0).collect()
}

fn flagged_of(out: &[LinkedRecord], input_bots: &HashMap<u128, bool>) -> HashMap<Key, u64> {
    let mut f: HashMap<Key, u64> = HashMap::new();
    for r in out {
        let id = (u128::from(r.rec.visitor_id) << 64) | r.rec.ts as u128;
        if r.rec.dims.is_bot && !input_bots[&id] {
            *f.entry(key(r)).or_default() += 1;
        }
    }
    f
}

/// Seeded streams: a few codes, visitors and minutes (so floods occur), some bots, shuffled
/// within the lateness, fed in random batches with the watermark trailing as the gate allows.
/// Every order gives exactly `max(0, n − cap)` flagged clicks per key.
#[test]
fn flagged_counts_are_exact_for_any_arrival_order_and_batching() {
    for seed in 0..40u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let cap = rng.random_range(1..5u32);
        let mut recs = Vec::new();
        let mut bots = HashMap::new();
        for i in 0..600i64 {
            let visitor = rng.random_range(0..6u64);
            let code = ["a", "b", "c"][rng.random_range(0..3usize)];
            // 8 minutes of event time (about 5 clicks per key, so floods occur); unique ts
            // per click so the id below is unique.
            let ts = rng.random_range(0..8i64) * MINUTE_MS + i;
            let bot = visitor == 5;
            bots.insert((u128::from(visitor) << 64) | ts as u128, bot);
            recs.push(click(code, visitor, ts, bot));
        }
        let want = expected(&recs, u64::from(cap));
        assert!(!want.is_empty(), "seed {seed}: the stream floods");
        // Arrival order: sorted by time, then locally shuffled in windows shorter than the
        // lateness (the gate admits at most L behind the watermark).
        recs.sort_by_key(|r| r.rec.ts);
        for chunk in recs.chunks_mut(rng.random_range(20..120usize)) {
            chunk.shuffle(&mut rng);
        }
        let mut state = FloodCapState::new(cap, L);
        let mut out = Vec::new();
        let mut i = 0;
        let mut max_ts = i64::MIN;
        while i < recs.len() {
            let n = rng.random_range(1..40usize).min(recs.len() - i);
            let mut batch = recs[i..i + n].to_vec();
            max_ts = max_ts.max(batch.iter().map(|r| r.rec.ts).max().expect("batch"));
            state.apply(&mut batch);
            out.extend(batch);
            i += n;
            // The watermark lags the newest click by at least the shuffle window, so every
            // later click stays within the lateness.
            state.advance_watermark(max_ts - 2 * MINUTE_MS);
        }
        assert_eq!(flagged_of(&out, &bots), want, "seed {seed}, cap {cap}");
        assert_eq!(state.flagged(), want.values().sum::<u64>());
        assert_eq!(out.len(), recs.len());
    }
}

#[test]
fn state_is_dropped_after_the_lateness_and_backfill_reopens_a_minute() {
    let mut s = FloodCapState::new(2, L);
    let mut batch: Vec<LinkedRecord> = (0..3).map(|i| click("a", 1, i * 1000, false)).collect();
    s.apply(&mut batch);
    assert_eq!(batch.iter().filter(|r| r.rec.dims.is_bot).count(), 1);
    assert_eq!((s.minutes(), s.entries()), (1, 1));
    // Minute 0 ends at 60 s: kept while W < 60 s + L.
    s.advance_watermark(MINUTE_MS + L - 1);
    assert_eq!(s.minutes(), 1);
    let mut late = vec![click("a", 1, 59_000, false)];
    s.apply(&mut late);
    assert!(late[0].rec.dims.is_bot, "a late click within the lateness is still capped");
    s.advance_watermark(MINUTE_MS + L);
    assert_eq!(s.minutes(), 0, "minute 0 is final and dropped");
    // A backfill of minute 0 after that re-opens it and is capped among itself, and the
    // minute stays for another lateness period of watermark progress.
    let w = MINUTE_MS + L;
    let mut back: Vec<LinkedRecord> = (0..4).map(|i| click("a", 7, i * 1000, false)).collect();
    s.apply(&mut back);
    assert_eq!(back.iter().filter(|r| r.rec.dims.is_bot).count(), 2);
    s.advance_watermark(w + L - 1);
    assert_eq!(s.minutes(), 1);
    let mut more = vec![click("a", 7, 5_000, false)];
    s.apply(&mut more);
    assert!(more[0].rec.dims.is_bot);
    // Each backfill touch extends the stay to a lateness past the watermark it saw.
    s.advance_watermark(w + L);
    assert_eq!(s.minutes(), 1);
    s.advance_watermark(w + 2 * L - 1);
    assert_eq!(s.minutes(), 0);
}

#[test]
fn bots_are_neither_counted_nor_changed_and_codes_and_visitors_are_apart() {
    let mut s = FloodCapState::new(1, L);
    let mut batch = vec![
        click("a", 1, 0, true),
        click("a", 1, 1, true),
        click("a", 1, 2, false),
        click("b", 1, 3, false),
        click("a", 2, 4, false),
        click("a", 1, 60_000, false),
        click("a", 1, 5, false),
    ];
    s.apply(&mut batch);
    let bots: Vec<bool> = batch.iter().map(|r| r.rec.dims.is_bot).collect();
    assert_eq!(bots, vec![true, true, false, false, false, false, true]);
    assert_eq!(s.flagged(), 1);
}
