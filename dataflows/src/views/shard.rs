//! One worker's share of the materialized rollups.
//!
//! Every short code is owned by exactly one timely worker (`route_str(code) % peers`); that
//! worker's rollup operator is the only writer of its [`ShardState`], applying each completed
//! epoch under one write lock, and queries read it under the read lock. A query therefore
//! sees whole epochs only.
//!
//! State is append-only between evictions (HLL sketches cannot subtract), organized as
//! `code → granularity → bucket start → Block` (see [`super::rows`]). Eviction is driven by
//! the global watermark `W`: a bucket of granularity `g` is dropped once its end is at or
//! before `W − retention(g)`; an index by bucket start makes eviction proportional to the
//! evicted blocks.
//!
//! ## Sealing: quarter rows are folded from minutes, hour and day rows from quarters
//! A minute bucket is **sealed** once `W` reaches its end (`minutes_sealed_before` = `W`
//! rounded down to the minute), a 15-minute bucket likewise (`sealed_before` = `W` rounded
//! down to 15 minutes). A click in an unsealed minute updates only its minute rows (8 row
//! updates); when `W` seals the minute, its rows are merged once into the quarter rows (clicks
//! added, sketches unioned). A click in a sealed minute of an unsealed quarter (late) updates
//! its minute and quarter rows; when `W` seals a quarter (after folding its last minutes into
//! it), its rows are merged once into the hour and day rows, in the same write lock as the
//! watermark move. A click in a sealed quarter (late, or backfill) updates all four
//! granularities directly (32 row updates). So at every applied epoch:
//!
//! > quarter row = its block's row ∪ the rows of the quarter's unsealed minutes;
//! > hour/day row = its block's row ∪ the rows of the bucket's unsealed quarters and minutes,
//!
//! and every reader goes through [`ShardState::blocks`], which yields exactly those blocks:
//! queries, summaries, checkpoints and the change stream (which emits quarter, hour and day
//! rows at that full value whenever one of their parts changed) see the same values as if
//! every click had updated every granularity, and minute, quarter, hour and day totals keep
//! agreeing. A popular link's clicks of one minute thus cost one quarter-row merge per
//! minute row instead of one quarter-row update per click.
//!
//! Checkpoints hold quarter rows at their full value (the form above), so a restored shard
//! treats the restored minutes as sealed ([`ShardState::resume_at`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_schemas::LinkMeta;

use super::rows::{Block, row_key};
use crate::changes::ChangedRow;
use crate::hash::{FxHashMap, FxHashSet};
use crate::model::{DimStr, DimSym, Granularity, View};

mod apply;
pub(crate) use apply::APPLY_CHUNK;
mod seal;
#[cfg(test)]
pub(crate) mod tests;

/// Interns dimension values of one shard to dense `u32` ids.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    map: FxHashMap<DimStr, u32>,
    names: Vec<Arc<str>>,
    /// Shard id + 1 by process-wide [`DimSym::id`] (0: not seen yet), so a click's value is
    /// found by one index, not a hash of its text. 4 bytes per process-wide value up to the
    /// largest id this dimension has seen.
    by_sym: Vec<u32>,
}

impl Interner {
    #[inline]
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.map.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(Arc::from(s));
        self.map.insert(DimStr::new(s), id);
        id
    }
    /// [`Self::intern`] for a [`DimSym`] (the hot path of [`ShardState::apply`]): one
    /// index by the symbol's id once the shard has seen it.
    #[inline]
    pub(crate) fn intern_sym(&mut self, s: DimSym) -> u32 {
        let g = s.id() as usize;
        match self.by_sym.get(g) {
            Some(&n) if n != 0 => n - 1,
            _ => {
                let id = self.intern(s.as_str());
                if self.by_sym.len() <= g {
                    self.by_sym.resize(g + 1, 0);
                }
                self.by_sym[g] = id + 1;
                id
            }
        }
    }
    pub(crate) fn name(&self, id: u32) -> &Arc<str> {
        &self.names[id as usize]
    }
}

