//! A click log opened read-only ([`ClickLogReader`], for `sluice log tail`): the file is
//! opened without write access (so it can be read on a read-only file system, e.g. a backup
//! mount), nothing is created or written, and no other process may have it open for writing
//! meanwhile (redb's lock: a running `sluice serve` makes the open fail with
//! [`crate::redb_open::OpenFailure::HeldByAnotherProcess`]).

use std::path::{Path, PathBuf};

use redb::{ReadOnlyDatabase, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle};
use sluice_schemas::ClickEvent;
use sluice_schemas::avro::decode_click_event;

use super::{
    CHUNKS, CLICK_LOG_CACHE_BYTES, CLICK_LOG_FILE_NAME, CLICK_LOG_FORMAT, LEGACY_EVENTS, META, META_FORMAT, META_HEAD, META_LOW, chunk, meta_get, visit_db,
};
use crate::{Error, Result};

/// A click log file opened read-only: a snapshot of the log as of the open (appends made
/// after it are not seen; no writer can make any while it is open).
pub struct ClickLogReader {
    db: ReaderDb,
    path: PathBuf,
    head: u64,
    low: u64,
}

/// How the file is open.
enum ReaderDb {
    /// redb's read-only open (a file closed cleanly).
    ReadOnly(ReadOnlyDatabase),
    /// A file not closed cleanly, recovered in memory ([`crate::redb_open::recover_read_only`]),
    /// with the file handle holding its shared lock.
    Recovered { db: redb::Database, _lock: std::fs::File },
}

impl ReaderDb {
    fn begin_read(&self) -> std::result::Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            ReaderDb::ReadOnly(d) => d.begin_read(),
            ReaderDb::Recovered { db: d, .. } => d.begin_read(),
        }
    }
}

impl std::fmt::Debug for ClickLogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickLogReader").field("path", &self.path).field("low", &self.low).field("head", &self.head).finish()
    }
}

