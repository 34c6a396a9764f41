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

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_schemas::LinkMeta;

use super::rows::{Block, row_key, split_key};
use crate::changes::ChangedRow;
use crate::hash::FxHashMap;
use crate::model::{Granularity, View};
use crate::records::LinkedRecord;

/// Interns dimension values of one shard to dense `u32` ids.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    map: FxHashMap<Box<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    #[inline]
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.map.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(Arc::from(s));
        self.map.insert(s.into(), id);
        id
    }
    pub(crate) fn name(&self, id: u32) -> &Arc<str> {
        &self.names[id as usize]
    }
}

/// Rollups of one code.
#[derive(Debug)]
pub(crate) struct CodeRollups {
    pub(crate) name: Arc<str>,
    pub(crate) grans: [BTreeMap<i64, Block>; 4],
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
    codes: FxHashMap<Box<str>, u32>,
    pub(crate) code_rollups: Vec<CodeRollups>,
    pub(crate) values: Interner,
    metas: Vec<Option<Arc<LinkMeta>>>,
    meta_ids: FxHashMap<usize, u32>,
    /// Global watermark `W` as of `applied_epoch`.
    pub(crate) watermark_ms: i64,
    /// Every epoch below this is applied.
    pub(crate) applied_epoch: u64,
    /// Per granularity: buckets starting at or after this are retained (earlier ones were
    /// evicted, or would have been).
    pub(crate) retained_from: [i64; 4],
    retention_ms: [i64; 4],
    evict_index: [BTreeMap<i64, Vec<u32>>; 4],
    rows: usize,
    track_changes: bool,
    dirty_blocks: Vec<(u32, u8, i64)>,
}

impl ShardState {
    pub(crate) fn new(retention_ms: [i64; 4], track_changes: bool) -> ShardState {
        ShardState {
            codes: FxHashMap::default(),
            code_rollups: Vec::new(),
            values: Interner::default(),
            metas: vec![None],
            meta_ids: FxHashMap::default(),
            watermark_ms: i64::MIN,
            applied_epoch: 0,
            retained_from: [i64::MIN; 4],
            retention_ms,
            evict_index: Default::default(),
            rows: 0,
            track_changes,
            dirty_blocks: Vec::new(),
        }
    }

    pub(crate) fn code(&self, code: &str) -> Option<&CodeRollups> {
        self.codes.get(code).map(|&i| &self.code_rollups[i as usize])
    }

    pub(crate) fn meta(&self, id: u32) -> Option<&Arc<LinkMeta>> {
        self.metas.get(id as usize).and_then(Option::as_ref)
    }

    fn code_index(&mut self, code: &str) -> u32 {
        if let Some(&i) = self.codes.get(code) {
            return i;
        }
        let i = self.code_rollups.len() as u32;
        self.code_rollups.push(CodeRollups { name: Arc::from(code), grans: Default::default() });
        self.codes.insert(code.into(), i);
        i
    }

    fn meta_id(&mut self, meta: &Option<Arc<LinkMeta>>) -> u32 {
        let Some(m) = meta else { return 0 };
        let ptr = Arc::as_ptr(m) as usize;
        if let Some(&id) = self.meta_ids.get(&ptr) {
            return id;
        }
        // Keeping the Arc alive in `metas` guarantees the address is never reused.
        let id = self.metas.len() as u32;
        self.metas.push(Some(Arc::clone(m)));
        self.meta_ids.insert(ptr, id);
        id
    }

