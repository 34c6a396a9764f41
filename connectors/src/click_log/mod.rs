//! The embedded click log: a durable, append-only sequence of [`ClickEvent`]s in `--data-dir`
//! (file `clicks.redb`), written by ingest and replayed by the dataflow.
//!
//! Delivery guarantee: an event whose [`ClickLog::append`] returned `Ok` is on disk (the redb
//! commit is fsync'd) and will be returned by every later [`ClickLog::read`] covering its
//! offset, across restarts, until [`ClickLog::truncate_before`] removes it. Offsets are dense
//! (`0, 1, 2, …`, never reused, even after truncation) and increase in append order.
//!
//! Storage: [redb](https://docs.rs/redb) (a pure-Rust, ACID, copy-on-write B-tree store) with
//! one table `events: u64 → bytes`; values are Avro single-object encoded
//! ([`sluice_schemas::avro`]), so every entry names the schema that wrote it.
//!
//! Backfill marks: events appended with [`ClickLog::append_backfill`] (`sluice import`,
//! `POST /v1/events?backfill=true`) bypass the dataflow's lateness limit (not dedup). The mark
//! is not part of the event: the offsets of marked events are kept in a second table
//! `backfill: u64 → ()`, written in the same transaction as the events and truncated with
//! them. [`ClickLog::read_entries`] returns events with their mark. Compatibility: a log
//! written before the table existed gets it (empty) on its next open, so all its events read
//! as live; an older binary opening a newer log ignores the table and reads every event as
//! live (no data is lost, only the lateness bypass).
//!
//! All methods block on disk I/O (an append waits for fsync, ~ms): call them from
//! `tokio::task::spawn_blocking` or a dedicated thread, not directly on an async worker.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use sluice_schemas::avro::{decode_click_event, encode_click_event_into};
use sluice_schemas::ClickEvent;
use tokio::sync::watch;

use crate::{Error, Result};

/// File name of the click log inside the data directory.
pub const CLICK_LOG_FILE_NAME: &str = "clicks.redb";

/// Memory redb may use to cache pages of the log (bytes; redb's default is 1 GiB). The log
/// is append-only and read from its tail, so a few seconds of appends is all a cache can
/// serve (64 MiB ≈ 350,000 events of ~190 bytes); a bound also keeps a busy log from
/// growing the process by its whole write volume, each new page a fresh page fault.
pub const CLICK_LOG_CACHE_BYTES: usize = 64 << 20;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Offsets of events appended as backfill (sparse; see the module docs).
const BACKFILL: TableDefinition<u64, ()> = TableDefinition::new("backfill");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Next offset to be written.
const META_HEAD: &str = "head";
/// Lowest offset still stored (everything below was truncated).
const META_LOW: &str = "low";

/// One stored event with its offset and backfill mark ([`ClickLog::read_entries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Offset in the log.
    pub offset: u64,
    /// Appended with [`ClickLog::append_backfill`]: bypasses the lateness limit, not dedup.
    pub backfill: bool,
    /// The event.
    pub event: ClickEvent,
}

/// Handle to the embedded click log; cheap to clone, `Send + Sync`, shared by all writers and
/// readers of one process. Only one process may open a log file at a time.
#[derive(Clone)]
pub struct ClickLog {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    /// Serializes appends and truncations together with the publication of `head`/`low`;
    /// holds the authoritative next offset.
    write: Mutex<u64>,
    head: AtomicU64,
    low: AtomicU64,
    head_tx: watch::Sender<u64>,
    /// Encoding buffers reused across appends ([`Scratch`]).
    scratch: Mutex<Scratch>,
}

/// The encoded events of one append: their bytes back to back and where each one ends.
/// Kept between appends so that a busy log does not allocate (and, for big batches, have
/// the allocator fault in fresh zeroed pages) on every commit; an append that finds it
/// taken (another append encoding concurrently) uses fresh buffers.
#[derive(Default)]
struct Scratch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

/// Largest encoding buffer kept for the next append (bytes); bigger ones are freed.
const SCRATCH_KEEP_BYTES: usize = 8 << 20;

impl std::fmt::Debug for ClickLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickLog")
            .field("path", &self.inner.path)
            .field("low", &self.low())
            .field("head", &self.head())
            .finish()
    }
}

