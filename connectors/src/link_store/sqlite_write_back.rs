//! Writing `links.db` back to its path when it was deleted while the store has it open
//! (alone, or with its directory — `rm -rf` of the data dir — which exists again), the way
//! the click log writes `clicks.redb` back (`click_log` `file_check.rs`).
//!
//! SQLite keeps reading and writing the file it opened after it is unlinked: every link is
//! still there, but only this process can reach it, and it is lost when the process stops.
//! [`SqliteLinkStore::write_back_file`] (run at every periodic check of the file, every 2 s
//! in `sluice serve`, and once at a graceful stop):
//! 1. takes the single writer connection, so no write can begin until the switch is done;
//! 2. copies the open database with `VACUUM INTO '<dir>/.links.db.tmp-<pid>-<ns>'` on that
//!    connection (a consistent snapshot, WAL content included), fsyncs the copy;
//! 3. removes a `links.db-wal` / `links.db-shm` left at the path (they belong to the deleted
//!    file: SQLite would replay that WAL into the copy);
//! 4. links the copy to the path only while the path is still free (`link(2)` fails if a
//!    file is there: nothing anyone put there is overwritten), fsyncs the directory;
//! 5. opens new pools on the written-back file (integrity check, write probe, migrations:
//!    the same open as at start) and switches the store to them; a write that took the old
//!    writer connection after that begins again on the new pool (`begin_write`).
//!
//! The old pools are never closed: the last connection of a WAL database to close
//! checkpoints it and deletes `<path>-wal` and `<path>-shm` *by name* — the new file's. Their
//! connections (and the deleted file's disk space) are kept until the process ends.
//!
//! When the switch fails, the written-back file stays (every link in it) and changes stay
//! refused ([`Error::LinkStoreWrittenBack`]); the switch is tried again at the next call.

use std::path::Path;
use std::sync::Arc;

use super::SQLITE_FILE_NAME;
use super::sqlite::{Pools, SqliteLinkStore};
use crate::file_id::{FileId, file_id};
use crate::{Error, Result};

