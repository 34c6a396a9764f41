//! The clicks a detector holds until their tick: a queue kept in a canonical total order
//! (event time first), so the clicks due at tick `S` (`ts < S`) are a prefix of it.
//!
//! Cost: an epoch's records are sorted on their own (`k log k`, on small integer keys of
//! each record, [`Held::prefix`], with the full order only between equal keys) and merged
//! into the queue; only the part of the queue after the batch's earliest record is moved
//! (nothing when the batch is later than everything held, the usual case, found without a
//! search). The queue and its scratch buffers keep their capacity, so steady state
//! allocates nothing. Taking the clicks due at a tick removes exactly them from the front
//! of a [`VecDeque`] (`O(taken)`), so a backlog replayed over many ticks costs `O(total)`,
//! not `O(ticks × held)`.

use std::cmp::Ordering;
use std::collections::VecDeque;

/// A record held by a [`Pending`] queue.
pub(crate) trait Held {
    /// What the order needs besides the records (e.g. the detector's string table).
    type Ctx;
    /// A small copyable key whose order is a prefix of [`Held::order`] (see [`Held::prefix`]).
    type Prefix: Ord + Copy;
    /// Event time, ms UTC.
    fn ts(&self) -> i64;
    /// The canonical total order, event time first (equal records are interchangeable).
    fn order(&self, other: &Self, ctx: &Self::Ctx) -> Ordering;
    /// Leading part of [`Held::order`] as plain integers: whenever `a.prefix() != b.prefix()`,
    /// `a.order(b)` must equal `a.prefix().cmp(&b.prefix())` (equal prefixes say nothing).
    /// A batch is sorted by these keys, computed once per record, and only runs of equal
    /// keys are compared with [`Held::order`] (module docs).
    fn prefix(&self) -> Self::Prefix;
}

/// Records not yet folded, in [`Held::order`] (module docs). Its buffers keep their
/// capacity: a detector's steady state allocates nothing here.
#[derive(Debug)]
pub(crate) struct Pending<T> {
    queue: VecDeque<T>,
    fresh: Vec<T>,
    /// Scratch for the part of the queue a batch is merged into.
    tail: Vec<T>,
}

impl<T> Default for Pending<T> {
    fn default() -> Pending<T> {
        Pending { queue: VecDeque::new(), fresh: Vec::new(), tail: Vec::new() }
    }
}

impl<T: Held> Pending<T> {
    /// Takes the records of one epoch (in any order), leaving `recs` empty.
    pub(crate) fn push(&mut self, recs: &mut Vec<T>) {
        self.fresh.append(recs);
    }

    /// Takes one record (of the current epoch).
    pub(crate) fn push_one(&mut self, rec: T) {
        self.fresh.push(rec);
    }

    /// Records held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len() + self.fresh.len()
    }

    /// Merges the records pushed since the last call into the ordered queue.
    fn settle(&mut self, ctx: &T::Ctx) {
        if self.fresh.is_empty() {
            return;
        }
        sort_batch(&mut self.fresh, ctx);
        let first = &self.fresh[0];
        // Records ordered after the batch's first one move; the rest stay in place.
        let at = match self.queue.back() {
            Some(last) if last.order(first, ctx) == Ordering::Greater => self.queue.partition_point(|r| r.order(first, ctx) != Ordering::Greater),
            _ => self.queue.len(),
        };
        if at == self.queue.len() {
            self.queue.extend(self.fresh.drain(..));
            return;
        }
        self.tail.extend(self.queue.drain(at..));
        self.queue.reserve(self.tail.len() + self.fresh.len());
        let (mut a, mut b) = (self.tail.drain(..).peekable(), self.fresh.drain(..).peekable());
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.order(y, ctx) != Ordering::Greater,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_a { a.next() } else { b.next() };
            self.queue.extend(next);
        }
    }

    /// The earliest record held.
    pub(crate) fn first(&mut self, ctx: &T::Ctx) -> Option<&T> {
        self.settle(ctx);
        self.queue.front()
    }

    /// Removes and returns, in order, every record with `ts < s`.
    pub(crate) fn take_before(&mut self, s: i64, ctx: &T::Ctx) -> std::collections::vec_deque::Drain<'_, T> {
        self.settle(ctx);
        let n = self.queue.partition_point(|r| r.ts() < s);
        self.queue.drain(..n)
    }
}

/// Sorts `v` by [`Held::order`]: by [`Held::prefix`] first (keys computed once per record
/// and sorted beside their indices, then the records moved once into place, instead of
/// swapping records of ~80 bytes through every level of a comparison sort that follows
/// their fields at each compare), then each run of equal prefixes by the full order.
fn sort_batch<T: Held>(v: &mut [T], ctx: &T::Ctx) {
    v.sort_by_cached_key(|r| r.prefix());
    let mut i = 0;
    while i < v.len() {
        let p = v[i].prefix();
        let mut j = i + 1;
        while j < v.len() && v[j].prefix() == p {
            j += 1;
        }
        if j - i > 1 {
            v[i..j].sort_unstable_by(|a, b| a.order(b, ctx));
        }
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Held for (i64, u32) {
        type Ctx = ();
        /// Only the time, so runs of equal prefixes are sorted by the full order too.
        type Prefix = i64;
        fn prefix(&self) -> i64 {
            self.0
        }
        fn ts(&self) -> i64 {
            self.0
        }
        fn order(&self, other: &Self, _: &()) -> Ordering {
            self.cmp(other)
        }
    }

    /// A small deterministic generator (xorshift), so the test needs no dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn takes_exactly_what_a_full_sort_would_give() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut p: Pending<(i64, u32)> = Pending::default();
        let mut reference: Vec<(i64, u32)> = Vec::new();
        let mut s = 0i64;
        for epoch in 0..400 {
            let k = (next(&mut rng) % 50) as usize;
            let mut batch: Vec<(i64, u32)> = (0..k).map(|_| (s - 3 + (next(&mut rng) % 40) as i64, (next(&mut rng) % 7) as u32)).collect();
            reference.extend(batch.iter().copied());
            p.push(&mut batch);
            assert!(batch.is_empty());
            if epoch % 3 == 0 {
                s += (next(&mut rng) % 12) as i64;
                reference.sort();
                let n = reference.partition_point(|r| r.0 < s);
                let want: Vec<(i64, u32)> = reference.drain(..n).collect();
                let got: Vec<(i64, u32)> = p.take_before(s, &()).collect();
                assert_eq!(got, want, "epoch {epoch}, tick {s}");
                assert_eq!(p.first(&()).copied(), reference.first().copied());
                assert_eq!(p.len(), reference.len());
            }
        }
    }
}
