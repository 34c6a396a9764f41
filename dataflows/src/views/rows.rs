//! Storage of rollup rows: one [`Block`] per (code, granularity, bucket) holding the rows of
//! all eight views.
//!
//! A block keeps its row keys and rows in two parallel vectors while it is small (keys are
//! scanned linearly: a few cache lines), and past [`INDEX_AT`] rows in one open-addressing
//! table with each key inline beside its row ([`table::RowTable`]), so a click touches one or
//! two cache lines per block instead of one allocation per row.
//!
//! Row keys pack `(view, is_bot, a, b)` into a `u64`: `view << 61 | is_bot << 60 | a << 30 |
//! b`, where `a` and `b` (< 2^30) are per-shard interned ids: total view `a` = link-metadata
//! id; single-dimension views `a` = the value's id in that dimension; the (country, device)
//! view `a` = country id, `b` = device id.

use crate::sketch::VisitorSketch;
use table::RowTable;

mod table;

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
    /// Up to [`INDEX_AT`] rows: keys in their own vector (scanned linearly: 32 keys are four
    /// cache lines), rows at the same positions, both in insertion order.
    Small { keys: Vec<u64>, rows: Vec<Row> },
    /// More rows: an open-addressing table holding keys and rows inline (one cache miss per
    /// lookup).
    Large(RowTable),
}

impl Default for Block {
    fn default() -> Self {
        Block::Small { keys: Vec::new(), rows: Vec::new() }
    }
}

impl Block {
    /// An empty block with room for a click's eight rows.
    pub(crate) fn new() -> Block {
        Block::Small { keys: Vec::with_capacity(8), rows: Vec::with_capacity(8) }
    }

    /// The row of `key`, created empty (and `created` incremented) if absent.
    #[inline]
    pub(crate) fn entry(&mut self, key: u64, created: &mut usize) -> &mut Row {
        // Position in a small block (`Some(None)`: absent); `None` for an indexed block.
        let hit = match self {
            Block::Small { keys, .. } => Some(keys.iter().position(|k| *k == key)),
            Block::Large(_) => None,
        };
        if hit == Some(None)
            && let Block::Small { keys, rows } = self
        {
            if keys.len() < INDEX_AT {
                *created += 1;
                keys.push(key);
                rows.push(Row::default());
            } else {
                // Room for `INDEX_AT + 1` rows is 64 slots (up to 48 rows): most blocks that
                // just passed the limit never reach 48 rows, and the ones that do pay one
                // rehash.
                let mut t = RowTable::with_capacity(INDEX_AT + 1);
                let mut none = 0;
                for (k, r) in keys.drain(..).zip(rows.drain(..)) {
                    *t.entry(k, &mut none) = r;
                }
                *self = Block::Large(t);
            }
        }
        match self {
            Block::Small { keys, rows } => {
                let i = hit.flatten().unwrap_or(keys.len() - 1);
                &mut rows[i]
            }
            Block::Large(t) => t.entry(key, created),
        }
    }

    /// Loads the cache line where a lookup of `key` starts (a small block's keys, an indexed
    /// block's home slot of `key`) and returns a word of it. Only the load matters: a caller
    /// about to look up many rows touches them first, so their cache misses overlap instead
    /// of coming one per lookup.
    #[inline]
    pub(crate) fn touch(&self, key: u64) -> u64 {
        match self {
            Block::Small { keys, .. } => keys.first().copied().unwrap_or(0),
            Block::Large(t) => t.touch(key),
        }
    }

    /// The row of `key`, if present.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<&Row> {
        match self {
            Block::Small { keys, rows } => keys.iter().position(|k| *k == key).map(|i| &rows[i]),
            Block::Large(t) => t.get(key),
        }
    }

    /// The row of `key`, mutably, if present.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut Row> {
        match self {
            Block::Small { keys, rows } => keys.iter().position(|k| *k == key).map(|i| &mut rows[i]),
            Block::Large(t) => t.get_mut(key),
        }
    }

    /// Every row, with its key.
    pub(crate) fn for_each(&self, mut f: impl FnMut(u64, &Row)) {
        match self {
            Block::Small { keys, rows } => keys.iter().zip(rows).for_each(|(k, r)| f(*k, r)),
            Block::Large(t) => t.iter().for_each(|(k, r)| f(k, r)),
        }
    }

    /// Every row of `view`, with its key.
    #[inline]
    pub(crate) fn for_view(&self, view: usize, mut f: impl FnMut(u64, &Row)) {
        let mut g = |k: u64, r: &Row| {
            if (k >> 61) as usize == view {
                f(k, r);
            }
        };
        match self {
            Block::Small { keys, rows } => keys.iter().zip(rows).for_each(|(k, r)| g(*k, r)),
            Block::Large(t) => t.iter().for_each(|(k, r)| g(k, r)),
        }
    }

    /// Every row, mutably, with its key.
    pub(crate) fn for_each_mut(&mut self, mut f: impl FnMut(u64, &mut Row)) {
        match self {
            Block::Small { keys, rows } => keys.iter().zip(rows.iter_mut()).for_each(|(k, r)| f(*k, r)),
            Block::Large(t) => t.iter_mut().for_each(|(k, r)| f(k, r)),
        }
    }

    /// Rows held.
    pub(crate) fn rows(&self) -> usize {
        match self {
            Block::Small { keys, .. } => keys.len(),
            Block::Large(t) => t.len(),
        }
    }

    /// Heap bytes of the block and its sketches (estimate: capacity times entry size).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Block::Small { keys, rows } => {
                keys.capacity() * std::mem::size_of::<u64>()
                    + rows.capacity() * std::mem::size_of::<Row>()
                    + rows.iter().map(|r| r.sketch.heap_bytes()).sum::<usize>()
            }
            Block::Large(t) => t.slot_bytes() + t.iter().map(|(_, r)| r.sketch.heap_bytes()).sum::<usize>(),
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
        // `get_mut` finds every row of the indexed block, and no other
        for k in 0..100u64 {
            let key = row_key((k % 8) as usize, k as u32, 0, false);
            assert_eq!(blk.get_mut(key).map(|r| r.clicks()), Some(2));
        }
        assert!(blk.get_mut(row_key(0, 100, 0, false)).is_none());
    }

    #[test]
    fn get_mut_reaches_the_rows_of_a_small_block() {
        let mut blk = Block::new();
        let mut created = 0;
        for k in 0..5u32 {
            blk.entry(row_key(1, k, 0, false), &mut created).add_clicks(u64::from(k) + 1, false);
        }
        assert!(matches!(blk, Block::Small { .. }));
        for k in 0..5u32 {
            let row = blk.get_mut(row_key(1, k, 0, false)).expect("present");
            assert_eq!(row.clicks(), u64::from(k) + 1);
            row.add_clicks(10, false);
        }
        assert_eq!(blk.get(row_key(1, 4, 0, false)).map(Row::clicks), Some(15));
        assert!(blk.get_mut(row_key(2, 0, 0, false)).is_none());
        assert_eq!(created, 5);
    }
}
