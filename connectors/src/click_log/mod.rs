//! The embedded click log: a durable, append-only sequence of [`ClickEvent`]s in `--data-dir`
//! (file `clicks.redb`), written by ingest and replayed by the dataflow.
//!
//! Delivery guarantee: an event whose [`ClickLog::append`] returned `Ok` is on disk (the redb
//! commit is fsync'd) and will be returned by every later [`ClickLog::read`] covering its
//! offset, across restarts, until [`ClickLog::truncate_before`] removes it. Offsets are dense
//! (`0, 1, 2, …`, never reused, even after truncation) and increase in append order.
//!
//! Storage: [redb](https://docs.rs/redb) (a pure-Rust, ACID, copy-on-write B-tree store),
//! storage format 3: table `chunks: u64 → bytes` holds each append as one or more chunks of
//! consecutive events keyed by their first offset (layout in `chunk.rs`; one B-tree insert
//! per ~16 KiB of events instead of one per event; LZ4-compressed when that is smaller,
//! which it is for real clicks); each event inside is Avro single-object
//! encoded ([`sluice_schemas::avro`]), so every event names the schema that wrote it. Table
//! `meta` holds `format` (= [`CLICK_LOG_FORMAT`]), `head`, `low` and, once `sluice serve` ran
//! on the log, `link_store` (the id of its link store, [`ClickLog::link_store_id`]) and
//! `link_store_seq` (the highest change number of that store seen,
//! [`ClickLog::link_store_seq`]).
//!
//! Format check: [`ClickLog::open`] refuses, with [`Error::ClickLogFormat`], a log of
//! another format — format 1 (one `events` entry per event, written by sluice before format
//! 2) or a newer one — rather than misreading it. A format-1 log without stored events
//! (never written, or truncated to its head) is upgraded in place, keeping its offsets. A
//! format-2 log (chunks never compressed) is upgraded in place whatever it holds: its
//! chunks are read as they are, new ones may be compressed.
//!
//! Integrity check: [`ClickLog::open`] runs redb's integrity check on every open
//! ([`redb::Builder::set_check_integrity_on_open`]: the checksum of every page of the committed
//! trees is verified, which reads the whole file once). A file that fails it and that redb
//! repairs (e.g. a torn last commit) opens, with a warning naming the file; one redb cannot
//! repair (truncated, even to 0 bytes; overwritten) is refused with [`Error::ClickLogDamaged`], which names the
//! file and what to do, instead of being trusted until a read of a damaged page fails (or
//! panics) long after start. A panic inside redb while opening is reported the same way.
//!
//! I/O errors: redb refuses every operation on a file after one I/O error (a full disk, a
//! failing device). The log then closes the file and opens it again at the next operation,
//! with backoff, so that appends resume once the disk has room again, without a restart; no
//! acknowledged event is lost and a retried batch is not stored twice (`recovery.rs`).
//! While it cannot be reopened, operations fail with [`Error::ClickLogClosed`].
//!
//! Backfill marks: events appended with [`ClickLog::append_backfill`] (`sluice import`,
//! `POST /v1/events?backfill=true`) bypass the dataflow's lateness limit (not dedup). The mark
//! is not part of the event: the offsets of marked events are kept in a second table
//! `backfill: u64 → ()`, written in the same transaction as the events and truncated with
//! them. [`ClickLog::read_entries`] returns events with their mark.
//!
//! Arrival times: an event whose `ts` is after the time it is appended (a client clock ahead
//! of the server's, within the intake's future skew) gets its append time (ms since the epoch,
//! UTC, the wall clock read once per append) recorded in a third table `arrival: u64 → i64`,
//! keyed by offset, written in the same transaction as the events and truncated with them.
//! The dataflow caps such an event's watermark contribution (and decides `future`) at this
//! time rather than at the clock when it reads the event, so a replay of the log decides as
//! the first read did (`sluice_dataflows::watermark`). Only those events get an entry: an
//! event stamped at or before its append time never needs one, and an append of such events
//! only (the common case) writes nothing more. [`ClickLog::read_entries`] and
//! [`ClickLog::arrival_times`] return them. The storage format is unchanged (3): a log written
//! before the table existed has it created on open, empty (no arrival known for its events:
//! they are capped at the reading clock, as before), and a build that does not know the table
//! ignores it.
//!
//! All methods block on disk I/O (an append waits for fsync, ~ms): call them from
//! `tokio::task::spawn_blocking` or a dedicated thread, not directly on an async worker.

