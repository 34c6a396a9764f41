//! Visitor sketches: exact for small rows, HyperLogLog++ past a threshold.
//!
//! A rollup row counts distinct `visitor_id`s. Most rows are small (a country/browser
//! combination seen by a handful of visitors), so a [`VisitorSketch`] starts as an **exact
//! set** of visitor ids (two ids inline, then one sorted allocation) and upgrades to
//! HyperLogLog++ at precision [`HLL_PRECISION`] once it holds more than [`EXACT_LIMIT`]
//! distinct ids: first its sparse form (sorted p' = 25 codes, near exact up to thousands of
//! visitors; [`sparse`] keeps the codes of `hyperloglogplus` with a cheaper insert path), then,
//! past 3,072 codes, the dense registers of [`hyperloglogplus::HyperLogLogPlus`] (2^14 six-bit
//! registers, ~13 KiB) (Heule, Nunkesser, Hall: "HyperLogLog in Practice", EDBT 2013). So:
//!
//! * up to [`EXACT_LIMIT`] visitors: uniques are exact (±0);
//! * above: relative standard error 1.04/√m = 1.04/√16384 ≈ 0.81 % (HLL++ paper, §2).
//!
//! **Reported uniques never exceed clicks.** Every click has one visitor, so a selection of
//! rows has at most as many distinct visitors as clicks, but an estimate can land above the
//! exact count. Every uniques figure the product reports (stats API, summary, live, export,
//! the change stream feeding Redis and ClickHouse) is therefore
//! `min(estimate of the union sketch, clicks of the same rows)`: [`VisitorSketch::uniques_within`]
//! / [`cap_uniques`]. The cap depends only on the selection, so every path that answers the
//! same selection gives the same figure.
//!
//! Every HLL++ sketch hashes ids with the one fixed [`VisitorHashState`], so sketches from any
//! worker, process, restart or store merge ([`VisitorSketch::merge`]).
//!
//! ## Byte format ([`VisitorSketch::to_bytes`], version 1)
//! All integers are unsigned LEB128 varints unless stated.
//! ```text
//! byte 0      format version = 1
//! byte 1      kind: 0 = exact set, 1 = HLL++ sparse, 2 = HLL++ dense
//! kind 0:     n, then n visitor ids ascending, delta-encoded (first delta from 0)
//! kind 1:     byte precision (14), n, then n sparse codes (u32) ascending, delta-encoded
//! kind 2:     byte precision (14), then 2^p registers of 6 bits, packed little-endian
//!             (register i occupies bits 6i..6i+6 of the byte string)
//! ```
//! The encoding is canonical: equal sketches encode to equal bytes.

mod bridge;
mod sparse;

use std::cmp::Ordering;

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};

use crate::hash::VisitorHashState;
use crate::{Error, Result};
use bridge::{Canonical, hll_from_canonical, hll_to_canonical};
use sparse::SparseCodes;

/// HLL++ precision p: m = 2^p registers (relative standard error 1.04/√m ≈ 0.81 %).
pub const HLL_PRECISION: u8 = 14;

/// Largest number of distinct visitors a sketch keeps as an exact set.
pub const EXACT_LIMIT: usize = 48;

/// Relative standard error of an HLL++ estimate at [`HLL_PRECISION`]: 1.04/√(2^p).
pub fn hll_relative_error() -> f64 {
    1.04 / f64::from(1u32 << HLL_PRECISION).sqrt()
}

/// The uniques figure reported for a selection of rows: its visitor estimate `estimate`
/// capped at the selection's `clicks` (module docs: a selection never has more distinct
/// visitors than clicks, an HLL++ estimate may claim more).
#[inline]
pub fn cap_uniques(estimate: u64, clicks: u64) -> u64 {
    estimate.min(clicks)
}

const FORMAT_VERSION: u8 = 1;
const KIND_EXACT: u8 = 0;
const KIND_SPARSE: u8 = 1;
const KIND_DENSE: u8 = 2;

type Hll = HyperLogLogPlus<u64, VisitorHashState>;

