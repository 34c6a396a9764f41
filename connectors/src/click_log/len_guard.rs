//! Noticing a cut of `clicks.redb` that lands while a commit is being written (`damage.rs`).
//!
//! The log compares the file's length with the length it had after the latest commit. When
//! that length was sampled (with `fstat`) after the commit returned, a `truncate -s` between
//! the commit's last write and the sample was taken for the committed length and never
//! noticed; and a cut during a commit was covered again by the commit's own writes past the
//! new end (the file grows back, with a hole of zeros where committed pages were). Either
//! way the next start refused the file.
//!
//! So the log's file goes through [`GuardedBackend`], a storage backend around redb's own
//! [`FileBackend`] that knows the length redb left the file at ([`LenGuard`]: redb's
//! `set_len`s and writes past the end) without sampling it, and looks at the file's real
//! length before each write, `set_len` and sync (one `fstat` each): a file found shorter
//! than redb left it was cut from outside, and that stays recorded (until the next open),
//! also once later writes have made the file long again.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::StorageBackend;
use redb::backends::FileBackend;

/// What redb did to the length of the file it has open, shared by the log and the backend of
/// its current file.
#[derive(Debug)]
pub(super) struct LenGuard {
    /// Length in bytes redb left the file at; 0 while no [`GuardedBackend`] has a file open.
    expected: AtomicU64,
    /// `(expected, shortest length found)` once a look found the file shorter than
    /// `expected` (`expected` as of the first such look); `None` before.
    cut: std::sync::Mutex<Option<(u64, u64)>>,
}

impl Default for LenGuard {
    fn default() -> Self {
        Self { expected: AtomicU64::new(0), cut: std::sync::Mutex::new(None) }
    }
}

impl LenGuard {
    /// Starts watching a file just opened, `len` bytes long.
    fn arm(&self, len: u64) {
        self.expected.store(len, Ordering::Release);
        *self.cut.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Stops watching (the open failed: no file of this guard is open).
    pub(super) fn disarm(&self) {
        self.expected.store(0, Ordering::Release);
        *self.cut.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records a cut when the file is `now` bytes long, shorter than redb left it.
    fn look(&self, now: u64) {
        let expected = self.expected.load(Ordering::Acquire);
        if now < expected {
            let mut cut = self.cut.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *cut {
                Some((_, shortest)) => *shortest = (*shortest).min(now),
                None => *cut = Some((expected, now)),
            }
        }
    }

    /// `(length redb left the file at, length found)` when the file is cut: found shorter
    /// than redb left it by a write, `set_len` or sync, or now (`now`: its length now). `None`
    /// while not armed (then the log falls back to its own samples, `damage.rs`).
    pub(super) fn cut(&self, now: u64) -> Option<(u64, u64)> {
        self.look(now);
        *self.cut.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The range-lock methods of [`StorageBackend`], forwarded to the backend in the field
/// `$field` of a wrapper (a wrapper watches reads and writes; locks are redb's own business).
macro_rules! forward_range_locks {
    ($field:ident) => {
        fn try_lock_range(&self, start: std::ops::Bound<u64>, end: std::ops::Bound<u64>) -> std::result::Result<bool, redb::BackendError> {
            self.$field.try_lock_range(start, end)
        }
        fn try_lock_shared_range(&self, start: std::ops::Bound<u64>, end: std::ops::Bound<u64>) -> std::result::Result<bool, redb::BackendError> {
            self.$field.try_lock_shared_range(start, end)
        }
        fn lock_range(&self, start: std::ops::Bound<u64>, end: std::ops::Bound<u64>) -> std::result::Result<(), redb::BackendError> {
            self.$field.lock_range(start, end)
        }
        fn lock_shared_range(&self, start: std::ops::Bound<u64>, end: std::ops::Bound<u64>) -> std::result::Result<(), redb::BackendError> {
            self.$field.lock_shared_range(start, end)
        }
        fn unlock_range(&self, start: std::ops::Bound<u64>, end: std::ops::Bound<u64>) -> std::result::Result<(), redb::BackendError> {
            self.$field.unlock_range(start, end)
        }
        fn query_lock_range(&self, start: std::ops::Bound<u64>, end: std::ops::Bound<u64>) -> std::result::Result<bool, redb::BackendError> {
            self.$field.query_lock_range(start, end)
        }
    };
}
#[cfg(test)]
pub(super) use forward_range_locks;

/// redb's [`FileBackend`] that keeps a [`LenGuard`] up to date (module docs).
#[derive(Debug)]
pub(super) struct GuardedBackend {
    file: FileBackend,
    guard: Arc<LenGuard>,
}

impl GuardedBackend {
    /// Wraps `file` (opened for reading and writing) and arms `guard` with its length.
    ///
    /// Errors: redb's backend cannot be made of it, or its length cannot be read.
    pub(super) fn new(file: File, guard: Arc<LenGuard>) -> std::result::Result<Self, redb::DatabaseError> {
        let len = file.metadata().map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(e)))?.len();
        let file = FileBackend::new(file)?;
        guard.arm(len);
        Ok(Self { file, guard })
    }

    /// Looks at the file's length now (module docs); an error of the look is left to the
    /// operation that follows it.
    fn look(&self) {
        if let Ok(now) = self.file.len() {
            self.guard.look(now);
        }
    }
}

impl StorageBackend for GuardedBackend {
    fn len(&self) -> std::result::Result<u64, std::io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::result::Result<(), std::io::Error> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::result::Result<(), std::io::Error> {
        self.look();
        self.file.set_len(len)?;
        self.guard.expected.store(len, Ordering::Release);
        Ok(())
    }
    fn sync_data(&self) -> std::result::Result<(), std::io::Error> {
        self.look();
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), std::io::Error> {
        self.look();
        self.file.write(offset, data)?;
        self.guard.expected.fetch_max(offset + data.len() as u64, Ordering::AcqRel);
        Ok(())
    }
    fn close(&self) -> std::result::Result<(), std::io::Error> {
        self.file.close()
    }
    forward_range_locks!(file);
}