use std::ops::Range;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::atomic::AtomicI64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use sluice_schemas::ClickEvent;
use sluice_schemas::avro::encode_click_event_into;
use tokio::sync::watch;

use crate::{Error, Result};

/// File name of the click log inside the data directory.
pub const CLICK_LOG_FILE_NAME: &str = "clicks.redb";

/// Memory redb may use to cache pages of the log (bytes; redb's default is 1 GiB). The log
/// is append-only and read from its tail, so well under a second of appends is all a cache
/// can serve (16 MiB ≈ 85,000 events of ~190 bytes; a reader further behind reads through
/// the OS page cache); a small bound also keeps a busy log from growing the process by its
/// write volume — each page redb writes is a fresh allocation, and until the cache is full
/// every one of them is new memory the kernel must fault in and zero.
pub const CLICK_LOG_CACHE_BYTES: usize = 16 << 20;

/// Storage format this build reads and writes (module docs; `meta` key `format`).
pub const CLICK_LOG_FORMAT: u64 = 3;

/// Chunks of events keyed by the offset of their first event (formats 2 and 3; `chunk.rs`).
const CHUNKS: TableDefinition<u64, &[u8]> = TableDefinition::new("chunks");
/// One entry per event (format 1, no `format` key in `meta`): only looked at to refuse it.
const LEGACY_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Offsets of events appended as backfill (sparse; see the module docs).
const BACKFILL: TableDefinition<u64, ()> = TableDefinition::new("backfill");
/// Append time (ms UTC) of the events stamped after it, by offset (sparse; module docs).
const ARRIVAL: TableDefinition<u64, i64> = TableDefinition::new("arrival");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Storage format of the file.
const META_FORMAT: &str = "format";
/// Next offset to be written.
const META_HEAD: &str = "head";
/// Lowest offset still stored (everything below was truncated).
const META_LOW: &str = "low";
/// Random id of this log, written when the file is created (or first opened by a build that
/// knows the key): tells a checkpoint of this log from one of another ([`ClickLog::log_id`]).
const META_LOG_ID: &str = "log_id";

/// One stored event with its offset, backfill mark and arrival time
/// ([`ClickLog::read_entries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Offset in the log.
    pub offset: u64,
    /// Appended with [`ClickLog::append_backfill`]: bypasses the lateness limit, not dedup.
    pub backfill: bool,
    /// When the event was appended (ms since the epoch, UTC), known only for an event whose
    /// `ts` is after it (module docs, "Arrival times"); `None` for every other event.
    pub arrival_ms: Option<i64>,
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
    /// The open file; `None` after an I/O error closed it and reopening failed (`recovery.rs`).
    /// Operations hold the read lock; reopening takes the write lock, after `write`.
    db: RwLock<Option<Database>>,
    path: PathBuf,
    /// Opens the file at `path` (redb with the integrity check; tests inject faults here).
    opener: Opener,
    /// Set when an operation failed with an I/O error: the next operation reopens the file.
    needs_reopen: AtomicBool,
    /// The I/O error that set `needs_reopen` (for [`Error::ClickLogClosed`]).
    failure: Mutex<String>,
    /// Device and inode of the open file (`file_check.rs`).
    file_id: Mutex<Option<file_check::FileId>>,
    /// Where the open file is linked: `path`, or the side file the log moved to after
    /// another file took `path` (`file_check.rs`).
    active: Mutex<PathBuf>,
    /// The log's own descriptor of the open file and its length after the latest commit
    /// (`damage.rs`).
    watch: damage::Watch,
    /// Damage found while the file is open that could not be repaired (`damage.rs`); kept
    /// until the process stops.
    damage: Mutex<Option<damage::Damage>>,
    /// What the current I/O-error episode logged (`recovery.rs`).
    episode: Arc<crate::io_episode::Episode>,
    /// [`ClickLog::log_id`] as read when the log was opened.
    log_id: u64,
    /// Serializes appends, truncations and reopening together with the publication of
    /// `head`/`low`; holds the authoritative next offset.
    write: Mutex<WriteState>,
    head: AtomicU64,
    low: AtomicU64,
    head_tx: watch::Sender<u64>,
    /// Encoding buffers reused across appends ([`Scratch`]).
    scratch: Mutex<Scratch>,
    /// Append time used instead of the wall clock when not `i64::MIN` (tests).
    #[cfg(test)]
    test_now_ms: AtomicI64,
}