    /// Applies clicks (any order): every retained granularity at once.
    pub(crate) fn apply(&mut self, recs: &[LinkedRecord]) {
        let mut last_code: Option<(&str, u32)> = None;
        for r in recs {
            let rec = &r.rec;
            let ci = match last_code {
                Some((c, i)) if c == rec.code.as_str() => i,
                _ => self.code_index(&rec.code),
            };
            last_code = Some((rec.code.as_str(), ci));
            let meta = self.meta_id(&r.meta);
            let d = &rec.dims;
            let bot = d.is_bot;
            let mut ids = [0u32; 6];
            for (id, v) in ids.iter_mut().zip(d.values.iter()) {
                *id = self.values.intern(v);
            }
            let keys: [u64; View::COUNT] = [
                row_key(meta, 0, bot),
                row_key(ids[0], 0, bot),
                row_key(ids[1], 0, bot),
                row_key(ids[2], 0, bot),
                row_key(ids[3], 0, bot),
                row_key(ids[4], 0, bot),
                row_key(ids[5], 0, bot),
                row_key(ids[0], ids[1], bot),
            ];
            let track = self.track_changes;
            let code = &mut self.code_rollups[ci as usize];
            for g in Granularity::ALL {
                let start = g.bucket_start(rec.ts);
                if start < self.retained_from[g.index()] {
                    continue;
                }
                let index = &mut self.evict_index[g.index()];
                let block = code.grans[g.index()].entry(start).or_insert_with(|| {
                    index.entry(start).or_default().push(ci);
                    Block::default()
                });
                let mut created = 0usize;
                for (map, &key) in block.views.iter_mut().zip(keys.iter()) {
                    let mut c = false;
                    map.entry(key, &mut c).add(rec.visitor_id, track);
                    created += usize::from(c);
                }
                self.rows += created;
                if track && !block.dirty {
                    block.dirty = true;
                    self.dirty_blocks.push((ci, g.index() as u8, start));
                }
            }
        }
    }

    /// Moves the watermark to `w` (never backwards) and evicts what fell out of retention.
    pub(crate) fn advance_watermark(&mut self, w: i64) {
        if w == i64::MIN || w <= self.watermark_ms {
            return;
        }
        self.watermark_ms = w;
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
                let (start, codes) = entry.remove_entry();
                for ci in codes {
                    if let Some(b) = self.code_rollups[ci as usize].grans[gi].remove(&start) {
                        self.rows -= b.rows();
                    }
                }
            }
        }
    }

    /// Number of rows currently held.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Appends every row changed since the last call (absolute values) and clears the marks.
    pub(crate) fn drain_changes(&mut self, out: &mut Vec<ChangedRow>) {
        let dirty = std::mem::take(&mut self.dirty_blocks);
        for (ci, gi, start) in dirty {
            let code = &mut self.code_rollups[ci as usize];
            let Some(block) = code.grans[gi as usize].get_mut(&start) else { continue };
            block.dirty = false;
            for (vi, map) in block.views.iter_mut().enumerate() {
                let view = View::ALL[vi];
                map.for_each_mut(|key, row| {
                    if !row.take_dirty() {
                        return;
                    }
                    let (a, b, is_bot) = split_key(key);
                    let (dims, meta) = match view {
                        View::Total => (Vec::new(), self.metas.get(a as usize).cloned().flatten()),
                        View::Single(_) => (vec![Arc::clone(self.values.name(a))], None),
                        View::CountryDevice => {
                            (vec![Arc::clone(self.values.name(a)), Arc::clone(self.values.name(b))], None)
                        }
                    };
                    out.push(ChangedRow {
                        code: Arc::clone(&code.name),
                        granularity: Granularity::ALL[gi as usize],
                        bucket_start_ms: start,
                        view,
                        is_bot,
                        dims,
                        meta,
                        clicks: row.clicks(),
                        uniques: row.sketch.uniques(),
                        sketch: row.sketch.to_bytes(),
                    });
                });
            }
        }
    }

    /// Walks every block to measure the shard (O(rows); benchmark and diagnostics only).
    pub(crate) fn size(&self) -> ShardSize {
        let mut s = ShardSize { codes: self.code_rollups.len(), ..Default::default() };
        for c in &self.code_rollups {
            for g in &c.grans {
                for b in g.values() {
                    s.blocks += 1;
                    s.rows += b.rows();
                    s.bytes += std::mem::size_of::<Block>() + 48;
                    s.bytes += b.views.iter().map(|m| m.heap_bytes()).sum::<usize>();
                }
            }
        }
        s
    }
}
