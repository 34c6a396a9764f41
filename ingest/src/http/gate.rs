//! Checks `POST /v1/events` makes against the rest of the system before accepting an event:
//! whether its code names a link, and whether it is still within the dataflow's allowed
//! lateness. Both would otherwise be accepted here and then dropped downstream (an unknown
//! code counted in the summary, a late event dead-lettered `too_late`); refusing them at
//! intake tells the caller per event instead.
//!
//! The binary implements [`IntakeGate`] over its link store and the dataflow's views; an
//! endpoint without a gate (unit tests, tools) accepts every valid event.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

/// Boxed future of [`IntakeGate::known_codes`].
pub type KnownCodes<'a> = Pin<Box<dyn Future<Output = Result<BTreeSet<String>, String>> + Send + 'a>>;

/// What the intake asks the rest of the system.
pub trait IntakeGate: Send + Sync + 'static {
    /// The subset of `codes` that name an existing link (enabled, disabled or expired: its
    /// history is still counted; deleted links are unknown). `Err(message)` when the link
    /// store cannot be read: the request fails with 503 `store_unavailable` and nothing is
    /// stored.
    fn known_codes<'a>(&'a self, codes: &'a BTreeSet<String>) -> KnownCodes<'a>;

    /// The oldest event time (ms since the Unix epoch, UTC) a live event may carry and still
    /// be counted: the dataflow's event-time watermark minus its allowed lateness (DESIGN.md:
    /// lateness is measured against the watermark, not the wall clock). `None` before the
    /// dataflow has seen any event, or when this process runs no dataflow. Backfill
    /// (`?backfill=true`, `sluice import`) is not subject to it.
    fn oldest_live_ts_ms(&self) -> Option<i64>;

    /// The oldest event time (ms since the Unix epoch, UTC) a backfilled event may carry and
    /// still be counted: the watermark minus the longest rollup retention (`[dataflow]
    /// long-retention`, 400 days by default), below which the dataflow dead-letters backfill
    /// `too_late` too. `None` (the default) when unknown: no check.
    fn oldest_backfill_ts_ms(&self) -> Option<i64> {
        None
    }
}
