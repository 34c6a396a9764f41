//! The PostgreSQL link store (sqlx), for deployments with several API / redirect processes.
//!
//! Same schema and rules as the SQLite store (see the migrations); writers serialize on the
//! `change_counter` row, so change numbers and link sequence numbers are assigned in commit
//! order and cursors never skip a row that commits late. Reads never wait for writers (MVCC).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_schemas::{Link, RedirectType};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};

use super::admin_postgres::record_owner_enabled;
use super::common::{
    IDEMPOTENCY_TTL, TOMBSTONE_PERIOD, apply_patch, check_limit, check_patch, check_text, check_time, link_from_json, link_json, prepare_insert, same_content,
    trunc_us,
};
use super::store_shared::link_store;
use super::{IdempotencyRecord, LinkChange, LinkPatch, LinkStore, ListQuery, UpdateOutcome};
use crate::{Error, Result};

/// Migrations for the PostgreSQL schema (`connectors/migrations/postgres/`).
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Default longest wait for a pooled connection (`[store] acquire-timeout`): 3 s. While
/// PostgreSQL is unreachable the pool retries connecting until this deadline, so it bounds
/// how long a request that needs the store waits before its 503 `store_unavailable` (sqlx's
/// default is 30 s, far beyond a redirect's or a client's budget); a healthy pool under load
/// hands out a connection well within it. A server that needs longer to accept each new
/// connection (a distant region, a pooler that queues logins) needs a larger value.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The bounds on reaching a PostgreSQL link store (`[store] connect-timeout` and
/// `[store] acquire-timeout`). SQLite ignores both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreTimeouts {
    /// How long each direct connection made while the store is opened may take to be
    /// established (TCP connect, TLS, start-up and login); default [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect: Duration,
    /// How long a request (and the opening itself) waits for a pooled connection, a new
    /// one's establishment included; default [`DEFAULT_ACQUIRE_TIMEOUT`].
    pub acquire: Duration,
}

impl Default for StoreTimeouts {
    fn default() -> Self {
        StoreTimeouts { connect: DEFAULT_CONNECT_TIMEOUT, acquire: DEFAULT_ACQUIRE_TIMEOUT }
    }
}

/// Default bound on opening a connection to PostgreSQL while the store is opened (TCP
/// connect, TLS, start-up and login; `[store] connect-timeout`): 10 s. A server that accepts
/// the TCP connection and never answers (another service on the port, a stalled proxy) or a
/// firewall that drops the packets would otherwise hold the open, and a start, forever: sqlx
/// bounds pooled acquires, not a direct connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The live link with code `$1`.
const SELECT_LIVE: &str = "SELECT seq, code, long_url, domain, expires_at, enabled, tags, redirect_type, org, \
                           created_at, updated_at, version FROM links WHERE code = $1 AND deleted_at IS NULL";
const DELETE_TOMBSTONE: &str = "DELETE FROM links WHERE code = $1 AND deleted_at IS NOT NULL AND deleted_at <= $2";
const INSERT_LINK: &str = "INSERT INTO links (seq, code, long_url, domain, expires_at, enabled, tags, redirect_type, org, \
                           created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                           ON CONFLICT (code) DO NOTHING";
const UPDATE_LINK: &str = "UPDATE links SET long_url = $1, expires_at = $2, enabled = $3, tags = $4, redirect_type = $5, \
                           updated_at = $6, version = $7, org = $9 WHERE seq = $8";
const DELETE_LINK: &str = "UPDATE links SET deleted_at = $1 WHERE seq = $2";
const LIST_LINKS: &str = "SELECT seq, code, long_url, domain, expires_at, enabled, tags, redirect_type, org, \
                          created_at, updated_at, version FROM links \
                          WHERE deleted_at IS NULL AND seq > $1 \
                          AND ($2::boolean IS NULL OR enabled = $2) \
                          AND ($3::text IS NULL OR tags @> ARRAY[$3::text]) \
                          AND ($5::text IS NULL OR org = $5) \
                          ORDER BY seq LIMIT $4";
const CHANGES_SINCE: &str = "SELECT change_seq, code, link FROM link_changes WHERE change_seq > $1 ORDER BY change_seq LIMIT $2";
const INSERT_CHANGE: &str = "INSERT INTO link_changes (change_seq, code, link) VALUES ($1, $2, $3)";
const IDEMPOTENCY_GET: &str = "SELECT key, request_hash, status, body, created_at FROM idempotency WHERE key = $1 AND created_at > $2";
const IDEMPOTENCY_PUT: &str = "INSERT INTO idempotency (key, request_hash, status, body, created_at) VALUES ($1, $2, $3, $4, $5) \
                               ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status, \
                               body = excluded.body, created_at = excluded.created_at WHERE idempotency.created_at <= $6";