impl SqliteLinkStore {
    /// Writes the store's file back to its path when it was deleted while open and its
    /// directory exists (module docs), then goes on in the written-back file. Returns the
    /// path written back to (or switched to, after an earlier failed switch); `None` when
    /// there was nothing to do: the file is where it was, its directory is missing, the path
    /// holds another file (a replacement is left alone), or the store was opened without a
    /// file id (not checked).
    ///
    /// Errors: [`Error::LinkStoreWriteBack`] when the copy, the fsyncs or the link failed
    /// (the temporary file is removed; tried again at the next call). A failed switch is no
    /// error here: [`Self::check_file`] reports it ([`Error::LinkStoreWrittenBack`]).
    pub async fn write_back_file(&self) -> Result<Option<String>> {
        let _serial = self.write_back.lock().await;
        let pools = self.pools();
        let Some(opened) = pools.file_id else { return Ok(None) };
        let path = self.path().to_path_buf();
        let shown = path.display().to_string();
        if let Some((copy, _)) = &pools.written_back
            && file_id(&path).ok() == Some(*copy)
        {
            // Written back earlier, but the switch failed: try it again.
            let conn = pools.writer.acquire().await?;
            self.switch(&pools, conn, opened, *copy).await;
            return Ok(Some(shown));
        }
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Ours, or another file (reported by `check_file`), or not to be looked at.
            _ => return Ok(None),
        }
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        if !dir.is_dir() {
            return Ok(None);
        }
        // Every write waits from here: the writer pool has exactly one connection.
        let mut conn = pools.writer.acquire().await?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let tmp = dir.join(format!(".{SQLITE_FILE_NAME}.tmp-{}-{nanos}", std::process::id()));
        let failed = |detail: String| Error::LinkStoreWriteBack { path: shown.clone(), detail };
        let tmp_text = tmp.to_str().ok_or_else(|| failed(format!("the temporary path \"{}\" is not UTF-8", tmp.display())))?.to_owned();
        let copied = sqlx::query("VACUUM INTO ?1").bind(&tmp_text).execute(&mut *conn).await;
        let placed = match copied {
            Err(e) => Err(format!("copying the open file (VACUUM INTO \"{tmp_text}\") failed: {e}")),
            Ok(_) => place(&tmp, &path, &dir),
        };
        remove_tmp(&tmp);
        let copy = match placed {
            Ok(Some(copy)) => copy,
            // Another file appeared at the path meanwhile: left alone (`check_file` says so).
            Ok(None) => return Ok(None),
            Err(detail) => return Err(failed(detail)),
        };
        tracing::warn!(path = %shown, "the link store's file was deleted while in use; written back to its path from the open file (every link kept)");
        self.switch(&pools, conn, opened, copy).await;
        Ok(Some(shown))
    }

    /// Opens new pools on the written-back file `copy` at the path and switches to them
    /// before `conn` (the old writer pool's only connection, held so far) is released; the
    /// old pools are kept open until the process ends (module docs). When the file cannot be opened, keeps the old pools with the failure
    /// recorded (changes stay refused, the switch is tried again).
    async fn switch(&self, old: &Arc<Pools>, conn: sqlx::pool::PoolConnection<sqlx::Sqlite>, opened: FileId, copy: FileId) {
        let shown = self.path().display().to_string();
        let reopened = SqliteLinkStore::open_with_options_after(self.opts.clone(), None).await;
        let new = match reopened {
            Ok(new) => new.pools(),
            Err(e) => {
                let detail = format!("opening it failed: {}", e.chain());
                tracing::error!(path = %shown, error = %detail, "the link store's file was written back, but sluice could not switch to it; changes stay refused until a restart");
                let kept = Pools { writer: old.writer.clone(), reader: old.reader.clone(), file_id: Some(opened), written_back: Some((copy, detail)) };
                self.pools.store(Arc::new(kept));
                drop(conn);
                return;
            }
        };
        if new.file_id != Some(copy) {
            tracing::warn!(path = %shown, "the file at the link store's path changed while it was being reopened; the next check reports it");
        }
        let fresh = Pools { writer: new.writer.clone(), reader: new.reader.clone(), file_id: new.file_id, written_back: None };
        let retired = self.pools.swap(Arc::new(fresh));
        drop(conn);
        // Never closed, never dropped (module docs): closing their last connection would
        // delete the new file's `-wal` and `-shm`.
        std::mem::forget(retired);
        tracing::info!(path = %shown, "the link store goes on in the written-back file: changes work again");
    }
}

/// fsyncs the copy `tmp`, removes the deleted file's `-wal` and `-shm` left at `path`, links
/// `tmp` to `path` if nothing is there, and fsyncs `dir`. Returns the copy's device and
/// inode, or `None` when another file took the path first.
///
/// Errors: what failed, with its I/O error.
fn place(tmp: &Path, path: &Path, dir: &Path) -> std::result::Result<Option<FileId>, String> {
    let synced = std::fs::File::open(tmp).and_then(|f| f.sync_all());
    synced.map_err(|e| format!("could not fsync the copy \"{}\": {e}", tmp.display()))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("could not remove the deleted file's \"{}\": {e}", Path::new(&side).display())),
        }
    }
    match std::fs::hard_link(tmp, path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(format!("could not link the copy to the path: {e}")),
    }
    let synced = std::fs::File::open(dir).and_then(|d| d.sync_all());
    synced.map_err(|e| format!("could not fsync the directory \"{}\": {e}", dir.display()))?;
    file_id(path).map(Some).map_err(|e| format!("the written-back file is gone again: {e}"))
}

/// Removes the temporary copy and any side file SQLite left beside it.
fn remove_tmp(tmp: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut p = tmp.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
}

#[cfg(test)]
#[path = "sqlite_write_back_tests.rs"]
mod tests;
