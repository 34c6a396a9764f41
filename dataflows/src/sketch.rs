//! Visitor sketches: exact for small rows, HyperLogLog++ past a threshold.
//!
//! A rollup row counts distinct `visitor_id`s. Most rows are small (a country/browser
//! combination seen by a handful of visitors), so a [`VisitorSketch`] starts as an **exact
//! set** of visitor ids (two ids inline, then a sorted boxed vector) and upgrades to
//! HyperLogLog++ ([`hyperloglogplus::HyperLogLogPlus`], precision [`HLL_PRECISION`]) once it
//! holds more than [`EXACT_LIMIT`] distinct ids. HLL++ itself starts in its sparse form (sorted
//! 25-bit codes, near exact up to thousands of visitors) and becomes dense (2^14 six-bit
//! registers, ~13 KiB) only when the sparse list outgrows that (Heule, Nunkesser, Hall:
//! "HyperLogLog in Practice", EDBT 2013). So:
//!
//! * up to [`EXACT_LIMIT`] visitors: uniques are exact (±0);
//! * above: relative standard error 1.04/√m = 1.04/√16384 ≈ 0.81 % (HLL++ paper, §2).
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

use std::cmp::Ordering;

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Serialize};

use crate::hash::VisitorHashState;
use crate::{Error, Result};

/// HLL++ precision p: m = 2^p registers (relative standard error 1.04/√m ≈ 0.81 %).
pub const HLL_PRECISION: u8 = 14;

/// Largest number of distinct visitors a sketch keeps as an exact set.
pub const EXACT_LIMIT: usize = 48;

/// Relative standard error of an HLL++ estimate at [`HLL_PRECISION`]: 1.04/√(2^p).
pub fn hll_relative_error() -> f64 {
    1.04 / f64::from(1u32 << HLL_PRECISION).sqrt()
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
    /// 3..=EXACT_LIMIT ids, ascending, no duplicates. Boxed so the enum stays 24 bytes.
    #[allow(clippy::box_collection)]
    Exact(Box<Vec<u64>>),
    /// HyperLogLog++.
    Hll(Box<Hll>),
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
            Repr::Exact(v) => f.debug_tuple("Exact").field(&v.len()).finish(),
            Repr::Hll(_) => f.write_str("Hll"),
        }
    }
}

fn new_hll() -> Box<Hll> {
    // Precision 14 is within the crate's bounds (4..=18), so this cannot fail.
    Box::new(Hll::new(HLL_PRECISION, VisitorHashState).expect("precision 14 is valid"))
}

impl VisitorSketch {
    /// An empty sketch.
    pub const fn new() -> Self {
        VisitorSketch { repr: Repr::Inline { len: 0, ids: [0; 2] } }
    }

