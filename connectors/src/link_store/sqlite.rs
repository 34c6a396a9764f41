//! The embedded default link store: one SQLite file (`links.db` in `--data-dir`) in WAL mode.
//!
//! Writes go through a pool of exactly one connection, so SQLite never answers "database is
//! locked" between our own writers and writes are serialized in commit order; reads use a
//! separate pool and, thanks to WAL, never wait for the writer. Commits use
//! `synchronous=FULL`: a link the API acknowledged survives a power cut.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_schemas::{Link, RedirectType};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use super::admin_sqlite::record_owner_enabled;
use super::common::{
    IDEMPOTENCY_TTL, TOMBSTONE_PERIOD, apply_patch, check_limit, check_patch, check_text, check_time, from_us, link_from_json, link_json, prepare_insert,
    same_content, trunc_us,
};
use super::sqlite_header::CheckedStoreFile;
use super::store_shared::link_store;
use super::{IdempotencyRecord, LinkChange, LinkPatch, LinkStore, ListQuery, UpdateOutcome};
use crate::file_id::file_id;
use crate::{Error, Result};

/// File name of the link store inside the data directory.
pub const SQLITE_FILE_NAME: &str = "links.db";

/// Free space (bytes) below which [`SqliteLinkStore::check_file`] — and so `/readyz` —
/// reports the link store's file system as full: 1 MiB, a few hundred link rows with their
/// index pages and WAL frames.
pub const MIN_FREE_BYTES: u64 = 1 << 20;

/// Migrations for the SQLite schema (`connectors/migrations/sqlite/`).
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The live link with code `?1`.
const SELECT_LIVE: &str = "SELECT seq, code, long_url, domain, expires_at_us, enabled, tags, redirect_type, org, \
                           created_at_us, updated_at_us, version FROM links WHERE code = ?1 AND deleted_at_us IS NULL";
const DELETE_TOMBSTONE: &str = "DELETE FROM links WHERE code = ?1 AND deleted_at_us IS NOT NULL AND deleted_at_us <= ?2";
const INSERT_LINK: &str = "INSERT INTO links (seq, code, long_url, domain, expires_at_us, enabled, tags, redirect_type, org, \
                           created_at_us, updated_at_us, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                           ON CONFLICT (code) DO NOTHING";
const UPDATE_LINK: &str = "UPDATE links SET long_url = ?1, expires_at_us = ?2, enabled = ?3, tags = ?4, redirect_type = ?5, \
                           updated_at_us = ?6, version = ?7, org = ?9 WHERE seq = ?8";
const DELETE_LINK: &str = "UPDATE links SET deleted_at_us = ?1 WHERE seq = ?2";
const LIST_LINKS: &str = "SELECT l.seq, l.code, l.long_url, l.domain, l.expires_at_us, l.enabled, l.tags, l.redirect_type, \
                          l.org, l.created_at_us, l.updated_at_us, l.version FROM links l \
                          WHERE l.deleted_at_us IS NULL AND l.seq > ?1 \
                          AND (?2 IS NULL OR l.enabled = ?2) \
                          AND (?3 IS NULL OR EXISTS (SELECT 1 FROM link_tags t WHERE t.tag = ?3 AND t.link_seq = l.seq)) \
                          AND (?5 IS NULL OR l.org = ?5) \
                          ORDER BY l.seq LIMIT ?4";
const CHANGES_SINCE: &str = "SELECT change_seq, code, link FROM link_changes WHERE change_seq > ?1 ORDER BY change_seq LIMIT ?2";
const INSERT_CHANGE: &str = "INSERT INTO link_changes (change_seq, code, link) VALUES (?1, ?2, ?3)";
const IDEMPOTENCY_GET: &str = "SELECT key, request_hash, status, body, created_at_us FROM idempotency WHERE key = ?1 AND created_at_us > ?2";
const IDEMPOTENCY_PUT: &str = "INSERT INTO idempotency (key, request_hash, status, body, created_at_us) VALUES (?1, ?2, ?3, ?4, ?5) \
                               ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status, \
                               body = excluded.body, created_at_us = excluded.created_at_us WHERE idempotency.created_at_us <= ?6";
