//! Storage of rollup rows: one [`Block`] per (code, granularity, bucket) holding the rows of
//! all eight views.
//!
//! A block keeps its row keys and rows in two parallel vectors (keys are scanned linearly
//! while the block is small — a few cache lines — and through a hash index once it grows),
//! so a click touches one or two cache lines per block instead of one allocation per row.
//!
//! Row keys pack `(view, is_bot, a, b)` into a `u64`: `view << 61 | is_bot << 60 | a << 30 |
//! b`, where `a` and `b` (< 2^30) are per-shard interned ids: total view `a` = link-metadata
//! id; single-dimension views `a` = the value's id in that dimension; the (country, device)
//! view `a` = country id, `b` = device id.

use crate::hash::FxHashMap;
use crate::sketch::VisitorSketch;

const ID_MASK: u64 = (1 << 30) - 1;

/// Packs a row key (see module docs).
#[inline]
pub(crate) fn row_key(view: usize, a: u32, b: u32, is_bot: bool) -> u64 {
    ((view as u64) << 61) | (u64::from(is_bot) << 60) | ((u64::from(a) & ID_MASK) << 30) | (u64::from(b) & ID_MASK)
}

/// Unpacks a row key into `(view, a, b, is_bot)`.
#[inline]
pub(crate) fn split_key(k: u64) -> (usize, u32, u32, bool) {
    ((k >> 61) as usize, ((k >> 30) & ID_MASK) as u32, (k & ID_MASK) as u32, (k >> 60) & 1 == 1)
}

const DIRTY: u64 = 1 << 63;

/// One rollup row: click count and visitor sketch. The top bit of the stored count marks the
/// row as changed since the last change-stream emission.
#[derive(Clone, Default, Debug)]
pub(crate) struct Row {
    clicks: u64,
    pub(crate) sketch: VisitorSketch,
}

impl Row {
    #[inline]
    pub(crate) fn clicks(&self) -> u64 {
        self.clicks & !DIRTY
    }
    /// Adds `n` clicks and marks the row dirty when `track` is set.
    #[inline]
    pub(crate) fn add_clicks(&mut self, n: u64, track: bool) {
        self.clicks += n;
        if track {
            self.clicks |= DIRTY;
        }
    }
    /// Whether the row changed since the last change-stream emission.
    #[inline]
    pub(crate) fn is_dirty(&self) -> bool {
        self.clicks & DIRTY != 0
    }
    /// Returns whether the row was dirty, clearing the mark.
    #[inline]
    pub(crate) fn take_dirty(&mut self) -> bool {
        let d = self.clicks & DIRTY != 0;
        self.clicks &= !DIRTY;
        d
    }
}

/// Rows kept in a block before it builds a hash index.
const INDEX_AT: usize = 32;

/// All rows of one (code, granularity, bucket) (see module docs).
#[derive(Debug)]
pub(crate) enum Block {
    /// Up to [`INDEX_AT`] rows, keys scanned linearly.
    Small(Vec<(u64, Row)>),
    /// More rows: a hash table holding the rows inline (one cache miss per lookup).
    Large(FxHashMap<u64, Row>),
}

impl Default for Block {
    fn default() -> Self {
        Block::Small(Vec::new())
    }
}

impl Block {
    /// An empty block sized for one click (eight rows).
    pub(crate) fn new() -> Block {
        Block::Small(Vec::with_capacity(8))
    }

    /// The row for `key`, created empty if missing; `created` is incremented when it was.
    #[inline]
    pub(crate) fn entry(&mut self, key: u64, created: &mut usize) -> &mut Row {
        if let Block::Small(v) = self
            && v.len() >= INDEX_AT
            && !v.iter().any(|(k, _)| *k == key)
        {
            let mut m: FxHashMap<u64, Row> = FxHashMap::with_capacity_and_hasher(2 * INDEX_AT, Default::default());
            m.extend(v.drain(..));
            *self = Block::Large(m);
        }
        match self {
            Block::Small(v) => {
                let i = match v.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        *created += 1;
                        v.push((key, Row::default()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            Block::Large(m) => m.entry(key).or_insert_with(|| {
                *created += 1;
                Row::default()
            }),
        }
    }

    /// The row for `key`, if present.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<&Row> {
        match self {
            Block::Small(v) => v.iter().find(|(k, _)| *k == key).map(|(_, r)| r),
            Block::Large(m) => m.get(&key),
        }
    }

    /// Every row with its key.
    pub(crate) fn for_each(&self, mut f: impl FnMut(u64, &Row)) {
        match self {
            Block::Small(v) => v.iter().for_each(|(k, r)| f(*k, r)),
            Block::Large(m) => m.iter().for_each(|(k, r)| f(*k, r)),
        }
    }

    /// Rows of view `view`, with their keys.
    #[inline]
    pub(crate) fn for_view(&self, view: usize, mut f: impl FnMut(u64, &Row)) {
        let mut g = |k: u64, r: &Row| {
            if (k >> 61) as usize == view {
                f(k, r);
            }
        };
        match self {
            Block::Small(v) => v.iter().for_each(|(k, r)| g(*k, r)),
            Block::Large(m) => m.iter().for_each(|(k, r)| g(*k, r)),
        }
    }

    /// Every row, mutably, with its key.
    pub(crate) fn for_each_mut(&mut self, mut f: impl FnMut(u64, &mut Row)) {
        match self {
            Block::Small(v) => v.iter_mut().for_each(|(k, r)| f(*k, r)),
            Block::Large(m) => m.iter_mut().for_each(|(k, r)| f(*k, r)),
        }
    }

    /// Number of rows.
    pub(crate) fn rows(&self) -> usize {
        match self {
            Block::Small(v) => v.len(),
            Block::Large(m) => m.len(),
        }
    }

    /// Approximate heap bytes of the block, its rows and their sketches.
    pub(crate) fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(u64, Row)>();
        match self {
            Block::Small(v) => v.capacity() * entry + v.iter().map(|(_, r)| r.sketch.heap_bytes()).sum::<usize>(),
            Block::Large(m) => m.capacity() * (entry + 1) + m.values().map(|r| r.sketch.heap_bytes()).sum::<usize>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for (v, a, b, bot) in [(0, 0, 0, false), (7, 7, 0, true), (3, (1 << 30) - 1, (1 << 30) - 1, true)] {
            assert_eq!(split_key(row_key(v, a, b, bot)), (v, a, b, bot));
        }
    }

    #[test]
    fn block_grows_an_index_and_keeps_rows() {
        let mut blk = Block::new();
        let mut created = 0;
        for round in 0..2u64 {
            for k in 0..100u64 {
                let row = blk.entry(row_key((k % 8) as usize, k as u32, 0, false), &mut created);
                row.add_clicks(1, false);
                row.sketch.insert(k * 10 + round);
            }
        }
        assert_eq!(created, 100);
        assert!(matches!(blk, Block::Large(_)));
        let mut total = 0;
        for v in 0..8 {
            blk.for_view(v, |k, r| {
                assert_eq!(split_key(k).0, v);
                assert_eq!(r.clicks(), 2);
                total += r.clicks();
            });
        }
        assert_eq!(total, 200);
    }
}
