//! Bridge to `hyperloglogplus`'s internal state: a mirror of its serde layout (0.4.x) lets
//! us read registers and sparse codes out of, and build state into, the crate's
//! `HyperLogLogPlus` through bincode (the crate exposes no accessors for them).

use serde::{Deserialize, Serialize};

use super::{Hll, new_hll};
use crate::hash::VisitorHashState;
use crate::{Error, Result};

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

/// HLL++ state in canonical form: sorted distinct sparse codes, or one byte per register.
pub(super) enum Canonical {
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

pub(super) fn hll_to_canonical(h: &Hll) -> Result<Canonical> {
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

pub(super) fn hll_from_canonical(c: Canonical) -> Result<Box<Hll>> {
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