    /// Whether the count is exact (the sketch still holds the ids themselves).
    pub fn is_exact(&self) -> bool {
        !matches!(self.repr, Repr::Hll(_))
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
                    let mut v = Vec::with_capacity(4);
                    v.extend_from_slice(&ids[..]);
                    let pos = v.partition_point(|&x| x < visitor_id);
                    v.insert(pos, visitor_id);
                    self.repr = Repr::Exact(Box::new(v));
                }
            },
            Repr::Exact(v) => {
                if let Err(pos) = v.binary_search(&visitor_id) {
                    if v.len() < EXACT_LIMIT {
                        v.insert(pos, visitor_id);
                    } else {
                        let mut hll = new_hll();
                        for id in v.iter() {
                            hll.insert(id);
                        }
                        hll.insert(&visitor_id);
                        self.repr = Repr::Hll(hll);
                    }
                }
            }
            Repr::Hll(h) => h.insert(&visitor_id),
        }
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
            Repr::Exact(v) => {
                for &id in v.iter() {
                    self.insert(id);
                }
            }
            Repr::Hll(oh) => {
                if let Repr::Hll(h) = &mut self.repr {
                    // Same precision by construction.
                    h.merge(oh).expect("sketches share one precision");
                } else {
                    let mut h: Box<Hll> = oh.clone();
                    for id in self.exact_ids() {
                        h.insert(&id);
                    }
                    self.repr = Repr::Hll(h);
                }
            }
        }
    }

    fn exact_ids(&self) -> Vec<u64> {
        match &self.repr {
            Repr::Inline { len, ids } => ids[..*len as usize].to_vec(),
            Repr::Exact(v) => v.to_vec(),
            Repr::Hll(_) => Vec::new(),
        }
    }

    /// Estimated number of distinct visitors (exact while [`Self::is_exact`]).
    pub fn estimate(&mut self) -> f64 {
        match &mut self.repr {
            Repr::Inline { len, .. } => f64::from(*len),
            Repr::Exact(v) => v.len() as f64,
            Repr::Hll(h) => h.count(),
        }
    }

    /// [`Self::estimate`] rounded to the nearest integer.
    pub fn uniques(&mut self) -> u64 {
        self.estimate().round().max(0.0) as u64
    }

    /// [`Self::uniques`] without mutating (clones an HLL++ sketch to count it).
    pub fn uniques_ref(&self) -> u64 {
        match &self.repr {
            Repr::Hll(h) => {
                let mut h = h.clone();
                h.count().round().max(0.0) as u64
            }
            _ => self.exact_ids().len() as u64,
        }
    }

    /// Approximate heap bytes owned by the sketch (excluding its 24 inline bytes).
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Inline { .. } => 0,
            Repr::Exact(v) => 24 + 8 * v.capacity(),
            Repr::Hll(h) => {
                // Struct plus the canonical payload (sparse list or registers) plus the
                // crate's temporary set allocation; good enough for capacity planning.
                let payload = match hll_to_canonical(h) {
                    Ok(Canonical::Sparse(codes)) => codes.len() * 2,
                    Ok(Canonical::Dense(_)) => 4 * ((1usize << HLL_PRECISION) / 5 + 1),
                    Err(_) => 0,
                };
                std::mem::size_of::<Hll>() + payload + 64
            }
        }
    }

    /// Canonical bytes of the sketch (format in the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
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
            Repr::Hll(h) => match hll_to_canonical(h) {
                Ok(Canonical::Sparse(codes)) => {
                    out.push(KIND_SPARSE);
                    out.push(HLL_PRECISION);
                    put_varint(&mut out, codes.len() as u64);
                    let mut prev = 0u32;
                    for c in codes {
                        put_varint(&mut out, u64::from(c - prev));
                        prev = c;
                    }
                }
                Ok(Canonical::Dense(regs)) => {
                    out.push(KIND_DENSE);
                    out.push(HLL_PRECISION);
                    out.extend_from_slice(&pack6(&regs));
                }
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
                    prev = prev
                        .checked_add(d)
                        .ok_or_else(|| Error::SketchDecode("visitor id overflows u64".into()))?;
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
                    let c = u32::try_from(prev)
                        .map_err(|_| Error::SketchDecode("sparse code exceeds u32".into()))?;
                    codes.push(c);
                }
                VisitorSketch { repr: Repr::Hll(hll_from_canonical(Canonical::Sparse(codes))?) }
            }
            KIND_DENSE => {
                r.precision()?;
                let m = 1usize << HLL_PRECISION;
                let packed = r.take(m * 6 / 8)?;
                let regs = unpack6(packed, m);
                VisitorSketch { repr: Repr::Hll(hll_from_canonical(Canonical::Dense(regs))?) }
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

// ---- HLL++ canonical form, via a mirror of the crate's serde layout -------------------------

/// Mirror of `hyperloglogplus::HyperLogLogPlus`'s serde layout (0.4.x), used to read and
/// build its state through bincode (the crate exposes no accessors for it).
#[derive(Serialize, Deserialize)]
struct HllMirror {
    builder: VisitorHashState,
    precision: u8,
    counts: (usize, usize, usize),
    tmpset: Vec<u32>,
    sparse: DifIntVecMirror,
    registers: Option<RegistersMirror>,
    phantom: std::marker::PhantomData<u64>,
}

#[derive(Serialize, Deserialize)]
struct DifIntVecMirror {
    count: usize,
    last: u32,
    buf: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct RegistersMirror {
    buf: Vec<u32>,
    count: usize,
    zeros: usize,
}

enum Canonical {
    Sparse(Vec<u32>),
    Dense(Vec<u8>),
}

fn decode_crate_varints(buf: &[u8]) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    let (mut pos, mut last) = (0usize, 0u32);
    while pos < buf.len() {
        let (mut val, mut shift) = (0u32, 0u32);
        loop {
            let b = *buf.get(pos).ok_or_else(|| Error::SketchDecode("truncated sparse list".into()))?;
            pos += 1;
            if shift >= 32 {
                return Err(Error::SketchDecode("sparse varint too long".into()));
            }
            val |= u32::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        last = last.wrapping_add(val);
        out.push(last);
    }
    Ok(out)
}

fn hll_to_canonical(h: &Hll) -> Result<Canonical> {
    let bytes = bincode::serialize(h).map_err(|e| Error::SketchDecode(e.to_string()))?;
    let m: HllMirror = bincode::deserialize(&bytes).map_err(|e| Error::SketchDecode(e.to_string()))?;
    match m.registers {
        Some(r) => {
            let mut regs = Vec::with_capacity(r.count);
            'outer: for w in &r.buf {
                for i in 0..5 {
                    if regs.len() == r.count {
                        break 'outer;
                    }
                    regs.push(((w >> (6 * i)) & 0x3f) as u8);
                }
            }
            Ok(Canonical::Dense(regs))
        }
        None => {
            let mut codes = decode_crate_varints(&m.sparse.buf)?;
            codes.extend_from_slice(&m.tmpset);
            codes.sort_unstable();
            codes.dedup();
            Ok(Canonical::Sparse(codes))
        }
    }
}

fn hll_from_canonical(c: Canonical) -> Result<Box<Hll>> {
    // Start from the crate's own empty state so `counts` match its constants.
    let empty = bincode::serialize(&*new_hll()).map_err(|e| Error::SketchDecode(e.to_string()))?;
    let mut m: HllMirror = bincode::deserialize(&empty).map_err(|e| Error::SketchDecode(e.to_string()))?;
    match c {
        Canonical::Sparse(codes) => {
            let mut buf = Vec::with_capacity(codes.len() * 2);
            let mut last = 0u32;
            for &c in &codes {
                let mut d = c - last;
                while d >= 0x80 {
                    buf.push((d as u8 & 0x7f) | 0x80);
                    d >>= 7;
                }
                buf.push(d as u8);
                last = c;
            }
            m.sparse = DifIntVecMirror { count: codes.len(), last, buf };
        }
        Canonical::Dense(regs) => {
            let count = regs.len();
            let mut buf = vec![0u32; count.div_ceil(5)];
            let mut zeros = 0;
            for (i, &r) in regs.iter().enumerate() {
                if r == 0 {
                    zeros += 1;
                }
                buf[i / 5] |= u32::from(r & 0x3f) << (6 * (i % 5));
            }
            m.registers = Some(RegistersMirror { buf, count, zeros });
        }
    }
    let bytes = bincode::serialize(&m).map_err(|e| Error::SketchDecode(e.to_string()))?;
    let h: Hll = bincode::deserialize(&bytes).map_err(|e| Error::SketchDecode(e.to_string()))?;
    Ok(Box::new(h))
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
