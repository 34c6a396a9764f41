//! Opening an embedded redb file (`clicks.redb`, `anomalies.redb`, `jobs.redb`) with redb's
//! integrity check on, so that a damaged file is found at start-up, not on the first read of
//! a damaged page long after.
//!
//! [`open_checked`] turns on [`redb::Builder::set_check_integrity_on_open`]: the checksum of
//! every page of the committed trees is verified, which reads the whole file once. A file
//! that fails the check and that redb repairs (e.g. a torn last commit) opens, with a warning
//! naming the file; one redb cannot repair (truncated, overwritten) is reported as damaged,
//! and so is a panic inside redb while opening (redb may panic on some garbage).
//!
//! [`Error::open_failure`] tells why an open failed ([`OpenFailure`]), for messages that
//! must name the real cause (a file held by another process, a read-only file system).

use std::path::Path;

use redb::Database;

use crate::Error;

/// Opens (or creates) the redb file at `path` with the integrity check on (module docs).
/// `what` names the file in the repair warning (`"click log"`, `"anomaly store"`);
/// `cache_bytes` bounds redb's page cache (`None` = redb's default).
///
/// Errors: `damaged(detail)` when the file fails the check and cannot be repaired (`detail`
/// is redb's description), `other(e)` for every other failure (I/O, another process holds
/// the file).
pub fn open_checked<E>(
    path: &Path,
    what: &'static str,
    cache_bytes: Option<usize>,
    damaged: impl FnOnce(String) -> E,
    other: impl FnOnce(redb::DatabaseError) -> E,
) -> Result<Database, E> {
    let shown = path.display().to_string();
    let opened = std::panic::catch_unwind(|| {
        let mut builder = Database::builder();
        if let Some(bytes) = cache_bytes {
            builder.set_cache_size(bytes);
        }
        // With the check on, redb runs its repair procedure on every open of a committed file
        // and calls the callback at each stage (progress 0.0, 0.6, ...) whether or not anything
        // is wrong. Only the stage at progress 0.3 means damage: the newest commit failed its
        // checksums and redb falls back to the one before (redb 4.6 `Database::do_repair`).
        builder.set_check_integrity_on_open(true).set_repair_callback(move |session| {
            if is_fallback_stage(session.progress()) {
                tracing::warn!(path = %shown, "{what} failed its integrity check at open: its newest commit is damaged; redb is repairing it by falling back to the commit before");
            }
        });
        builder.create(path)
    });
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)))) => Err(damaged(detail)),
        Ok(Err(redb::DatabaseError::RepairAborted)) => Err(damaged("the repair was aborted".into())),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))) if e.kind() == std::io::ErrorKind::InvalidData => Err(damaged(e.to_string())),
        Ok(Err(e)) => Err(other(e)),
        Err(panic) => {
            let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string())).unwrap_or_default();
            Err(damaged(format!("redb panicked while opening it: {why}")))
        }
    }
}

/// Whether a repair callback at `progress` is redb's fallback from a damaged newest commit
/// (progress 0.3 in redb 4.6's `do_repair`; the routine stages are 0.0 and 0.6 onwards).
fn is_fallback_stage(progress: f64) -> bool {
    (0.25..0.35).contains(&progress)
}

/// Why opening an embedded redb store (click log, anomaly store) failed, as far as a caller
/// words its message differently ([`Error::open_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailure {
    /// Another process (or another handle in this one) has the file open: redb's lock is
    /// held (`DatabaseAlreadyOpen`, or a holder speaking another lock protocol).
    HeldByAnotherProcess,
    /// The file was not closed cleanly (the writer was killed) and redb must repair it
    /// before it can be read, which a read-only open cannot do.
    NeedsRepair,
    /// The file system is mounted read-only (`EROFS`).
    ReadOnlyFileSystem,
    /// The file or its directory may not be opened as asked (`EACCES`, `EPERM`: the owner
    /// or mode, or an immutable attribute).
    PermissionDenied,
    /// Anything else (the error's own message says what).
    Other,
}

impl Error {
    /// Classifies a failed open of the click log or the anomaly store ([`OpenFailure`]);
    /// every other error is [`OpenFailure::Other`].
    pub fn open_failure(&self) -> OpenFailure {
        let (Error::ClickLog { source, .. } | Error::AnomalyStore { source, .. }) = self else {
            return OpenFailure::Other;
        };
        match &**source {
            redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => OpenFailure::HeldByAnotherProcess,
            redb::Error::RepairAborted => OpenFailure::NeedsRepair,
            redb::Error::Io(e) => match e.kind() {
                std::io::ErrorKind::ReadOnlyFilesystem => OpenFailure::ReadOnlyFileSystem,
                std::io::ErrorKind::PermissionDenied => OpenFailure::PermissionDenied,
                _ => OpenFailure::Other,
            },
            _ => OpenFailure::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fallback_stage_is_damage() {
        assert!(is_fallback_stage(0.3));
        for p in [0.0, 0.6, 0.9, 1.0] {
            assert!(!is_fallback_stage(p), "{p}");
        }
    }

    /// A file written, closed cleanly and reopened passes the check without a repair
    /// warning (the stages redb reports on every checked open are not damage).
    #[test]
    fn a_clean_file_reopens_without_a_fallback_stage() {
        use std::sync::{Arc, Mutex};

        use redb::ReadableDatabase;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.redb");
        const T: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");
        {
            let db = open_checked(&path, "test file", None, |d| d, |e| e.to_string()).expect("open");
            let w = db.begin_write().expect("write");
            w.open_table(T).expect("table").insert(1, 2).expect("insert");
            w.commit().expect("commit");
        }
        let stages = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&stages);
        let db = Database::builder()
            .set_check_integrity_on_open(true)
            .set_repair_callback(move |s| seen.lock().expect("lock").push(s.progress()))
            .create(&path)
            .expect("reopen");
        let stages = stages.lock().expect("lock").clone();
        assert!(!stages.is_empty(), "redb reports its routine stages on a checked open");
        assert!(!stages.iter().any(|&p| is_fallback_stage(p)), "{stages:?}");
        let r = db.begin_read().expect("read");
        assert_eq!(r.open_table(T).expect("table").get(1).expect("get").map(|v| v.value()), Some(2));
    }
}
