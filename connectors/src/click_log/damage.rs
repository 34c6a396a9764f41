//! Noticing that `clicks.redb` shrank while the log has it open (truncated outside sluice,
//! e.g. `truncate -s 100000 clicks.redb`), and writing it back from the open file.
//!
//! A truncated file keeps working for a while: redb serves what it has cached, and its next
//! commits write pages past the new end, leaving a hole of zeros where committed pages were.
//! Nothing fails until the next start refuses the file as damaged. So the log keeps its own
//! descriptor of the open file ([`Watch`]) and knows the length redb left the file at (its
//! storage backend tracks redb's `set_len`s and writes, and notices a cut that lands while a
//! commit is written, even when the commit's writes make the file long again: `len_guard.rs`;
//! with another backend, the length sampled after every commit): a file shorter than that
//! was cut from outside. This is looked at before every append (before anything more is
//! written to the file), before reads, and by [`ClickLog::check_file`] (every 2 s from the
//! log writer, and once more at the graceful stop); each look is one `fstat`.
//!
//! What it does then: it copies the open database — redb still holds the pages it wrote or
//! read in its cache — into a new file, checks that the copy holds every event from
//! [`ClickLog::low`] to [`ClickLog::head`] in unbroken chunks, puts it at the file's path
//! (replacing the damaged file) and switches to it. Nothing is lost then. That works while
//! redb still has every page in its cache ([`super::CLICK_LOG_CACHE_BYTES`], least recently
//! used pages evicted): the pages this process wrote or read lately (in a small log this
//! process created, all of them).
//!
//! When a page is gone with the cut, the copy fails: redb reads it from the file, past its
//! new end ("failed to fill whole buffer"), and latches that I/O error, so the open file
//! takes no append any more. No process holds those events then, and none can be written
//! back. So that the clicks from then on are not dropped, the log moves the damaged file
//! aside (`clicks.redb.damaged-<UTC time>`, as `sluice log reset` does) and goes on in a
//! new, empty file at its path that continues at the head (same log id, offsets never
//! reused): appends go there and the running dataflow counts them, and the next start
//! continues from the checkpoint the graceful stop writes (which holds every click the
//! dataflow counted). The events the damaged file stored are gone from the log; this is
//! reported with [`Error::ClickLogContinued`] until the process stops (`/readyz` fails, the
//! graceful stop exits with an error after writing its checkpoint). Only when that new file
//! cannot be made either (a full disk) is it [`Error::ClickLogDamagedInUse`]: appends fail
//! then (dropped and counted, like on a full disk) and `sluice log reset` continues from the
//! graceful stop's checkpoint on a new log.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::file_check::FileCheck;
use super::len_guard::LenGuard;
use super::{
    ARRIVAL, BACKFILL, CHUNKS, CLICK_LOG_CACHE_BYTES, CLICK_LOG_FORMAT, ClickLog, META, META_FORMAT, META_HEAD, META_LOG_ID, META_LOW, WriteState, data_dir_of,
};
use crate::file_id::FileId;
use crate::{Error, Result};

/// Refuses a zero-length log file at `path` ([`crate::redb_open::EMPTY_FILE`]) for the
/// read-only reader, as [`crate::redb_open::open_checked`] refuses it for the writer's open
/// and reopen: the log cut to nothing, not a new log.
///
/// Errors: [`Error::ClickLogDamaged`] when `path` is an empty file.
pub(super) fn refuse_empty(path: &Path) -> Result<()> {
    if crate::redb_open::is_empty_file(path) {
        return Err(Error::ClickLogDamaged { path: path.display().to_string(), dir: data_dir_of(path), detail: crate::redb_open::EMPTY_FILE.into() });
    }
    Ok(())
}

/// Damage found while the file is open that could not be written back (module docs); kept
/// until the process stops.
#[derive(Debug, Clone)]
pub(super) enum Damage {
    /// No new file could be started either: appends fail ([`Error::ClickLogDamagedInUse`]).
    Lost {
        /// What was found and why nothing could be written back.
        detail: String,
    },
    /// The log goes on in a new file at the path ([`Error::ClickLogContinued`]).
    Continued {
        /// What was found and why it could not be written back.
        detail: String,
        /// Where the damaged file was moved.
        damaged: String,
        /// The lowest offset the damaged file stored.
        low: u64,
        /// The offset the new file continues at.
        offset: u64,
    },
}