const IDEMPOTENCY_PURGE: &str = "DELETE FROM idempotency WHERE created_at_us <= ?1";

const SELECT_STORE_ID: &str = "SELECT value FROM store_meta WHERE key = 'store_id'";
const SELECT_RETIRED: &str = "SELECT code FROM retired_codes WHERE code = ?1";
const RETIRE_CODE: &str = "INSERT INTO retired_codes (code) VALUES (?1) ON CONFLICT (code) DO NOTHING";
const SET_EPOCH: &str = "INSERT INTO store_meta (key, value) VALUES ('epoch', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const SELECT_CODE_KNOWN: &str = "SELECT code FROM links WHERE code = ?1 UNION ALL SELECT code FROM retired_codes WHERE code = ?1";
/// The live links' codes among the JSON array of strings `?1` (`json_each`, SQLite's JSON
/// functions, built in since 3.38).
const SELECT_LIVE_CODES: &str = "SELECT l.code FROM json_each(?1) AS j JOIN links AS l ON l.code = j.value WHERE l.deleted_at_us IS NULL";

/// Instant column of idempotency records, holds and blocklist entries.
pub(super) const CREATED_AT_COL: &str = "created_at_us";

pub(super) type Tx = Transaction<'static, Sqlite>;
pub(super) type DbRow = SqliteRow;
type StatusInt = i64;

/// SQLite implementation of [`LinkStore`].
///
/// Clones share one state: the pools in use, switched to new ones on the written-back file
/// when the file was deleted while open ([`Self::write_back_file`]).
#[derive(Debug, Clone)]
pub struct SqliteLinkStore {
    pub(super) pools: Arc<ArcSwap<Pools>>,
    path: PathBuf,
    /// The options the store was opened with (to open the written-back file the same way).
    pub(super) opts: SqliteConnectOptions,
    /// Serializes write-backs (the periodic check and the stop's last look).
    pub(super) write_back: Arc<tokio::sync::Mutex<()>>,
}

/// The connections of a [`SqliteLinkStore`] and the file they have open.
#[derive(Debug)]
pub(super) struct Pools {
    /// Exactly one connection: every write transaction.
    pub(super) writer: SqlitePool,
    /// Reads (never wait for the writer, thanks to WAL).
    pub(super) reader: SqlitePool,
    /// Device and inode of the file opened (`None` if it could not be read then: not checked).
    pub(super) file_id: Option<(u64, u64)>,
    /// Set when the file was written back to the path (device and inode of the copy) but the
    /// store could not switch to it (why): changes stay refused, the switch is tried again.
    pub(super) written_back: Option<((u64, u64), String)>,
}

impl SqliteLinkStore {
    /// Opens (creating if missing) `links.db` inside `data_dir` (created too if missing) and
    /// applies pending migrations.
    ///
    /// Errors: [`Error::Config`] if the directory cannot be created, [`Error::Database`] /
    /// [`Error::Migrate`] if the file cannot be opened or migrated.
    pub async fn open_dir(data_dir: &Path) -> Result<Self> {
        Self::open_dir_after(data_dir, None).await
    }

