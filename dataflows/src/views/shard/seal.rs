//! Sealing minutes into quarter rows and quarters into hour and day rows, and the change
//! stream that emits quarter, hour and day rows at their full value (see the parent module's
//! "Sealing" section).

use std::sync::Arc;

use sluice_schemas::LinkMeta;

use super::{Interner, ShardState};
use crate::changes::ChangedRow;
use crate::model::{Granularity, View};
use crate::sketch::VisitorSketch;
use crate::views::rows::{row_key, split_key};

impl ShardState {
    /// Seals the buckets of granularity `g` (minute or quarter) starting before `until`:
    /// merges each block's rows into the blocks above it (a minute into its quarter, a
    /// quarter into its hour and day), where retained. A row changed since the last
    /// change-stream emission marks the rows it merges into, so their full value is emitted
    /// next.
    pub(super) fn seal(&mut self, g: Granularity, until: i64) {
        let (boundary, targets): (&mut i64, &[Granularity]) = match g {
            Granularity::Minute => (&mut self.minutes_sealed_before, &[Granularity::Quarter]),
            Granularity::Quarter => (&mut self.sealed_before, &[Granularity::Hour, Granularity::Day]),
            Granularity::Hour | Granularity::Day => return,
        };
        if until <= *boundary {
            return;
        }
        let from = *boundary;
        *boundary = until;
        let sealed: Vec<(i64, u32, u32)> =
            self.evict_index[g.index()].range(from..until).flat_map(|(&start, v)| v.iter().map(move |&(ci, slot)| (start, ci, slot))).collect();
        let track = self.track_changes;
        for (pstart, ci, pslot) in sealed {
            let part = std::mem::take(&mut self.blocks[pslot as usize]);
            for &t in targets {
                let gi = t.index();
                let start = t.bucket_start(pstart);
                if start < self.retained_from[gi] {
                    continue;
                }
                let slot = self.block_slot(ci, gi, start);
                let target = &mut self.blocks[slot as usize];
                let (mut created, mut dirty) = (0usize, false);
                part.for_each(|key, row| {
                    let mark = track && row.is_dirty();
                    let t = target.entry(key, &mut created);
                    t.add_clicks(row.clicks(), mark);
                    t.sketch.merge(&row.sketch);
                    dirty |= mark;
                });
                self.rows += created;
                if dirty && self.dirty.insert((ci, gi as u8, start)) {
                    self.dirty_blocks.push((ci, gi as u8, start));
                }
            }
            self.blocks[pslot as usize] = part;
        }
    }

    /// Marks rows so that the next [`Self::drain_changes`] emits them again at their full
    /// value, for a sink whose store came back empty: every day row, every row of an unsealed
    /// quarter or minute (their hour and day rows with them: a day may have no block of its
    /// own yet), and the minute rows starting at or after `minute_from_ms`. Returns the
    /// blocks marked (0 without change tracking).
    pub(crate) fn mark_for_resend(&mut self, minute_from_ms: i64) -> usize {
        let (quarters_from, minutes_from) = (self.sealed_before, self.minutes_sealed_before.min(minute_from_ms));
        // Hours: none of their own (an unsealed quarter's hour comes with it).
        self.mark_from([minutes_from, quarters_from, i64::MAX, i64::MIN])
    }

    /// Marks every retained row of every granularity (minute, quarter, hour, day, sealed or
    /// not) so that the next [`Self::drain_changes`] emits it again at its full value: for
    /// sinks last written from another input (a checkpoint restored while a newer one of
    /// another input exists), whose quarter and hour rows ClickHouse keeps too. Returns the
    /// blocks marked (0 without change tracking).
    pub(crate) fn mark_all_for_resend(&mut self) -> usize {
        self.mark_from([i64::MIN; 4])
    }

    /// Marks every row of the blocks starting at or after `from[g]` of each granularity `g`
    /// (by [`Granularity::index`]; `i64::MAX`: none) for the next [`Self::drain_changes`].
    fn mark_from(&mut self, from: [i64; 4]) -> usize {
        if !self.track_changes {
            return 0;
        }
        let mut marked = Vec::new();
        for (ci, code) in self.code_rollups.iter().enumerate() {
            for g in Granularity::ALL {
                for (&start, &slot) in code.grans[g.index()].range(from[g.index()]..) {
                    marked.push((ci as u32, g.index() as u8, start, slot));
                }
            }
        }
        for &(ci, gi, start, slot) in &marked {
            self.blocks[slot as usize].for_each_mut(|_, row| row.add_clicks(0, true));
            if self.dirty.insert((ci, gi, start)) {
                self.dirty_blocks.push((ci, gi, start));
            }
        }
        marked.len()
    }

