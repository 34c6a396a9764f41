//! The intake's low-water mark: a lower bound on the event time of every click that was
//! accepted ([`crate::ClickSender::try_send`] returned `true`) but is not yet appended to the
//! log (or counted as dropped) by the writer.
//!
//! Why: the click log's head says what is readable, not what is promised. A click accepted
//! by the redirect waits in the intake channel, then in the writer's batch, before the append
//! makes it readable; on a busy machine that can take a while. Whoever decides "every click
//! before time T has been seen" from the log alone (the dataflow's freshness `as_of`, the
//! idle watermark of its log partition) must also respect the clicks still on their way:
//! `crate::writer` and `src/job/log_source.rs` in the root crate read [`PendingFloor::floor`].
//!
//! Protocol (two atomics, no lock on the redirect path):
//! * a sender, after each successful `try_send`, lowers `accepted` to the event's `ts`
//!   (`fetch_min`, one atomic read-modify-write per click);
//! * the writer, after the first events of a batch arrived and before it drains the channel,
//!   *claims* the mark: it lowers `claimed` to `accepted`'s value, then resets `accepted` to
//!   "none" with a compare-and-swap of exactly that value (retrying if a sender lowered it
//!   in between). Every event whose mark was claimed was in the channel before the claim (a
//!   sender marks after its `try_send`), so the drain that follows takes it, unless the batch
//!   is cut at its size limit;
//! * after the batch is appended (or dropped and counted) and the drain had emptied the
//!   channel, the writer *releases* `claimed`; a cut batch keeps it until a later batch
//!   empties the channel;
//! * a reader takes the minimum of both. At every instant each accepted, not yet done click
//!   is covered by one of them (`claimed` is lowered before `accepted` is reset).
//!
//! A sender preempted between its `try_send` and its mark can leave a mark for an event the
//! writer has already appended: a stale, too low floor (never a wrong one). The writer claims
//! and releases such a leftover mark when it next wakes, at the latest after
//! [`STALE_CHECK`] while idle.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// "Nothing pending" in both atomics.
const NONE: i64 = i64::MAX;

/// How often an idle writer looks for a leftover mark (module docs).
pub const STALE_CHECK: Duration = Duration::from_millis(20);

/// The low-water mark of one intake channel (module docs); shared by its senders, its
/// writer and any reader of the log it feeds.
#[derive(Debug)]
pub struct PendingFloor {
    /// Lowered by senders to each accepted event's `ts`; reset by the writer's claim.
    accepted: AtomicI64,
    /// The writer's claim: covers the events taken or still to be taken by its current batch.
    claimed: AtomicI64,
}

impl Default for PendingFloor {
    fn default() -> Self {
        PendingFloor { accepted: AtomicI64::new(NONE), claimed: AtomicI64::new(NONE) }
    }
}

impl PendingFloor {
    /// A floor with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// A lower bound (ms since the epoch, UTC) on the `ts` of every click accepted and not
    /// yet appended or counted as dropped; `None` when no such click exists. Once this
    /// returns `None` (or a bound `f`), every click accepted before the call (with `ts < f`)
    /// is already in the log's head as read after the call.
    pub fn floor(&self) -> Option<i64> {
        let a = self.accepted.load(Ordering::SeqCst);
        let c = self.claimed.load(Ordering::SeqCst);
        let m = a.min(c);
        (m != NONE).then_some(m)
    }

    /// Records an accepted event stamped `ts` (after its `try_send` succeeded).
    pub(crate) fn accepted(&self, ts: i64) {
        self.accepted.fetch_min(ts, Ordering::SeqCst);
    }

    /// Whether senders left a mark since the last claim.
    pub(crate) fn has_unclaimed(&self) -> bool {
        self.accepted.load(Ordering::SeqCst) != NONE
    }

    /// The writer's claim, before it drains the channel (module docs).
    pub(crate) fn claim(&self) {
        let mut cur = self.accepted.load(Ordering::SeqCst);
        while cur != NONE {
            self.claimed.fetch_min(cur, Ordering::SeqCst);
            match self.accepted.compare_exchange(cur, NONE, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// The writer's release: every claimed event is appended or counted as dropped.
    pub(crate) fn release(&self) {
        self.claimed.store(NONE, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_moves_the_mark_and_release_clears_it() {
        let p = PendingFloor::new();
        assert_eq!(p.floor(), None);
        p.accepted(500);
        p.accepted(700);
        p.accepted(400);
        assert_eq!(p.floor(), Some(400), "the lowest accepted ts");
        p.claim();
        assert!(!p.has_unclaimed());
        assert_eq!(p.floor(), Some(400), "claimed, not yet appended");
        p.accepted(900);
        assert_eq!(p.floor(), Some(400), "the claim is still the lowest");
        p.release();
        assert_eq!(p.floor(), Some(900), "the event accepted after the claim is still pending");
        p.claim();
        p.release();
        assert_eq!(p.floor(), None);
    }

    #[test]
    fn a_second_claim_keeps_the_lower_of_both() {
        let p = PendingFloor::new();
        p.accepted(300);
        p.claim();
        p.accepted(200);
        p.claim();
        assert_eq!(p.floor(), Some(200));
        p.accepted(100);
        p.claim();
        assert_eq!(p.floor(), Some(100));
        p.release();
        assert_eq!(p.floor(), None);
    }
}
