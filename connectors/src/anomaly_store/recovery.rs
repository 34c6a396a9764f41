//! Reopening the anomaly store after an I/O error, and noticing that `anomalies.redb` was
//! deleted or replaced while the store has it open.
//!
//! **Reopen.** redb latches the first I/O error of a [`Database`]: from then on every
//! operation on it fails ("a previous I/O error occurred") until it is closed and opened
//! again, so without this a full disk would stop the store for good even after space is
//! freed. An operation that fails with an I/O error marks the store for reopening (an error
//! log, once); the next operation — as a rule the anomaly writer's retry of the failed append,
//! or its probe ([`AnomalyStore::probe_write`]) — closes the file and opens it again, with the
//! integrity check of [`AnomalyStore::open`] (a commit torn by the failure is rolled back to
//! the one before, with a warning: that commit was never acknowledged). While the file cannot
//! be reopened the attempts back off, doubling from [`REOPEN_BACKOFF_INITIAL`] up to
//! [`REOPEN_BACKOFF_MAX`], and operations fail with [`Error::AnomalyStoreClosed`] without
//! touching the disk. A reopen never creates a new file: when the path no longer holds the file
//! the store opened, it fails (the history is not silently replaced by an empty store).
//!
//! **Logging.** A full disk retried for minutes would log the same lines at every retry: the
//! I/O error, the failed close, redb's recovery of the file not closed cleanly and its
//! fallback from the commit the error tore (at each reopen), the failed or successful reopen.
//! So each is logged at its level once per episode (from an I/O error until a write commits
//! again) and at debug level after that; the episode's end is logged once, with its counts,
//! as the click log does (`click_log/recovery.rs`; both count in an `io_episode::Episode`).
//!
//! **Deleted or replaced file** ([`AnomalyStore::check_file`], called every few seconds by the
//! anomaly writer): device and inode at the path are compared with those of the file opened.
//! A deleted file is written back to its path from the open file — every table, copied in one
//! read transaction, so the copy is one consistent commit — linked at the path (never over a
//! file that appeared meanwhile) and the store switches to it: no event, subscription or
//! cursor is lost, and the event ids go on. When the copy cannot be written (its directory
//! was removed too, `rm -rf` of the data dir; a full disk), the store keeps the open file —
//! the only copy left — and events go on into it; it reports [`Error::AnomalyStoreDirRemoved`]
//! (or [`Error::AnomalyStoreDeleted`] with the cause) and tries again at every check, so the
//! file is back at its path within one check once the directory exists again (as the click
//! log does). Only a stop before that loses what the open file holds. A file deleted while
//! the store was closed after an I/O error has no open file left to copy: the store stays
//! closed and reports [`Error::AnomalyStoreLost`]. Another file at the path is someone's
//! decision (a restored backup?) and is left alone: [`Error::AnomalyStoreReplaced`] until a
//! restart.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redb::{Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, Value, WriteTransaction};

use super::{ANOMALY_STORE_FILE_NAME, AnomalyStore, BY_START, EVENT_KEYS, EVENTS, LATEST, actions, open_file, store_err, webhooks};
use crate::file_id::{FileId, file_id, missing_dir};
use crate::io_episode::{Said, once_per_episode};
use crate::{Error, Result};

/// First delay between two failed attempts to reopen the store.
pub const REOPEN_BACKOFF_INITIAL: Duration = Duration::from_millis(50);
/// Longest delay between two failed attempts to reopen the store.
pub const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Store metadata: `probed_at_ms` (the latest [`AnomalyStore::probe_write`], ms since the
/// Unix epoch).
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("store_meta");

/// Reopen backoff and the identity of the file opened.
#[derive(Debug)]
pub(super) struct Recovery {
    /// Failed reopen attempts in a row.
    failures: u32,
    /// No reopen is tried before this.
    next_try: Option<Instant>,
    /// Device and inode of the file the store has open.
    file_id: Option<FileId>,
    /// First reopen backoff ([`REOPEN_BACKOFF_INITIAL`]; tests shorten it).
    pub(super) initial_backoff: Duration,
}

impl Recovery {
    pub(super) fn new(file_id: Option<FileId>) -> Self {
        Recovery { failures: 0, next_try: None, file_id, initial_backoff: REOPEN_BACKOFF_INITIAL }
    }
}

/// What [`AnomalyStore::check_file`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    /// The file the store opened is at its path.
    InPlace,
    /// The file had been deleted; it was written back to its path from the open file and the
    /// store now uses it.
    Restored {
        /// Anomaly events in the restored file.
        events: u64,
    },
}