const IDEMPOTENCY_PURGE: &str = "DELETE FROM idempotency WHERE created_at <= $1";

const SELECT_STORE_ID: &str = "SELECT value FROM store_meta WHERE key = 'store_id'";
const SELECT_RETIRED: &str = "SELECT code FROM retired_codes WHERE code = $1";
const RETIRE_CODE: &str = "INSERT INTO retired_codes (code) VALUES ($1) ON CONFLICT (code) DO NOTHING";
const SET_EPOCH: &str = "INSERT INTO store_meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const SELECT_CODE_KNOWN: &str = "SELECT code FROM links WHERE code = $1 UNION ALL SELECT code FROM retired_codes WHERE code = $1";
/// The live links' codes among the `text[]` `$1`.
const SELECT_LIVE_CODES: &str = "SELECT code FROM links WHERE code = ANY($1) AND deleted_at IS NULL";

/// Instant column of idempotency records, holds and blocklist entries.
pub(super) const CREATED_AT_COL: &str = "created_at";

pub(super) type Tx = Transaction<'static, Postgres>;
pub(super) type DbRow = PgRow;
type StatusInt = i32;

/// PostgreSQL implementation of [`LinkStore`].
#[derive(Debug, Clone)]
pub struct PostgresLinkStore {
    pool: PgPool,
    schema: Option<String>,
}

/// Checks a schema name: 1–63 characters of `[a-z0-9_]`, not starting with a digit, so it
/// can be quoted into DDL without escaping.
fn check_schema_name(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok { Ok(()) } else { Err(Error::Config(format!("invalid postgres schema name \"{schema}\": use [a-z0-9_]{{1,63}}"))) }
}

impl PostgresLinkStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db`), applies pending migrations in
    /// the connection's default schema (normally `public`). Connecting is bounded by
    /// [`DEFAULT_CONNECT_TIMEOUT`] ([`Self::connect_within`]).
    ///
    /// Errors: [`Error::Database`] when the server is unreachable or refuses the login,
    /// [`Error::StoreConnectTimeout`] when it does not answer in time, [`Error::Migrate`]
    /// when a migration fails.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_within(url, StoreTimeouts::default()).await
    }

    /// [`Self::connect`], the first connection made while opening given at most
    /// `timeouts.connect` to be established (TCP connect, TLS, start-up and login), and each
    /// pooled one (the pool's first included) `timeouts.acquire`. The migrations that follow
    /// are not bounded: one may legitimately take long (an index built over many links), or
    /// wait for another process that runs them.
    ///
    /// Errors as [`Self::connect`]; [`Error::StoreConnectTimeout`] names the server (never
    /// the password) and the bound that passed.
    pub async fn connect_within(url: &str, timeouts: StoreTimeouts) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url)?;
        Self::connect_with(opts, None, timeouts).await
    }

    /// Like [`Self::connect`], but everything lives in `schema` (created if missing), via the
    /// connections' `search_path`: used to give each test, or each tenant, its own tables.
    ///
    /// Errors additionally with [`Error::Config`] for a schema name outside `[a-z0-9_]{1,63}`.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self> {
        check_schema_name(schema)?;
        let opts = PgConnectOptions::from_str(url)?;
        let mut conn = connect_direct(&opts, StoreTimeouts::default()).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))).execute(&mut conn).await?;
        conn.close().await?;
        Self::connect_with(opts.options([("search_path", schema)]), Some(schema.to_string()), StoreTimeouts::default()).await
    }

    async fn connect_with(opts: PgConnectOptions, schema: Option<String>, timeouts: StoreTimeouts) -> Result<Self> {
        // One direct connection first, so that an unreachable server or a refused login is
        // reported as such (the pool would retry for its acquire timeout and then say only
        // "pool timed out while waiting for an open connection").
        connect_direct(&opts, timeouts).await?.close().await?;
        let pool = connect_pool(opts, timeouts).await?;
        MIGRATOR.run(&pool).await?;
        tracing::debug!(schema = schema.as_deref().unwrap_or("(default)"), "postgres link store open");
        Ok(Self { pool, schema })
    }

    /// The schema this store was opened in, if one was given.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A PostgreSQL store has no local file: always `Ok(())` ([`super::LinkStore::check_file`]).
    pub fn check_file(&self) -> Result<()> {
        Ok(())
    }

    /// A PostgreSQL store has no local file to write back: always `Ok(None)`
    /// ([`super::LinkStore::write_back_file`]).
    pub async fn write_back_file(&self) -> Result<Option<String>> {
        Ok(None)
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `postgres://user@host:port/database` of `opts`: the server a connection goes to, for
/// messages (no password, no other parameter).
pub(super) fn describe(opts: &PgConnectOptions) -> String {
    let host = opts.get_host();
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    format!("postgres://{}@{host}:{}/{}", opts.get_username(), opts.get_port(), opts.get_database().unwrap_or_default())
}