    /// Opens (creating if missing) the SQLite database file at `path` and applies pending
    /// migrations. The parent directory must exist.
    pub async fn open_file(path: &Path) -> Result<Self> {
        Self::open_with_options(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens from a `sqlite:` URL (e.g. `sqlite:///var/lib/sluice/links.db` or
    /// `sqlite://data/links.db`); see [`SqliteConnectOptions`] for the accepted forms.
    pub async fn open_url(url: &str) -> Result<Self> {
        Self::open_url_after(url, None).await
    }

    /// Opens with explicit connection options (the file name must be set); WAL, `FULL`
    /// synchronous commits, foreign keys and a 10 s busy timeout are always applied.
    ///
    /// The file is checked before use with `PRAGMA quick_check` (reads the whole file once;
    /// checks page structure, not that indexes match their tables): a damaged file (bytes
    /// overwritten, truncated, not a database) is refused with [`Error::StoreDamaged`] naming
    /// it and what to do, instead of failing requests with 500s later.
    pub async fn open_with_options(opts: SqliteConnectOptions) -> Result<Self> {
        Self::open_with_options_after(opts, None).await
    }

    /// [`Self::open_dir`], without running `PRAGMA quick_check` again when `checked` (the
    /// check of [`super::StoreTarget::check_existing_file`]) saw the file as it is now.
    pub(super) async fn open_dir_after(data_dir: &Path, checked: Option<&CheckedStoreFile>) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| Error::Config(format!("could not create data dir \"{}\": {e}", data_dir.display())))?;
        Self::open_with_options_after(SqliteConnectOptions::new().filename(data_dir.join(SQLITE_FILE_NAME)), checked).await
    }

    /// [`Self::open_url`], with `checked` as in [`Self::open_dir_after`].
    pub(super) async fn open_url_after(url: &str, checked: Option<&CheckedStoreFile>) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?;
        if let Some(parent) = opts.get_filename().parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::Config(format!("could not create directory \"{}\": {e}", parent.display())))?;
        }
        Self::open_with_options_after(opts, checked).await
    }

    /// [`Self::open_with_options`]; the integrity check is skipped when `checked` saw this
    /// very file unchanged since (same file, length and modification times, its `-wal` too).
    pub(super) async fn open_with_options_after(opts: SqliteConnectOptions, checked: Option<&CheckedStoreFile>) -> Result<Self> {
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let path = opts.get_filename().to_path_buf();
        // Two processes opening one database at once (`sluice serve --role redirect` and
        // `--role api` on one data dir) race in SQLite itself, not only in the migrations:
        // concurrent `PRAGMA journal_mode = WAL` on connect fails at once with "database is
        // locked" (SQLITE_BUSY, the busy timeout is not consulted for it), and sqlx takes no
        // lock for SQLite migrations (both would apply migration 1, the second failing with
        // "table ... already exists"). An exclusive flock on the database's directory, held
        // from the first connection until every pool is open, serializes whole opens; the
        // later one finds everything applied. (Not on the database file: closing any
        // descriptor of it would drop SQLite's own POSIX locks of this process.)
        let guard = lock_dir_of(&path).await?;
        // A file SQLite would take for a new database although it is there (0 bytes).
        super::sqlite_header::check_header(&path)?;
        // Looked at before any connection of ours touches the file (or creates its `-wal`).
        let checked_unchanged = checked.is_some_and(|c| c.is_current(&path));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.clone())
            .await
            .map_err(|e| open_error(&path, e))?;
        if checked_unchanged {
            tracing::debug!(path = %path.display(), "link store checked (PRAGMA quick_check) before the click log was opened and unchanged since");
        } else {
            check_integrity(&writer, &path).await?;
        }
        check_writable(&writer, &path).await?;
        MIGRATOR.run(&writer).await?;
        // Readers are opened once and kept (no idle timeout, no lifetime), like the writer: a
        // connection opened later would not find a deleted `links.db`, while open ones keep
        // reading the file the store opened (`check_file`).
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(4)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone().create_if_missing(false))
            .await
            .map_err(|e| open_error(&path, e))?;
        drop(guard);
        // A written-back file is opened with these: never created empty if it is gone again.
        let opts = opts.create_if_missing(false);
        // The file the writer opened is at the path now: it was created or checked above.
        let file_id = file_id(&path).ok();
        tracing::debug!(path = %path.display(), "sqlite link store open");
        let pools = Pools { writer, reader, file_id, written_back: None };
        Ok(Self { pools: Arc::new(ArcSwap::from_pointee(pools)), path, opts, write_back: Arc::default() })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file at [`Self::path`] is still the one the store opened (same device and
    /// inode; one `stat`) and still writable, with its `-wal` file if there is one (`access(2)`
    /// with `W_OK`: a file system remounted read-only, a file made immutable or handed to
    /// another user while sluice runs). Nothing is repaired: SQLite keeps using the file it
    /// opened. The file is never opened here (closing a second descriptor of a SQLite file
    /// would drop the process's POSIX locks on it).
    ///
    /// Errors: [`Error::LinkStoreFileMoved`] when the path is empty (deleted or renamed: the
    /// two look alike from the path) or holds another file (replaced); a path that cannot be
    /// looked at for another reason counts as deleted or moved away.
    /// [`Error::LinkStoreNotWritable`] when the file or its `-wal` file cannot be written
    /// (every create, edit and delete would fail). [`Error::LinkStoreLowOnSpace`] when the
    /// file system holding the file has less than [`MIN_FREE_BYTES`] free for this user
    /// (`statvfs(3)`: `f_bavail`, or `f_bfree` for root, times `f_frsize`): the file cannot
    /// grow, so creates fail while edits may still fit in free pages. Writes themselves do not
    /// check the space ([`Self::check_file_for_writes`]): SQLite reports a full disk itself
    /// (SQLITE_FULL, retryable), and a write that fits must not be refused.
    pub fn check_file(&self) -> Result<()> {
        self.check_file_for_writes()?;
        self.check_free_space(MIN_FREE_BYTES)
    }

    /// [`Self::check_file`] without the free-space check: the same file, still writable.
    /// Run before every write transaction.
    ///
    /// Errors: [`Error::LinkStoreFileMoved`], [`Error::LinkStoreNotWritable`].
    pub fn check_file_for_writes(&self) -> Result<()> {
        let pools = self.pools.load();
        let Some(opened) = pools.file_id else { return Ok(()) };
        let path = self.path.display().to_string();
        let (what, advice) = match file_id(&self.path) {
            Ok(id) if id == opened => return self.check_writable_now(),
            Ok(id) if pools.written_back.as_ref().is_some_and(|(copy, _)| *copy == id) => {
                let detail = pools.written_back.as_ref().map(|(_, why)| why.clone()).unwrap_or_default();
                return Err(Error::LinkStoreWrittenBack { path, detail });
            }
            Ok(_) => (
                "replaced by another file",
                "stop sluice, put the file you want at that path (e.g. from a backup), remove the -wal and -shm files beside it, and start \
                 sluice again"
                    .to_owned(),
            ),
            Err(_) => {
                let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let advice = format!(
                    "sluice writes the links back to \"{path}\" from the open file within seconds once its directory exists and nothing \
                     else is at that path (after `rm -rf` of the data dir: `mkdir -p {}`), and changes work again; if sluice stops \
                     before, every link is lost with it",
                    dir.display()
                );
                ("deleted or moved away", advice)
            }
        };
        Err(Error::LinkStoreFileMoved { path, what, advice })
    }

    /// The pools in use now (switched by [`Self::write_back_file`]).
    pub(super) fn pools(&self) -> Arc<Pools> {
        self.pools.load_full()
    }

    /// [`Self::check_file`]'s write-access half.
    fn check_writable_now(&self) -> Result<()> {
        use rustix::fs::{Access, access};
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        for (file, what) in [(self.path.as_path(), "the file"), (wal.as_path(), "its -wal file")] {
            match access(file, Access::WRITE_OK) {
                Ok(()) => {}
                // No -wal file (between checkpoints of a closed writer): nothing to write yet.
                Err(rustix::io::Errno::NOENT) if file == wal.as_path() => {}
                Err(e) => {
                    return Err(Error::LinkStoreNotWritable { path: self.path.display().to_string(), detail: format!("{what}: {}", std::io::Error::from(e)) });
                }
            }
        }
        Ok(())
    }

    /// [`Self::check_file`]'s free-space half, with the threshold `min_free` in bytes. A file
    /// system that cannot be asked (the directory is gone) passes: the other checks report
    /// that.
    ///
    /// Errors: [`Error::LinkStoreLowOnSpace`] below `min_free`.
    pub(crate) fn check_free_space(&self, min_free: u64) -> Result<()> {
        let Some(free_bytes) = free_bytes_beside(&self.path) else { return Ok(()) };
        if free_bytes < min_free {
            return Err(Error::LinkStoreLowOnSpace { path: self.path.display().to_string(), free_bytes, min_bytes: min_free });
        }
        Ok(())
    }

    pub(crate) fn writer_pool(&self) -> SqlitePool {
        self.pools.load().writer.clone()
    }

    /// Closes both pools, waiting for connections to finish (checkpoints the WAL).
    pub async fn close(&self) {
        let pools = self.pools();
        pools.reader.close().await;
        pools.writer.close().await;
    }
}