impl ClickLogReader {
    /// Opens the log file in `dir` (`clicks.redb`) read-only. Nothing is created: a missing
    /// file is an error. A file not closed cleanly (its writer was killed) is read as the
    /// writer's next open would recover it, the recovery's writes kept in memory
    /// ([`crate::redb_open::recover_read_only`]): the file is never written either way.
    ///
    /// Errors: [`Error::ClickLog`] when the file cannot be opened ([`Error::open_failure`]
    /// tells a file held by a writer and a refused access apart), [`Error::ClickLogFormat`]
    /// for a log of another storage format, [`Error::ClickLogDamaged`] when the file fails
    /// redb's integrity check (run without writing to it:
    /// [`crate::redb_open::check_read_only`]), a truncated file included.
    pub fn open(dir: &Path) -> Result<ClickLogReader> {
        fn err(e: impl Into<redb::Error>) -> Error {
            Error::click_log("open", e)
        }
        let path = dir.join(CLICK_LOG_FILE_NAME);
        let damaged = |detail| Error::ClickLogDamaged { path: path.display().to_string(), dir: super::data_dir_of(&path), detail };
        super::damage::refuse_empty(&path)?;
        // redb panics on some damaged allocator pages while it opens (redb 4.6
        // `load_allocator_state`): damage too, as for a writer's open.
        let opened = std::panic::catch_unwind(|| redb::Builder::new().set_cache_size(CLICK_LOG_CACHE_BYTES).open_read_only(&path))
            .map_err(|panic| damaged(format!("redb panicked while opening it: {}", crate::redb_open::panic_text(&panic))))?;
        let db = match opened {
            // redb checks page checksums only in its integrity check, which a read-only open
            // skips: run it on a copy-on-write view, so that an altered file is refused here
            // rather than read as altered events (or a panic on a damaged page).
            Ok(db) => {
                crate::redb_open::check_read_only(&path, damaged, err)?;
                ReaderDb::ReadOnly(db)
            }
            // E.g. a file cut inside redb's header: damage, as for a writer's open.
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))) if crate::redb_open::is_damage_io(&e) => return Err(damaged(e.to_string())),
            // E.g. an allocator page overwritten: "Malformed allocator state".
            Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail))) => return Err(damaged(detail)),
            // Not closed cleanly (its writer was killed), or not as long as its header says
            // (cut short): the check, run as a writer's open with its writes in memory, tells
            // damage (reported as such) from a file a writer's open recovers — read as
            // recovered, the file left as it is.
            Err(redb::DatabaseError::RepairAborted) => {
                let (db, lock) = crate::redb_open::recover_read_only(&path, damaged, err)?;
                ReaderDb::Recovered { db, _lock: lock }
            }
            Err(e) => return Err(err(e)),
        };
        let (head, low) = match &db {
            ReaderDb::ReadOnly(d) => head_and_low(d, &path)?,
            ReaderDb::Recovered { db: d, .. } => head_and_low(d, &path)?,
        };
        Ok(ClickLogReader { db, path, head, low })
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next offset to be written, as of the open.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The lowest offset still stored, as of the open.
    pub fn low(&self) -> u64 {
        self.low
    }

    /// Up to `max` events with offsets `>= from` (and below [`Self::head`]), in offset
    /// order, each with its offset; as [`super::ClickLog::read`].
    ///
    /// Errors: [`Error::ClickLog`] on I/O failure, [`Error::ClickLogDecode`] when a stored
    /// entry does not decode (its offset is in the error).
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<(u64, ClickEvent)>> {
        let mut out = Vec::with_capacity(max.min(4096));
        if max == 0 || from >= self.head {
            return Ok(out);
        }
        let txn = self.db.begin_read().map_err(|e| Error::click_log("read events", e))?;
        if let Err(redb::TableError::TableDoesNotExist(_)) = txn.open_table(CHUNKS) {
            return Ok(out);
        }
        drop(txn);
        let decode = |offset, bytes: &[u8]| {
            let event = decode_click_event(bytes).map_err(|source| Error::ClickLogDecode { offset, source })?;
            out.push((offset, event));
            Ok(())
        };
        match &self.db {
            ReaderDb::ReadOnly(d) => visit_db(d, from.max(self.low), max, self.head, decode)?,
            ReaderDb::Recovered { db: d, .. } => visit_db(d, from.max(self.low), max, self.head, decode)?,
        }
        Ok(out)
    }
}

/// The log's head and low offsets, after checking its storage format.
fn head_and_low(db: &impl ReadableDatabase, path: &Path) -> Result<(u64, u64)> {
    fn err(e: impl Into<redb::Error>) -> Error {
        Error::click_log("open", e)
    }
    let txn = db.begin_read().map_err(err)?;
    let format_error = |found| Error::ClickLogFormat { path: path.display().to_string(), found, supported: CLICK_LOG_FORMAT };
    let meta = match txn.open_table(META) {
        Ok(meta) => Some(meta),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(err(e)),
    };
    let get = |key| meta.as_ref().map_or(Ok(None), |m| meta_get(m, key));
    match get(META_FORMAT)? {
        // Format 2 (plain chunks only) reads as format 3; a writer upgrades it on open.
        Some(2 | CLICK_LOG_FORMAT) => {}
        Some(other) => return Err(format_error(other)),
        // No format yet: a log never opened by a writer of format 2 or 3, empty unless it
        // holds format-1 events.
        None => {
            if txn.list_tables().map_err(err)?.any(|t| t.name() == LEGACY_EVENTS.name())
                && !txn.open_table(LEGACY_EVENTS).map_err(err)?.is_empty().map_err(err)?
            {
                return Err(format_error(1));
            }
        }
    }
    let last_end = match txn.open_table(CHUNKS) {
        Ok(chunks) => chunks.last().map_err(err)?.map(|(k, v)| k.value() + chunk::claimed_count(v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(err(e)),
    };
    let head = get(META_HEAD)?.unwrap_or(0).max(last_end.unwrap_or(0));
    let low = get(META_LOW)?.unwrap_or(0).min(head);
    drop(meta);
    drop(txn);
    Ok((head, low))
}