fn meta_get(table: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<Option<u64>> {
    Ok(table.get(key).map_err(|e| Error::click_log("read log metadata", e))?.map(|v| v.value()))
}

impl ClickLog {
    /// Opens the log in `dir` (file `clicks.redb`), creating the directory and file if missing.
    ///
    /// Errors with [`Error::Config`] if the directory cannot be created and
    /// [`Error::ClickLog`] if the file cannot be opened (another process holds it, corrupt,
    /// unreadable).
    pub fn open(dir: &Path) -> Result<ClickLog> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Config(format!("could not create data dir \"{}\": {e}", dir.display())))?;
        let path = dir.join(CLICK_LOG_FILE_NAME);
        let db = Database::builder()
            .set_cache_size(CLICK_LOG_CACHE_BYTES)
            .create(&path)
            .map_err(|e| Error::click_log("open", e))?;
        // Create the tables on first open so readers never see "table does not exist".
        let txn = db.begin_write().map_err(|e| Error::click_log("open", e))?;
        let (head, low) = {
            let events = txn.open_table(EVENTS).map_err(|e| Error::click_log("open", e))?;
            let meta = txn.open_table(META).map_err(|e| Error::click_log("open", e))?;
            txn.open_table(BACKFILL).map_err(|e| Error::click_log("open", e))?;
            let last = events.last().map_err(|e| Error::click_log("open", e))?.map(|(k, _)| k.value());
            let head = meta_get(&meta, META_HEAD)?.unwrap_or(0).max(last.map_or(0, |l| l + 1));
            let low = meta_get(&meta, META_LOW)?.unwrap_or(0).min(head);
            (head, low)
        };
        txn.commit().map_err(|e| Error::click_log("open", e))?;
        let (head_tx, _) = watch::channel(head);
        tracing::debug!(path = %path.display(), low, head, "click log open");
        Ok(ClickLog {
            inner: Arc::new(Inner {
                db,
                path,
                write: Mutex::new(head),
                head: AtomicU64::new(head),
                low: AtomicU64::new(low),
                head_tx,
                scratch: Mutex::new(Scratch::default()),
            }),
        })
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends `events` in order and returns the offsets assigned to them
    /// (`range.len() == events.len()`); durable (fsync'd) when it returns. An empty slice
    /// writes nothing and returns the empty range at [`Self::head`].
    ///
    /// Errors: [`Error::ClickLog`] on I/O failure (nothing of this batch is stored then: a
    /// batch commits atomically); [`Error::Corrupt`] if an event cannot be Avro-encoded.
    pub fn append(&self, events: &[ClickEvent]) -> Result<Range<u64>> {
        self.append_marked(events, false)
    }

    /// Like [`Self::append`], but marks every event of the batch as backfill (its offset is
    /// recorded in the `backfill` table in the same transaction): readers using
    /// [`Self::read_entries`] see `backfill == true` for them.
    ///
    /// Errors: as [`Self::append`].
    pub fn append_backfill(&self, events: &[ClickEvent]) -> Result<Range<u64>> {
        self.append_marked(events, true)
    }

    fn append_marked(&self, events: &[ClickEvent], backfill: bool) -> Result<Range<u64>> {
        // Encode before taking the write lock: encoding is the CPU-heavy part.
        let mut scratch = std::mem::take(&mut *self.inner.scratch.lock().unwrap_or_else(|p| p.into_inner()));
        scratch.bytes.clear();
        scratch.ends.clear();
        let result = self.encode_and_commit(events, backfill, &mut scratch);
        if scratch.bytes.capacity() <= SCRATCH_KEEP_BYTES {
            *self.inner.scratch.lock().unwrap_or_else(|p| p.into_inner()) = scratch;
        }
        result
    }

    fn encode_and_commit(&self, events: &[ClickEvent], backfill: bool, scratch: &mut Scratch) -> Result<Range<u64>> {
        let Scratch { bytes: buf, ends } = scratch;
        buf.reserve(events.len() * 256);
        ends.reserve(events.len());
        for ev in events {
            encode_click_event_into(ev, buf).map_err(|e| Error::Corrupt(format!("could not encode click event: {e}")))?;
            ends.push(buf.len());
        }
        let mut head = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        let start = *head;
        if events.is_empty() {
            return Ok(start..start);
        }
        let end = start + events.len() as u64;
        let txn = self.inner.db.begin_write().map_err(|e| Error::click_log("append events", e))?;
        {
            let mut table = txn.open_table(EVENTS).map_err(|e| Error::click_log("append events", e))?;
            let mut from = 0;
            for (i, &to) in ends.iter().enumerate() {
                table
                    .insert(start + i as u64, &buf[from..to])
                    .map_err(|e| Error::click_log("append events", e))?;
                from = to;
            }
            if backfill {
                let mut marks = txn.open_table(BACKFILL).map_err(|e| Error::click_log("append events", e))?;
                for offset in start..end {
                    marks.insert(offset, ()).map_err(|e| Error::click_log("append events", e))?;
                }
            }
            let mut meta = txn.open_table(META).map_err(|e| Error::click_log("append events", e))?;
            meta.insert(META_HEAD, end).map_err(|e| Error::click_log("append events", e))?;
        }
        txn.commit().map_err(|e| Error::click_log("append events", e))?;
        *head = end;
        self.inner.head.store(end, Ordering::Release);
        self.inner.head_tx.send_replace(end);
        Ok(start..end)
    }

    /// Up to `max` events with offsets `>= from`, in offset order, each with its offset.
    /// Offsets below [`Self::low`] were truncated and are skipped; `from >= head` gives an
    /// empty vector.
    ///
    /// Errors: [`Error::ClickLog`] on I/O failure, [`Error::ClickLogDecode`] when a stored
    /// entry does not decode (its offset is in the error; use [`Self::read_raw`] to skip it).
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<(u64, ClickEvent)>> {
        let raw = self.read_raw(from, max)?;
        raw.into_iter()
            .map(|(offset, bytes)| {
                decode_click_event(&bytes)
                    .map(|ev| (offset, ev))
                    .map_err(|source| Error::ClickLogDecode { offset, source })
            })
            .collect()
    }

    /// Like [`Self::read`], but each event comes with its backfill mark (see the module docs).
    ///
    /// Errors: as [`Self::read`].
    pub fn read_entries(&self, from: u64, max: usize) -> Result<Vec<LogEntry>> {
        let events = self.read(from, max)?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(Vec::new());
        };
        let marks = self.backfill_offsets(first.0..last.0 + 1)?;
        Ok(events
            .into_iter()
            .map(|(offset, event)| LogEntry { offset, backfill: marks.binary_search(&offset).is_ok(), event })
            .collect())
    }

    /// Offsets inside `range` that were appended as backfill, ascending (for readers of
    /// [`Self::read_raw`]).
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure.
    pub fn backfill_offsets(&self, range: Range<u64>) -> Result<Vec<u64>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.inner.db.begin_read().map_err(|e| Error::click_log("read backfill marks", e))?;
        let table = match txn.open_table(BACKFILL) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(Error::click_log("read backfill marks", e)),
        };
        let mut out = Vec::new();
        for entry in table.range(range).map_err(|e| Error::click_log("read backfill marks", e))? {
            let (k, _) = entry.map_err(|e| Error::click_log("read backfill marks", e))?;
            out.push(k.value());
        }
        Ok(out)
    }

    /// Like [`Self::read`] but returns the stored bytes (Avro single-object encoding) without
    /// decoding them.
    pub fn read_raw(&self, from: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let txn = self.inner.db.begin_read().map_err(|e| Error::click_log("read events", e))?;
        let table = txn.open_table(EVENTS).map_err(|e| Error::click_log("read events", e))?;
        let mut out = Vec::with_capacity(max.min(4096));
        for entry in table.range(from..).map_err(|e| Error::click_log("read events", e))?.take(max) {
            let (k, v) = entry.map_err(|e| Error::click_log("read events", e))?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The next offset to be written (= number of events ever appended).
    pub fn head(&self) -> u64 {
        self.inner.head.load(Ordering::Acquire)
    }

    /// The lowest offset still stored (0 until [`Self::truncate_before`] is used).
    pub fn low(&self) -> u64 {
        self.inner.low.load(Ordering::Acquire)
    }

    /// A receiver of [`Self::head`] values, updated after every successful append; tailing
    /// readers `changed().await` on it instead of polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.head_tx.subscribe()
    }

    /// Deletes all events with offsets below `offset` (clamped to [`Self::head`]) for
    /// retention; returns the number removed. Offsets are never reused.
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure (nothing is removed then).
    pub fn truncate_before(&self, offset: u64) -> Result<u64> {
        let head = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        let low = self.low();
        let new_low = offset.min(*head);
        if new_low <= low {
            return Ok(0);
        }
        let txn = self.inner.db.begin_write().map_err(|e| Error::click_log("truncate", e))?;
        {
            let mut table = txn.open_table(EVENTS).map_err(|e| Error::click_log("truncate", e))?;
            table.retain_in(low..new_low, |_, _| false).map_err(|e| Error::click_log("truncate", e))?;
            let mut marks = txn.open_table(BACKFILL).map_err(|e| Error::click_log("truncate", e))?;
            marks.retain_in(low..new_low, |_, ()| false).map_err(|e| Error::click_log("truncate", e))?;
            let mut meta = txn.open_table(META).map_err(|e| Error::click_log("truncate", e))?;
            meta.insert(META_LOW, new_low).map_err(|e| Error::click_log("truncate", e))?;
        }
        txn.commit().map_err(|e| Error::click_log("truncate", e))?;
        self.inner.low.store(new_low, Ordering::Release);
        drop(head);
        Ok(new_low - low)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod backfill_tests;