/// The encoded events of one append: their bytes back to back, where each one ends, and
/// the chunk being written. Kept between appends so that a busy log does not allocate (and,
/// for big batches, have the allocator fault in fresh zeroed pages) on every commit; an
/// append that finds it taken (another append encoding concurrently) uses fresh buffers.
#[derive(Default)]
struct Scratch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// A chunk's uncompressed body (`chunk::encode`).
    raw: Vec<u8>,
    chunk: Vec<u8>,
}

pub use damage::move_aside;
pub use file_check::{FileCheck, side_files};
pub use read::arrival_at;
use read::visit_db;
pub use read_only::ClickLogReader;

/// Opens the log file at the given path (see [`ClickLog::open`]) in the log's I/O-error
/// episode, keeping the log's length guard up to date (`len_guard.rs`; a test opener may
/// leave it alone: the log then samples the length after each commit instead).
type Opener = Box<dyn Fn(&Path, &Arc<crate::io_episode::Episode>, &Arc<len_guard::LenGuard>) -> Result<Database> + Send + Sync>;

/// What appends and truncations hold their lock on.
struct WriteState {
    /// The next offset to be written.
    head: u64,
    /// Reopen backoff and the batch a failed commit may have stored after all (`recovery.rs`).
    recovery: recovery::Recovery,
}

/// Largest encoding buffer kept for the next append (bytes); bigger ones are freed.
const SCRATCH_KEEP_BYTES: usize = 8 << 20;

impl std::fmt::Debug for ClickLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickLog").field("path", &self.inner.path).field("low", &self.low()).field("head", &self.head()).finish()
    }
}

/// Opens (or creates) the redb file at `path` with the integrity check on (module docs); an
/// empty file is damage, not a new log (`redb_open::EMPTY_FILE`). redb's repair warning is
/// logged once per I/O-error `episode` (`recovery.rs`). The file goes through a
/// [`len_guard::GuardedBackend`] keeping `guard` up to date (disarmed when the open fails).
fn open_checked(path: &Path, episode: &Arc<crate::io_episode::Episode>, guard: &Arc<len_guard::LenGuard>) -> Result<Database> {
    let episode = Arc::clone(episode);
    let g = Arc::clone(guard);
    crate::redb_open::open_checked_gated(
        path,
        "click log",
        Some(CLICK_LOG_CACHE_BYTES),
        move |which| episode.first(which.into()),
        |detail| Error::ClickLogDamaged { path: path.display().to_string(), dir: data_dir_of(path), detail },
        |e| Error::click_log("open", e),
        move |file| len_guard::GuardedBackend::new(file, g),
    )
    .inspect_err(|_| guard.disarm())
}

/// The directory holding the log file at `path`, for messages (`.` when it has none).
fn data_dir_of(path: &Path) -> String {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).display().to_string()
}

