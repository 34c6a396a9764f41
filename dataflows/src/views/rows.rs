//! Storage of rollup rows: one [`Block`] per (code, granularity, bucket) holding the rows of
//! all eight views, each view an adaptive map from a packed row key to a [`Row`].
//!
//! Row keys pack `(a, b, is_bot)` into a `u64`: `a << 32 | b << 1 | is_bot`, where `a` and `b`
//! are per-shard interned ids (`b < 2^31`): total view `a` = link-metadata id, `b` = 0;
//! single-dimension views `a` = value id, `b` = 0; the (country, device) view `a` = country
//! id, `b` = device id.

use crate::hash::FxHashMap;
use crate::model::View;
use crate::sketch::VisitorSketch;

/// Packs a row key (see module docs).
#[inline]
pub(crate) fn row_key(a: u32, b: u32, is_bot: bool) -> u64 {
    (u64::from(a) << 32) | (u64::from(b) << 1) | u64::from(is_bot)
}

/// Unpacks a row key into `(a, b, is_bot)`.
#[inline]
pub(crate) fn split_key(k: u64) -> (u32, u32, bool) {
    ((k >> 32) as u32, ((k & 0xffff_ffff) >> 1) as u32, k & 1 == 1)
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
    /// Adds one click by `visitor_id`; marks the row dirty when `track` is set.
    #[inline]
    pub(crate) fn add(&mut self, visitor_id: u64, track: bool) {
        self.clicks += 1;
        if track {
            self.clicks |= DIRTY;
        }
        self.sketch.insert(visitor_id);
    }
    /// Returns whether the row was dirty, clearing the mark.
    #[inline]
    pub(crate) fn take_dirty(&mut self) -> bool {
        let d = self.clicks & DIRTY != 0;
        self.clicks &= !DIRTY;
        d
    }
}

const SMALL_MAX: usize = 12;

/// Map from row key to row: a vector searched linearly while small, a hash map beyond.
#[derive(Clone, Debug)]
pub(crate) enum RowMap {
    Small(Vec<(u64, Row)>),
    Large(FxHashMap<u64, Row>),
}

impl Default for RowMap {
    fn default() -> Self {
        RowMap::Small(Vec::new())
    }
}

impl RowMap {
    /// The row for `key`, created empty if missing; `created` is set when it was.
    #[inline]
    pub(crate) fn entry(&mut self, key: u64, created: &mut bool) -> &mut Row {
        if let RowMap::Small(v) = self
            && v.len() >= SMALL_MAX
            && !v.iter().any(|(k, _)| *k == key)
        {
            let m: FxHashMap<u64, Row> = v.drain(..).collect();
            *self = RowMap::Large(m);
        }
        match self {
            RowMap::Small(v) => {
                let i = match v.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        *created = true;
                        v.push((key, Row::default()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            RowMap::Large(m) => m.entry(key).or_insert_with(|| {
                *created = true;
                Row::default()
            }),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            RowMap::Small(v) => v.len(),
            RowMap::Large(m) => m.len(),
        }
    }

    pub(crate) fn for_each(&self, mut f: impl FnMut(u64, &Row)) {
        match self {
            RowMap::Small(v) => v.iter().for_each(|(k, r)| f(*k, r)),
            RowMap::Large(m) => m.iter().for_each(|(k, r)| f(*k, r)),
        }
    }

    pub(crate) fn for_each_mut(&mut self, mut f: impl FnMut(u64, &mut Row)) {
        match self {
            RowMap::Small(v) => v.iter_mut().for_each(|(k, r)| f(*k, r)),
            RowMap::Large(m) => m.iter_mut().for_each(|(k, r)| f(*k, r)),
        }
    }

    /// Approximate heap bytes of the map and its rows' sketches.
    pub(crate) fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(u64, Row)>();
        let mut bytes = match self {
            RowMap::Small(v) => v.capacity() * entry,
            RowMap::Large(m) => m.capacity() * (entry + 1),
        };
        self.for_each(|_, r| bytes += r.sketch.heap_bytes());
        bytes
    }
}

/// All rows of one (code, granularity, bucket): one [`RowMap`] per view.
#[derive(Clone, Debug, Default)]
pub(crate) struct Block {
    pub(crate) views: [RowMap; View::COUNT],
    /// Set while the block holds dirty rows not yet emitted on the change stream.
    pub(crate) dirty: bool,
}

impl Block {
    pub(crate) fn rows(&self) -> usize {
        self.views.iter().map(RowMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for (a, b, bot) in [(0, 0, false), (7, 0, true), (u32::MAX, (1 << 31) - 1, true)] {
            assert_eq!(split_key(row_key(a, b, bot)), (a, b, bot));
        }
    }

    #[test]
    fn map_grows_from_small_to_large() {
        let mut m = RowMap::default();
        for round in 0..2 {
            for k in 0..40u64 {
                let mut created = false;
                m.entry(k, &mut created).add(k * 10 + round, false);
                assert_eq!(created, round == 0);
            }
        }
        assert!(matches!(m, RowMap::Large(_)));
        let mut total = 0;
        m.for_each(|_, r| {
            assert_eq!(r.clicks(), 2);
            total += r.clicks();
        });
        assert_eq!(total, 80);
    }
}