/// Distinct-visitor sketch of one rollup row (24 bytes inline).
#[derive(Clone)]
pub struct VisitorSketch {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// Up to two ids, ascending.
    Inline { len: u8, ids: [u64; 2] },
    /// 3..=EXACT_LIMIT ids: slot 0 holds the count, slots 1..=count the ids ascending; one
    /// allocation (capacity = slice length − 1), so a lookup costs one cache miss.
    Exact(Box<[u64]>),
    /// HLL++ sparse codes.
    Sparse(Box<SparseCodes>),
    /// HLL++ dense registers (`hyperloglogplus`).
    Dense(Box<Hll>),
}

impl Default for VisitorSketch {
    fn default() -> Self {
        VisitorSketch::new()
    }
}

impl std::fmt::Debug for VisitorSketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.repr {
            Repr::Inline { len, ids } => f.debug_tuple("Exact").field(&&ids[..*len as usize]).finish(),
            Repr::Exact(v) => f.debug_tuple("Exact").field(&v[0]).finish(),
            Repr::Sparse(s) => f.debug_tuple("Sparse").field(&s.len_upper()).finish(),
            Repr::Dense(_) => f.write_str("Dense"),
        }
    }
}

/// Id capacity of an exact set holding `n` ids, as single inserts grow it: 4, 8, 16, 32,
/// then [`EXACT_LIMIT`] (also for `n` above it).
fn exact_capacity(n: usize) -> usize {
    let mut cap = 4;
    while cap < n && cap < EXACT_LIMIT {
        cap = (2 * cap).min(EXACT_LIMIT);
    }
    cap
}

fn new_hll() -> Box<Hll> {
    // Precision 14 is within the crate's bounds (4..=18), so this cannot fail.
    Box::new(Hll::new(HLL_PRECISION, VisitorHashState).expect("precision 14 is valid"))
}

/// Dense crate sketch from sparse codes.
fn densify(s: &mut SparseCodes) -> Box<Hll> {
    // Registers built from valid codes always round-trip through the crate's layout.
    hll_from_canonical(Canonical::Dense(s.registers())).expect("dense registers convert")
}

impl VisitorSketch {
    /// An empty sketch.
    pub const fn new() -> Self {
        VisitorSketch { repr: Repr::Inline { len: 0, ids: [0; 2] } }
    }

    /// Whether the count is exact (the sketch still holds the ids themselves).
    pub fn is_exact(&self) -> bool {
        matches!(self.repr, Repr::Inline { .. } | Repr::Exact(_))
    }

    /// Whether the sketch holds its (at most two) ids inline, with no heap data: an update
    /// then touches only the row that holds the sketch.
    #[inline]
    pub(crate) fn is_inline(&self) -> bool {
        matches!(self.repr, Repr::Inline { .. })
    }

    /// Loads the first word of the sketch's heap data (an exact set's count, a sparse
    /// sketch's code count; 0 for an inline set or dense registers, which are not read
    /// here). Only the load matters: a caller about to update many rows touches their
    /// sketches first, so the cache misses overlap instead of coming one per update.
    #[inline]
    pub(crate) fn touch(&self) -> u64 {
        match &self.repr {
            Repr::Inline { .. } | Repr::Dense(_) => 0,
            Repr::Exact(set) => set[0],
            Repr::Sparse(s) => s.len_upper() as u64,
        }
    }