/// The log's own descriptor of the open file and the file's length after the latest commit.
#[derive(Debug, Default)]
pub(super) struct Watch {
    file: Mutex<Option<File>>,
    /// Length in bytes after the latest commit (0 while unknown: then nothing is "shrunk").
    committed_len: AtomicU64,
    /// The length redb left the file at, and cuts seen while it wrote (`len_guard.rs`).
    pub(super) guard: Arc<LenGuard>,
}

impl Watch {
    /// Opens a descriptor of the file just opened at `path` and records its length; returns
    /// its device and inode (`None` when it could not be opened: the checks are off then).
    pub(super) fn attach(&self, path: &std::path::Path) -> Option<FileId> {
        let file = File::open(path).ok();
        let meta = file.as_ref().and_then(|f| f.metadata().ok());
        self.committed_len.store(meta.as_ref().map_or(0, std::fs::Metadata::len), Ordering::Release);
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
        meta.as_ref().map(crate::file_id::id_of)
    }

    /// The open file's length now (`None` when unknown).
    fn len(&self) -> Option<u64> {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len())
    }

    /// A path that opens the very file this watch has open, also after it was deleted or
    /// replaced at its path: Linux `/proc/self/fd/<n>` of the watch's descriptor (an open of
    /// it opens that file, with the access its permissions grant). `None` without a
    /// descriptor or `/proc`.
    #[cfg(target_os = "linux")]
    pub(super) fn reopen_path(&self) -> Option<std::path::PathBuf> {
        use std::os::fd::AsRawFd;
        let fd = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_ref()?.as_raw_fd();
        let path = std::path::PathBuf::from(format!("/proc/self/fd/{fd}"));
        path.exists().then_some(path)
    }

    /// Not on this platform (see the Linux version).
    #[cfg(not(target_os = "linux"))]
    pub(super) fn reopen_path(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Records the length after a commit (call with the log's write lock held).
    pub(super) fn note_commit(&self) {
        if let Some(len) = self.len() {
            self.committed_len.store(len, Ordering::Release);
        }
    }

    /// `(length after the latest commit, length now)` when the file is shorter than it was
    /// left by the latest commit; or, once the length guard saw the file cut (also during a
    /// commit, and also when the commit's writes made it long again), `(length redb left it
    /// at, shortest length found)`.
    pub(super) fn shrunk(&self) -> Option<(u64, u64)> {
        let now = self.len()?;
        if let Some(cut) = self.guard.cut(now) {
            return Some(cut);
        }
        let committed = self.committed_len.load(Ordering::Acquire);
        (now < committed).then_some((committed, now))
    }
}

impl ClickLog {
    /// Where the open file is linked now (the log's path, or the side file it moved to).
    pub(super) fn active_path(&self) -> std::path::PathBuf {
        self.inner.active.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The damage found while in use that could not be repaired, if any (module docs).
    pub(super) fn damage_error(&self) -> Option<Error> {
        let damage = self.inner.damage.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        let path = self.inner.path.display().to_string();
        Some(match damage {
            Damage::Lost { detail } => Error::ClickLogDamagedInUse { path, dir: data_dir_of(&self.inner.path), detail },
            Damage::Continued { detail, damaged, low, offset } => Error::ClickLogContinued { path, damaged, detail, low, offset },
        })
    }

    /// Whether the log found its file damaged while in use and could not write it back
    /// (module docs of `damage.rs`): [`Error::ClickLogContinued`] when it goes on in a new
    /// file (appends work), [`Error::ClickLogDamagedInUse`] when not even that could be
    /// made (the file will not open again); [`Self::check_file`] keeps failing with it.
    pub fn damaged(&self) -> Option<Error> {
        self.damage_error()
    }

    /// Writes the file back from the open database when it shrank since the latest commit
    /// (module docs); `w` is the held write lock. `Ok(None)`: it did not shrink.
    ///
    /// Errors with [`Error::ClickLogContinued`] when it shrank, could not be written back and
    /// the log goes on in a new file, or [`Error::ClickLogDamagedInUse`] when not even that
    /// could be made (recorded: every later check reports it).
    pub(super) fn repair_if_shrunk(&self, w: &WriteState) -> Result<Option<FileCheck>> {
        let prior = self.inner.damage.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let reported = |found: Option<FileCheck>| match self.damage_error() {
            Some(e) => Err(e),
            None => Ok(found),
        };
        if let Some(Damage::Lost { .. }) = prior {
            return reported(None);
        }
        // After a continuation the new file is watched like the first one: a second cut in
        // the same run is written back, or continued again, not left to the next start.
        let Some((committed, now)) = self.inner.watch.shrunk() else {
            return reported(None);
        };
        let path = self.active_path();
        tracing::error!(
            path = %path.display(),
            committed_bytes = committed,
            now_bytes = now,
            "the click log file shrank while in use (truncated outside sluice); writing it back from the open file"
        );
        let low = self.low();
        // Read before the copy, which may latch an I/O error on the open file.
        let link_store = self.cached_link_store_id();
        match self.copy_and_switch(w, &path, super::file_check::Place::Replace, Some(low..w.head)) {
            Ok(events) => {
                tracing::warn!(path = %path.display(), events, low, head = w.head, "click log written back from the open file after it was truncated; nothing was lost");
                reported(Some(FileCheck::Rewritten { events }))
            }
            Err(e) => {
                let mut detail =
                    format!("the file shrank from {committed} to {now} bytes, truncated outside sluice, and could not be written back from the open file: {e}");
                // A second continuation in one run: the message names both damaged files, and
                // the offsets lost are those of both.
                let low = match &prior {
                    Some(Damage::Continued { detail: was, damaged, low: was_low, offset }) => {
                        detail.push_str(&format!(
                            "; earlier in this run the file it continued from was damaged too (moved aside to \"{damaged}\", offsets {was_low}..{offset}: {was})"
                        ));
                        low.min(*was_low)
                    }
                    _ => low,
                };
                let damage = match self.continue_in_new_file(w, &path, link_store) {
                    Ok(damaged) => Damage::Continued { detail, damaged, low, offset: w.head },
                    Err(why) => Damage::Lost { detail: format!("{detail}; no new log could be started in its place either: {why}") },
                };
                *self.inner.damage.lock().unwrap_or_else(|p| p.into_inner()) = Some(damage);
                let e = self.damage_error().unwrap_or_else(|| Error::Corrupt("click log damaged while in use".into()));
                tracing::error!(error = %e, "click log damaged while in use");
                Err(e)
            }
        }
    }

    /// The link store id recorded in the open file, read without marking the log for
    /// reopening on an error (`None` then, or when none is recorded).
    fn cached_link_store_id(&self) -> Option<u64> {
        let guard = self.inner.db.read().unwrap_or_else(|p| p.into_inner());
        let txn = redb::ReadableDatabase::begin_read(guard.as_ref()?).ok()?;
        let meta = txn.open_table(META).ok()?;
        super::meta_get(&meta, super::link_store_id::META_LINK_STORE).ok()?
    }

    /// Moves the damaged file at `path` aside to `<name>.damaged-<UTC time>` and puts a new,
    /// empty log at `path` that continues at the head `w.head` (same log id; `link_store` as
    /// recorded), then switches to it (module docs). Returns where the damaged file went.
    ///
    /// Errors (described, for the message): the new file could not be written or placed;
    /// the damaged file is then left where it is, or, when only placing the new one failed,
    /// at the returned name mentioned in the error.
    fn continue_in_new_file(&self, w: &WriteState, path: &Path, link_store: Option<u64>) -> std::result::Result<String, String> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| super::CLICK_LOG_FILE_NAME.to_owned());
        let tmp = path.with_file_name(format!("{name}.restoring"));
        let _ = std::fs::remove_file(&tmp);
        if let Err(e) = empty_log_at(&tmp, w.head, self.inner.log_id, link_store) {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("could not create \"{}\": {}", tmp.display(), e.chain()));
        }
        let aside = match move_aside(path) {
            Ok(aside) => aside,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(format!("could not move it aside: {e}"));
            }
        };
        let placed = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        if let Err(e) = placed {
            return Err(format!("moved it aside to \"{}\" but could not put a new log at \"{}\": {e}", aside.display(), path.display()));
        }
        if let Some(dir) = path.parent()
            && let Err(e) = File::open(dir).and_then(|d| d.sync_all())
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not sync the data dir after starting a new click log");
        }
        // Switch: close the damaged file (its I/O error latched), open the new one.
        let mut slot = self.inner.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take()
            && let Err(e) = old.close()
        {
            tracing::debug!(path = %aside.display(), error = %e, "click log: closing the damaged file failed");
        }
        self.inner.low.store(w.head, Ordering::Release);
        *self.inner.active.lock().unwrap_or_else(|p| p.into_inner()) = path.to_path_buf();
        match (self.inner.opener)(path, &self.inner.episode, &self.inner.watch.guard).and_then(|db| super::check_format_and_init(&db, path).map(|_| db)) {
            Ok(db) => {
                *slot = Some(db);
                *self.inner.file_id.lock().unwrap_or_else(|p| p.into_inner()) = self.inner.watch.attach(path);
                self.inner.needs_reopen.store(false, Ordering::Release);
            }
            Err(e) => {
                // The new log is at the path; the next operation retries the open.
                *self.inner.failure.lock().unwrap_or_else(|p| p.into_inner()) =
                    format!("the new click log at \"{}\" could not be opened: {}", path.display(), e.chain());
                self.inner.needs_reopen.store(true, Ordering::Release);
            }
        }
        Ok(aside.display().to_string())
    }
}

