//! Noticing that `clicks.redb` shrank while the log has it open (truncated outside sluice,
//! e.g. `truncate -s 100000 clicks.redb`), and writing it back from the open file.
//!
//! A truncated file keeps working for a while: redb serves what it has cached, and its next
//! commits write pages past the new end, leaving a hole of zeros where committed pages were.
//! Nothing fails until the next start refuses the file as damaged. So the log keeps its own
//! descriptor of the open file ([`Watch`]) and its length after every commit (redb grows and
//! shrinks the file only inside a commit, which runs under the log's write lock): a file
//! shorter than that was cut from outside. This is looked at before every append (before
//! anything more is written to the file), before reads, and by [`ClickLog::check_file`]
//! (every 2 s from the log writer); each look is one `fstat`.
//!
//! What it does then: it copies the open database — redb still holds the pages it wrote or
//! read in its cache — into a new file, checks that the copy holds every event from
//! [`ClickLog::low`] to [`ClickLog::head`] in unbroken chunks, puts it at the file's path
//! (replacing the damaged file) and switches to it. Nothing is lost then. That works while
//! redb still has every page in its cache: the pages this process wrote or read (in a log
//! this process created, all of them). When a page is gone with the cut (the copy fails, or
//! comes out incomplete), the damage is reported with [`Error::ClickLogDamagedInUse`] until
//! the process stops: `/readyz` fails, `sluice serve`'s graceful stop exits with an error
//! after writing its checkpoint (which holds every click the dataflow counted), and
//! `sluice log reset` continues from that checkpoint on a new log. A failed read latches
//! redb's I/O error, so appends fail from then on (dropped and counted, like on a full disk).

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::file_check::FileCheck;
use super::{ClickLog, WriteState, data_dir_of};
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

/// The log's own descriptor of the open file and the file's length after the latest commit.
#[derive(Debug, Default)]
pub(super) struct Watch {
    file: Mutex<Option<File>>,
    /// Length in bytes after the latest commit (0 while unknown: then nothing is "shrunk").
    committed_len: AtomicU64,
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
    /// left by the latest commit.
    pub(super) fn shrunk(&self) -> Option<(u64, u64)> {
        let committed = self.committed_len.load(Ordering::Acquire);
        let now = self.len()?;
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
        let detail = self.inner.damage.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        Some(Error::ClickLogDamagedInUse { path: self.inner.path.display().to_string(), dir: data_dir_of(&self.inner.path), detail })
    }

    /// Whether the log found its file damaged while in use and could not write it back
    /// (module docs of `damage.rs`): then the file will not open again, and
    /// [`Self::check_file`] keeps failing with [`Error::ClickLogDamagedInUse`].
    pub fn damaged(&self) -> Option<Error> {
        self.damage_error()
    }

    /// Writes the file back from the open database when it shrank since the latest commit
    /// (module docs); `w` is the held write lock. `Ok(None)`: it did not shrink.
    ///
    /// Errors with [`Error::ClickLogDamagedInUse`] when it shrank and could not be written
    /// back (recorded: every later check reports it).
    pub(super) fn repair_if_shrunk(&self, w: &WriteState) -> Result<Option<FileCheck>> {
        if let Some(e) = self.damage_error() {
            return Err(e);
        }
        let Some((committed, now)) = self.inner.watch.shrunk() else {
            return Ok(None);
        };
        let path = self.active_path();
        tracing::error!(
            path = %path.display(),
            committed_bytes = committed,
            now_bytes = now,
            "the click log file shrank while in use (truncated outside sluice); writing it back from the open file"
        );
        let low = self.low();
        match self.copy_and_switch(w, &path, super::file_check::Place::Replace, Some(low..w.head)) {
            Ok(events) => {
                tracing::warn!(path = %path.display(), events, low, head = w.head, "click log written back from the open file after it was truncated; nothing was lost");
                Ok(Some(FileCheck::Rewritten { events }))
            }
            Err(e) => {
                let detail =
                    format!("the file shrank from {committed} to {now} bytes, truncated outside sluice, and could not be written back from the open file: {e}");
                *self.inner.damage.lock().unwrap_or_else(|p| p.into_inner()) = Some(detail.clone());
                let e = self.damage_error().unwrap_or(Error::Corrupt(detail));
                tracing::error!(error = %e, "click log damaged while in use");
                Err(e)
            }
        }
    }
}