    /// Adds one visitor.
    #[inline]
    pub fn insert(&mut self, visitor_id: u64) {
        match &mut self.repr {
            Repr::Inline { len, ids } => match *len {
                0 => {
                    ids[0] = visitor_id;
                    *len = 1;
                }
                1 => match visitor_id.cmp(&ids[0]) {
                    Ordering::Equal => {}
                    Ordering::Less => {
                        ids[1] = ids[0];
                        ids[0] = visitor_id;
                        *len = 2;
                    }
                    Ordering::Greater => {
                        ids[1] = visitor_id;
                        *len = 2;
                    }
                },
                _ => {
                    if visitor_id == ids[0] || visitor_id == ids[1] {
                        return;
                    }
                    let mut set = vec![0u64; 5].into_boxed_slice();
                    let mut three = [ids[0], ids[1], visitor_id];
                    three.sort_unstable();
                    set[0] = 3;
                    set[1..4].copy_from_slice(&three);
                    self.repr = Repr::Exact(set);
                }
            },
            Repr::Exact(set) => {
                let n = set[0] as usize;
                if let Err(pos) = set[1..=n].binary_search(&visitor_id) {
                    if n < EXACT_LIMIT {
                        if n + 1 == set.len() {
                            let mut bigger = vec![0u64; (2 * n).min(EXACT_LIMIT) + 1].into_boxed_slice();
                            bigger[..=n].copy_from_slice(&set[..=n]);
                            *set = bigger;
                        }
                        set.copy_within(1 + pos..=n, 2 + pos);
                        set[1 + pos] = visitor_id;
                        set[0] = n as u64 + 1;
                    } else {
                        let mut s = Box::new(SparseCodes::default());
                        for &id in &set[1..=n] {
                            s.insert_id(id);
                        }
                        s.insert_id(visitor_id);
                        self.repr = Repr::Sparse(s);
                    }
                }
            }
            Repr::Sparse(s) => {
                s.insert_id(visitor_id);
                if s.wants_dense() {
                    let d = densify(s);
                    self.repr = Repr::Dense(d);
                }
            }
            Repr::Dense(h) => h.insert(&visitor_id),
        }
    }

    /// Adds the visitors `ids`, which must be strictly ascending (debug-asserted): the same
    /// sketch as [`Self::insert`] of each id, but an exact set takes them in one merge pass
    /// and one allocation at most.
    pub fn insert_sorted(&mut self, ids: &[u64]) {
        debug_assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids must be strictly ascending");
        let held: &[u64] = match &self.repr {
            Repr::Inline { len, ids: own } => &own[..*len as usize],
            Repr::Exact(set) => &set[1..=set[0] as usize],
            Repr::Sparse(_) | Repr::Dense(_) => {
                ids.iter().for_each(|&id| self.insert(id));
                return;
            }
        };
        if ids.len() <= 1 {
            ids.iter().for_each(|&id| self.insert(id));
            return;
        }
        // Merge the held ids with `ids` (both ascending) into a fresh exact set: slot 0 is the
        // count, as in `Repr::Exact`, and the capacity follows the growth of single inserts.
        let total = held.len() + ids.len();
        let mut merged = Vec::with_capacity(1 + exact_capacity(total).max(total));
        merged.push(0);
        sparse::merge_sorted_into(&mut merged, held, ids);
        let n = merged.len() - 1;
        if n <= 2 {
            let mut own = [0u64; 2];
            own[..n].copy_from_slice(&merged[1..]);
            self.repr = Repr::Inline { len: n as u8, ids: own };
        } else if n <= EXACT_LIMIT {
            merged[0] = n as u64;
            merged.resize(1 + exact_capacity(n), 0);
            self.repr = Repr::Exact(merged.into_boxed_slice());
        } else {
            let mut s = Box::new(SparseCodes::default());
            for &id in &merged[1..] {
                s.insert_id(id);
            }
            self.set_sparse(s);
        }
    }

    /// Stores `s` as this sketch's sparse form, or as the dense form once `s` has outgrown
    /// the sparse one ([`SparseCodes::wants_dense`]).
    fn set_sparse(&mut self, mut s: Box<SparseCodes>) {
        self.repr = if s.wants_dense() { Repr::Dense(densify(&mut s)) } else { Repr::Sparse(s) };
    }

    /// Adds every visitor of `other` (set union). Never fails: all sketches share one
    /// precision and hash.
    pub fn merge(&mut self, other: &VisitorSketch) {
        match &other.repr {
            Repr::Inline { len, ids } => {
                for &id in &ids[..*len as usize] {
                    self.insert(id);
                }
            }
            Repr::Exact(set) => {
                for &id in &set[1..=set[0] as usize] {
                    self.insert(id);
                }
            }
            Repr::Sparse(os) => match &mut self.repr {
                Repr::Sparse(s) => {
                    for &c in os.codes_copy().iter() {
                        s.insert_code(c);
                    }
                    if s.wants_dense() {
                        let d = densify(s);
                        self.repr = Repr::Dense(d);
                    }
                }
                Repr::Dense(h) => {
                    let other = hll_from_canonical(Canonical::Sparse(os.codes_copy())).expect("sparse codes convert");
                    h.merge(&other).expect("sketches share one precision");
                }
                _ => {
                    let ids = self.exact_ids();
                    let mut s = os.clone();
                    for id in ids {
                        s.insert_id(id);
                    }
                    self.set_sparse(s);
                }
            },
            Repr::Dense(oh) => {
                let mut h: Box<Hll> = match &mut self.repr {
                    Repr::Dense(h) => {
                        h.merge(oh).expect("sketches share one precision");
                        return;
                    }
                    Repr::Sparse(s) => densify(s),
                    _ => {
                        let mut h = new_hll();
                        for id in self.exact_ids() {
                            h.insert(&id);
                        }
                        h
                    }
                };
                h.merge(oh).expect("sketches share one precision");
                self.repr = Repr::Dense(h);
            }
        }
    }

