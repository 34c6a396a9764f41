//! Noticing that `clicks.redb` was deleted (or replaced) while the log has it open.
//!
//! An open file that is deleted keeps working: redb goes on writing to the unlinked inode,
//! the running dataflow reads the new events from it, and everything in it is gone at the
//! next restart. [`ClickLog::check_file`] (called every few seconds by the ingest writer)
//! compares the device and inode at the path with those of the file the log opened.
//!
//! What it does then, chosen to lose the least:
//! - the path is empty (deleted): the log copies the open file's content — every stored
//!   event, with its offset, backfill mark and arrival time, and the metadata — into a new file, links it at
//!   the path (never over a file that appeared meanwhile) and switches to it. Nothing is lost;
//!   appends wait while it copies (the intake channel buffers them, and counts what overflows).
//!   Refusing to write would lose every click from then on, and reopening an empty log at the
//!   path would lose the events stored before the deletion, which a restart replays.
//!   When the copy cannot be written (its directory was removed too, `rm -rf` of the data dir;
//!   a full disk), the log keeps the open file — the only copy left, so it is never closed for
//!   this — and appends go on into it: the running dataflow counts them. It reports
//!   [`Error::ClickLogDirRemoved`] (or [`Error::ClickLogDeleted`] with the cause) and tries the
//!   write-back again at every check, so once the directory exists again (`mkdir -p`) the whole
//!   log, every offset unchanged, is back at its path within one check. Only a stop before
//!   that loses what the open file holds.
//! - another file is at the path (replaced): that file is someone's decision (a restored
//!   backup?), so it is not touched. The log copies its open file the same way to a side file
//!   next to it, `clicks.redb.recovered-<UTC time>`, and writes there from then on: every
//!   click stays in a file that survives a restart, and the running dataflow counts them. It
//!   reports [`Error::ClickLogDiverted`] (naming both files: to keep every click, move the side
//!   file to the path while sluice is stopped) until the process stops. When the copy fails
//!   (a full disk) it reports [`Error::ClickLogReplaced`] and tries again at the next check.
//!
//! A file that shrank (truncated) is written back from the open file too (`damage.rs`).

use std::ops::Range;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::{ARRIVAL, BACKFILL, CHUNKS, CLICK_LOG_CACHE_BYTES, CLICK_LOG_FILE_NAME, ClickLog, META, WriteState, check_format_and_init};
use crate::file_id::missing_dir;
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
    /// The file had shrunk (truncated outside sluice); it was written back over it from the
    /// open file, every event from [`ClickLog::low`] to [`ClickLog::head`] checked to be in
    /// the copy, and the log now uses it (`damage.rs`).
    Rewritten {
        /// Events in the copied chunks (a chunk straddling [`ClickLog::low`] counts whole).
        events: u64,
    },
}

/// How [`ClickLog::copy_and_switch`] puts the copy at its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// A hard link: never over a file that appeared at the target meanwhile.
    Link,
    /// A rename over the (damaged) file at the target.
    Replace,
}

pub(super) use crate::file_id::file_id;

impl ClickLog {
    /// Checks that the file the log opened is still at its path and whole, and repairs what
    /// it can (module docs of `file_check.rs` and `damage.rs`). Blocks on disk I/O (a repair
    /// copies the whole log).
    ///
    /// Errors (appends go on either way): [`Error::ClickLogDiverted`] while the log writes to
    /// a side file because another file took its path; [`Error::ClickLogReplaced`] when
    /// another file took its path and the side copy failed; [`Error::ClickLogDirRemoved`]
    /// when the file and its directory were removed (written back once the directory exists
    /// again); [`Error::ClickLogDeleted`] when the deleted file could not be restored (tried
    /// again at the next check); [`Error::ClickLogDamagedInUse`] when it
    /// shrank and could not be written back (the cause is in each message).
    pub fn check_file(&self) -> Result<FileCheck> {
        let w = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(done) = self.repair_if_shrunk(&w)? {
            return Ok(done);
        }
        let home = &self.inner.path;
        let active = self.active_path();
        let opened = *self.inner.file_id.lock().unwrap_or_else(|p| p.into_inner());
        let diverted = active != *home;
        match file_id(&active) {
            Ok(id) if Some(id) == opened && diverted => Err(Error::ClickLogDiverted { path: home.display().to_string(), side: active.display().to_string() }),
            Ok(id) if Some(id) == opened => Ok(FileCheck::InPlace),
            // Another file at the path.
            Ok(_) => self.divert(&w),
            // The side file deleted too: another side file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && diverted => self.divert(&w),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.restore(&w),
            Err(e) => Err(Error::ClickLogDeleted { path: active.display().to_string(), detail: format!("could not look at the path: {e}") }),
        }
    }