/// `fut` (a connection being made to the server of `opts`), given at most `timeout` (one of
/// `timeouts`, which the error reports).
///
/// Errors: [`Error::StoreConnectTimeout`] past `timeout`; what `fut` returns.
async fn within<T>(opts: &PgConnectOptions, timeout: Duration, timeouts: StoreTimeouts, fut: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        // The pool's own deadline is told apart by `connect_pool`.
        Ok(Err(sqlx::Error::PoolTimedOut)) => Err(Error::Database(sqlx::Error::PoolTimedOut)),
        Ok(r) => r.map_err(|error| Error::StoreConnect { store: describe(opts), error }),
        Err(_) => Err(Error::StoreConnectTimeout { store: describe(opts), timeout, acquire_timeout: timeouts.acquire }),
    }
}

/// One connection to the server of `opts`, established within `timeouts.connect` (TCP
/// connect, TLS, start-up and login; sqlx itself has no bound on a direct connection).
///
/// Errors: [`Error::StoreConnectTimeout`], [`Error::StoreConnect`] (refused, unknown host,
/// bad login, no such database), naming the server.
pub(super) async fn connect_direct(opts: &PgConnectOptions, timeouts: StoreTimeouts) -> Result<sqlx::PgConnection> {
    within(opts, timeouts.connect, timeouts, sqlx::PgConnection::connect_with(opts)).await
}

/// The store's pool over `opts` (8 connections, acquire timeout `timeouts.acquire`), its
/// first connection established within `timeouts.connect` — and, as every pooled
/// connection, within `timeouts.acquire`, which bounds how long a request waits for the store.
///
/// Errors as [`connect_direct`]; the pool's own deadline passing is
/// [`Error::StoreConnectTimeout`] with the bound that passed (not sqlx's "pool timed out").
pub(super) async fn connect_pool(opts: PgConnectOptions, timeouts: StoreTimeouts) -> Result<PgPool> {
    let pool_opts = PgPoolOptions::new().max_connections(8).acquire_timeout(timeouts.acquire);
    let target = opts.clone();
    match within(&target, timeouts.connect, timeouts, pool_opts.connect_with(opts)).await {
        Err(Error::Database(sqlx::Error::PoolTimedOut)) => {
            Err(Error::StoreConnectTimeout { store: describe(&target), timeout: timeouts.connect.min(timeouts.acquire), acquire_timeout: timeouts.acquire })
        }
        r => r,
    }
}

pub(super) fn link_from_row(row: &PgRow) -> Result<(i64, Link)> {
    let redirect: i16 = row.try_get("redirect_type")?;
    let redirect_type =
        u16::try_from(redirect).ok().and_then(|r| RedirectType::try_from(r).ok()).ok_or_else(|| Error::Corrupt(format!("redirect_type {redirect}")))?;
    let link = Link {
        code: row.try_get("code")?,
        long_url: row.try_get("long_url")?,
        domain: row.try_get("domain")?,
        expires_at: row.try_get("expires_at")?,
        enabled: row.try_get("enabled")?,
        tags: row.try_get("tags")?,
        redirect_type,
        org: row.try_get("org")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    };
    Ok((row.try_get("seq")?, link))
}

/// Instants are bound as `timestamptz` values.
pub(super) fn enc_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t
}

pub(super) fn get_time(row: &PgRow, col: &str) -> Result<DateTime<Utc>> {
    Ok(row.try_get(col)?)
}

/// Tags are a `text[]` column.
fn enc_tags(tags: &[String]) -> Result<&[String]> {
    Ok(tags)
}

/// The `text[]` column is its own index (`@>` with a GIN index): nothing else to write.
async fn index_tags(_tx: &mut Tx, _seq: i64, _tags: &[String]) -> Result<()> {
    Ok(())
}

/// A list of codes for `SELECT_LIVE_CODES`: a `text[]`.
fn enc_codes(codes: &[&String]) -> Result<Vec<String>> {
    Ok(codes.iter().map(|c| (*c).clone()).collect())
}

fn enc_redirect(r: RedirectType) -> i16 {
    // 301 or 302: always fits.
    r.status() as i16
}

/// A write transaction; writers serialize on the `change_counter` row they lock.
async fn begin_write(store: &PostgresLinkStore) -> Result<Tx> {
    Ok(store.pool.begin().await?)
}

fn read_pool(store: &PostgresLinkStore) -> PgPool {
    store.pool.clone()
}

link_store!(PostgresLinkStore, "postgres");