    fn exact_ids(&self) -> Vec<u64> {
        match &self.repr {
            Repr::Inline { len, ids } => ids[..*len as usize].to_vec(),
            Repr::Exact(set) => set[1..=set[0] as usize].to_vec(),
            Repr::Sparse(_) | Repr::Dense(_) => Vec::new(),
        }
    }

    /// Estimated number of distinct visitors (exact while [`Self::is_exact`]).
    pub fn estimate(&mut self) -> f64 {
        match &mut self.repr {
            Repr::Inline { len, .. } => f64::from(*len),
            Repr::Exact(set) => set[0] as f64,
            Repr::Sparse(s) => s.estimate(),
            Repr::Dense(h) => h.count(),
        }
    }

    /// [`Self::estimate`] rounded to the nearest integer.
    pub fn uniques(&mut self) -> u64 {
        self.estimate().round().max(0.0) as u64
    }

    /// [`Self::uniques`] without mutating (clones an HLL++ sketch to count it).
    pub fn uniques_ref(&self) -> u64 {
        match &self.repr {
            Repr::Inline { .. } | Repr::Exact(_) => self.exact_ids().len() as u64,
            _ => self.clone().uniques(),
        }
    }

    /// The reported uniques of a selection of rows whose union is this sketch and whose
    /// clicks sum to `clicks`: [`Self::uniques`] capped at `clicks` ([`cap_uniques`]).
    pub fn uniques_within(&mut self, clicks: u64) -> u64 {
        cap_uniques(self.uniques(), clicks)
    }

    /// [`Self::uniques_within`] without mutating (see [`Self::uniques_ref`]).
    pub fn uniques_within_ref(&self, clicks: u64) -> u64 {
        cap_uniques(self.uniques_ref(), clicks)
    }