/// Whether a redb error means the database latched an I/O error and must be reopened.
fn is_io_failure(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AnomalyStore {
    /// Runs `f` on the open database, reopening it first if an I/O error closed it (module
    /// docs). An I/O error from `f` marks the store for reopening.
    ///
    /// Errors: [`Error::AnomalyStoreClosed`] while the file is closed and cannot be reopened
    /// yet; `f`'s error.
    pub(super) fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        self.reopen_if_needed()?;
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        let Some(db) = guard.as_ref() else {
            return Err(self.closed_error());
        };
        let result = f(db);
        if let Err(Error::AnomalyStore { op, source }) = &result
            && is_io_failure(source)
        {
            // Marked while the read lock is held, so a reopen cannot complete in between and
            // be undone by this error of the old file.
            if !self.needs_reopen.swap(true, Ordering::AcqRel) {
                *lock(&self.failure) = format!("could not {op}: {source}");
                once_per_episode!(self.episode, Said::IoError, error, path = %self.path.display(), op, error = %source, "anomaly store I/O error: the file is closed and reopened by the next operation");
            }
        }
        result
    }

    /// [`Self::with_db`] for an `f` that commits a write: its success ends the I/O-error
    /// episode, if one is on (module docs, "Logging"), with one line.
    pub(super) fn with_db_write<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let result = self.with_db(f)?;
        if let Some((io_errors, reopens)) = self.episode.end() {
            tracing::info!(path = %self.path.display(), io_errors, reopens, "anomaly store: writes commit again after I/O errors");
        }
        Ok(result)
    }

    /// Why the store is closed (the [`Error::AnomalyStoreClosed`] message, naming the file),
    /// `None` while it is open.
    pub fn failure(&self) -> Option<String> {
        self.needs_reopen.load(Ordering::Acquire).then(|| self.closed_error().to_string())
    }

    /// Whether the file was deleted while the store was closed after an I/O error
    /// ([`Error::AnomalyStoreLost`]: [`Self::failure`] says what is lost and what to do).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    fn closed_error(&self) -> Error {
        if self.lost.load(Ordering::Acquire) {
            return Error::AnomalyStoreLost { path: self.path.display().to_string() };
        }
        Error::AnomalyStoreClosed { path: self.path.display().to_string(), cause: lock(&self.failure).clone() }
    }

    /// Proves the store writable without adding an event: reopens the file if an I/O error
    /// closed it (within the reopen backoff), then commits a write of `store_meta.probed_at_ms`
    /// (a real, fsync'd commit). The anomaly writer calls it while the store is closed and no
    /// event is waiting, so that the store (and `/readyz`) recover with no new anomaly.
    /// Blocks on disk I/O.
    ///
    /// Errors: [`Error::AnomalyStoreClosed`], [`Error::AnomalyStore`] (an I/O error also
    /// closes the store, as for an append).
    pub fn probe_write(&self) -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.with_db_write(|db| {
            let txn = db.begin_write().map_err(|e| store_err("probe writes", e))?;
            txn.open_table(META).map_err(|e| store_err("probe writes", e))?.insert("probed_at_ms", now).map_err(|e| store_err("probe writes", e))?;
            txn.commit().map_err(|e| store_err("probe writes", e))
        })
    }

    /// Reopens the file if an I/O error closed it (module docs).
    fn reopen_if_needed(&self) -> Result<()> {
        if !self.needs_reopen.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut rec = lock(&self.recovery);
        if !self.needs_reopen.load(Ordering::Acquire) {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(at) = rec.next_try
            && now < at
        {
            return Err(self.closed_error());
        }
        let path = &self.path;
        let shown = path.display().to_string();
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take()
            && let Err(e) = old.close()
        {
            once_per_episode!(self.episode, Said::CloseFailed, warn, path = %shown, error = %e, "anomaly store: closing the file after an I/O error failed");
        }
        // Never create a new, empty store in place of the one that failed.
        let episode = std::sync::Arc::clone(&self.episode);
        let opened = match file_id(path) {
            Ok(id) if Some(id) == rec.file_id => open_file(path, move |which| episode.first(which.into())),
            Ok(_) => Err(Error::AnomalyStoreReplaced { path: shown.clone() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::AnomalyStoreLost { path: shown.clone() }),
            Err(e) => Err(store_err("reopen", redb::Error::Io(e))),
        };
        match opened {
            Ok((db, file_head)) => {
                *slot = Some(db);
                self.needs_reopen.store(false, Ordering::Release);
                self.lost.store(false, Ordering::Release);
                rec.failures = 0;
                rec.next_try = None;
                let head = self.head();
                if file_head > head {
                    // A commit reported as failed reached the file after all: its events are
                    // stored (the retried append finds them and adds nothing).
                    tracing::warn!(path = %shown, file_head, head, "anomaly store: a commit reported as failed was stored after all");
                    self.head.send_replace(file_head);
                } else if file_head < head {
                    tracing::error!(path = %shown, file_head, head, "the reopened anomaly store ends before the last acknowledged event: the storage lost acknowledged events");
                }
                once_per_episode!(self.episode, Said::Reopened, info, path = %shown, events = file_head.max(head), "anomaly store reopened after an I/O error");
                Ok(())
            }
            Err(e) => {
                rec.failures = rec.failures.saturating_add(1);
                let delay = rec.initial_backoff.saturating_mul(1u32 << (rec.failures - 1).min(16)).min(REOPEN_BACKOFF_MAX);
                rec.next_try = Some(now + delay);
                *lock(&self.failure) = e.chain();
                self.lost.store(matches!(e, Error::AnomalyStoreLost { .. }), Ordering::Release);
                once_per_episode!(self.episode, Said::ReopenFailed, warn, path = %shown, error = e.chain(), retry_in_ms = delay.as_millis() as u64, attempt = rec.failures, "could not reopen the anomaly store");
                Err(self.closed_error())
            }
        }
    }

    /// Checks that the file the store opened is still at its path, and writes it back there
    /// from the open file if it was deleted (module docs). Blocks on disk I/O (a restore copies
    /// the whole store).
    ///
    /// Errors: [`Error::AnomalyStoreReplaced`] when another file is at the path;
    /// [`Error::AnomalyStoreDirRemoved`] when the file and its directory were removed (written
    /// back once the directory exists again), [`Error::AnomalyStoreDeleted`] when the deleted
    /// file could not be written back otherwise (the cause is in the message; tried again at
    /// the next check) — either way operations go on to the open file;
    /// [`Error::AnomalyStoreLost`] when it was deleted while the store was closed after an I/O
    /// error; [`Error::AnomalyStoreClosed`] when it was written back but could not be opened
    /// (the next operation tries again).
    pub fn check_file(&self) -> Result<FileCheck> {
        let mut rec = lock(&self.recovery);
        let shown = self.path.display().to_string();
        match file_id(&self.path) {
            Ok(id) if Some(id) == rec.file_id => Ok(FileCheck::InPlace),
            Ok(_) => Err(Error::AnomalyStoreReplaced { path: shown }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.restore(&mut rec),
            Err(e) => Err(Error::AnomalyStoreDeleted { path: shown, detail: format!("could not look at the path: {e}") }),
        }
    }

    /// Writes the open file's content back to the empty path and switches to it.
    fn restore(&self, rec: &mut Recovery) -> Result<FileCheck> {
        let path = &self.path;
        let shown = path.display().to_string();
        let deleted = |detail: String| match missing_dir(path) {
            Some(dir) => Error::AnomalyStoreDirRemoved { path: shown.clone(), dir },
            None => Error::AnomalyStoreDeleted { path: shown.clone(), detail },
        };
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        let Some(old) = slot.as_ref() else {
            // Closed after an I/O error: nothing holds the deleted file any more.
            self.lost.store(true, Ordering::Release);
            return Err(Error::AnomalyStoreLost { path: shown });
        };
        tracing::error!(path = %shown, "the anomaly store file was deleted while in use; restoring it from the open file");
        let tmp = path.with_file_name(format!("{ANOMALY_STORE_FILE_NAME}.restoring"));
        let _ = std::fs::remove_file(&tmp);
        let events = match copy_store(old, &tmp) {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(deleted(format!("could not copy it to \"{}\": {}", tmp.display(), e.chain())));
            }
        };
        // A hard link never replaces a file that appeared at the path meanwhile.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::AnomalyStoreReplaced { path: shown }),
            Err(e) => return Err(deleted(format!("could not link the copy at the path: {e}"))),
        }
        if let Some(dir) = path.parent()
            && let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all())
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not sync the data dir after restoring the anomaly store");
        }
        if let Some(old) = slot.take()
            && let Err(e) = old.close()
        {
            tracing::warn!(path = %shown, error = %e, "anomaly store: closing the deleted file failed");
        }
        rec.file_id = file_id(path).ok();
        match open_file(path, |_| true) {
            Ok((db, head)) => {
                *slot = Some(db);
                tracing::warn!(path = %shown, events, head, "anomaly store file restored at its path from the open file; it is used from now on");
                Ok(FileCheck::Restored { events })
            }
            Err(e) => {
                // The content is safe at the path; the next operation retries the open.
                *lock(&self.failure) =
                    format!("it was deleted while in use and written back to its path from the open file, but could not be opened again: {}", e.chain());
                self.needs_reopen.store(true, Ordering::Release);
                Err(self.closed_error())
            }
        }
    }
}

