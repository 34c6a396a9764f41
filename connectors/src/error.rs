//! The one error type of `sluice-connectors`.

/// Errors from link stores, the click log and (later) service connectors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The code is already used by a live link or by a deleted link inside its
    /// 30-day no-reuse period.
    #[error("code \"{0}\" is already taken")]
    CodeTaken(String),
    /// No live link has this code.
    #[error("link \"{0}\" not found")]
    NotFound(String),
    /// Optimistic concurrency check failed (`If-Match` / expected version).
    #[error("link \"{code}\" was modified: expected version {expected}, found {actual}")]
    VersionMismatch {
        /// Code of the link.
        code: String,
        /// Version the caller expected.
        expected: i64,
        /// Version currently stored.
        actual: i64,
    },
    /// An idempotency key was already recorded (insert-if-absent lost the race).
    #[error("idempotency key already recorded")]
    IdempotencyKeyExists,
    /// A value cannot be stored by every backend (NUL character, timestamp outside
    /// years 1..=9999, list limit outside 1..=1000). Both stores reject the same values.
    #[error("invalid value for \"{field}\": {reason}")]
    InvalidValue {
        /// Name of the offending field.
        field: &'static str,
        /// Lowercase reason.
        reason: String,
    },
    /// A stored row could not be decoded (corrupt or written by an incompatible version).
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    /// Database driver error.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Schema migration failed; the message says when the store was written by a newer
    /// build (it has a migration this build lacks).
    #[error("{}", classify::migrate_message(.0))]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The embedded click log failed to perform `op` (I/O, corruption, lock held by another process).
    #[error("click log could not {op}")]
    ClickLog {
        /// What was being attempted (`"open"`, `"append events"`, ...).
        op: &'static str,
        /// The storage engine's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The click log hit an I/O error (a full disk, a failing device) and is closed: redb
    /// refuses every operation on a database after one, so the log drops it and opens the file
    /// again at the next operation (with backoff, see `click_log` module docs). Returned while
    /// the file cannot be reopened yet; nothing of the refused operation is stored. The
    /// message leaves out `retry_in_ms`: it is shown long after (`/readyz`), when that time
    /// has passed.
    #[error("click log \"{path}\" is closed after an I/O error ({cause}); it is reopened by the next operation once the storage works again")]
    ClickLogClosed {
        /// The log file.
        path: String,
        /// The I/O error that closed it, or the latest failure to reopen it.
        cause: String,
        /// How long until the next reopen is tried (ms; 0 = at the next operation).
        retry_in_ms: u64,
    },
    /// The click log file was deleted while the log had it open, and it could not be
    /// written back to its path from the open file yet (`click_log` `file_check.rs`). The log
    /// keeps the open, deleted file — every stored event, and new ones go to it (the running
    /// dataflow counts them) — and tries the write-back again at every file check; what it
    /// holds is lost only if the process stops before a write-back succeeds.
    #[error(
        "click log \"{path}\" was deleted while in use and could not be written back from the open file yet ({detail}); \
         sluice keeps every click, new ones included, in the file it has open (deleted: only this process can still read it) \
         and tries again at every file check (every 2 s): free the problem (e.g. disk space) so that it can. If sluice \
         stops before, the clicks in that file are lost"
    )]
    ClickLogDeleted {
        /// The log file.
        path: String,
        /// Why it could not be written back.
        detail: String,
    },
    /// The click log file and its directory were removed while the log had the file open
    /// (e.g. `rm -rf` of the data dir): the file cannot be written back until the directory
    /// exists again. The log keeps the open, deleted file (every stored event, and new ones go
    /// to it) and writes it back to `path` at the first file check after the directory was
    /// created again; what it holds is lost only if the process stops before.
    #[error(
        "click log \"{path}\" and its directory \"{dir}\" were removed while in use; sluice keeps every click, new ones \
         included, in the file it has open (deleted: only this process can still read it) and writes it back to \"{path}\" \
         within seconds once the directory exists again (`mkdir -p {dir}`). If sluice stops before, the clicks in that file \
         are lost"
    )]
    ClickLogDirRemoved {
        /// The log file.
        path: String,
        /// Its directory (the data dir).
        dir: String,
    },
    /// Another file took the click log's path while the log had its own file open, and the
    /// log could not copy its file to a side file (the cause is in `detail`): it keeps writing
    /// to the file it opened (the running dataflow counts the clicks), which is no longer
    /// reachable, so what is written to it is lost at the next restart.
    #[error(
        "click log \"{path}\" was replaced by another file while in use, and sluice could not save the file it opened to a side file \
         ({detail}); new clicks go to that unreachable file and are lost at the next restart: free the problem (e.g. disk space) and \
         sluice tries again within seconds"
    )]
    ClickLogReplaced {
        /// The log file.
        path: String,
        /// Why the open file could not be saved.
        detail: String,
    },
    /// Another file took the click log's path while the log had its own file open: the log
    /// copied its file, with every event, to the side file `side` and writes there since
    /// (`click_log` module docs, "Replaced file"). The file at `path` is left alone.
    #[error(
        "click log \"{path}\" was replaced by another file while in use; sluice saved the log it had open, with every click, to \
         \"{side}\" and writes new clicks there, and leaves the file at \"{path}\" alone. To keep every click: stop sluice, \
         move \"{side}\" to \"{path}\" and start it again"
    )]
    ClickLogDiverted {
        /// The log file's path (now holding another file).
        path: String,
        /// The side file the log writes to.
        side: String,
    },
    /// The click log file was damaged while the log had it open (it shrank: truncated outside
    /// sluice) and could not be written back from the open file (`detail` says what was
    /// found and why): the file will not open again. The running dataflow keeps what it
    /// counted; appends fail, or go to the damaged file.
    #[error(
        "click log \"{path}\" was damaged while in use ({detail}); the file will not open again. Stop sluice (its graceful \
         stop writes a checkpoint holding every click counted so far), then run `sluice log reset --data-dir {dir}` to continue \
         from that checkpoint on a new, empty click log"
    )]
    ClickLogDamagedInUse {
        /// The log file.
        path: String,
        /// Its data directory.
        dir: String,
        /// What was found, and why it could not be written back.
        detail: String,
    },
    /// The click log file was damaged while the log had it open and could not be written back
    /// (`detail`), so the log moved it aside to `damaged` and goes on in a new file at `path`
    /// that continues at offset `offset` (the old head, so offsets are never reused): new
    /// clicks are kept and counted; the events the damaged file stored (offsets
    /// `low..offset`) are gone from the log, the running dataflow keeps what it counted.
    #[error(
        "click log \"{path}\" was damaged while in use ({detail}); sluice moved it aside to \"{damaged}\" and goes on in a new click \
         log at \"{path}\" that continues at offset {offset}, so new clicks are kept and counted. The clicks the damaged file stored \
         (offsets {low}..{offset}) are no longer in the log; the running stats keep those they counted. Stop sluice gracefully (its \
         stop writes a checkpoint holding every click counted so far, which the next start continues from) and start it again"
    )]
    ClickLogContinued {
        /// The log file (now the new log).
        path: String,
        /// Where the damaged file was moved.
        damaged: String,
        /// What was found, and why it could not be written back.
        detail: String,
        /// The lowest offset the damaged file stored.
        low: u64,
        /// The offset the new log continues at (the old head).
        offset: u64,
    },
    /// The anomaly store hit an I/O error (a full disk, a failing device) and is closed: redb
    /// refuses every operation on a database after one, so the store drops it and opens the
    /// file again at the next operation (with backoff, see `anomaly_store` module docs).
    /// Returned while the file cannot be reopened yet; nothing of the refused operation is
    /// stored.
    #[error("anomaly store \"{path}\" is closed after an I/O error ({cause}); it is reopened by the next operation once the storage works again")]
    AnomalyStoreClosed {
        /// The store file.
        path: String,
        /// The I/O error that closed it, or the latest failure to reopen it.
        cause: String,
    },
    /// The anomaly store file was deleted while the store had it open, and it could not be
    /// written back to its path from the open file yet (`anomaly_store` `recovery.rs`). The
    /// store keeps the open, deleted file — every stored event and subscription, and new ones
    /// go to it — and tries the write-back again at every file check; what it holds is lost
    /// only if the process stops before a write-back succeeds.
    #[error(
        "anomaly store \"{path}\" was deleted while in use and could not be written back from the open file yet ({detail}); \
         sluice keeps every anomaly event and webhook subscription, new ones included, in the file it has open (deleted: only \
         this process can still read it) and tries again at every file check (every 2 s): free the problem (e.g. disk space) \
         so that it can. If sluice stops before, what that file holds is lost"
    )]
    AnomalyStoreDeleted {
        /// The store file.
        path: String,
        /// Why it could not be written back.
        detail: String,
    },
    /// The anomaly store file and its directory were removed while the store had the file
    /// open (e.g. `rm -rf` of the data dir), as [`Error::ClickLogDirRemoved`] for the click
    /// log: the store keeps the open, deleted file and writes it back to `path` at the first
    /// file check after the directory was created again; what it holds is lost only if the
    /// process stops before.
    #[error(
        "anomaly store \"{path}\" and its directory \"{dir}\" were removed while in use; sluice keeps every anomaly event and \
         webhook subscription, new ones included, in the file it has open (deleted: only this process can still read it) and \
         writes it back to \"{path}\" within seconds once the directory exists again (`mkdir -p {dir}`). If sluice stops \
         before, what that file holds is lost"
    )]
    AnomalyStoreDirRemoved {
        /// The store file.
        path: String,
        /// Its directory (the data dir).
        dir: String,
    },
    /// The anomaly store file was deleted while the store was closed after an I/O error: no
    /// process has the file open any more, so its content is gone (unless restored from a
    /// backup) and the store does not create an empty one in its place while running.
    #[error(
        "anomaly store \"{path}\" was deleted while it was closed after an I/O error, so sluice has no open file to write it \
         back from: the anomaly events and webhook subscriptions it held are gone unless a backup of the file is put back. New \
         anomaly events wait in memory meanwhile. To go on, stop sluice (a graceful stop makes the next start derive the waiting \
         events again), put the backup at that path if there is one (without one, the start creates an empty store) and start \
         it again"
    )]
    AnomalyStoreLost {
        /// The store file.
        path: String,
    },
    /// Another file took the anomaly store's path while the store had its own file open. The
    /// store keeps writing to the file it opened, which is lost at the next restart.
    #[error(
        "anomaly store \"{path}\" was replaced by another file while in use; sluice keeps writing anomaly events to the file it opened, \
         which is lost at the next restart: stop sluice, keep the file you want at that path and start it again"
    )]
    AnomalyStoreReplaced {
        /// The store file.
        path: String,
    },
    /// The embedded link store's file (`links.db`) is no longer at its path while the store
    /// has it open: deleted, or replaced by another file (`what`: `"deleted or moved away"` or `"replaced by
    /// another file"`). SQLite keeps using the file it opened, which is unreachable: every
    /// link written to it would be lost when the process stops, so changes are refused. A
    /// deleted file is written back to its path from the open file at the next periodic check
    /// once its directory exists and nothing else is at the path (`advice` says so); a
    /// replaced one is left alone (`advice`: stop, put the right file back, start).
    #[error(
        "link store \"{path}\" was {what} while sluice has it open: links are still served, but changes are refused (they would \
         only reach the file sluice opened, which is lost when it stops); {advice}"
    )]
    LinkStoreFileMoved {
        /// The database file.
        path: String,
        /// `"deleted or moved away"` or `"replaced by another file"`.
        what: &'static str,
        /// What happens next and what to do.
        advice: String,
    },
    /// The embedded link store's file was deleted while open and written back to its path
    /// from the open file (every link kept), but the store could not switch to the
    /// written-back file (`detail`): changes stay refused until a restart (the switch is
    /// tried again at every periodic check); reads go on.
    #[error(
        "link store \"{path}\" was deleted while sluice had it open; the links were written back to \"{path}\" from the open file \
         (every link kept), but sluice could not switch to that file ({detail}): links are still served, but changes are \
         refused until sluice is restarted (stop and start sluice)"
    )]
    LinkStoreWrittenBack {
        /// The database file.
        path: String,
        /// Why the written-back file could not be used.
        detail: String,
    },
    /// The embedded link store's file was deleted while open and could not be written back
    /// from the open file (the copy or the rename failed: `detail`); tried again at the next
    /// periodic check.
    #[error("link store \"{path}\" was deleted while sluice has it open and could not be written back from the open file yet ({detail})")]
    LinkStoreWriteBack {
        /// The database file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// The embedded link store's file (or its `-wal` file) stopped being writable while
    /// sluice has it open: the file system was remounted read-only, the file made immutable
    /// or handed to another user. Reads and redirects go on; every create, edit and delete
    /// is refused until write access is back (checked again before each write and by
    /// `/readyz`).
    #[error(
        "link store \"{path}\" can no longer be written ({detail}): links are still served, but creates, edits and deletes \
         are refused until it can; give the user running sluice write access to the file, its -wal and -shm files and their \
         directory again (was the file system remounted read-only, or the file made immutable or given to another user?)"
    )]
    LinkStoreNotWritable {
        /// The database file.
        path: String,
        /// Which file and the operating system's error.
        detail: String,
    },
    /// The file system holding the embedded link store has less free space than
    /// [`crate::link_store::MIN_FREE_BYTES`] (reported by `/readyz` only; writes
    /// that still fit go on, SQLite reports a full disk itself).
    #[error(
        "link store \"{path}\" is on a file system with {free_bytes} bytes free (below {min_bytes}): links are still served, \
         but creating links fails once the file cannot grow; free space on that file system"
    )]
    LinkStoreLowOnSpace {
        /// The database file.
        path: String,
        /// Bytes free for the user running sluice.
        free_bytes: u64,
        /// The threshold, bytes.
        min_bytes: u64,
    },
    /// The link store's PostgreSQL server did not complete a connection (TCP connect, TLS,
    /// start-up and login) within the bound (`[store] connect-timeout` for the first one, at
    /// most `[store] acquire-timeout` for a pooled one) while the store was
    /// opened: e.g. a port where something accepts TCP connections but never answers
    /// (another service, a stalled proxy), or a firewall that drops the packets.
    #[error(
        "the PostgreSQL server at {store} did not complete a connection within {timeout:?} (TCP connect, TLS and login); \
         check that this host and port are those of a running PostgreSQL server that answers (not another service, a stalled \
         proxy or a firewall dropping the packets); a slow server: [store] connect-timeout bounds the first connection, \
         and every pooled connection must be made within {acquire_timeout:?} ([store] acquire-timeout)"
    )]
    StoreConnectTimeout {
        /// The server, as `postgres://user@host:port/database` (no password).
        store: String,
        /// The bound that passed.
        timeout: std::time::Duration,
        /// The pool's acquire timeout (`[store] acquire-timeout`), stated in the message.
        acquire_timeout: std::time::Duration,
    },
    /// A connection to the PostgreSQL server at `store` failed (refused, unknown host, TLS,
    /// login): the message names the server (never the password) and the cause once.
    /// sqlx's error is in the message, not a source: its "error communicating with
    /// database: X" has X as its own source, which a chain of sources would say twice.
    #[error("could not connect to the PostgreSQL server at {store}: {error}")]
    StoreConnect {
        /// The server, as `postgres://user@host:port/database` (no password).
        store: String,
        /// What sqlx reported.
        error: sqlx::Error,
    },
    /// The link store's SQLite file could not be opened or first read (a path that is no
    /// regular file, e.g. a FIFO; a directory where the file cannot be created, e.g. on a
    /// read-only mount; an I/O error): the message names the file, what it is when it is no
    /// regular file (`what`: `" (a FIFO (named pipe), not a regular file)"` or empty), and
    /// SQLite's error once, e.g. `disk I/O error (SQLite code 266)` (in the message, not a
    /// source: sqlx's "error returned from database: X" has X as its own source, which a
    /// chain of sources would say twice).
    #[error("SQLite could not open \"{path}\"{what}: {}", classify::sqlite_cause(.error))]
    StoreOpen {
        /// The file.
        path: String,
        /// What the path is when it is no regular file, or that its file system is (almost)
        /// full, as a parenthesis; empty otherwise.
        what: String,
        /// What sqlx reported.
        error: sqlx::Error,
    },
    /// An event stored in the click log could not be decoded.
    #[error("could not decode click event at log offset {offset}")]
    ClickLogDecode {
        /// Offset of the undecodable entry.
        offset: u64,
        /// The decoder's error.
        #[source]
        source: sluice_schemas::Error,
    },
    /// The click log file is in a storage format this build does not read: format 1 (one
    /// entry per event, written by sluice before format 2) or a newer format.
    #[error(
        "click log \"{path}\" is in storage format {found}, this build reads format {supported} only; \
         read it with the sluice version that wrote it, or move the file aside to start an empty log"
    )]
    ClickLogFormat {
        /// The log file.
        path: String,
        /// Format of the file.
        found: u64,
        /// Format this build reads ([`crate::click_log::CLICK_LOG_FORMAT`]).
        supported: u64,
    },
    /// The click log file failed redb's integrity check at open (page checksums, tree
    /// structure) and redb could not repair it: the file was truncated, overwritten or
    /// damaged outside sluice. Nothing was read from it.
    #[error(
        "click log \"{path}\" is damaged and could not be repaired ({detail}); sluice will not start on it. \
         Stop every process using this data dir, then run `sluice log reset --data-dir {dir}`: it moves the damaged file aside \
         and starts a new, empty click log that continues from the newest checkpoint, keeping every click the checkpoint counted \
         (or, instead, put a backup of \"{path}\" back at that path)"
    )]
    ClickLogDamaged {
        /// The log file.
        path: String,
        /// Its data directory.
        dir: String,
        /// redb's description of the damage.
        detail: String,
    },
    /// An embedded store file other than the click log (`anomalies.redb`, `links.db`) failed
    /// its integrity check at open (redb's page checksums and tree structure; SQLite's
    /// `PRAGMA quick_check`) and could not be repaired: it was truncated, overwritten or
    /// damaged outside sluice. Nothing was read from it.
    #[error(
        "{store} \"{path}\" is damaged and could not be repaired ({detail}); sluice will not start on it. \
         Stop every process using this data dir, move the file aside (e.g. to {path}.damaged) and restore it \
         from a backup, or start without it: {loses}"
    )]
    StoreDamaged {
        /// Which store (`"anomaly store"`, `"link store"`).
        store: &'static str,
        /// The file.
        path: String,
        /// The storage engine's description of the damage.
        detail: String,
        /// What starting without the file loses.
        loses: &'static str,
    },
    /// SQLite opened the link store's file only for reading (a read-only mount, a file or
    /// directory owned by another user, an immutable file): every create, edit and delete
    /// would fail, so sluice does not start on it.
    #[error(
        "link store \"{path}\" can be read but not written ({detail}); sluice will not start on it, because every \
         link create, edit and delete would fail. Give the user running sluice write access to the file, its -wal and \
         -shm files and their directory (is the file system mounted read-only, or the file owned by another user or immutable?)"
    )]
    StoreReadOnly {
        /// The file.
        path: String,
        /// SQLite's error.
        detail: String,
    },
    /// The embedded anomaly store failed to perform `op` (I/O, lock held by another process).
    #[error("anomaly store could not {op}")]
    AnomalyStore {
        /// What was being attempted (`"open"`, `"append anomalies"`, ...).
        op: &'static str,
        /// The storage engine's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// Invalid connector configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A Kafka client operation failed (feature `kafka`).
    #[cfg(feature = "kafka")]
    #[error("kafka could not {op}")]
    Kafka {
        /// What was being attempted (`"create producer"`, `"commit offsets"`, ...).
        op: &'static str,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A schema registry request failed (feature `kafka`).
    #[cfg(feature = "kafka")]
    #[error("schema registry could not {op}: {message}")]
    SchemaRegistry {
        /// What was being attempted (`"register schema"`, `"fetch schema 7"`, ...).
        op: &'static str,
        /// The registry client's message.
        message: String,
        /// Whether the client judged the failure transient (HTTP 502/503, connection error).
        retryable: bool,
    },
    /// A Redis command failed (feature `redis`).
    #[cfg(feature = "redis")]
    #[error("redis could not {op}")]
    Redis {
        /// What was being attempted (`"read cached link"`, `"write view rows"`, ...).
        op: &'static str,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// A ClickHouse request failed (feature `clickhouse-sink`).
    #[cfg(feature = "clickhouse-sink")]
    #[error("clickhouse could not {op}")]
    ClickHouse {
        /// What was being attempted (`"insert rollup rows"`, `"run migration 2"`, ...).
        op: &'static str,
        /// The client's error.
        #[source]
        source: clickhouse::error::Error,
    },
    /// A service call did not finish within its deadline (`service`: `"redis"`, `"clickhouse"`).
    #[error("{service} did not answer within {timeout_ms} ms while trying to {op}")]
    Timeout {
        /// The service.
        service: &'static str,
        /// What was being attempted.
        op: &'static str,
        /// The deadline, ms.
        timeout_ms: u64,
    },
    /// The service's circuit breaker is open: the call was not attempted.
    #[error("{service} is unavailable (circuit open)")]
    CircuitOpen {
        /// The service.
        service: &'static str,
    },
}

mod classify;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
