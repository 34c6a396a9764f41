//! Applying a batch of clicks to the shard's rows ([`ShardState::apply`]).
//!
//! Clicks are prepared (code, metadata and dimension values interned into eight row keys; a
//! value's shard id is found by its [`crate::model::DimSym`] id),
//! then gathered in (code, minute) order, so every later pass reads them sequentially. A
//! code with few clicks in the batch updates its rows click by click; a code with more has
//! its clicks summed per (bucket, row key) and its visitors grouped per row first, so each
//! stored row and its sketch — cache misses, since the state is far larger than the CPU
//! caches — is visited once per batch, and a row's visitors are sorted and deduplicated
//! before they reach its sketch (a repeat visitor costs nothing; an exact set merges the new
//! ids in one pass, [`crate::sketch::VisitorSketch::insert_sorted`]). The buffers live in
//! [`Scratch`] between batches.

use super::ShardState;
use crate::hash::FxHashMap;
use crate::model::{DimStr, Granularity, View};
use crate::records::LinkedRecord;
#[cfg(doc)]
use crate::sketch::VisitorSketch;
#[cfg(doc)]
use crate::views::rows::Block;
use crate::views::rows::row_key;

/// Most clicks [`ShardState::apply_batches`] is handed at once by the rollup operator: big
/// enough that a hot code's rows are visited once for many clicks, small enough that the
/// prepared clicks (88 bytes each, kept in [`Scratch`] between batches) stay a few MiB.
pub(crate) const APPLY_CHUNK: usize = 65_536;

/// Runs of at least this many clicks of one code in a batch are aggregated before they
/// touch stored rows.
const AGGREGATE_FROM: usize = 4;

/// Aggregated rows looked up (and their sketches touched) before their sketches are updated
/// ([`ShardState::apply`]'s aggregated path): enough to keep several rows' cache misses in
/// flight, few enough that the window's rows are still in the L1 cache when updated.
const TOUCH_WINDOW: usize = 16;

/// A click prepared for application: interned ids folded into its eight row keys.
#[derive(Clone, Copy)]
pub(super) struct Prepared {
    code: u32,
    ts: i64,
    visitor: u64,
    keys: [u64; View::COUNT],
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("code", &self.code).field("ts", &self.ts).finish_non_exhaustive()
    }
}

/// One aggregated row of a code's run: bucket start, row key, clicks, and the offset of its
/// visitors in [`Scratch::visitors`].
#[derive(Clone, Copy, Debug)]
struct AggRow {
    start: i64,
    key: u64,
    clicks: u64,
    from: u32,
}

/// Buffers of [`ShardState::apply`], kept between batches (no allocation per batch once
/// they have grown).
#[derive(Debug, Default)]
pub(super) struct Scratch {
    prepared: Vec<Prepared>,
    /// (code << 32 | minute, index into `prepared`), sorted to group a code's clicks.
    order: Vec<(u64, u32)>,
    /// `prepared` gathered in `order`: every later pass over a code's clicks reads them
    /// sequentially (the batch's prepared clicks outgrow the L2 cache, and the aggregated path
    /// walks a run once per granularity).
    sorted: Vec<Prepared>,
    agg_index: FxHashMap<(i64, u64), u32>,
    agg: Vec<AggRow>,
    /// (aggregated row, visitor) per click and row.
    pairs: Vec<(u32, u64)>,
    /// Visitors grouped by aggregated row.
    visitors: Vec<u64>,
    fill: Vec<u32>,
}

impl ShardState {
    /// Applies clicks (any order) to the granularities they update directly (module docs of
    /// [`super`], "Sealing"). Clicks are grouped by (code, minute) first, so consecutive
    /// clicks reuse the same blocks.
    #[cfg(test)]
    pub(crate) fn apply(&mut self, recs: &[LinkedRecord]) {
        self.apply_batches(std::iter::once(recs));
    }

