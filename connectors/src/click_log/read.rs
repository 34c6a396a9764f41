//! The read path of the click log: [`ClickLog::read`], [`ClickLog::read_entries`],
//! [`ClickLog::read_raw`], [`ClickLog::backfill_offsets`], [`ClickLog::arrival_times`], and the walk over the stored
//! chunks ([`visit_db`]) they share with the read-only reader (`read_only.rs`) and the
//! recovery of a commit reported as failed (`recovery.rs`).

use std::ops::Range;

use redb::ReadableDatabase;
use sluice_schemas::ClickEvent;
use sluice_schemas::avro::decode_click_event;

use super::{ARRIVAL, BACKFILL, CHUNKS, ClickLog, LogEntry, chunk};
use crate::{Error, Result};

impl ClickLog {
    /// Up to `max` events with offsets `>= from`, in offset order, each with its offset.
    /// Offsets below [`Self::low`] were truncated and are skipped; `from >= head` gives an
    /// empty vector.
    ///
    /// Errors: [`Error::ClickLog`] on I/O failure, [`Error::ClickLogDecode`] when a stored
    /// entry does not decode (its offset is in the error; use [`Self::read_raw`] to skip it).
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<(u64, ClickEvent)>> {
        let mut out = Vec::with_capacity(max.min(4096));
        self.visit(from, max, |offset, bytes| {
            let event = decode_click_event(bytes).map_err(|source| Error::ClickLogDecode { offset, source })?;
            out.push((offset, event));
            Ok(())
        })?;
        Ok(out)
    }

    /// Like [`Self::read`], but each event comes with its backfill mark and arrival time
    /// (see the module docs).
    ///
    /// Errors: as [`Self::read`].
    pub fn read_entries(&self, from: u64, max: usize) -> Result<Vec<LogEntry>> {
        let events = self.read(from, max)?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(Vec::new());
        };
        let marks = self.backfill_offsets(first.0..last.0 + 1)?;
        let arrivals = self.arrival_times(first.0..last.0 + 1)?;
        Ok(events
            .into_iter()
            .map(|(offset, event)| LogEntry { offset, backfill: marks.binary_search(&offset).is_ok(), arrival_ms: arrival_at(&arrivals, offset), event })
            .collect())
    }

    /// The recorded arrival times (ms since the epoch, UTC) of the events inside `range`, as
    /// `(offset, arrival_ms)` ascending by offset: only events whose `ts` was after their
    /// append time have one (module docs, "Arrival times"); look offsets up with
    /// [`arrival_at`]. For readers of [`Self::read_raw`]. Empty for a log written before
    /// arrival times were recorded.
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure.
    pub fn arrival_times(&self, range: Range<u64>) -> Result<Vec<(u64, i64)>> {
        self.sparse_marks(ARRIVAL, range, "read arrival times", |offset, arrival| (offset, arrival.value()))
    }

    /// Offsets inside `range` that were appended as backfill, ascending (for readers of
    /// [`Self::read_raw`]).
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure.
    pub fn backfill_offsets(&self, range: Range<u64>) -> Result<Vec<u64>> {
        self.sparse_marks(BACKFILL, range, "read backfill marks", |offset, _| offset)
    }

    /// The rows of the sparse per-offset table `def` (backfill marks, arrival times) inside
    /// `range`, ascending by offset, each mapped by `f(offset, value)`; empty when the table
    /// does not exist (a log written before it).
    ///
    /// Errors with [`Error::ClickLog`] (doing `op`) on I/O failure.
    fn sparse_marks<V: redb::Value + 'static, T>(
        &self,
        def: redb::TableDefinition<u64, V>,
        range: Range<u64>,
        op: &'static str,
        f: impl Fn(u64, &redb::AccessGuard<'_, V>) -> T,
    ) -> Result<Vec<T>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_open()?;
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| Error::click_log(op, e))?;
            let table = match txn.open_table(def) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(Error::click_log(op, e)),
            };
            let mut out = Vec::new();
            for entry in table.range(range).map_err(|e| Error::click_log(op, e))? {
                let (k, v) = entry.map_err(|e| Error::click_log(op, e))?;
                out.push(f(k.value(), &v));
            }
            Ok(out)
        })
    }

    /// Like [`Self::read`] but returns the stored bytes (Avro single-object encoding) without
    /// decoding them. The events of a damaged chunk (one that does not parse) come back as
    /// empty byte strings, one per offset it covers, so that a reader can skip them as
    /// undecodable.
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure.
    pub fn read_raw(&self, from: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::with_capacity(max.min(4096));
        self.visit(from, max, |offset, bytes| {
            out.push((offset, bytes.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with up to `max` stored events with offsets `>= max(from, low)`, in offset
    /// order, each as its offset and bytes (empty for the events of a damaged chunk: the
    /// offsets from its key up to the next chunk's key, or to the head for the last one).
    /// Stops at the first error of `f`.
    pub(super) fn visit(&self, from: u64, max: usize, f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        if max == 0 {
            return Ok(());
        }
        self.ensure_open()?;
        if self.inner.watch.shrunk().is_some() {
            // Written back (or found beyond repair) before a read of a lost page fails.
            let w = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
            let _ = self.repair_if_shrunk(&w);
        }
        let from = from.max(self.low());
        let head = self.head();
        self.with_db(|db| visit_db(db, from, max, head, f))
    }
}

/// [`ClickLog::visit`] on `db`: `from` is at or above the log's low, `head` its head (the end
/// of a damaged last chunk).
pub(super) fn visit_db(db: &impl ReadableDatabase, from: u64, max: usize, head: u64, mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
    fn err(e: impl Into<redb::Error>) -> Error {
        Error::click_log("read events", e)
    }
    let txn = db.begin_read().map_err(err)?;
    let table = txn.open_table(CHUNKS).map_err(err)?;
    // The chunk holding `from` is the last one keyed at or before it.
    let start = match table.range(..=from).map_err(err)?.next_back() {
        Some(entry) => entry.map_err(err)?.0.value(),
        None => from,
    };
    let mut left = max;
    let mut chunks = table.range(start..).map_err(err)?.peekable();
    while let Some(entry) = chunks.next() {
        let (k, v) = entry.map_err(err)?;
        let key = k.value();
        let value = v.value();
        if let Some(c) = chunk::Chunk::parse(value) {
            for i in 0..c.len() {
                let offset = key + i as u64;
                if offset >= from {
                    f(offset, c.event(i))?;
                    left -= 1;
                    if left == 0 {
                        return Ok(());
                    }
                }
            }
        } else {
            let end = match chunks.peek() {
                Some(Ok((next, _))) => next.value(),
                _ => head,
            };
            tracing::warn!(offset = key, end, "damaged click-log chunk: its events read as undecodable");
            for offset in key.max(from)..end {
                f(offset, &[])?;
                left -= 1;
                if left == 0 {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// The arrival time of `offset` in `arrivals` (as returned by [`ClickLog::arrival_times`]:
/// ascending by offset), `None` when it has none.
pub fn arrival_at(arrivals: &[(u64, i64)], offset: u64) -> Option<i64> {
    arrivals.binary_search_by_key(&offset, |&(o, _)| o).ok().map(|i| arrivals[i].1)
}