    /// Appends every row changed since the last call (absolute values) and clears the marks.
    /// Quarter, hour and day rows are emitted at their full value (block row ∪ unsealed
    /// minutes and quarters), also when only one of their unsealed parts changed.
    ///
    /// Total-view rows are kept per link-metadata value (the summary's org/tag filters read
    /// them), but the sinks key a total by (code, granularity, bucket, is_bot) alone: a
    /// changed total row, at every granularity, is emitted as the **whole** total of its
    /// bucket and `is_bot` — the clicks summed and the sketches unioned over every metadata
    /// variant and over the bucket's unsealed parts — so a sink never receives a partial total
    /// (e.g. after a tag change in the middle of a bucket, or rows of a pre-fix checkpoint).
    /// Its `meta` is the changed variant interned last.
    pub(crate) fn drain_changes(&mut self, out: &mut Vec<ChangedRow>) {
        let dirty = std::mem::take(&mut self.dirty_blocks);
        self.dirty.clear();
        // Non-total rows read at their full value after the pass: (code, gran, start, key).
        let mut derived: Vec<(u32, u8, i64, u64)> = Vec::new();
        // Whole totals to emit: (code, gran, start, is_bot, metadata id of a changed variant).
        let mut totals: Vec<(u32, u8, i64, bool, u32)> = Vec::new();
        for (ci, gi, start) in dirty {
            let code = &self.code_rollups[ci as usize];
            let Some(&slot) = code.grans[gi as usize].get(&start) else { continue };
            let block = &mut self.blocks[slot as usize];
            let g = Granularity::ALL[gi as usize];
            // The granularities above `g` whose rows include this block's (it is unsealed).
            let up: &[Granularity] = match g {
                Granularity::Minute if start >= self.minutes_sealed_before => &[Granularity::Quarter, Granularity::Hour, Granularity::Day],
                Granularity::Quarter if start >= self.sealed_before => &[Granularity::Hour, Granularity::Day],
                _ => &[],
            };
            let (values, metas, retained) = (&self.values, &self.metas, &self.retained_from);
            block.for_each_mut(|key, row| {
                if !row.take_dirty() {
                    return;
                }
                let (vi, meta, _, is_bot) = split_key(key);
                let total = vi == View::Total.index();
                if total {
                    totals.push((ci, gi, start, is_bot, meta));
                }
                for u in up {
                    let s = u.bucket_start(start);
                    if s >= retained[u.index()] {
                        if total {
                            totals.push((ci, u.index() as u8, s, is_bot, meta));
                        } else {
                            derived.push((ci, u.index() as u8, s, key));
                        }
                    }
                }
                if total {
                    return;
                }
                if g != Granularity::Minute {
                    // Quarter, hour and day rows may have unsealed parts: read after the pass.
                    derived.push((ci, gi, start, key));
                    return;
                }
                let clicks = row.clicks();
                out.push(changed_row(values, metas, &code.name, g, start, key, clicks, row.sketch.uniques_within(clicks), row.sketch.to_bytes()));
            });
        }
        derived.sort_unstable();
        derived.dedup();
        for (ci, gi, start, key) in derived {
            let code = &self.code_rollups[ci as usize];
            let g = Granularity::ALL[gi as usize];
            let (mut clicks, mut sketch) = (0u64, VisitorSketch::new());
            for block in self.blocks(code, g, start) {
                if let Some(row) = block.get(key) {
                    clicks += row.clicks();
                    sketch.merge(&row.sketch);
                }
            }
            out.push(changed_row(&self.values, &self.metas, &code.name, g, start, key, clicks, sketch.uniques_within(clicks), sketch.to_bytes()));
        }
        totals.sort_unstable();
        // Sorted by metadata id last: the last entry of each (code, gran, start, is_bot) run
        // carries the changed variant interned last.
        for run in totals.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1 && a.2 == b.2 && a.3 == b.3) {
            let &(ci, gi, start, is_bot, meta) = run.last().expect("chunks are not empty");
            let code = &self.code_rollups[ci as usize];
            let g = Granularity::ALL[gi as usize];
            let (mut clicks, mut sketch) = (0u64, VisitorSketch::new());
            for block in self.blocks(code, g, start) {
                block.for_view(View::Total.index(), |key, row| {
                    if split_key(key).3 == is_bot {
                        clicks += row.clicks();
                        sketch.merge(&row.sketch);
                    }
                });
            }
            let key = row_key(View::Total.index(), meta, 0, is_bot);
            out.push(changed_row(&self.values, &self.metas, &code.name, g, start, key, clicks, sketch.uniques_within(clicks), sketch.to_bytes()));
        }
    }
}

/// The change-stream form of a row: `key` of block (`code`, `g`, `start`) with these values
/// (`sketch`: the row's serialized visitor sketch).
#[allow(clippy::too_many_arguments)]
pub(super) fn changed_row(
    values: &[Interner; 6],
    metas: &[Option<Arc<LinkMeta>>],
    code: &Arc<str>,
    g: Granularity,
    start: i64,
    key: u64,
    clicks: u64,
    uniques: u64,
    sketch: Vec<u8>,
) -> ChangedRow {
    let (view, dims, meta, is_bot) = key_parts(values, metas, key);
    ChangedRow { code: Arc::clone(code), granularity: g, bucket_start_ms: start, view, is_bot, dims, meta, clicks, uniques, sketch }
}

/// What row `key` of a block stands for: its view, dimension values (in the view's order),
/// the link metadata of a total row, and whether it counts bot clicks.
pub(super) fn key_parts(values: &[Interner; 6], metas: &[Option<Arc<LinkMeta>>], key: u64) -> (View, Vec<Arc<str>>, Option<Arc<LinkMeta>>, bool) {
    let (vi, a, b, is_bot) = split_key(key);
    let view = View::ALL[vi];
    let (dims, meta) = match view {
        View::Total => (Vec::new(), metas.get(a as usize).cloned().flatten()),
        View::Single(d) => (vec![Arc::clone(values[d.index()].name(a))], None),
        View::CountryDevice => (vec![Arc::clone(values[0].name(a)), Arc::clone(values[1].name(b))], None),
    };
    (view, dims, meta, is_bot)
}