    /// Applies the clicks of several batches as one batch (same rows as applying them one by
    /// one, in any order): a code's clicks from all of them are grouped together, so each
    /// stored row is visited once for the lot. The rollup operator hands in all containers of
    /// an apply round, up to [`APPLY_CHUNK`] clicks at a time (`crate::operators::rollup`
    /// module docs).
    pub(crate) fn apply_batches<'r>(&mut self, batches: impl IntoIterator<Item = &'r [LinkedRecord]>) {
        let mut s = std::mem::take(&mut self.scratch);
        s.prepared.clear();
        s.order.clear();
        let mut last_code: Option<(&DimStr, u32)> = None;
        for r in batches.into_iter().flatten() {
            let rec = &r.rec;
            let ci = match last_code {
                Some((c, i)) if *c == rec.code => i,
                _ => self.code_index_dim(&rec.code),
            };
            last_code = Some((&rec.code, ci));
            let meta = self.meta_id(&r.meta);
            let d = &rec.dims;
            let bot = d.is_bot;
            let mut ids = [0u32; 6];
            for ((id, &v), interner) in ids.iter_mut().zip(d.values.iter()).zip(self.values.iter_mut()) {
                *id = interner.intern_sym(v);
            }
            let keys = [
                row_key(0, meta, 0, bot),
                row_key(1, ids[0], 0, bot),
                row_key(2, ids[1], 0, bot),
                row_key(3, ids[2], 0, bot),
                row_key(4, ids[3], 0, bot),
                row_key(5, ids[4], 0, bot),
                row_key(6, ids[5], 0, bot),
                row_key(7, ids[0], ids[1], bot),
            ];
            s.order.push(((u64::from(ci) << 32) | (rec.ts.div_euclid(60_000) as u64 & 0xffff_ffff), s.prepared.len() as u32));
            s.prepared.push(Prepared { code: ci, ts: rec.ts, visitor: rec.visitor_id, keys });
        }
        s.order.sort_unstable();
        s.sorted.clear();
        s.sorted.extend(s.order.iter().map(|&(_, k)| s.prepared[k as usize]));
        let mut i = 0;
        while i < s.sorted.len() {
            let code = s.sorted[i].code;
            let mut j = i + 1;
            while j < s.sorted.len() && s.sorted[j].code == code {
                j += 1;
            }
            if j - i < AGGREGATE_FROM {
                for k in i..j {
                    let p = s.sorted[k];
                    self.apply_one(&p);
                }
            } else {
                self.apply_aggregated(code, i..j, &mut s);
            }
            i = j;
        }
        self.scratch = s;
    }

    /// Records that block (`code`, `gi`, `start`) changed (change tracking only).
    #[inline]
    fn mark_dirty(&mut self, code: u32, gi: usize, start: i64) {
        if self.track_changes && self.dirty.insert((code, gi as u8, start)) {
            self.dirty_blocks.push((code, gi as u8, start));
        }
    }

    /// Applies one click to its eight rows in each retained granularity it updates directly
    /// (the minute only while the minute is unsealed, minute and quarter while the quarter
    /// is; [`ShardState::direct_granularities`]).
    ///
    /// Three passes over the click's rows, as in the aggregated path: the first loads where
    /// each row's lookup starts ([`Block::touch`]), so the eight lookups' cache misses overlap;
    /// the second finds (or creates) each row, adds the click, updates an inline sketch (its ids are in the row,
    /// already loaded) and loads the first word of a sketch's heap data
    /// ([`VisitorSketch::touch`]); the second inserts the visitor into those heap sketches,
    /// which now hit the cache. The eight rows' sketches are a cache miss each, and with an
    /// insert (binary search, shift) between one row's lookup and the next they were taken
    /// one after another. Rows are created in the same order as before.
    fn apply_one(&mut self, p: &Prepared) {
        let track = self.track_changes;
        let grans = self.direct_granularities(p.ts);
        for g in &Granularity::ALL[..grans] {
            let gi = g.index();
            let start = g.bucket_start(p.ts);
            if start < self.retained_from[gi] {
                continue;
            }
            let slot = self.block_slot(p.code, gi, start);
            let block = &mut self.blocks[slot as usize];
            let mut created = 0usize;
            let mut deferred = [0u64; View::COUNT];
            let mut n = 0;
            let mut touched = p.keys.iter().fold(0, |t, &key| t ^ block.touch(key));
            for &key in &p.keys {
                let row = block.entry(key, &mut created);
                row.add_clicks(1, track);
                if row.sketch.is_inline() {
                    row.sketch.insert(p.visitor);
                } else {
                    touched ^= row.sketch.touch();
                    deferred[n] = key;
                    n += 1;
                }
            }
            std::hint::black_box(touched);
            for &key in &deferred[..n] {
                block.get_mut(key).expect("row found in the first pass").sketch.insert(p.visitor);
            }
            self.rows += created;
            self.mark_dirty(p.code, gi, start);
        }
    }

    /// Applies the clicks `run` (a range of `s.sorted`) of one code: per granularity, clicks
    /// are first summed per (bucket, row key) and visitors grouped per row, so each stored
    /// row (and its sketch) is visited once per batch rather than once per click. The
    /// buffers are [`Scratch`]'s, reused from batch to batch.
    fn apply_aggregated(&mut self, code: u32, run: std::ops::Range<usize>, s: &mut Scratch) {
        let track = self.track_changes;
        for g in Granularity::ALL {
            let gi = g.index();
            s.agg_index.clear();
            s.agg.clear();
            s.pairs.clear();
            for p in &s.sorted[run.clone()] {
                let start = g.bucket_start(p.ts);
                if start < self.retained_from[gi] || gi >= self.direct_granularities(p.ts) {
                    continue;
                }
                for &key in &p.keys {
                    let a = *s.agg_index.entry((start, key)).or_insert_with(|| {
                        s.agg.push(AggRow { start, key, clicks: 0, from: 0 });
                        (s.agg.len() - 1) as u32
                    });
                    s.agg[a as usize].clicks += 1;
                    s.pairs.push((a, p.visitor));
                }
            }
            if s.agg.is_empty() {
                continue;
            }
            // Group visitors by row (counting sort): `from` becomes each row's offset.
            let mut offset = 0u32;
            for e in s.agg.iter_mut() {
                e.from = offset;
                offset += e.clicks as u32;
            }
            s.visitors.clear();
            s.visitors.resize(s.pairs.len(), 0);
            s.fill.clear();
            s.fill.extend(s.agg.iter().map(|e| e.from));
            for &(a, v) in &s.pairs {
                s.visitors[s.fill[a as usize] as usize] = v;
                s.fill[a as usize] += 1;
            }
            s.agg.sort_unstable_by_key(|e| e.start);
            // Rows are visited in windows of `TOUCH_WINDOW`. A first pass loads where each
            // row's lookup starts ([`Block::touch`]: its home slot in an indexed block), so the
            // window's lookups below find their rows in the cache; `ahead` creates a missing
            // block in the same order as the pass after it would. Then two passes: the first finds
            // (or creates) each row of the window, adds its clicks and loads the first word
            // of its sketch's heap data ([`VisitorSketch::touch`]); the second updates the
            // sketches, which now hit the cache. A row, and its sketch, is a cache miss each
            // (the state is far larger than the caches); with the sketch update (sort, merge,
            // allocation) between one row's lookup and the next, those misses were taken one
            // after another, while the first pass's short iterations keep several in flight.
            // Rows are created in the same order as by one pass.
            let mut current: (i64, u32) = (i64::MIN, 0);
            let mut ahead: (i64, u32) = (i64::MIN, 0);
            for window in s.agg.chunks(TOUCH_WINDOW) {
                let mut slots = [0u32; TOUCH_WINDOW];
                let mut touched = 0u64;
                for e in window {
                    if ahead.0 != e.start {
                        ahead = (e.start, self.block_slot(code, gi, e.start));
                    }
                    touched ^= self.blocks[ahead.1 as usize].touch(e.key);
                }
                for (e, slot) in window.iter().zip(slots.iter_mut()) {
                    if current.0 != e.start {
                        current = (e.start, self.block_slot(code, gi, e.start));
                        self.mark_dirty(code, gi, e.start);
                    }
                    *slot = current.1;
                    let mut created = 0usize;
                    let row = self.blocks[current.1 as usize].entry(e.key, &mut created);
                    self.rows += created;
                    row.add_clicks(e.clicks, track);
                    touched ^= row.sketch.touch();
                }
                std::hint::black_box(touched);
                for (e, &slot) in window.iter().zip(slots.iter()) {
                    let row = self.blocks[slot as usize].get_mut(e.key).expect("row created in the first pass");
                    // Distinct visitors of the row in this batch, ascending: repeat visitors
                    // touch the sketch once, and an exact set merges them in one pass.
                    let vs = &mut s.visitors[e.from as usize..(e.from as usize + e.clicks as usize)];
                    vs.sort_unstable();
                    let n = dedup_sorted(vs);
                    row.sketch.insert_sorted(&vs[..n]);
                }
            }
        }
    }
}

/// Moves the distinct values of the ascending slice `v` to its front; returns their count.
fn dedup_sorted(v: &mut [u64]) -> usize {
    if v.is_empty() {
        return 0;
    }
    let mut n = 1;
    for i in 1..v.len() {
        if v[i] != v[n - 1] {
            v[n] = v[i];
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::dedup_sorted;

    #[test]
    fn dedup_sorted_keeps_each_value_once_in_order() {
        for (input, want) in [
            (vec![], vec![]),
            (vec![5], vec![5]),
            (vec![1, 1, 1], vec![1]),
            (vec![1, 2, 2, 3, 7, 7, 7, 9], vec![1, 2, 3, 7, 9]),
            (vec![0, u64::MAX, u64::MAX], vec![0, u64::MAX]),
        ] {
            let mut v = input.clone();
            let n = dedup_sorted(&mut v);
            assert_eq!(&v[..n], &want[..], "input {input:?}");
        }
    }
}
