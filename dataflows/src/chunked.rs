//! [`Chunked`]: an append-only sequence stored in chunks of at most [`CHUNK`] elements.
//!
//! A `Vec` that grows to millions of elements doubles its allocation ~20 times: each step
//! copies every element into a fresh allocation (touching new pages the kernel must zero),
//! and the final allocation is up to twice the elements it holds. The dataflow keeps a few
//! such append-only lists (the dedup operator's ids by basis hour, the flood detector's
//! clicks by tick), which are only pushed to, walked in order and dropped whole, so they are
//! kept as chunks instead: no element is ever copied, and at most one chunk per list is not
//! full. The first chunk grows like a `Vec` (a list of a few elements stays small); every
//! later one is allocated at [`CHUNK`] elements, or taken from a pool of emptied chunks
//! (the flood detector recycles the chunks of the ticks that leave its window).

/// Elements per chunk (a power of two, so the first chunk's doubling ends exactly here):
/// 4,096 elements are 64 KiB of 16-byte event ids or 96 KiB of 24-byte flood bucket entries.
pub(crate) const CHUNK: usize = 4096;

/// An append-only sequence of `T` in chunks of at most [`CHUNK`] elements (module docs).
#[derive(Debug)]
pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked { chunks: Vec::new() }
    }
}

impl<T> Chunked<T> {
    /// Elements held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// Appends `x`; a new chunk comes from `pool` when it has one (module docs).
    #[inline]
    pub(crate) fn push_pooled(&mut self, x: T, pool: &mut Vec<Vec<T>>) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(x),
            _ => {
                let first = self.chunks.is_empty();
                let mut chunk = pool.pop().unwrap_or_else(|| if first { Vec::new() } else { Vec::with_capacity(CHUNK) });
                chunk.push(x);
                self.chunks.push(chunk);
            }
        }
    }

    /// Appends `x` (new chunks freshly allocated).
    #[inline]
    pub(crate) fn push(&mut self, x: T) {
        self.push_pooled(x, &mut Vec::new());
    }

    /// The elements, mutably, in push order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }

    /// Moves every element out in push order, handing each to `f`, and returns the emptied
    /// chunks (their allocations kept) to `pool`.
    pub(crate) fn drain_into(&mut self, pool: &mut Vec<Vec<T>>, mut f: impl FnMut(T)) {
        for mut chunk in self.chunks.drain(..) {
            chunk.drain(..).for_each(&mut f);
            pool.push(chunk);
        }
    }
}

impl<T> IntoIterator for Chunked<T> {
    type Item = T;
    type IntoIter = std::iter::Flatten<std::vec::IntoIter<Vec<T>>>;

    /// The elements in push order.
    fn into_iter(self) -> Self::IntoIter {
        self.chunks.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes, walks and drains agree with a plain `Vec` at every length around the chunk
    /// boundaries, with and without a pool, and no chunk ever holds more than `CHUNK`.
    #[test]
    fn matches_a_vec_across_chunk_boundaries() {
        let mut pool: Vec<Vec<u64>> = Vec::new();
        for n in [0, 1, 5, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            for pooled in [false, true] {
                let mut c = Chunked::default();
                let mut naive = Vec::new();
                for i in 0..n as u64 {
                    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    if pooled {
                        c.push_pooled(x, &mut pool);
                    } else {
                        c.push(x);
                    }
                    naive.push(x);
                }
                assert_eq!(c.len(), n);
                assert!(c.chunks.iter().all(|k| k.len() <= CHUNK && !k.is_empty()));
                assert_eq!(c.chunks.len(), n.div_ceil(CHUNK));
                for x in c.iter_mut() {
                    *x ^= 1;
                }
                naive.iter_mut().for_each(|x| *x ^= 1);
                if pooled {
                    let mut got = Vec::new();
                    let before = pool.len();
                    c.drain_into(&mut pool, |x| got.push(x));
                    assert_eq!(got, naive);
                    assert_eq!(c.len(), 0);
                    assert_eq!(pool.len(), before + n.div_ceil(CHUNK));
                    assert!(pool.iter().all(Vec::is_empty));
                } else {
                    assert_eq!(c.into_iter().collect::<Vec<_>>(), naive);
                }
            }
        }
    }
}