/// What starting without a damaged `links.db` loses ([`Error::StoreDamaged`]).
pub(super) const LINK_STORE_LOSES: &str = "every link in it is lost (the next `sluice serve` retires the codes that have clicks in the click log, so \
                                no new link inherits them; `sqlite3 links.db .recover` may salvage rows from the damaged file)";

/// Whether `e` is SQLite reporting a damaged file: `SQLITE_CORRUPT` (11) or `SQLITE_NOTADB`
/// (26), or one of their extended codes.
fn is_damage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| matches!(c & 0xff, 11 | 26)),
        _ => false,
    }
}

/// An error opening or first reading the file at `path`: [`Error::StoreDamaged`] when SQLite
/// says the file is damaged, [`Error::StoreReadOnly`] when it may only read it
/// (`SQLITE_READONLY`, 8), [`Error::StoreOpen`] otherwise (naming the file, and what it is
/// when it is no regular file: a FIFO makes SQLite report only "disk I/O error").
pub(super) fn open_error(path: &Path, e: sqlx::Error) -> Error {
    let code = match &e {
        sqlx::Error::Database(db) => db.code().and_then(|c| c.parse::<i64>().ok()),
        _ => None,
    };
    if is_damage(&e) {
        Error::StoreDamaged { store: "link store", path: path.display().to_string(), detail: e.to_string(), loses: LINK_STORE_LOSES }
    } else if let (Some(c), sqlx::Error::Database(db)) = (code, &e)
        && c & 0xff == 8
    {
        Error::StoreReadOnly { path: path.display().to_string(), detail: db.message().to_string() }
    } else {
        let what = match std::fs::metadata(path).ok().and_then(|m| not_a_file(&m.file_type())) {
            Some(w) => format!(" ({w}, not a regular file)"),
            // A full disk shows as an I/O error (e.g. SQLITE_IOERR_SHMSIZE when the -shm file
            // cannot grow), which does not say why.
            None => match free_bytes_beside(path) {
                Some(free) if free < MIN_FREE_BYTES => format!(" (its file system has only {free} bytes free: is the disk full?)"),
                _ => String::new(),
            },
        };
        Error::StoreOpen { path: path.display().to_string(), what, error: e }
    }
}

