//! Noticing that `clicks.redb` was deleted (or replaced) while the log has it open.
//!
//! An open file that is deleted keeps working: redb goes on writing to the unlinked inode,
//! the running dataflow reads the new events from it, and everything in it is gone at the
//! next restart. [`ClickLog::check_file`] (called every few seconds by the ingest writer)
//! compares the device and inode at the path with those of the file the log opened.
//!
//! What it does then, chosen to lose the least:
//! - the path is empty (deleted): the log copies the open file's content — every stored
//!   event, with its offset and backfill mark, and the metadata — into a new file, links it at
//!   the path (never over a file that appeared meanwhile) and switches to it. Nothing is lost;
//!   appends wait while it copies (the intake channel buffers them, and counts what overflows).
//!   Refusing to write would lose every click from then on, and reopening an empty log at the
//!   path would lose the events stored before the deletion, which a restart replays.
//! - another file is at the path (replaced): that file is someone's decision (a restored
//!   backup?), so it is not touched. The log keeps writing to the file it opened — the running
//!   dataflow still counts those clicks — and reports [`Error::ClickLogReplaced`] until a
//!   restart: what it writes meanwhile is lost then.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::{BACKFILL, CHUNKS, CLICK_LOG_CACHE_BYTES, CLICK_LOG_FILE_NAME, ClickLog, META, check_format_and_init};
use crate::{Error, Result};

pub(super) use crate::file_id::FileId;

/// Bytes of chunks copied per transaction while restoring a deleted file (bounds the memory
/// of one redb write transaction).
const COPY_BATCH_BYTES: usize = 64 << 20;

/// What [`ClickLog::check_file`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    /// The file the log opened is at its path.
    InPlace,
    /// The file had been deleted; it was written back to its path from the open file, with
    /// every stored event (`events` of them), and the log now uses it.
    Restored {
        /// Events in the copied chunks (a chunk straddling [`ClickLog::low`] counts whole).
        events: u64,
    },
}

pub(super) use crate::file_id::file_id;

impl ClickLog {
    /// Checks that the file the log opened is still at its path, and restores it there if it
    /// was deleted (module docs of `file_check.rs`). Blocks on disk I/O (the restore copies
    /// the whole log).
    ///
    /// Errors: [`Error::ClickLogReplaced`] when another file is at the path,
    /// [`Error::ClickLogDeleted`] when the deleted file could not be restored (the cause is in
    /// the message); either way appends go on to the open file.
    pub fn check_file(&self) -> Result<FileCheck> {
        let path = &self.inner.path;
        let opened = *self.inner.file_id.lock().unwrap_or_else(|p| p.into_inner());
        match file_id(path) {
            Ok(id) if Some(id) == opened => Ok(FileCheck::InPlace),
            Ok(_) => Err(Error::ClickLogReplaced { path: path.display().to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.restore(),
            Err(e) => Err(Error::ClickLogDeleted { path: path.display().to_string(), detail: format!("could not look at the path: {e}") }),
        }
    }

    /// Writes the open file's content back to the empty path and switches to it.
    fn restore(&self) -> Result<FileCheck> {
        let path = &self.inner.path;
        let shown = path.display().to_string();
        let deleted = |detail: String| Error::ClickLogDeleted { path: shown.clone(), detail };
        let w = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        tracing::error!(path = %shown, "the click log file was deleted while in use; restoring it from the open file");
        let tmp = path.with_file_name(format!("{CLICK_LOG_FILE_NAME}.restoring"));
        let _ = std::fs::remove_file(&tmp);
        let copied = self.with_db(|old| copy_log(old, &tmp));
        let events = match copied {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(deleted(format!("could not copy it to \"{}\": {}", tmp.display(), super::recovery::error_chain(&e))));
            }
        };
        // A hard link never replaces a file that appeared at the path meanwhile.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::ClickLogReplaced { path: shown }),
            Err(e) => return Err(deleted(format!("could not link the copy at the path: {e}"))),
        }
        if let Some(dir) = path.parent()
            && let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all())
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not sync the data dir after restoring the click log");
        }
        // Switch: close the deleted file, open the restored one.
        let mut slot = self.inner.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take()
            && let Err(e) = old.close()
        {
            tracing::warn!(path = %shown, error = %e, "click log: closing the deleted file failed");
        }
        let opened = (self.inner.opener)(path).and_then(|db| check_format_and_init(&db, path).map(|(head, _, _)| (db, head)));
        match opened {
            Ok((db, head)) => {
                if head != w.head {
                    tracing::error!(path = %shown, head, expected = w.head, "the restored click log has another head than the log it was copied from");
                }
                *slot = Some(db);
                *self.inner.file_id.lock().unwrap_or_else(|p| p.into_inner()) = file_id(path).ok();
                tracing::warn!(path = %shown, events, head = w.head, "click log file restored at its path from the open file; appends go to it");
                Ok(FileCheck::Restored { events })
            }
            Err(e) => {
                // The content is safe at the path; the next operation retries the open.
                let detail = format!("the restored file could not be opened: {}", super::recovery::error_chain(&e));
                *self.inner.failure.lock().unwrap_or_else(|p| p.into_inner()) = detail.clone();
                self.inner.needs_reopen.store(true, std::sync::atomic::Ordering::Release);
                Err(deleted(detail))
            }
        }
    }
}

/// Copies every table of the log `old` into a new redb file at `to` (committed and synced),
/// returning the number of events copied.
fn copy_log(old: &Database, to: &Path) -> Result<u64> {
    fn err(e: impl Into<redb::Error>) -> Error {
        Error::click_log("copy the log", e)
    }
    let new = Database::builder().set_cache_size(CLICK_LOG_CACHE_BYTES).create(to).map_err(err)?;
    let r = old.begin_read().map_err(err)?;
    let chunks = r.open_table(CHUNKS).map_err(err)?;
    let mut entries = chunks.iter().map_err(err)?;
    let mut events = 0u64;
    loop {
        let txn = new.begin_write().map_err(err)?;
        let mut bytes = 0usize;
        let mut done = true;
        {
            let mut t = txn.open_table(CHUNKS).map_err(err)?;
            for entry in entries.by_ref() {
                let (k, v) = entry.map_err(err)?;
                t.insert(k.value(), v.value()).map_err(err)?;
                events += super::chunk::claimed_count(v.value());
                bytes += v.value().len();
                if bytes >= COPY_BATCH_BYTES {
                    done = false;
                    break;
                }
            }
        }
        txn.commit().map_err(err)?;
        if done {
            break;
        }
    }
    // Marks and metadata last: `meta` (format, head, low, link store) completes the copy.
    let txn = new.begin_write().map_err(err)?;
    {
        let mut marks = txn.open_table(BACKFILL).map_err(err)?;
        for entry in r.open_table(BACKFILL).map_err(err)?.iter().map_err(err)? {
            marks.insert(entry.map_err(err)?.0.value(), ()).map_err(err)?;
        }
        let mut meta = txn.open_table(META).map_err(err)?;
        for entry in r.open_table(META).map_err(err)?.iter().map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            meta.insert(k.value(), v.value()).map_err(err)?;
        }
    }
    txn.commit().map_err(err)?;
    new.close().map_err(err)?;
    Ok(events)
}