/// Copies every table of the store `old` into a new redb file at `to` in one transaction of
/// one read snapshot (committed and synced), returning the number of events.
fn copy_store(old: &Database, to: &Path) -> Result<u64> {
    fn err(e: impl Into<redb::Error>) -> Error {
        store_err("copy the store", e)
    }
    let new = Database::create(to).map_err(err)?;
    let r = old.begin_read().map_err(err)?;
    let w = new.begin_write().map_err(err)?;
    copy_table(&r, &w, EVENTS)?;
    copy_table(&r, &w, EVENT_KEYS)?;
    copy_table(&r, &w, LATEST)?;
    copy_table(&r, &w, BY_START)?;
    copy_table(&r, &w, super::replay_index::BY_END)?;
    copy_table(&r, &w, META)?;
    copy_table(&r, &w, webhooks::WEBHOOKS)?;
    copy_table(&r, &w, webhooks::DELIVERIES)?;
    copy_table(&r, &w, webhooks::PENDING)?;
    copy_table(&r, &w, webhooks::COUNTERS)?;
    copy_table(&r, &w, actions::ACTIONS)?;
    copy_table(&r, &w, actions::CURSORS)?;
    w.commit().map_err(err)?;
    let events = r.open_table(EVENTS).map_err(err)?.len().map_err(err)?;
    new.close().map_err(err)?;
    Ok(events)
}

fn copy_table<K: Key + 'static, V: Value + 'static>(r: &ReadTransaction, w: &WriteTransaction, table: TableDefinition<K, V>) -> Result<()> {
    let err = |e: redb::Error| store_err("copy the store", e);
    let src = r.open_table(table).map_err(|e| err(e.into()))?;
    let mut dst = w.open_table(table).map_err(|e| err(e.into()))?;
    for entry in src.iter().map_err(|e| err(e.into()))? {
        let (k, v) = entry.map_err(|e| err(e.into()))?;
        dst.insert(k.value(), v.value()).map_err(|e| err(e.into()))?;
    }
    Ok(())
}