/// Creates an empty click log at `to` (committed, synced and closed) that continues at
/// `offset`: its `head` and `low` are `offset`, its log id `log_id`, its link store id
/// `link_store` when known.
fn empty_log_at(to: &Path, offset: u64, log_id: u64, link_store: Option<u64>) -> Result<()> {
    fn err(e: impl Into<redb::Error>) -> Error {
        Error::click_log("start a new log", e)
    }
    let db = redb::Database::builder().set_cache_size(CLICK_LOG_CACHE_BYTES).create(to).map_err(err)?;
    let txn = db.begin_write().map_err(err)?;
    {
        txn.open_table(CHUNKS).map_err(err)?;
        txn.open_table(BACKFILL).map_err(err)?;
        txn.open_table(ARRIVAL).map_err(err)?;
        let mut meta = txn.open_table(META).map_err(err)?;
        meta.insert(META_FORMAT, CLICK_LOG_FORMAT).map_err(err)?;
        meta.insert(META_HEAD, offset).map_err(err)?;
        meta.insert(META_LOW, offset).map_err(err)?;
        meta.insert(META_LOG_ID, log_id).map_err(err)?;
        if let Some(id) = link_store {
            meta.insert(super::link_store_id::META_LINK_STORE, id).map_err(err)?;
        }
    }
    txn.commit().map_err(err)?;
    db.close().map_err(err)
}