    /// Approximate heap bytes owned by the sketch (excluding its 24 inline bytes).
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Inline { .. } => 0,
            Repr::Exact(set) => 8 * set.len(),
            Repr::Sparse(s) => s.heap_bytes(),
            Repr::Dense(_) => std::mem::size_of::<Hll>() + 4 * ((1usize << HLL_PRECISION) / 5 + 1) + 64,
        }
    }

    /// Canonical bytes of the sketch (format in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        let put_sparse = |out: &mut Vec<u8>, codes: &[u32]| {
            out.push(KIND_SPARSE);
            out.push(HLL_PRECISION);
            put_varint(out, codes.len() as u64);
            let mut prev = 0u32;
            for &c in codes {
                put_varint(out, u64::from(c - prev));
                prev = c;
            }
        };
        match &self.repr {
            Repr::Inline { .. } | Repr::Exact(_) => {
                out.push(KIND_EXACT);
                let ids = self.exact_ids();
                put_varint(&mut out, ids.len() as u64);
                let mut prev = 0u64;
                for id in ids {
                    put_varint(&mut out, id - prev);
                    prev = id;
                }
            }
            Repr::Sparse(s) => put_sparse(&mut out, &s.codes_copy()),
            Repr::Dense(h) => match hll_to_canonical(h) {
                Ok(Canonical::Dense(regs)) => {
                    out.push(KIND_DENSE);
                    out.push(HLL_PRECISION);
                    out.extend_from_slice(&pack6(&regs));
                }
                Ok(Canonical::Sparse(codes)) => put_sparse(&mut out, &codes),
                // The crate's own serialization of its own value cannot fail; keep an
                // empty sketch rather than panic if a future version disagrees.
                Err(_) => {
                    out.truncate(1);
                    out.extend_from_slice(&[KIND_EXACT, 0]);
                }
            },
        }
        out
    }

    /// Decodes [`Self::to_bytes`] output.
    ///
    /// Errors with [`Error::SketchDecode`] for an unknown version or kind, a precision other
    /// than [`HLL_PRECISION`], truncated input, ids/codes not strictly ascending, or trailing
    /// bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<VisitorSketch> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.byte()?;
        if version != FORMAT_VERSION {
            return Err(Error::SketchDecode(format!("unknown format version {version}")));
        }
        let sketch = match r.byte()? {
            KIND_EXACT => {
                let n = r.varint()? as usize;
                let mut s = VisitorSketch::new();
                let mut prev = 0u64;
                for i in 0..n {
                    let d = r.varint()?;
                    if i > 0 && d == 0 {
                        return Err(Error::SketchDecode("visitor ids not strictly ascending".into()));
                    }
                    prev = prev.checked_add(d).ok_or_else(|| Error::SketchDecode("visitor id overflows u64".into()))?;
                    s.insert(prev);
                }
                s
            }
            KIND_SPARSE => {
                r.precision()?;
                let n = r.varint()? as usize;
                if n > r.remaining() {
                    return Err(Error::SketchDecode("sparse code count exceeds input".into()));
                }
                let mut codes = Vec::with_capacity(n);
                let mut prev = 0u64;
                for i in 0..n {
                    let d = r.varint()?;
                    if i > 0 && d == 0 {
                        return Err(Error::SketchDecode("sparse codes not strictly ascending".into()));
                    }
                    prev += d;
                    let c = u32::try_from(prev).map_err(|_| Error::SketchDecode("sparse code exceeds u32".into()))?;
                    codes.push(c);
                }
                let mut s = Box::new(SparseCodes::from_sorted(codes));
                if s.wants_dense() { VisitorSketch { repr: Repr::Dense(densify(&mut s)) } } else { VisitorSketch { repr: Repr::Sparse(s) } }
            }
            KIND_DENSE => {
                r.precision()?;
                let m = 1usize << HLL_PRECISION;
                let packed = r.take(m * 6 / 8)?;
                let regs = unpack6(packed, m);
                VisitorSketch { repr: Repr::Dense(hll_from_canonical(Canonical::Dense(regs))?) }
            }
            k => return Err(Error::SketchDecode(format!("unknown sketch kind {k}"))),
        };
        if r.remaining() != 0 {
            return Err(Error::SketchDecode(format!("{} trailing bytes", r.remaining())));
        }
        Ok(sketch)
    }
}

impl PartialEq for VisitorSketch {
    /// Equal when the canonical encodings are equal.
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}

fn pack6(regs: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; regs.len() * 6 / 8];
    for (i, &r) in regs.iter().enumerate() {
        let bit = i * 6;
        let v = u16::from(r & 0x3f) << (bit % 8);
        out[bit / 8] |= v as u8;
        if bit / 8 + 1 < out.len() {
            out[bit / 8 + 1] |= (v >> 8) as u8;
        }
    }
    out
}

fn unpack6(packed: &[u8], m: usize) -> Vec<u8> {
    (0..m)
        .map(|i| {
            let bit = i * 6;
            let lo = u16::from(packed[bit / 8]);
            let hi = packed.get(bit / 8 + 1).map_or(0, |&b| u16::from(b));
            (((hi << 8 | lo) >> (bit % 8)) & 0x3f) as u8
        })
        .collect()
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    fn byte(&mut self) -> Result<u8> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| Error::SketchDecode("truncated input".into()))?;
        self.pos += 1;
        Ok(b)
    }
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.remaining() < n {
            return Err(Error::SketchDecode("truncated input".into()));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn varint(&mut self) -> Result<u64> {
        let (mut v, mut shift) = (0u64, 0u32);
        loop {
            let b = self.byte()?;
            if shift > 63 {
                return Err(Error::SketchDecode("varint too long".into()));
            }
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
    }
    fn precision(&mut self) -> Result<()> {
        let p = self.byte()?;
        if p != HLL_PRECISION {
            return Err(Error::SketchDecode(format!("precision {p} differs from {HLL_PRECISION}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