/// Rollups of one code: per granularity, bucket start → block slot in the shard's slab.
#[derive(Debug)]
pub(crate) struct CodeRollups {
    pub(crate) name: Arc<str>,
    pub(crate) grans: [BTreeMap<i64, u32>; 4],
    /// Most recently used (bucket start, slot) per granularity: most clicks of a code land
    /// in its latest buckets, so this skips the tree walk.
    recent: [(i64, u32); 4],
}

/// Sizes of a shard, for capacity planning and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardSize {
    /// Codes with any rows.
    pub codes: usize,
    /// Blocks (code × granularity × bucket).
    pub blocks: usize,
    /// Rollup rows.
    pub rows: usize,
    /// Approximate heap bytes of blocks, rows and sketches.
    pub bytes: usize,
}

/// The rollups of one worker (see module docs).
#[derive(Debug)]
pub(crate) struct ShardState {
    codes: FxHashMap<DimStr, u32>,
    pub(crate) code_rollups: Vec<CodeRollups>,
    /// Interned values per dimension ([`crate::model::Dimension::index`] order).
    pub(crate) values: [Interner; 6],
    /// Link-metadata values by id (id 0: no metadata), interned **by value**: equal values
    /// share one id, so clicks whose `Arc`s differ (a restored checkpoint, the live join after
    /// a restart) land in the same total-view rows.
    metas: Vec<Option<Arc<LinkMeta>>>,
    meta_ids: FxHashMap<Arc<LinkMeta>, u32>,
    /// Fast path of [`Self::meta_id`]: id by `Arc` address (the join hands the same `Arc` to
    /// every click until the metadata changes). The `Arc` is kept so its address is never
    /// reused by another value.
    meta_ptrs: FxHashMap<usize, (u32, Arc<LinkMeta>)>,
    /// Block slab; `free` lists reusable slots.
    blocks: Vec<Block>,
    free: Vec<u32>,
    /// Global watermark `W` as of `applied_epoch`.
    pub(crate) watermark_ms: i64,
    /// Quarters starting before this are sealed: folded into their hour and day blocks
    /// (module docs). Always `W` rounded down to 15 minutes.
    sealed_before: i64,
    /// Minutes starting before this are sealed: folded into their quarter blocks (module
    /// docs). `W` rounded down to the minute, or later after a restore (restored quarter
    /// rows already hold their minutes); never below `sealed_before`.
    minutes_sealed_before: i64,
    /// End of the newest minute bucket restored from a checkpoint ([`Self::import_row`]).
    restored_minutes_to: i64,
    /// Every epoch below this is applied.
    pub(crate) applied_epoch: u64,
    /// Per granularity: buckets starting at or after this are retained (earlier ones were
    /// evicted, or would have been).
    pub(crate) retained_from: [i64; 4],
    retention_ms: [i64; 4],
    evict_index: [BTreeMap<i64, Vec<(u32, u32)>>; 4],
    rows: usize,
    track_changes: bool,
    dirty_blocks: Vec<(u32, u8, i64)>,
    /// Blocks in `dirty_blocks` (change tracking only).
    dirty: FxHashSet<(u32, u8, i64)>,
    /// Buffers of [`Self::apply`], kept between batches.
    scratch: apply::Scratch,
}

impl ShardState {
    pub(crate) fn new(retention_ms: [i64; 4], track_changes: bool) -> ShardState {
        ShardState {
            codes: FxHashMap::default(),
            code_rollups: Vec::new(),
            values: Default::default(),
            metas: vec![None],
            meta_ids: FxHashMap::default(),
            meta_ptrs: FxHashMap::default(),
            blocks: Vec::new(),
            free: Vec::new(),
            watermark_ms: i64::MIN,
            sealed_before: i64::MIN,
            minutes_sealed_before: i64::MIN,
            restored_minutes_to: i64::MIN,
            applied_epoch: 0,
            retained_from: [i64::MIN; 4],
            retention_ms,
            evict_index: Default::default(),
            rows: 0,
            track_changes,
            dirty_blocks: Vec::new(),
            dirty: FxHashSet::default(),
            scratch: apply::Scratch::default(),
        }
    }