    /// Writes the open file's content back to the empty path and switches to it; diverts to
    /// a side file when another file appeared at the path meanwhile.
    fn restore(&self, w: &WriteState) -> Result<FileCheck> {
        let path = self.inner.path.clone();
        let shown = path.display().to_string();
        tracing::error!(path = %shown, "the click log file was deleted while in use; restoring it from the open file");
        match self.copy_and_switch(w, &path, Place::Link, None) {
            Ok(events) => {
                tracing::warn!(path = %shown, events, head = w.head, "click log file restored at its path from the open file; appends go to it");
                Ok(FileCheck::Restored { events })
            }
            Err(Switch::Taken) => self.divert(w),
            Err(Switch::Failed(detail)) => Err(match missing_dir(&path) {
                Some(dir) => Error::ClickLogDirRemoved { path: shown, dir },
                None => Error::ClickLogDeleted { path: shown, detail },
            }),
        }
    }

    /// Copies the open file's content to a new side file next to the path and switches to it
    /// (module docs: another file took the path).
    fn divert(&self, w: &WriteState) -> Result<FileCheck> {
        let home = self.inner.path.clone();
        let shown = home.display().to_string();
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let side = home.with_file_name(format!("{CLICK_LOG_FILE_NAME}.recovered-{stamp}"));
        tracing::error!(path = %shown, side = %side.display(), "the click log file was replaced by another file while in use; saving the open file to a side file");
        match self.copy_and_switch(w, &side, Place::Link, None) {
            Ok(events) => {
                let e = Error::ClickLogDiverted { path: shown, side: side.display().to_string() };
                tracing::error!(events, head = w.head, error = %e, "click log saved to a side file; appends go to it");
                Err(e)
            }
            Err(Switch::Taken) => Err(Error::ClickLogReplaced { path: shown, detail: format!("\"{}\" already exists", side.display()) }),
            Err(Switch::Failed(detail)) => Err(match missing_dir(&side) {
                Some(dir) => Error::ClickLogDirRemoved { path: shown, dir },
                None => Error::ClickLogReplaced { path: shown, detail },
            }),
        }
    }

    /// Copies the open database into a new file at `target` (through `<target>.restoring`),
    /// placed as `place` says, and switches the log to it; `verify`: the copy must hold every
    /// event of this offset range in unbroken chunks. Returns the events copied. `w` is the
    /// held write lock.
    pub(super) fn copy_and_switch(&self, w: &WriteState, target: &Path, place: Place, verify: Option<Range<u64>>) -> std::result::Result<u64, Switch> {
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| CLICK_LOG_FILE_NAME.to_owned());
        let tmp = target.with_file_name(format!("{name}.restoring"));
        let _ = std::fs::remove_file(&tmp);
        // Not through `with_db`: an I/O error of the copy (most often the target's: its
        // directory removed, a full disk) must not mark the open file for reopening, which
        // would close it — when its path is gone it is the only copy of the log. An error
        // reading the open file shows again at the next append, which marks it then.
        let copied = {
            let guard = self.inner.db.read().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some(old) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| copy_log(old, &tmp, verify.clone())))
                    .unwrap_or_else(|_| Err(Error::Corrupt("redb panicked while reading the open file".into()))),
                None => Err(self.closed_error(std::time::Duration::ZERO)),
            }
        };
        let events = match copied {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(Switch::Failed(format!("could not copy it to \"{}\": {}", tmp.display(), e.chain())));
            }
        };
        let placed = match place {
            Place::Link => std::fs::hard_link(&tmp, target),
            Place::Replace => std::fs::rename(&tmp, target),
        };
        let _ = std::fs::remove_file(&tmp);
        match placed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Switch::Taken),
            Err(e) => return Err(Switch::Failed(format!("could not put the copy at \"{}\": {e}", target.display()))),
        }
        if let Some(dir) = target.parent()
            && let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all())
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not sync the data dir after writing the click log back");
        }
        // Switch: close the old file, open the copy.
        let mut slot = self.inner.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take()
            && let Err(e) = old.close()
        {
            tracing::warn!(path = %self.inner.path.display(), error = %e, "click log: closing the old file failed");
        }
        *self.inner.active.lock().unwrap_or_else(|p| p.into_inner()) = target.to_path_buf();
        let opened = (self.inner.opener)(target, &self.inner.episode, &self.inner.watch.guard)
            .and_then(|db| check_format_and_init(&db, target).map(|(head, _, _)| (db, head)));
        match opened {
            Ok((db, head)) => {
                if head != w.head {
                    tracing::error!(path = %target.display(), head, expected = w.head, "the copied click log has another head than the log it was copied from");
                }
                *slot = Some(db);
                *self.inner.file_id.lock().unwrap_or_else(|p| p.into_inner()) = self.inner.watch.attach(target);
                Ok(events)
            }
            Err(e) => {
                // The content is safe at the target; the next operation retries the open.
                let detail = format!("the copy at \"{}\" could not be opened: {}", target.display(), e.chain());
                *self.inner.failure.lock().unwrap_or_else(|p| p.into_inner()) = detail.clone();
                self.inner.needs_reopen.store(true, std::sync::atomic::Ordering::Release);
                Err(Switch::Failed(detail))
            }
        }
    }
}

