//! [`Spill`]: the producer's bounded, durable local queue — an embedded [`ClickLog`] in its
//! own directory (default `<data-dir>/spill`).
//!
//! Every click event bound for Kafka is appended here first (fsync'd) and stays until the
//! broker has acknowledged it; the forwarder then truncates the log below the lowest
//! unacknowledged offset. So the spill holds exactly the events Kafka does not have yet (plus,
//! for a moment, acknowledged ones awaiting truncation), in arrival order, across broker
//! outages and process restarts. Its bound counts those events: an append that would exceed
//! it keeps the oldest events and drops the newest of the batch, counting them.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_schemas::ClickEvent;
use tokio::sync::watch;

use crate::Result;
use crate::click_log::ClickLog;

/// The outcome of [`Spill::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillAppend {
    /// Spill offsets of the accepted events (a prefix of the batch, in order).
    pub accepted: std::ops::Range<u64>,
    /// Events at the end of the batch dropped because the spill was full.
    pub dropped: u64,
}

/// Bounded local queue of click events not yet acknowledged by Kafka; see the module docs.
/// Cheap to share behind an `Arc`; all methods block on disk I/O.
pub struct Spill {
    log: ClickLog,
    max_events: u64,
    /// Serializes appends so the bound check and the append are one step.
    append_lock: Mutex<()>,
    dropped_total: AtomicU64,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill")
            .field("log", &self.log)
            .field("max_events", &self.max_events)
            .field("dropped_total", &self.dropped_total.load(Ordering::Relaxed))
            .finish()
    }
}

impl Spill {
    /// Opens (or creates) the spill in `dir`, holding at most `max_events` events. Events left
    /// by a previous run are kept and will be forwarded first.
    ///
    /// Errors: [`crate::Error::Config`] if `max_events` is 0 or the directory cannot be
    /// created; [`crate::Error::ClickLog`] if the log cannot be opened (for example another
    /// process holds it).
    pub fn open(dir: &Path, max_events: u64) -> Result<Spill> {
        if max_events == 0 {
            return Err(crate::Error::Config("kafka.spill-max-events: must be at least 1".into()));
        }
        let log = ClickLog::open(dir)?;
        Ok(Spill { log, max_events, append_lock: Mutex::new(()), dropped_total: AtomicU64::new(0) })
    }

    /// Appends as many of `events` as fit under the bound, in order, durably (fsync'd when this
    /// returns); the rest of the batch is dropped and counted.
    ///
    /// Errors with [`crate::Error::ClickLog`] on I/O failure (nothing of the batch is stored)
    /// and [`crate::Error::Corrupt`] if an event cannot be Avro-encoded.
    pub fn append(&self, events: &[ClickEvent]) -> Result<SpillAppend> {
        self.append_marked(events, false)
    }

    /// Like [`Self::append`], but marks the events as backfill (`sluice import`): they travel
    /// to Kafka with the [`super::BACKFILL_HEADER`] header and bypass the dataflow's lateness
    /// limit (not dedup).
    pub fn append_backfill(&self, events: &[ClickEvent]) -> Result<SpillAppend> {
        self.append_marked(events, true)
    }

    fn append_marked(&self, events: &[ClickEvent], backfill: bool) -> Result<SpillAppend> {
        let _guard = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
        let room = self.max_events.saturating_sub(self.backlog());
        let take = (events.len() as u64).min(room) as usize;
        let accepted = if backfill { self.log.append_backfill(&events[..take])? } else { self.log.append(&events[..take])? };
        let dropped = (events.len() - take) as u64;
        if dropped > 0 {
            self.dropped_total.fetch_add(dropped, Ordering::Relaxed);
        }
        Ok(SpillAppend { accepted, dropped })
    }

    /// Events in the spill (offsets `low..head`): not yet acknowledged, or acknowledged and
    /// not yet truncated.
    pub fn backlog(&self) -> u64 {
        self.log.head().saturating_sub(self.log.low())
    }

    /// The most events the spill holds.
    pub fn max_events(&self) -> u64 {
        self.max_events
    }