    pub(crate) fn code(&self, code: &str) -> Option<&CodeRollups> {
        self.codes.get(code).map(|&i| &self.code_rollups[i as usize])
    }

    /// The blocks whose rows together make up bucket `start` of granularity `g` of `code`:
    /// the bucket's own block and, for a quarter, hour or day, the blocks of its unsealed
    /// minutes and (hour, day) quarters (module docs). A row's value is the sum of its clicks
    /// and the union of its sketches over these blocks.
    #[inline]
    pub(crate) fn blocks<'a>(&'a self, code: &'a CodeRollups, g: Granularity, start: i64) -> impl Iterator<Item = &'a Block> + 'a {
        let own = code.grans[g.index()].get(&start).copied();
        let end = start.saturating_add(g.len_ms());
        let parts = move |sub: Granularity, sealed_before: i64| {
            let from = start.max(sealed_before);
            (g.index() > sub.index() && from < end).then(|| code.grans[sub.index()].range(from..end).map(|(_, &s)| s)).into_iter().flatten()
        };
        let quarters = parts(Granularity::Quarter, self.sealed_before);
        let minutes = parts(Granularity::Minute, self.minutes_sealed_before);
        own.into_iter().chain(quarters).chain(minutes).map(move |s| &self.blocks[s as usize])
    }

    /// How many granularities, from the minute up, a click at `ts` updates directly: 1 while
    /// its minute is unsealed, 2 while its quarter is, else 4 (module docs).
    #[inline]
    pub(super) fn direct_granularities(&self, ts: i64) -> usize {
        if Granularity::Quarter.bucket_start(ts) < self.sealed_before {
            4
        } else if Granularity::Minute.bucket_start(ts) < self.minutes_sealed_before {
            2
        } else {
            1
        }
    }

    /// Name of value `id` of dimension index `dim`.
    pub(crate) fn value_name(&self, dim: usize, id: u32) -> &Arc<str> {
        self.values[dim].name(id)
    }

    pub(crate) fn meta(&self, id: u32) -> Option<&Arc<LinkMeta>> {
        self.metas.get(id as usize).and_then(Option::as_ref)
    }

    /// [`Self::code_index`] for a [`DimStr`] (byte lookup, no UTF-8 validation).
    #[inline]
    pub(super) fn code_index_dim(&mut self, code: &DimStr) -> u32 {
        match self.codes.get(code) {
            Some(&i) => i,
            None => self.code_index(code.as_str()),
        }
    }

    fn code_index(&mut self, code: &str) -> u32 {
        if let Some(&i) = self.codes.get(code) {
            return i;
        }
        let i = self.code_rollups.len() as u32;
        self.code_rollups.push(CodeRollups { name: Arc::from(code), grans: Default::default(), recent: [(i64::MIN, 0); 4] });
        self.codes.insert(DimStr::new(code), i);
        i
    }

    /// Id of a link-metadata value (0 for `None`), interned by value (see `metas`).
    pub(super) fn meta_id(&mut self, meta: &Option<Arc<LinkMeta>>) -> u32 {
        let Some(m) = meta else { return 0 };
        let ptr = Arc::as_ptr(m) as usize;
        if let Some(&(id, _)) = self.meta_ptrs.get(&ptr) {
            return id;
        }
        let id = match self.meta_ids.get(&**m) {
            Some(&id) => id,
            None => {
                let id = self.metas.len() as u32;
                self.metas.push(Some(Arc::clone(m)));
                self.meta_ids.insert(Arc::clone(m), id);
                id
            }
        };
        self.meta_ptrs.insert(ptr, (id, Arc::clone(m)));
        id
    }

    /// Slot of the block of code `ci`, granularity `gi`, bucket `start`, created if missing.
    #[inline]
    pub(super) fn block_slot(&mut self, ci: u32, gi: usize, start: i64) -> u32 {
        let code = &mut self.code_rollups[ci as usize];
        if code.recent[gi].0 == start {
            return code.recent[gi].1;
        }
        if let Some(&s) = code.grans[gi].get(&start) {
            code.recent[gi] = (start, s);
            return s;
        }
        let slot = match self.free.pop() {
            Some(s) => {
                self.blocks[s as usize] = Block::new();
                s
            }
            None => {
                self.blocks.push(Block::new());
                (self.blocks.len() - 1) as u32
            }
        };
        let code = &mut self.code_rollups[ci as usize];
        code.grans[gi].insert(start, slot);
        code.recent[gi] = (start, slot);
        self.evict_index[gi].entry(start).or_default().push((ci, slot));
        slot
    }

    /// Moves the watermark to `w` (never backwards) and evicts what fell out of retention.
    pub(crate) fn advance_watermark(&mut self, w: i64) {
        if w == i64::MIN || w <= self.watermark_ms {
            return;
        }
        self.watermark_ms = w;
        // Fold before evicting: a minute or quarter kept shorter than the bucket above it
        // must reach it first; and minutes before quarters, so a sealed quarter is whole.
        if w > i64::MIN / 2 {
            self.seal(Granularity::Minute, Granularity::Minute.bucket_start(w));
            self.seal(Granularity::Quarter, Granularity::Quarter.bucket_start(w));
        }
        for g in Granularity::ALL {
            let gi = g.index();
            let cutoff = w.saturating_sub(self.retention_ms[gi]);
            if cutoff <= i64::MIN / 2 {
                continue;
            }
            let from = g.bucket_start(cutoff);
            if from <= self.retained_from[gi] {
                continue;
            }
            self.retained_from[gi] = from;
            while let Some(entry) = self.evict_index[gi].first_entry() {
                if *entry.key() >= from {
                    break;
                }
                let (start, blocks) = entry.remove_entry();
                for (ci, slot) in blocks {
                    let code = &mut self.code_rollups[ci as usize];
                    code.grans[gi].remove(&start);
                    if code.recent[gi].0 == start {
                        code.recent[gi] = (i64::MIN, 0);
                    }
                    let b = std::mem::take(&mut self.blocks[slot as usize]);
                    self.rows -= b.rows();
                    self.free.push(slot);
                }
            }
        }
    }

    /// Number of rows currently held.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Checkpoint hook ([`crate::checkpoint`]): appends every row (absolute values, sketch
    /// bytes), without touching the change marks. Quarter rows are exported at their full
    /// value (own rows ∪ unsealed minutes, [`Self::blocks`]); minute, hour and day rows as
    /// their blocks hold them (a restore re-derives which quarters are sealed from `W`).
    pub(crate) fn export_rows(&self, out: &mut Vec<ChangedRow>) {
        let q = Granularity::Quarter;
        let mut quarters = Vec::new();
        for code in &self.code_rollups {
            for (gi, buckets) in code.grans.iter().enumerate() {
                if gi == q.index() {
                    continue;
                }
                for (&start, &slot) in buckets {
                    self.export_block(code, Granularity::ALL[gi], start, &self.blocks[slot as usize], out);
                }
            }
            quarters.clear();
            quarters.extend(code.grans[q.index()].keys().copied());
            quarters.extend(code.grans[Granularity::Minute.index()].range(self.minutes_sealed_before..).map(|(&m, _)| q.bucket_start(m)));
            quarters.sort_unstable();
            quarters.dedup();
            for &start in &quarters {
                let parts: Vec<&Block> = self.blocks(code, q, start).collect();
                if let [only] = parts[..] {
                    self.export_block(code, q, start, only, out);
                    continue;
                }
                let (mut merged, mut created) = (Block::new(), 0usize);
                for part in parts {
                    part.for_each(|key, row| {
                        let t = merged.entry(key, &mut created);
                        t.add_clicks(row.clicks(), false);
                        t.sketch.merge(&row.sketch);
                    });
                }
                self.export_block(code, q, start, &merged, out);
            }
        }
    }

    /// Appends the rows of `block` (bucket `start` of granularity `g` of `code`), view by view.
    fn export_block(&self, code: &CodeRollups, g: Granularity, start: i64, block: &Block, out: &mut Vec<ChangedRow>) {
        for vi in 0..View::COUNT {
            block.for_view(vi, |key, row| {
                let clicks = row.clicks();
                out.push(seal::changed_row(
                    &self.values,
                    &self.metas,
                    &code.name,
                    g,
                    start,
                    key,
                    clicks,
                    row.sketch.uniques_within_ref(clicks),
                    row.sketch.to_bytes(),
                ));
            });
        }
    }

    /// Checkpoint hook: adds a restored row (its clicks, sketch and, for the total view, its
    /// metadata value, interned by value like the live clicks' so both share rows).
    ///
    /// Errors: [`crate::Error::SketchDecode`] for bad sketch bytes,
    /// [`crate::Error::Config`] for a row whose dimensions do not match its view.
    pub(crate) fn import_row(&mut self, row: &ChangedRow) -> crate::Result<()> {
        let sketch = crate::sketch::VisitorSketch::from_bytes(&row.sketch)?;
        let vi = row.view.index();
        let (a, b) = match (row.view, row.dims.as_slice()) {
            (View::Total, []) => (self.meta_id(&row.meta), 0),
            (View::Single(d), [v]) => (self.values[d.index()].intern(v), 0),
            (View::CountryDevice, [c, dv]) => (self.values[0].intern(c), self.values[1].intern(dv)),
            _ => return Err(crate::Error::Config(format!("checkpoint row of view {:?} has {} dimension values", row.view, row.dims.len()))),
        };
        let ci = self.code_index(&row.code);
        let gi = row.granularity.index();
        if row.granularity == Granularity::Minute {
            self.restored_minutes_to = self.restored_minutes_to.max(row.bucket_start_ms.saturating_add(Granularity::Minute.len_ms()));
        }
        let slot = self.block_slot(ci, gi, row.bucket_start_ms);
        let mut created = 0usize;
        let r = self.blocks[slot as usize].entry(row_key(vi, a, b, row.is_bot), &mut created);
        r.add_clicks(row.clicks, false);
        // Rows the snapshot kept apart can meet here: total-view rows of one code whose
        // metadata values were equal (a snapshot written before the shard interned metadata
        // by value kept one row per `Arc`). They are one logical row: add clicks, union the
        // visitors.
        if created == 0 {
            r.sketch.merge(&sketch);
        } else {
            r.sketch = sketch;
        }
        self.rows += created;
        Ok(())
    }

    /// Checkpoint hook: the restored watermark and retention floors (never moved back). The
    /// restored rows were exported at that watermark, so the quarters before it are sealed
    /// (folded into the exported hour and day rows); the exported quarter rows hold all their
    /// minutes ([`Self::export_rows`]), so every restored minute counts as sealed.
    pub(crate) fn resume_at(&mut self, watermark_ms: i64, retained_from: [i64; 4]) {
        self.watermark_ms = self.watermark_ms.max(watermark_ms);
        if self.watermark_ms > i64::MIN / 2 {
            self.sealed_before = self.sealed_before.max(Granularity::Quarter.bucket_start(self.watermark_ms));
            self.minutes_sealed_before = self.minutes_sealed_before.max(Granularity::Minute.bucket_start(self.watermark_ms));
        }
        self.minutes_sealed_before = self.minutes_sealed_before.max(self.restored_minutes_to).max(self.sealed_before);
        for (r, f) in self.retained_from.iter_mut().zip(retained_from) {
            *r = (*r).max(f);
        }
    }

    /// Walks every block to measure the shard (O(rows); benchmark and diagnostics only).
    pub(crate) fn size(&self) -> ShardSize {
        let mut s = ShardSize { codes: self.code_rollups.len(), ..Default::default() };
        for c in &self.code_rollups {
            for g in &c.grans {
                s.bytes += g.len() * 24;
                for &slot in g.values() {
                    let b = &self.blocks[slot as usize];
                    s.blocks += 1;
                    s.rows += b.rows();
                    s.bytes += std::mem::size_of::<Block>() + b.heap_bytes();
                }
            }
        }
        s
    }
}