/// The side files `clicks.redb.recovered-<UTC time>` in `dir` (where a running log saved
/// the file it had open when another file took its path; `file_check.rs`), sorted by name
/// (oldest first); none when `dir` cannot be read. For messages that point at them: they
/// name only files that exist.
pub fn side_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let prefix = format!("{CLICK_LOG_FILE_NAME}.recovered-");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".restoring")))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Why [`ClickLog::copy_and_switch`] did not switch.
#[derive(Debug)]
pub(super) enum Switch {
    /// Another file appeared at the target ([`Place::Link`]).
    Taken,
    /// The copy, its placing or its opening failed (described).
    Failed(String),
}

impl std::fmt::Display for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Switch::Taken => f.write_str("another file appeared at the path meanwhile"),
            Switch::Failed(d) => f.write_str(d),
        }
    }
}

/// Copies every table of the log `old` into a new redb file at `to` (committed and synced),
/// returning the number of events copied. With `verify`, the chunks must parse and hold
/// every offset of that range without a gap (else [`Error::Corrupt`]).
fn copy_log(old: &Database, to: &Path, verify: Option<Range<u64>>) -> Result<u64> {
    fn err(e: impl Into<redb::Error>) -> Error {
        Error::click_log("copy the log", e)
    }
    let new = Database::builder().set_cache_size(CLICK_LOG_CACHE_BYTES).create(to).map_err(err)?;
    let r = old.begin_read().map_err(err)?;
    let chunks = r.open_table(CHUNKS).map_err(err)?;
    let mut entries = chunks.iter().map_err(err)?;
    let mut events = 0u64;
    // With `verify`: the offset the next chunk must start at (`None` before the first).
    let mut next: Option<u64> = None;
    loop {
        let txn = new.begin_write().map_err(err)?;
        let mut bytes = 0usize;
        let mut done = true;
        {
            let mut t = txn.open_table(CHUNKS).map_err(err)?;
            for entry in entries.by_ref() {
                let (k, v) = entry.map_err(err)?;
                if let Some(range) = &verify {
                    next = Some(verify_chunk(range, next, k.value(), v.value())?);
                }
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
    if let Some(range) = &verify {
        let end = next.unwrap_or(range.start);
        if end != range.end && !(next.is_none() && range.is_empty()) {
            return Err(Error::Corrupt(format!("the events at offsets {end}..{} are missing from the open file", range.end)));
        }
    }
    // Marks, arrival times and metadata last: `meta` (format, head, low, link store)
    // completes the copy.
    let txn = new.begin_write().map_err(err)?;
    {
        let mut marks = txn.open_table(BACKFILL).map_err(err)?;
        for entry in r.open_table(BACKFILL).map_err(err)?.iter().map_err(err)? {
            marks.insert(entry.map_err(err)?.0.value(), ()).map_err(err)?;
        }
        let mut arrivals = txn.open_table(ARRIVAL).map_err(err)?;
        match r.open_table(ARRIVAL) {
            Ok(table) => {
                for entry in table.iter().map_err(err)? {
                    let (k, v) = entry.map_err(err)?;
                    arrivals.insert(k.value(), v.value()).map_err(err)?;
                }
            }
            // A log opened by this build always has the table; nothing to copy otherwise.
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(err(e)),
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

/// Checks one copied chunk (key `key`) against the offsets `range` the copy must hold;
/// `next` is where it must start (`None`: the first chunk, which must start at or below
/// `range.start`). Returns where the next one must start.
fn verify_chunk(range: &Range<u64>, next: Option<u64>, key: u64, value: &[u8]) -> Result<u64> {
    let Some(chunk) = super::chunk::Chunk::parse(value) else {
        return Err(Error::Corrupt(format!("the chunk of events at offset {key} does not parse")));
    };
    match next {
        None if key > range.start => return Err(Error::Corrupt(format!("the events at offsets {}..{key} are missing from the open file", range.start))),
        Some(n) if key != n => return Err(Error::Corrupt(format!("the events at offsets {n}..{key} are missing from the open file"))),
        _ => {}
    }
    Ok(key + chunk.len() as u64)
}