fn meta_get(table: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<Option<u64>> {
    Ok(table.get(key).map_err(|e| Error::click_log("read log metadata", e))?.map(|v| v.value()))
}

impl ClickLog {
    /// Opens the log in `dir` (file `clicks.redb`), creating the directory and file if missing.
    ///
    /// The file is checked at open (see "Integrity check" in the module docs).
    ///
    /// Errors with [`Error::Config`] if the directory cannot be created or `clicks.redb` in
    /// it is a directory,
    /// [`Error::ClickLogDamaged`] if the file fails redb's integrity check and cannot be
    /// repaired, and [`Error::ClickLog`] if it cannot be opened otherwise (another process
    /// holds it, unreadable).
    pub fn open(dir: &Path) -> Result<ClickLog> {
        Self::open_with(dir, Box::new(open_checked))
    }

    /// [`Self::open`] with the file opened by `opener` (again on every reopen).
    fn open_with(dir: &Path, opener: Opener) -> Result<ClickLog> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Config(format!("could not create data dir \"{}\": {e}", dir.display())))?;
        let path = dir.join(CLICK_LOG_FILE_NAME);
        if path.is_dir() {
            return Err(Error::Config(format!("the click log \"{}\" is a directory, not a file: move it out of the data dir", path.display())));
        }
        let watch = damage::Watch::default();
        let db = opener(&path, &Arc::default(), &watch.guard)?;
        let (head, low, log_id) = check_format_and_init(&db, &path)?;
        let (head_tx, _) = watch::channel(head);
        let file_id = watch.attach(&path);
        tracing::debug!(path = %path.display(), low, head, "click log open");
        Ok(ClickLog {
            inner: Arc::new(Inner {
                db: RwLock::new(Some(db)),
                opener,
                needs_reopen: AtomicBool::new(false),
                failure: Mutex::new(String::new()),
                file_id: Mutex::new(file_id),
                active: Mutex::new(path.clone()),
                path,
                watch,
                damage: Mutex::new(None),
                episode: Arc::default(),
                log_id,
                write: Mutex::new(WriteState { head, recovery: recovery::Recovery::default() }),
                head: AtomicU64::new(head),
                low: AtomicU64::new(low),
                head_tx,
                scratch: Mutex::new(Scratch::default()),
                #[cfg(test)]
                test_now_ms: AtomicI64::new(i64::MIN),
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
        let Scratch { bytes: buf, ends, raw, chunk: value } = scratch;
        buf.reserve(events.len() * 256);
        ends.reserve(events.len());
        for ev in events {
            encode_click_event_into(ev, buf).map_err(|e| Error::Corrupt(format!("could not encode click event: {e}")))?;
            ends.push(buf.len());
        }
        let mut w = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        self.reopen_if_needed(&mut w)?;
        // A file that shrank since the last commit is written back before anything is
        // written to it (`damage.rs`); one that cannot be gets the events all the same.
        let _ = self.repair_if_shrunk(&w);
        let start = w.head;
        if events.is_empty() {
            return Ok(start..start);
        }
        if let Some(range) = w.recovery.take_landed(events, &self.inner.path) {
            return Ok(range);
        }
        let end = start + events.len() as u64;
        let appended_ms = self.append_time_ms();
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| Error::click_log("append events", e))?;
            {
                let mut table = txn.open_table(CHUNKS).map_err(|e| Error::click_log("append events", e))?;
                for range in chunk::plan(ends) {
                    let key = start + range.start as u64;
                    chunk::encode(buf, ends, range, raw, value);
                    table.insert(key, value.as_slice()).map_err(|e| Error::click_log("append events", e))?;
                }
                if backfill {
                    let mut marks = txn.open_table(BACKFILL).map_err(|e| Error::click_log("append events", e))?;
                    for offset in start..end {
                        marks.insert(offset, ()).map_err(|e| Error::click_log("append events", e))?;
                    }
                }
                // Only events stamped after their append time get an entry (module docs).
                let mut ahead = (start..end).zip(events).filter(|(_, ev)| ev.ts > appended_ms).peekable();
                if ahead.peek().is_some() {
                    let mut arrivals = txn.open_table(ARRIVAL).map_err(|e| Error::click_log("append events", e))?;
                    for (offset, _) in ahead {
                        arrivals.insert(offset, appended_ms).map_err(|e| Error::click_log("append events", e))?;
                    }
                }
                let mut meta = txn.open_table(META).map_err(|e| Error::click_log("append events", e))?;
                meta.insert(META_HEAD, end).map_err(|e| Error::click_log("append events", e))?;
            }
            txn.commit().map_err(|e| Error::click_log("append events", e))
        })?;
        self.inner.watch.note_commit();
        self.end_episode();
        w.head = end;
        self.inner.head.store(end, Ordering::Release);
        self.inner.head_tx.send_replace(end);
        Ok(start..end)
    }

    /// The time an append records as its events' arrival (ms since the epoch, UTC): the wall
    /// clock (in tests, the time set with `set_test_now_ms` if any).
    fn append_time_ms(&self) -> i64 {
        #[cfg(test)]
        {
            let t = self.inner.test_now_ms.load(Ordering::Relaxed);
            if t != i64::MIN {
                return t;
            }
        }
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// Makes appends record `ms` as their arrival time (`i64::MIN`: the wall clock again).
    #[cfg(test)]
    pub(super) fn set_test_now_ms(&self, ms: i64) {
        self.inner.test_now_ms.store(ms, Ordering::Relaxed);
    }

    /// The random, non-zero id of this log file: written into the file when it is created
    /// (or, for a log written by an older build, when it is first opened), so it stays with
    /// the file through copies and renames, and two logs created apart never share one
    /// (64 random bits, UUID v4 source). Checkpoints record it to refuse resuming over
    /// another log (a replaced `clicks.redb`).
    pub fn log_id(&self) -> u64 {
        self.inner.log_id
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
        let mut w = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        self.reopen_if_needed(&mut w)?;
        let low = self.low();
        let new_low = offset.min(w.head);
        if new_low <= low {
            return Ok(0);
        }
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| Error::click_log("truncate", e))?;
            {
                // Chunks that end at or before `new_low` go; one that straddles it stays whole
                // (readers skip its offsets below `low`).
                let mut table = txn.open_table(CHUNKS).map_err(|e| Error::click_log("truncate", e))?;
                table
                    .retain_in(..new_low, |key, value| key.saturating_add(chunk::claimed_count(value)) > new_low)
                    .map_err(|e| Error::click_log("truncate", e))?;
                let mut marks = txn.open_table(BACKFILL).map_err(|e| Error::click_log("truncate", e))?;
                marks.retain_in(low..new_low, |_, ()| false).map_err(|e| Error::click_log("truncate", e))?;
                let mut arrivals = txn.open_table(ARRIVAL).map_err(|e| Error::click_log("truncate", e))?;
                arrivals.retain_in(..new_low, |_, _| false).map_err(|e| Error::click_log("truncate", e))?;
                let mut meta = txn.open_table(META).map_err(|e| Error::click_log("truncate", e))?;
                meta.insert(META_LOW, new_low).map_err(|e| Error::click_log("truncate", e))?;
            }
            txn.commit().map_err(|e| Error::click_log("truncate", e))
        })?;
        self.inner.watch.note_commit();
        self.inner.low.store(new_low, Ordering::Release);
        drop(w);
        Ok(new_low - low)
    }
}

