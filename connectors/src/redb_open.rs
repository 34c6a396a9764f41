//! Opening an embedded redb file (`clicks.redb`, `anomalies.redb`, `jobs.redb`) with redb's
//! integrity check on, so that a damaged file is found at start-up, not on the first read of
//! a damaged page long after.
//!
//! [`open_checked`] turns on [`redb::Builder::set_check_integrity_on_open`]: the checksum of
//! every page of the committed trees is verified, which reads the whole file once. A file
//! that fails the check and that redb repairs (e.g. a torn last commit) opens, with a warning
//! naming the file; one redb cannot repair (truncated, overwritten) is reported as damaged,
//! and so is a panic inside redb while opening (redb may panic on some garbage).

use std::path::Path;

use redb::Database;

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
        builder
            .set_check_integrity_on_open(true)
            .set_repair_callback(move |_| tracing::warn!(path = %shown, "{what} failed its integrity check at open; redb is repairing it"))
            .create(path)
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