    /// Events dropped by [`Self::append`] since this handle was opened.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Offset of the oldest event still in the spill.
    pub fn low(&self) -> u64 {
        self.log.low()
    }

    /// Offset the next appended event gets.
    pub fn head(&self) -> u64 {
        self.log.head()
    }

    /// Receiver of `head` updates (see [`ClickLog::subscribe`]).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.log.subscribe()
    }

    /// Up to `max` stored values (Avro single-object bytes) from offset `from`, in order.
    pub(crate) fn read_raw(&self, from: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        self.log.read_raw(from, max)
    }

    /// Offsets in `range` appended as backfill, ascending.
    pub(crate) fn backfill_offsets(&self, range: std::ops::Range<u64>) -> Result<Vec<u64>> {
        self.log.backfill_offsets(range)
    }

    /// Append times (ms UTC) recorded for the events in `range` stamped after their append,
    /// as `(offset, ms)` ascending ([`ClickLog::arrival_times`]).
    pub(crate) fn arrival_times(&self, range: std::ops::Range<u64>) -> Result<Vec<(u64, i64)>> {
        self.log.arrival_times(range)
    }

    /// Drops every event below `offset` (all acknowledged by the broker).
    pub(crate) fn release_before(&self, offset: u64) -> Result<u64> {
        self.log.truncate_before(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::tests::sample_event as event;

    #[test]
    fn the_bound_keeps_the_oldest_and_counts_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spill = Spill::open(dir.path(), 5).expect("open");
        let batch: Vec<ClickEvent> = (0..3).map(event).collect();
        assert_eq!(spill.append(&batch).expect("append"), SpillAppend { accepted: 0..3, dropped: 0 });
        let batch: Vec<ClickEvent> = (3..7).map(event).collect();
        assert_eq!(spill.append(&batch).expect("append"), SpillAppend { accepted: 3..5, dropped: 2 });
        assert_eq!(spill.backlog(), 5);
        assert_eq!(spill.dropped_total(), 2);
        assert_eq!(spill.append(&[event(9)]).expect("full"), SpillAppend { accepted: 5..5, dropped: 1 });
        // releasing acknowledged events makes room again
        assert_eq!(spill.release_before(2).expect("release"), 2);
        assert_eq!(spill.append(&[event(10)]).expect("append"), SpillAppend { accepted: 5..6, dropped: 0 });
        let stored: Vec<u64> = spill.read_raw(0, 100).expect("read").into_iter().map(|(o, _)| o).collect();
        assert_eq!(stored, vec![2, 3, 4, 5]);
        let decoded = sluice_schemas::avro::decode_click_event(&spill.read_raw(5, 1).expect("read")[0].1).expect("decode");
        assert_eq!(decoded, event(10));
        assert!(matches!(Spill::open(dir.path(), 0), Err(crate::Error::Config(_))));
    }

    #[test]
    fn backfill_marks_are_kept_per_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spill = Spill::open(dir.path(), 10).expect("open");
        spill.append(&[event(0), event(1)]).expect("live");
        assert_eq!(spill.append_backfill(&[event(2), event(3)]).expect("backfill").accepted, 2..4);
        spill.append(&[event(4)]).expect("live");
        assert_eq!(spill.backfill_offsets(0..5).expect("marks"), vec![2, 3]);
        assert_eq!(spill.backfill_offsets(3..5).expect("marks"), vec![3]);
        // the bound applies to backfill too
        let out = spill.append_backfill(&(5..20).map(event).collect::<Vec<_>>()).expect("bounded");
        assert_eq!((out.accepted, out.dropped), (5..10, 10));
    }

    #[test]
    fn the_spill_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let spill = Spill::open(dir.path(), 100).expect("open");
            spill.append(&(0..10).map(event).collect::<Vec<_>>()).expect("append");
            spill.release_before(4).expect("release");
        }
        let spill = Spill::open(dir.path(), 100).expect("reopen");
        assert_eq!((spill.low(), spill.head(), spill.backlog()), (4, 10, 6));
    }
}