/// Checks the storage format of a freshly opened `db` (module docs), creates the tables of a
/// new log (and its [`ClickLog::log_id`] if it has none), and returns its `(head, low, log id)`.
fn check_format_and_init(db: &Database, path: &Path) -> Result<(u64, u64, u64)> {
    fn err(e: impl Into<redb::Error>) -> Error {
        Error::click_log("open", e)
    }
    let format_error = |found| Error::ClickLogFormat { path: path.display().to_string(), found, supported: CLICK_LOG_FORMAT };
    let txn = db.begin_write().map_err(err)?;
    let has_legacy = txn.list_tables().map_err(err)?.any(|t| t.name() == LEGACY_EVENTS.name());
    let (head, low, log_id) = {
        let mut meta = txn.open_table(META).map_err(err)?;
        match meta_get(&meta, META_FORMAT)? {
            Some(CLICK_LOG_FORMAT) => {}
            // Format-2 chunks are valid format-3 chunks (plain ones): upgraded in place, so
            // that a build reading only format 2 refuses the log once it may hold compressed
            // chunks instead of misreading them.
            Some(2) => meta.insert(META_FORMAT, CLICK_LOG_FORMAT).map(drop).map_err(err)?,
            Some(other) => return Err(format_error(other)),
            None => {
                if has_legacy && !txn.open_table(LEGACY_EVENTS).map_err(err)?.is_empty().map_err(err)? {
                    return Err(format_error(1));
                }
                meta.insert(META_FORMAT, CLICK_LOG_FORMAT).map_err(err)?;
            }
        }
        // Create the tables on first open so readers never see "table does not exist".
        let chunks = txn.open_table(CHUNKS).map_err(err)?;
        txn.open_table(BACKFILL).map_err(err)?;
        txn.open_table(ARRIVAL).map_err(err)?;
        let last_end = chunks.last().map_err(err)?.map(|(k, v)| k.value() + chunk::claimed_count(v.value()));
        let head = meta_get(&meta, META_HEAD)?.unwrap_or(0).max(last_end.unwrap_or(0));
        let low = meta_get(&meta, META_LOW)?.unwrap_or(0).min(head);
        let log_id = match meta_get(&meta, META_LOG_ID)? {
            Some(id) if id != 0 => id,
            _ => {
                let id = uuid::Uuid::new_v4().as_u64_pair().0.max(1);
                meta.insert(META_LOG_ID, id).map_err(err)?;
                id
            }
        };
        (head, low, log_id)
    };
    if has_legacy {
        // Empty (checked above): an upgraded format-1 log keeps its head and low in `meta`.
        txn.delete_table(LEGACY_EVENTS).map_err(err)?;
    }
    txn.commit().map_err(err)?;
    Ok((head, low, log_id))
}

#[cfg(test)]
mod arrival_tests;
#[cfg(test)]
mod backfill_tests;
mod chunk;
mod damage;
#[cfg(test)]
mod damage_tests;
mod file_check;
#[cfg(test)]
mod file_check_tests;
mod len_guard;
mod link_store_id;
pub use link_store_id::UNCHECKED_EPOCH;
mod read;
mod read_only;
mod recovery;
#[cfg(test)]
mod recovery_tests;
mod reset;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod integrity_tests;
