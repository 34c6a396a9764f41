//! HLL++ sparse representation with cheap inserts.
//!
//! Codes are exactly those of `hyperloglogplus` 0.4 (`encode_hash`/`decode_hash`, p = 14,
//! p' = 25; HLL++ paper §5.3.2), so a [`SparseCodes`] converts losslessly into the crate's
//! sparse state and, past [`SPARSE_MAX_CODES`], into its dense registers. What differs is
//! the insert path: the crate buffers codes in a SipHash `HashSet` and re-encodes its whole
//! varint list every 131 inserts; here codes are appended to a plain buffer and merged into a
//! sorted vector once the buffer reaches an eighth of it (amortized O(1) per insert).

use crate::hash::visitor_hash;

/// Precision of the sparse representation (p' in the HLL++ paper).
const PRIME: u32 = 25;
/// Dense precision (p).
const P: u32 = super::HLL_PRECISION as u32;

/// Sparse codes kept before converting to dense registers (4 bytes each: 12 KiB, about the
/// size of the dense registers).
pub(super) const SPARSE_MAX_CODES: usize = 3072;

/// The crate's `encode_hash` for a 64-bit hash.
#[inline]
pub(super) fn encode(hash: u64) -> u32 {
    let index = hash >> (64 - PRIME);
    let dif = (hash >> (64 - PRIME)) & ((1 << (PRIME - P)) - 1);
    if dif == 0 {
        let h = (hash << PRIME) | (1 << (PRIME - 1));
        let zeros = 1 + h.leading_zeros();
        ((index as u32) << 7) | (zeros << 1) | 1
    } else {
        (index << 1) as u32
    }
}

/// The crate's `decode_hash`: (register index, register value).
#[inline]
pub(super) fn decode(code: u32) -> (usize, u8) {
    if code & 1 == 1 {
        let zeros = ((code >> 1) & 0x3f) + (PRIME - P);
        ((code >> (32 - P)) as usize, zeros as u8)
    } else {
        let index = (code << (32 - (PRIME + 1))) >> (32 - P);
        let h = code << (32 - PRIME + P - 1);
        (index as usize, (h.leading_zeros() + 1) as u8)
    }
}

/// Index of the first element of the ascending `s` at or after `from` that is `>= c`
/// (`s.len()` if none), found by galloping from `from` (steps 1, 2, 4, …) and then a binary
/// search within the last step: O(log d) for a result `d` places after `from`. Every element
/// before `from` must be `< c`.
#[inline]
fn lower_bound_from(s: &[u32], from: usize, c: u32) -> usize {
    let rest = &s[from..];
    let mut hi = 1;
    while hi < rest.len() && rest[hi] < c {
        hi *= 2;
    }
    // `rest[hi / 2] < c` (tested on the way, or `hi / 2 == 0`), and `rest[hi] >= c` or
    // `hi >= rest.len()`: the bound lies in `hi / 2 ..= hi`.
    let (lo, end) = (hi / 2, (hi + 1).min(rest.len()));
    from + lo + rest[lo..end].partition_point(|&x| x < c)
}

/// Sorted distinct codes plus an unsorted insert buffer.
#[derive(Clone, Debug, Default)]
pub(super) struct SparseCodes {
    sorted: Vec<u32>,
    buffer: Vec<u32>,
}

impl SparseCodes {
    /// From sorted distinct codes.
    pub(super) fn from_sorted(sorted: Vec<u32>) -> SparseCodes {
        SparseCodes { sorted, buffer: Vec::new() }
    }

    /// Adds a visitor id.
    #[inline]
    pub(super) fn insert_id(&mut self, visitor_id: u64) {
        self.insert_code(encode(visitor_hash(visitor_id)));
    }

    #[inline]
    pub(super) fn insert_code(&mut self, code: u32) {
        self.buffer.push(code);
        if self.buffer.len() >= (self.sorted.len() / 8).max(16) {
            self.flush();
        }
    }

    /// Merges the buffer into the sorted codes, in place: the sorted vector grows by the
    /// buffer's length and the two are merged from the back (no new allocation per flush,
    /// and the sorted codes move only as far as the codes merged in require).
    pub(super) fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        self.buffer.sort_unstable();
        self.buffer.dedup();
        // Drop codes already present, so the merge below only places new ones. The buffer
        // is ascending, so each search starts where the previous one ended and gallops
        // forward (`lower_bound_from`): a buffer of b codes against n sorted ones costs
        // ~b·log2(n/b) compares on nearby cache lines instead of b full binary searches.
        let sorted = &self.sorted;
        let mut from = 0;
        self.buffer.retain(|&c| {
            from = lower_bound_from(sorted, from, c);
            sorted.get(from) != Some(&c)
        });
        let (old, add) = (self.sorted.len(), self.buffer.len());
        if add == 0 {
            return;
        }
        // Exact growth, like the fresh vector of the previous merge (memory per row).
        self.sorted.reserve_exact(add);
        self.sorted.resize(old + add, 0);
        let (mut i, mut j, mut k) = (old, add, old + add);
        while j > 0 {
            k -= 1;
            if i > 0 && self.sorted[i - 1] > self.buffer[j - 1] {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = self.buffer[j - 1];
                j -= 1;
            }
        }
        self.buffer.clear();
    }

    /// Sorted distinct codes without mutating (copies when the buffer is not empty).
    pub(super) fn codes_copy(&self) -> Vec<u32> {
        let mut c = self.clone();
        c.flush();
        c.sorted
    }

    /// Distinct codes after a flush (an upper bound before).
    pub(super) fn len_upper(&self) -> usize {
        self.sorted.len() + self.buffer.len()
    }

    /// Whether the sparse form outgrew [`SPARSE_MAX_CODES`].
    pub(super) fn wants_dense(&mut self) -> bool {
        self.len_upper() > SPARSE_MAX_CODES && {
            self.flush();
            self.sorted.len() > SPARSE_MAX_CODES
        }
    }

    /// The crate's sparse estimate: linear counting over 2^24 virtual registers
    /// (`HyperLogLogPlus::count` in sparse mode).
    pub(super) fn estimate(&mut self) -> f64 {
        self.flush();
        let m = (1u64 << (PRIME - 1)) as f64;
        let zeros = m - self.sorted.len() as f64;
        m * (m / zeros).ln()
    }

    /// Dense registers (one byte each) equivalent to these codes.
    pub(super) fn registers(&mut self) -> Vec<u8> {
        self.flush();
        let mut regs = vec![0u8; 1 << P];
        for &c in &self.sorted {
            let (i, z) = decode(c);
            regs[i] = regs[i].max(z);
        }
        regs
    }

    /// Approximate heap bytes.
    pub(super) fn heap_bytes(&self) -> usize {
        4 * (self.sorted.capacity() + self.buffer.capacity()) + 48
    }
}

#[cfg(test)]
mod tests {
    use super::lower_bound_from;

    #[test]
    fn lower_bound_from_equals_partition_point() {
        let s: Vec<u32> = (0..300u32).map(|i| i * 3 + (i % 2)).collect();
        assert!(s.windows(2).all(|w| w[0] < w[1]), "strictly ascending, as the sorted codes are");
        for from in [0usize, 1, 2, 5, 77, 299, 300] {
            for c in 0..(s.len() as u32 * 4) {
                if from > 0 && s[from - 1] >= c {
                    continue; // precondition: everything before `from` is below `c`
                }
                assert_eq!(lower_bound_from(&s, from, c), s.partition_point(|&x| x < c), "from {from}, c {c}");
            }
        }
        assert_eq!(lower_bound_from(&[], 0, 5), 0);
    }
}