/// Bytes free for this user on the file system holding `file` (`statvfs(3)`: `f_bavail`, or
/// `f_bfree` for root, times `f_frsize`); `None` when it cannot be asked (the directory is
/// gone).
fn free_bytes_beside(file: &Path) -> Option<u64> {
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let fs = rustix::fs::statvfs(dir).ok()?;
    let blocks = if rustix::process::geteuid().is_root() { fs.f_bfree } else { fs.f_bavail };
    Some(blocks.saturating_mul(fs.f_frsize))
}

/// What a file type that is no regular file is, for messages (`"a FIFO (named pipe)"`,
/// `"a directory"`, ...); `None` for a regular file.
fn not_a_file(t: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_block_device() || t.is_char_device() {
        Some("a device")
    } else {
        Some("no regular file")
    }
}

/// Runs `PRAGMA quick_check` on the file at `path` (through `db`, a pool or a connection). Errors:
/// [`Error::StoreDamaged`] with SQLite's first findings when the check fails,
/// [`Error::Database`] when it cannot run.
pub(super) async fn check_integrity<'c>(db: impl sqlx::SqliteExecutor<'c>, path: &Path) -> Result<()> {
    let found: Vec<String> = sqlx::query_scalar("PRAGMA quick_check(5)").fetch_all(db).await.map_err(|e| open_error(path, e))?;
    if found.len() == 1 && found[0] == "ok" {
        return Ok(());
    }
    Err(Error::StoreDamaged {
        store: "link store",
        path: path.display().to_string(),
        detail: format!("PRAGMA quick_check found: {}", found.join("; ")),
        loses: LINK_STORE_LOSES,
    })
}

