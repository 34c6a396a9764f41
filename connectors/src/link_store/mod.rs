//! The link store: durable home of [`Link`]s, idempotency records and the link change feed.
//!
//! One trait, two implementations with identical behaviour (checked by one shared
//! behavioural test suite): SQLite (embedded default, WAL mode, file in `--data-dir`) and
//! PostgreSQL (sqlx). Schema migrations are versioned files under
//! `connectors/migrations/{sqlite,postgres}/`, applied at start-up and by `sluice migrate`.
//!
//! Open a store with [`open_store`] (`postgres://…`, `sqlite:…` or a data directory path).
//! Behaviour both backends share, beyond the trait's method docs:
//! - timestamps are stored with microsecond resolution (truncated towards the past); the
//!   `Link` returned by `insert`/`update` is exactly what later reads return;
//! - `insert` stores `version` 1 and `updated_at` = `created_at`, and removes duplicate tags;
//! - a link's list sequence number is the change number of its creating insert, assigned in
//!   commit order, so a cursor (the last sequence number seen) never skips a link created
//!   while paging;
//! - strings containing NUL and instants outside years 1..=9999 are refused with
//!   [`crate::Error::InvalidValue`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_schemas::{Link, RedirectType};

use crate::Result;

pub mod admin;
mod admin_postgres;
mod admin_shared;
mod admin_sqlite;
pub mod common;
mod open;
mod postgres;
mod sqlite;
mod sqlite_header;
mod sqlite_write_back;
mod store_shared;

pub use admin::{
    AdminStore, AuditQuery, AuditRecord, BlocklistAdded, BlocklistEntry, HOLD_ADMIN, HoldOutcome, LinkFilter, LinkHold, MAX_AUDIT_LIMIT, blocklist_source,
};
pub use common::{IDEMPOTENCY_TTL, MAX_LIST_LIMIT, TOMBSTONE_PERIOD};
pub use open::{MigrationReport, StoreTarget, migrate, migrate_within, open_store, open_store_checked, open_store_within};
pub use postgres::{DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, PostgresLinkStore, StoreTimeouts};
pub use sqlite::{MIN_FREE_BYTES, SQLITE_FILE_NAME, SqliteLinkStore};
pub use sqlite_header::CheckedStoreFile;

/// `link` exactly as [`LinkStore::insert`] stores and returns it (both backends): timestamps
/// truncated to microseconds, duplicate tags removed, `version` 1, `updated_at` =
/// `created_at`. Lets a caller build what describes the new link (an idempotency record's
/// body, [`LinkStore::insert_idempotent`]) before the insert.
///
/// Errors: [`crate::Error::InvalidValue`] for a link no backend can store (an empty code, a
/// NUL character, an instant outside years 1..=9999), as `insert` answers.
pub fn as_inserted(link: &Link) -> Result<Link> {
    common::prepare_insert(link)
}

/// A partial update of a link (`PATCH /v1/links/{code}`); `None` leaves a field unchanged.
/// Values are already validated and normalized by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkPatch {
    /// New target URL.
    pub long_url: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New expiry; `Some(None)` clears it.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// Replace the tags.
    pub tags: Option<Vec<String>>,
    /// New redirect status.
    pub redirect_type: Option<RedirectType>,
    /// New organisation; `Some(None)` clears it.
    pub org: Option<Option<String>>,
}

/// Filter and keyset position for listing links, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Page size, 1..=1000 (validated by the caller).
    pub limit: u32,
    /// Return only links whose store sequence number is greater than this (the decoded cursor).
    pub after_seq: Option<i64>,
    /// Only links carrying this tag.
    pub tag: Option<String>,
    /// Only links with this `enabled` value.
    pub enabled: Option<bool>,
    /// Only links of this organisation (exact match).
    pub org: Option<String>,
}

/// A stored idempotent response for `POST` with an `Idempotency-Key` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The client's key (scoped by the caller, e.g. `"links:" + key`).
    pub key: String,
    /// Hash of the request body (hex), to detect reuse with a different body.
    pub request_hash: String,
    /// HTTP status of the original response.
    pub status: u16,
    /// JSON body of the original response.
    pub body: String,
    /// When the record was written; records older than 24 h are ignored and purged.
    pub created_at: DateTime<Utc>,
}

