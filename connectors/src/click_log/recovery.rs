//! Reopening the click log after an I/O error (a full disk, a failing device).
//!
//! redb latches the first I/O error of a [`Database`]: from then on every operation on it
//! fails with "a previous I/O error occurred" until the database is closed and opened again,
//! so without this a full disk would stop the log for good even after space is freed. When an
//! operation fails with an I/O error ([`redb::Error::Io`] or [`redb::Error::PreviousIo`]),
//! the log is marked for reopening (logged at error level, once). The next operation — the
//! log writer's retry of the failed append, as a rule — closes the file and opens it again
//! (redb's recovery runs and the integrity check of [`ClickLog::open`] with it). Opening can
//! fail too while the disk is still full; then the attempts back off, doubling from
//! [`REOPEN_BACKOFF_INITIAL`] up to [`REOPEN_BACKOFF_MAX`], and operations meanwhile fail
//! with [`Error::ClickLogClosed`] without touching the disk.
//!
//! No acknowledged event is lost and none is stored twice: an append that returned `Ok` was
//! committed (fsync'd) before the error, and reopening reads the head back from the file. A
//! commit whose last step failed (the fsync of the new header) may have reached the file
//! anyway: then the file's head is past the log's, the log takes the file's head (offsets
//! are never reused) and remembers those events; when the failed append is retried with the
//! same events, it returns their offsets without writing them again. Any other next append
//! leaves them in the log (a warning says so: they were reported as not written, so their
//! sender may also send them again; the dataflow's dedup by `event_id` counts them once).
//!
//! Logging: a full disk retried for minutes would log the same lines at every retry — the
//! I/O error, the failed close, redb's recovery of the file not closed cleanly and its
//! fallback from the commit the error tore (at each reopen), the reopen. So each is logged at
//! its level once per episode (from an I/O error until a commit succeeds again; counted in an
//! `io_episode::Episode`) and at debug level after that; the episode's end is logged once,
//! with its counts. Metrics count every failure as before (the log writer's).
//!
//! A file no longer at its path (deleted, its directory removed, another file there) is
//! never reopened by path: that would start a new, empty log (or open someone else's file)
//! under a log with events. The log reopens the very file it had open through its own
//! descriptor of it (Linux `/proc/self/fd/<n>`, `damage.rs`) and [`ClickLog::check_file`]
//! writes it back to its path as for a deletion (`file_check.rs`).

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redb::Database;
use sluice_schemas::ClickEvent;
use sluice_schemas::avro::decode_click_event;

use super::{ClickLog, WriteState, check_format_and_init, visit_db};
use crate::io_episode::{Said, once_per_episode};
use crate::{Error, Result};

/// First delay between two failed attempts to reopen the click log.
pub const REOPEN_BACKOFF_INITIAL: Duration = Duration::from_millis(50);
/// Longest delay between two failed attempts to reopen the click log.
pub const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Reopen backoff, and the events a failed commit stored after all.
pub(super) struct Recovery {
    /// Failed reopen attempts in a row.
    failures: u32,
    /// No reopen is tried before this.
    next_try: Option<Instant>,
    /// Events found in the file past the head at the last reopen.
    landed: Option<Landed>,
    /// First backoff delay ([`REOPEN_BACKOFF_INITIAL`]; tests shorten it).
    pub(super) initial_backoff: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Self { failures: 0, next_try: None, landed: None, initial_backoff: REOPEN_BACKOFF_INITIAL }
    }
}

/// Events a commit reported as failed had stored (module docs).
struct Landed {
    range: Range<u64>,
    events: Vec<ClickEvent>,
}

/// Delay after the `failures`-th failed reopen in a row (`failures >= 1`): `initial` doubled
/// per earlier failure, capped at [`REOPEN_BACKOFF_MAX`].
pub(super) fn reopen_delay(initial: Duration, failures: u32) -> Duration {
    initial.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(REOPEN_BACKOFF_MAX)
}

impl Recovery {
    /// The offsets of `events` if they are exactly the events a failed commit stored after all
    /// (the retry of that append); forgets those events either way.
    pub(super) fn take_landed(&mut self, events: &[ClickEvent], path: &std::path::Path) -> Option<Range<u64>> {
        let landed = self.landed.take()?;
        if landed.events == events {
            tracing::info!(path = %path.display(), offsets = ?landed.range, "click log: the retried append had been stored by the commit reported as failed; not stored again");
            return Some(landed.range);
        }
        tracing::warn!(
            path = %path.display(),
            offsets = ?landed.range,
            "click log: events of an append reported as failed were stored after all and stay in the log (their sender may send them again; dedup counts them once)"
        );
        None
    }
}