/// Refuses a file SQLite could open only for reading ([`Error::StoreReadOnly`]): SQLite
/// falls back to read-only when it cannot open the file for writing, and the store would
/// then answer every read and fail every write. Probed by rewriting `user_version` with its
/// own value in a transaction that is rolled back.
///
/// The transaction is `BEGIN IMMEDIATE`: it takes the write lock first (SQLITE_READONLY on a
/// read-only file), so another process writing the same file (`--role redirect` and
/// `--role api` on one data dir, one of them migrating) is waited for by the busy timeout. A
/// deferred transaction that read first and then wrote would instead fail at once with
/// SQLITE_BUSY_SNAPSHOT ("database is locked") when the other process committed in between.
async fn check_writable(pool: &SqlitePool, path: &Path) -> Result<()> {
    let probe = async {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *tx).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {version}"))).execute(&mut *tx).await?;
        tx.rollback().await
    };
    match probe.await {
        Ok(()) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| c & 0xff == 8) => {
            Err(Error::StoreReadOnly { path: path.display().to_string(), detail: db.message().to_string() })
        }
        Err(e) => Err(open_error(path, e)),
    }
}

/// An exclusive `flock` on the directory holding `db` (released when the file is dropped),
/// waited for off the async workers. Not reentrant: a second lock of the same directory in
/// one process waits for the first to be dropped.
pub(super) async fn lock_dir_of(db: &Path) -> Result<std::fs::File> {
    let dir = db.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let locked = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&dir)?;
        f.lock()?;
        Ok::<_, std::io::Error>(f)
    })
    .await
    .map_err(|e| Error::Config(format!("link store open lock task failed: {e}")))?;
    locked.map_err(|e| Error::Config(format!("could not lock the link store's directory for opening: {e}")))
}