/// What [`LinkStore::update`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// The link's current revision: the new one when [`Self::written`], else the stored one,
    /// untouched (same `version`, same `updated_at`, so the same ETag).
    pub link: Link,
    /// Whether a new revision was written: version incremented, change-feed entry recorded
    /// (the caller must then invalidate caches and notify, as after any change). `false` when
    /// the patch changes nothing the link shows (empty, or every field at its current value).
    pub written: bool,
}

/// One entry of the link change feed, in store sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// The link was created or updated; this is its current state.
    Upserted(Link),
    /// The link with this code was deleted.
    Deleted(String),
}

/// Codes per query of [`LinkStore::live_codes`] (SQLite's JSON array parameter, PostgreSQL's
/// `text[]`): bounds one statement's size.
pub const LIVE_CODES_CHUNK: usize = 5_000;

/// Durable storage of links. All methods are atomic; implementations are `Send + Sync` and
/// shared as `Arc<dyn LinkStore>`.
#[async_trait]
pub trait LinkStore: Send + Sync + 'static {
    /// Short name of the backend (`"sqlite"`, `"postgres"`), for logs and metrics labels.
    fn backend(&self) -> &'static str;

    /// The admin controls' storage in the same database ([`AdminStore`]: blocklist, holds,
    /// audit log), or `None` for stores without it (test doubles); the admin API then answers
    /// 503. Both real backends return `Some`.
    fn admin(&self) -> Option<&dyn AdminStore> {
        None
    }

    /// Closes the store's connections, waiting for those in use to be returned (SQLite:
    /// the last connection to close checkpoints the WAL into the database file and removes
    /// `links.db-wal`). Called once at a graceful stop, after everything else that uses the
    /// store has stopped; later calls fail with a connection error. The default does nothing
    /// (test doubles).
    async fn close(&self) {}

    /// Whether the store's file is still the one it opened and still writable (the embedded
    /// SQLite store: the file at its path has the device and inode it had when opened, and
    /// `access(2)` grants writing it and its `-wal` file, and its file system has room to
    /// grow; no database access). `/readyz` fails
    /// while it is not. Default: `Ok(())` (stores without a local file: PostgreSQL, test
    /// doubles).
    ///
    /// Errors: [`crate::Error::LinkStoreFileMoved`], [`crate::Error::LinkStoreNotWritable`] or
    /// [`crate::Error::LinkStoreLowOnSpace`] (less than [`MIN_FREE_BYTES`] free), naming the
    /// file and what to do.
    fn check_file(&self) -> Result<()> {
        Ok(())
    }

    /// Writes the store's file back to its path when it was deleted while open (alone, or
    /// with its directory, which exists again) and nothing else is at the path: a consistent
    /// copy of the open database (`VACUUM INTO` a temporary file beside it, fsync'd, renamed
    /// into place only while the path is still free, the directory fsync'd), after which the
    /// store goes on in the written-back file, so changes work again. Called at every
    /// periodic check of the file (`sluice serve`: every 2 s) and once at a graceful stop.
    /// Returns the path written back to, or `None` when nothing was to be done (the file is
    /// where it was, the directory is still missing, or the path holds another file). Default:
    /// `Ok(None)` (stores without a local file).
    ///
    /// Errors: the copy, the rename or the reopening failed (tried again at the next call);
    /// the message names the file and the cause.
    async fn write_back_file(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// The store's id: a random 64-bit value created once, with the store (migration 3), the
    /// same for every process using it. `sluice serve` records it in the click log to notice a
    /// lost store (a log that records another id). `None` for stores without one (test
    /// doubles): the check is skipped.
    async fn store_id(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Asks the process holding the data dir's click log to confirm that it checked this
    /// store against the log: a process with role `api` that finds the log held by another
    /// process creates links from a store only once the holder answered
    /// ([`Self::log_check_answered`]). Increments the `log_check_request` row of `store_meta`
    /// (no migration: a new key) and returns the new value, the request's number. `None` for
    /// stores without an id (test doubles: never checked, nothing to wait for).
    /// Errors: [`crate::Error::Database`].
    async fn request_log_check(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    /// Whether request `request` ([`Self::request_log_check`]) was answered
    /// ([`Self::answer_log_checks`]). Errors: [`crate::Error::Database`].
    async fn log_check_answered(&self, request: i64) -> Result<bool> {
        let _ = request;
        Ok(true)
    }

    /// Answers every request made so far ([`Self::request_log_check`]): called every second
    /// by the `sluice serve` that holds the click log, once its start-up check of this store
    /// against the log was applied. A store restored from a backup holds only the answers of
    /// before the backup, so an `api` process waits for the holder's check of the restored
    /// store. Writes only when a request is unanswered; returns whether it wrote. A no-op for
    /// test doubles. Errors: [`crate::Error::Database`].
    async fn answer_log_checks(&self) -> Result<bool> {
        Ok(false)
    }

    /// Retires `codes` (duplicates and codes already retired are fine): [`Self::insert`]
    /// refuses them from now on, for ever, as it refuses taken codes. Used for the codes of a
    /// lost store's links whose clicks are still in the click log. Codes containing NUL are
    /// skipped (no link can have one). One transaction: all are retired or none.
    ///
    /// Errors: [`crate::Error::Database`]; test doubles without retired codes answer
    /// [`crate::Error::Config`].
    async fn retire_codes(&self, codes: &[String]) -> Result<()> {
        let _ = codes;
        Err(crate::Error::Config(format!("the {} link store cannot retire codes", self.backend())))
    }

    /// Writes a fresh random epoch into the store (`store_meta` row `epoch`, no migration: a
    /// new key) and returns it: the `sluice serve` holding the click log does so once per
    /// run and records it in the log, so a store whose epoch differs from the log's is not
    /// the copy the log last ran with (a backup put back). Never 0
    /// ([`crate::click_log::UNCHECKED_EPOCH`]). `None` for test doubles.
    /// Errors: [`crate::Error::Database`].
    async fn new_epoch(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// The epoch last written by [`Self::new_epoch`] (`None`: never, or a test double).
    /// Errors: [`crate::Error::Database`].
    async fn epoch(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// The store's change-feed high-water mark: the number of the last change written (links
    /// created, updated, deleted; admin holds), `0` for a new store. It never goes down in a
    /// store in use; a store restored from a backup is back at the backup's value, which is
    /// how `sluice serve` notices the restore (it records the mark in the click log). `None`
    /// for stores without a change counter (test doubles). Errors: [`crate::Error::Database`].
    async fn change_high_water(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    /// The codes among `codes` that a live (not deleted) link has, in no particular order;
    /// duplicates in `codes` may be answered more than once. Codes containing NUL are left
    /// out (no link can have one). One query per [`LIVE_CODES_CHUNK`] codes (the stats
    /// summary asks about every link it counts). Test doubles answer every code `get` finds.
    /// Errors: [`crate::Error::Database`].
    async fn live_codes(&self, codes: &[String]) -> Result<Vec<String>> {
        let mut live = Vec::new();
        for code in codes.iter().filter(|c| !c.contains('\0')) {
            if self.get(code).await?.is_some() {
                live.push(code.clone());
            }
        }
        Ok(live)
    }

    /// The codes among `codes` (in their order) that no link of this store has, live or
    /// deleted, and that are not retired ([`Self::retire_codes`]): after a restore from a
    /// backup, the codes of links created since the backup. Codes containing NUL are left
    /// out (no link can have one, nor be retired with one). One query per code. Test doubles answer every code
    /// `get` does not find. Errors: [`crate::Error::Database`].
    async fn unknown_codes(&self, codes: &[String]) -> Result<Vec<String>> {
        let mut unknown = Vec::new();
        for code in codes.iter().filter(|c| !c.contains('\0')) {
            if self.get(code).await?.is_none() {
                unknown.push(code.clone());
            }
        }
        Ok(unknown)
    }

    /// Whether `code` was retired ([`Self::retire_codes`]); `false` for stores without
    /// retired codes (test doubles). Errors: [`crate::Error::Database`].
    async fn is_retired(&self, code: &str) -> Result<bool> {
        let _ = code;
        Ok(false)
    }

    /// Inserts a new link. Fails with [`crate::Error::CodeTaken`] when a live link has the
    /// same code, the code was retired ([`Self::retire_codes`]) or a link with this code was
    /// deleted less than 30 days before `link.created_at`.
    /// Uniqueness is decided atomically by the database (unique index), so concurrent inserts of
    /// one code yield exactly one success.
    async fn insert(&self, link: &Link) -> Result<Link>;

    /// [`Self::insert`] and [`Self::idempotency_put`] of `record` in one transaction: the
    /// link and the record are both stored or neither is, so a request that created a link
    /// always left the record its retries replay (a crash between the two writes cannot
    /// leave a link without its record), and a request whose key is taken creates nothing.
    /// `record.body` is normally the response describing the stored link, which is
    /// [`as_inserted`]`(link)`.
    ///
    /// Errors: [`crate::Error::IdempotencyKeyExists`] when an unexpired record has the key
    /// (checked first: then the code is not looked at); [`crate::Error::CodeTaken`] as
    /// [`Self::insert`]; [`crate::Error::InvalidValue`] for an unstorable link or record.
    ///
    /// The default (for test doubles) runs the steps one after another, not atomically; both
    /// real backends override it with one transaction.
    async fn insert_idempotent(&self, link: &Link, record: &IdempotencyRecord) -> Result<Link> {
        if self.idempotency_get(&record.key, record.created_at).await?.is_some() {
            return Err(crate::Error::IdempotencyKeyExists);
        }
        let stored = self.insert(link).await?;
        self.idempotency_put(record).await?;
        Ok(stored)
    }

    /// The live link with this code (case-sensitive), if any.
    async fn get(&self, code: &str) -> Result<Option<Link>>;

    /// Applies `patch` at `now`; with `expected_version`, fails with
    /// [`crate::Error::VersionMismatch`] unless the stored version equals it (checked in the
    /// write's own transaction). When the patch changes what the link shows, writes a new
    /// revision (version incremented, `updated_at` = `now`, a change-feed entry) and reports
    /// it [`UpdateOutcome::written`]; when it changes nothing (an empty patch, or every field
    /// set to its current value), writes no revision and no change-feed entry and returns the
    /// stored link as it is, `written: false` (the ETag stays; an owner's `enabled` under an
    /// admin hold is still recorded). [`crate::Error::NotFound`] when no live link has this
    /// code.
    async fn update(&self, code: &str, patch: &LinkPatch, expected_version: Option<i64>, now: DateTime<Utc>) -> Result<UpdateOutcome>;

    /// Deletes the live link and records a tombstone that blocks reuse of the code for 30 days.
    /// With `expected_version`, fails with [`crate::Error::VersionMismatch`] (and deletes
    /// nothing) unless the stored version equals it, checked in the same transaction as the
    /// delete. Returns the deleted link; [`crate::Error::NotFound`] when none.
    async fn delete(&self, code: &str, expected_version: Option<i64>, now: DateTime<Utc>) -> Result<Link>;

    /// A page of live links in store sequence order (oldest first), each with its sequence
    /// number (the keyset for the next cursor). Links created during pagination appear at the end.
    async fn list(&self, query: &ListQuery) -> Result<Vec<(i64, Link)>>;

    /// Changes with a change sequence number greater than `after`, at most `limit`, in order;
    /// each paired with its change sequence number. Used to feed link metadata to the dataflow
    /// and to invalidate caches.
    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<(i64, LinkChange)>>;

    /// The unexpired idempotency record for `key`, if any (records older than 24 h count as absent).
    async fn idempotency_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<IdempotencyRecord>>;

    /// Stores a record if no unexpired one exists for its key; [`crate::Error::IdempotencyKeyExists`]
    /// otherwise.
    async fn idempotency_put(&self, record: &IdempotencyRecord) -> Result<()>;
}