/// Whether a redb error means the database latched an I/O error and must be reopened.
fn is_io_failure(e: &redb::Error) -> bool {
    matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo)
}

impl ClickLog {
    /// Runs `f` on the open database. An I/O error from it marks the log for reopening
    /// (module docs). Errors with [`Error::ClickLogClosed`] when the file is closed.
    pub(super) fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let guard = self.inner.db.read().unwrap_or_else(|p| p.into_inner());
        let Some(db) = guard.as_ref() else {
            return Err(self.closed_error(Duration::ZERO));
        };
        let result = f(db);
        if let Err(Error::ClickLog { op, source }) = &result
            && is_io_failure(source)
        {
            // Marked while the read lock is held, so a reopen cannot complete in between and
            // be undone by this error of the old file.
            self.mark_failed(op, source);
        }
        result
    }

    fn mark_failed(&self, op: &str, source: &redb::Error) {
        if !self.inner.needs_reopen.swap(true, Ordering::AcqRel) {
            *self.inner.failure.lock().unwrap_or_else(|p| p.into_inner()) = format!("could not {op}: {source}");
            once_per_episode!(self.inner.episode, Said::IoError, error, path = %self.inner.path.display(), op, error = %source, "click log I/O error: the file is closed and reopened at the next append");
        }
    }

    /// Ends the I/O-error episode, if one is on, after a commit succeeded (module docs,
    /// "Logging"): logged once, with its counts.
    pub(super) fn end_episode(&self) {
        if let Some((io_errors, reopens)) = self.inner.episode.end() {
            tracing::info!(path = %self.inner.path.display(), io_errors, reopens, "click log: commits succeed again after I/O errors");
        }
    }

    pub(super) fn closed_error(&self, retry_in: Duration) -> Error {
        Error::ClickLogClosed {
            path: self.inner.path.display().to_string(),
            cause: self.inner.failure.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Reopens the file if an I/O error closed it, for readers (takes the write lock).
    pub(super) fn ensure_open(&self) -> Result<()> {
        if !self.inner.needs_reopen.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut w = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        self.reopen_if_needed(&mut w)
    }

    /// Proves the log writable without appending: reopens the file if an I/O error closed it
    /// (within the reopen backoff), then commits a write transaction that rewrites the stored
    /// head with its own value (a real, fsync'd commit: new pages and header). Used by the log
    /// writer to notice that the storage works again while no click arrives (blocking I/O).
    ///
    /// Errors: [`Error::ClickLogClosed`] while the file cannot be reopened (or inside the
    /// reopen backoff), [`Error::ClickLog`] when the commit fails (an I/O error also marks the
    /// file for reopening, as for an append).
    pub fn probe_write(&self) -> Result<()> {
        let mut w = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        self.reopen_if_needed(&mut w)?;
        let head = w.head;
        self.with_db(|db| {
            let txn = db.begin_write().map_err(|e| Error::click_log("probe writes", e))?;
            {
                let mut meta = txn.open_table(super::META).map_err(|e| Error::click_log("probe writes", e))?;
                meta.insert(super::META_HEAD, head).map_err(|e| Error::click_log("probe writes", e))?;
            }
            txn.commit().map_err(|e| Error::click_log("probe writes", e))
        })?;
        self.inner.watch.note_commit();
        self.end_episode();
        Ok(())
    }

    /// Where to reopen the log's file: its path while the file the log opened is there (or
    /// the log knows no file id); otherwise — deleted, with its directory or not, or another
    /// file at the path — that same file through the log's own descriptor (`damage.rs`), so
    /// that a reopen never starts an empty log at the path (appends would continue at the old
    /// head in a file without the earlier events) nor opens another file. `None` when that
    /// descriptor cannot be reopened (not Linux).
    fn reopen_target(&self) -> Option<std::path::PathBuf> {
        let active = self.active_path();
        let Some(opened) = *self.inner.file_id.lock().unwrap_or_else(|p| p.into_inner()) else {
            return Some(active);
        };
        if super::file_check::file_id(&active).is_ok_and(|id| id == opened) {
            return Some(active);
        }
        let via = self.inner.watch.reopen_path()?;
        once_per_episode!(self.inner.episode, Said::ViaDescriptor, warn, path = %active.display(), via = %via.display(), "the click log file is no longer at its path: reopening it through the log's own descriptor");
        Some(via)
    }

    /// Reopens the file if an I/O error closed it (module docs); `w` is the held write lock.
    ///
    /// Errors with [`Error::ClickLogClosed`] while it cannot be reopened (or inside the
    /// backoff after a failed attempt).
    pub(super) fn reopen_if_needed(&self, w: &mut WriteState) -> Result<()> {
        if !self.inner.needs_reopen.load(Ordering::Acquire) {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(at) = w.recovery.next_try
            && now < at
        {
            return Err(self.closed_error(at - now));
        }
        let Some(path) = self.reopen_target() else {
            // Nothing to reopen that is this log: keep the file open (reads may still work,
            // and `check_file` writes it back once it can) rather than open an empty log.
            w.recovery.failures = w.recovery.failures.saturating_add(1);
            let delay = reopen_delay(w.recovery.initial_backoff, w.recovery.failures);
            w.recovery.next_try = Some(now + delay);
            {
                let mut failure = self.inner.failure.lock().unwrap_or_else(|p| p.into_inner());
                const GONE: &str = "; the file is no longer at its path and cannot be reopened through its descriptor";
                if !failure.ends_with(GONE) {
                    failure.push_str(GONE);
                }
            }
            return Err(self.closed_error(delay));
        };
        let path = &path;
        let mut slot = self.inner.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take()
            && let Err(e) = old.close()
        {
            once_per_episode!(self.inner.episode, Said::CloseFailed, warn, path = %path.display(), error = %e, "click log: closing the file after an I/O error failed");
        }
        let opened = (self.inner.opener)(path, &self.inner.episode, &self.inner.watch.guard)
            .and_then(|db| check_format_and_init(&db, path).map(|(head, low, _)| (db, head, low)));
        let (db, file_head, file_low) = match opened {
            Ok(o) => o,
            Err(e) => {
                w.recovery.failures = w.recovery.failures.saturating_add(1);
                let delay = reopen_delay(w.recovery.initial_backoff, w.recovery.failures);
                w.recovery.next_try = Some(now + delay);
                *self.inner.failure.lock().unwrap_or_else(|p| p.into_inner()) = e.chain();
                once_per_episode!(self.inner.episode, Said::ReopenFailed, warn, path = %path.display(), error = e.chain(), retry_in_ms = delay.as_millis() as u64, attempt = w.recovery.failures, "could not reopen the click log");
                return Err(self.closed_error(delay));
            }
        };
        if file_head > w.head {
            let range = w.head.max(file_low)..file_head;
            let mut events = Vec::new();
            let read = visit_db(&db, range.start, usize::MAX, file_head, |_, bytes| {
                events.push(decode_click_event(bytes).map_err(|e| Error::Corrupt(e.to_string()))?);
                Ok(())
            });
            tracing::warn!(path = %path.display(), offsets = ?range, "click log: a commit reported as failed was stored after all; its events are kept");
            w.recovery.landed = read.ok().map(|()| Landed { range, events });
            w.head = file_head;
            self.inner.head.store(file_head, Ordering::Release);
            self.inner.head_tx.send_replace(file_head);
        } else if file_head < w.head {
            tracing::error!(
                path = %path.display(),
                file_head,
                head = w.head,
                "the reopened click log ends before the last acknowledged append: the storage lost acknowledged events; appends continue at the old head so that offsets are not reused"
            );
        }
        self.inner.low.fetch_max(file_low.min(w.head), Ordering::AcqRel);
        *slot = Some(db);
        *self.inner.file_id.lock().unwrap_or_else(|p| p.into_inner()) = self.inner.watch.attach(path);
        self.inner.needs_reopen.store(false, Ordering::Release);
        w.recovery.failures = 0;
        w.recovery.next_try = None;
        once_per_episode!(self.inner.episode, Said::Reopened, info, path = %path.display(), head = w.head, "click log reopened after an I/O error");
        Ok(())
    }
}

/// The open database, for tests that edit the file behind the log's back.
#[cfg(test)]
pub(super) struct TestDb<'a>(std::sync::RwLockReadGuard<'a, Option<Database>>);

#[cfg(test)]
impl std::ops::Deref for TestDb<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        self.0.as_ref().expect("the click log is open")
    }
}

#[cfg(test)]
impl ClickLog {
    pub(super) fn test_db(&self) -> TestDb<'_> {
        TestDb(self.inner.db.read().expect("lock"))
    }
}