/// Instants are stored as integer microseconds since the epoch (`*_us` columns).
pub(super) fn enc_time(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Reads an integer `*_us` column as an instant.
pub(super) fn get_time(row: &SqliteRow, col: &str) -> Result<DateTime<Utc>> {
    let v: i64 = row.try_get(col)?;
    from_us(v).ok_or_else(|| Error::Corrupt(format!("column {col} holds out-of-range time {v}")))
}

pub(super) fn link_from_row(row: &SqliteRow) -> Result<(i64, Link)> {
    let tags: String = row.try_get("tags")?;
    let tags: Vec<String> = serde_json::from_str(&tags).map_err(|e| Error::Corrupt(format!("tags column is not a json string array: {e}")))?;
    let redirect: i64 = row.try_get("redirect_type")?;
    let redirect_type =
        u16::try_from(redirect).ok().and_then(|r| RedirectType::try_from(r).ok()).ok_or_else(|| Error::Corrupt(format!("redirect_type {redirect}")))?;
    let expires: Option<i64> = row.try_get("expires_at_us")?;
    let expires_at = match expires {
        None => None,
        Some(v) => Some(from_us(v).ok_or_else(|| Error::Corrupt(format!("expires_at_us {v}")))?),
    };
    let link = Link {
        code: row.try_get("code")?,
        long_url: row.try_get("long_url")?,
        domain: row.try_get("domain")?,
        expires_at,
        enabled: row.try_get("enabled")?,
        tags,
        redirect_type,
        org: row.try_get("org")?,
        created_at: get_time(row, "created_at_us")?,
        updated_at: get_time(row, "updated_at_us")?,
        version: row.try_get("version")?,
    };
    Ok((row.try_get("seq")?, link))
}

/// Tags are a JSON string array in `links.tags` (order kept), indexed by `link_tags`.
fn enc_tags(tags: &[String]) -> Result<String> {
    serde_json::to_string(tags).map_err(|e| Error::Corrupt(e.to_string()))
}

/// A list of codes for `SELECT_LIVE_CODES`: a JSON array of strings.
fn enc_codes(codes: &[&String]) -> Result<String> {
    serde_json::to_string(codes).map_err(|e| Error::Corrupt(e.to_string()))
}

fn enc_redirect(r: RedirectType) -> i64 {
    i64::from(r.status())
}

/// Makes `link_tags` hold exactly `tags` for link `seq` (the index `list` filters by tag with).
async fn index_tags(tx: &mut Tx, seq: i64, tags: &[String]) -> Result<()> {
    sqlx::query("DELETE FROM link_tags WHERE link_seq = ?1").bind(seq).execute(&mut **tx).await?;
    for tag in tags {
        sqlx::query("INSERT INTO link_tags (tag, link_seq) VALUES (?1, ?2)").bind(tag).bind(seq).execute(&mut **tx).await?;
    }
    Ok(())
}

/// A transaction on the single writer connection (serialized with every other writer).
///
/// Errors: [`Error::LinkStoreFileMoved`] (no transaction is begun) when the file at the
/// store's path is no longer the one it opened: a change written now would only reach the
/// unlinked file and be lost at the next start, so every write is refused (the API answers
/// 503 `store_unavailable`) while reads go on; [`Error::LinkStoreNotWritable`] likewise when
/// the file stopped being writable; database errors.
pub(super) async fn begin_write(store: &SqliteLinkStore) -> Result<Tx> {
    store.check_file_for_writes()?;
    // A write-back switches the pools while holding the old writer connection: a write that
    // got that connection afterwards begins again on the new pool (nothing reaches the old,
    // deleted file: its transaction is rolled back unused).
    loop {
        let pools = store.pools();
        reset_writer_left_in_a_transaction(store, &pools.writer).await?;
        let tx = pools.writer.begin().await?;
        if Arc::ptr_eq(&pools, &store.pools.load()) {
            return Ok(tx);
        }
        drop(tx);
        store.check_file_for_writes()?;
    }
}

/// Closes the writer connection when an earlier failed write left it inside a transaction;
/// the pool opens a fresh one (its open transaction is rolled back by the close).
///
/// Why: a write failing on a full disk (SQLITE_FULL, SQLITE_IOERR) makes SQLite roll the
/// whole transaction back by itself; sqlx's `ROLLBACK` on drop then fails ("no transaction
/// is active") and sqlx keeps counting one open transaction. Its next `begin` issues a
/// `SAVEPOINT` and a rollback only `ROLLBACK TO`s it, leaving a real transaction open in
/// which every later "commit" just releases a savepoint: writes answer `Ok` but are never
/// committed, and the write lock is held until the process ends. Checked before every write
/// transaction: sqlx's count must be 0 (no write transaction is open between writes: the
/// single writer connection is taken for the whole transaction) and SQLite must accept
/// `BEGIN` (it is in autocommit mode).
///
/// Errors: the pool cannot hand out or reopen the connection.
async fn reset_writer_left_in_a_transaction(store: &SqliteLinkStore, writer: &SqlitePool) -> Result<()> {
    use sqlx::Connection as _;
    let mut conn = writer.acquire().await?;
    let stuck = if conn.is_in_transaction() {
        Some("sqlx counts an open transaction".to_owned())
    } else {
        sqlx::raw_sql("BEGIN; ROLLBACK").execute(&mut *conn).await.err().map(|e| e.to_string())
    };
    if let Some(why) = stuck {
        // Info, not warn: the failed write that left it there was already logged as a
        // warning (one warning per failed write while the disk stays full).
        tracing::info!(path = %store.path.display(), why, "the link store's writer connection was left inside a transaction by an earlier failed write (e.g. a full disk); reopening it");
        // Detached, the pool opens a replacement; closing the old one rolls its transaction
        // back and releases the write lock before the caller begins.
        if let Err(e) = conn.detach().close_hard().await {
            tracing::warn!(error = %e, "closing the link store's stuck writer connection failed");
        }
    }
    Ok(())
}

/// The reader pool in use now (a handle: a write-back may switch it).
pub(super) fn read_pool(store: &SqliteLinkStore) -> SqlitePool {
    store.pools.load().reader.clone()
}

link_store!(SqliteLinkStore, "sqlite");

#[cfg(test)]
#[path = "sqlite_tests.rs"]
pub(super) mod tests;