/// Moves the damaged file at `path` to `<name>.damaged-<UTC time to the millisecond>` beside
/// it (e.g. `clicks.redb.damaged-2026-12-02T00:15:07.123Z`), never over an existing file
/// (attack of session 52: `sluice log reset` retried within the same second replaced its
/// first copy, the only one of the damaged log's clicks): a taken name gets `-2`, `-3`, …
/// Used by the running log and by `sluice log reset`. Returns the new path.
///
/// # Errors
/// The hard link or the removal of `path` failing (the message names both paths).
pub fn move_aside(path: &Path) -> std::result::Result<std::path::PathBuf, String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| super::CLICK_LOG_FILE_NAME.to_owned());
    let stamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let mut n = 1;
    loop {
        let suffix = if n == 1 { String::new() } else { format!("-{n}") };
        let aside = path.with_file_name(format!("{name}.damaged-{stamp}{suffix}"));
        // A hard link never replaces an existing file (rename would).
        match std::fs::hard_link(path, &aside) {
            Ok(()) => {
                return std::fs::remove_file(path)
                    .map(|()| aside.clone())
                    .map_err(|e| format!("linked \"{}\" to \"{}\" but could not remove it: {e}", path.display(), aside.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(format!("could not move \"{}\" aside to \"{}\": {e}", path.display(), aside.display())),
        }
    }
}
