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

use super::common::{
    apply_patch, check_limit, check_patch, check_text, check_time, link_from_json, link_json, prepare_insert, trunc_us,
    IDEMPOTENCY_TTL, TOMBSTONE_PERIOD,
};
use super::{IdempotencyRecord, LinkChange, LinkPatch, LinkStore, ListQuery};
use crate::{Error, Result};

/// Migrations for the PostgreSQL schema (`connectors/migrations/postgres/`).
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The live link with code `$1`.
pub(super) const SELECT_LIVE: &str = "SELECT seq, code, long_url, domain, expires_at, enabled, tags, redirect_type, org, \
                           created_at, updated_at, version FROM links WHERE code = $1 AND deleted_at IS NULL";

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
    /// the connection's default schema (normally `public`).
    ///
    /// Errors: [`Error::Database`] when the server is unreachable or refuses the login,
    /// [`Error::Migrate`] when a migration fails.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url)?;
        Self::connect_with(opts, None).await
    }

    /// Like [`Self::connect`], but everything lives in `schema` (created if missing), via the
    /// connections' `search_path`: used to give each test, or each tenant, its own tables.
    ///
    /// Errors additionally with [`Error::Config`] for a schema name outside `[a-z0-9_]{1,63}`.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self> {
        check_schema_name(schema)?;
        let opts = PgConnectOptions::from_str(url)?;
        let mut conn = sqlx::PgConnection::connect_with(&opts).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Self::connect_with(opts.options([("search_path", schema)]), Some(schema.to_string())).await
    }

    async fn connect_with(opts: PgConnectOptions, schema: Option<String>) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
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

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(super) fn link_from_row(row: &PgRow) -> Result<(i64, Link)> {
    let redirect: i16 = row.try_get("redirect_type")?;
    let redirect_type = u16::try_from(redirect)
        .ok()
        .and_then(|r| RedirectType::try_from(r).ok())
        .ok_or_else(|| Error::Corrupt(format!("redirect_type {redirect}")))?;
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

fn redirect_i16(r: RedirectType) -> i16 {
    // 301 or 302: always fits.
    r.status() as i16
}

/// Takes the next change number; the counter row lock is held until commit.
pub(super) async fn next_change(tx: &mut Transaction<'static, Postgres>) -> Result<i64> {
    Ok(sqlx::query_scalar("UPDATE change_counter SET last = last + 1 WHERE id = 1 RETURNING last")
        .fetch_one(&mut **tx)
        .await?)
}

pub(super) async fn record_change(tx: &mut Transaction<'static, Postgres>, seq: i64, code: &str, link: Option<&Link>) -> Result<()> {
    let json = link.map(link_json).transpose()?;
    sqlx::query("INSERT INTO link_changes (change_seq, code, link) VALUES ($1, $2, $3)")
        .bind(seq)
        .bind(code)
        .bind(json)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn live_link(tx: &mut Transaction<'static, Postgres>, code: &str) -> Result<Option<(i64, Link)>> {
    let row = sqlx::query(SELECT_LIVE).bind(code).fetch_optional(&mut **tx).await?;
    row.as_ref().map(link_from_row).transpose()
}

#[async_trait]
impl LinkStore for PostgresLinkStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn admin(&self) -> Option<&dyn super::AdminStore> {
        Some(self)
    }

    async fn insert(&self, link: &Link) -> Result<Link> {
        let link = prepare_insert(link)?;
        let mut tx = self.pool.begin().await?;
        let seq = next_change(&mut tx).await?;
        sqlx::query("DELETE FROM links WHERE code = $1 AND deleted_at IS NOT NULL AND deleted_at <= $2")
            .bind(&link.code)
            .bind(link.created_at - TOMBSTONE_PERIOD)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO links (seq, code, long_url, domain, expires_at, enabled, tags, redirect_type, org, \
             created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (code) DO NOTHING",
        )
        .bind(seq)
        .bind(&link.code)
        .bind(&link.long_url)
        .bind(&link.domain)
        .bind(link.expires_at)
        .bind(link.enabled)
        .bind(&link.tags)
        .bind(redirect_i16(link.redirect_type))
        .bind(&link.org)
        .bind(link.created_at)
        .bind(link.updated_at)
        .bind(link.version)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(Error::CodeTaken(link.code));
        }
        record_change(&mut tx, seq, &link.code, Some(&link)).await?;
        tx.commit().await?;
        Ok(link)
    }

    async fn get(&self, code: &str) -> Result<Option<Link>> {
        if code.contains('\0') {
            return Ok(None); // cannot be stored, so no link has it
        }
        let row = sqlx::query(SELECT_LIVE).bind(code).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(link_from_row).transpose()?.map(|(_, l)| l))
    }

    async fn update(&self, code: &str, patch: &LinkPatch, expected_version: Option<i64>, now: DateTime<Utc>) -> Result<Link> {
        check_patch(patch, now)?;
        if code.contains('\0') {
            return Err(Error::NotFound(code.to_string()));
        }
        let mut tx = self.pool.begin().await?;
        let change = next_change(&mut tx).await?;
        let Some((seq, current)) = live_link(&mut tx, code).await? else {
            tx.rollback().await?;
            return Err(Error::NotFound(code.to_string()));
        };
        if let Some(expected) = expected_version.filter(|&v| v != current.version) {
            tx.rollback().await?;
            return Err(Error::VersionMismatch { code: code.to_string(), expected, actual: current.version });
        }
        let mut next = apply_patch(&current, patch, now);
        // A held link stays disabled whatever its owner sets; the owner's value is kept for
        // when the last hold goes (see `admin`).
        if let Some(owner) = patch.enabled
            && super::admin_postgres::record_owner_enabled(&mut tx, seq, owner).await?
        {
            next.enabled = false;
        }
        sqlx::query(
            "UPDATE links SET long_url = $1, expires_at = $2, enabled = $3, tags = $4, redirect_type = $5, \
             updated_at = $6, version = $7 WHERE seq = $8",
        )
        .bind(&next.long_url)
        .bind(next.expires_at)
        .bind(next.enabled)
        .bind(&next.tags)
        .bind(redirect_i16(next.redirect_type))
        .bind(next.updated_at)
        .bind(next.version)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        record_change(&mut tx, change, code, Some(&next)).await?;
        tx.commit().await?;
        Ok(next)
    }

    async fn delete(&self, code: &str, now: DateTime<Utc>) -> Result<Link> {
        check_time("now", now)?;
        if code.contains('\0') {
            return Err(Error::NotFound(code.to_string()));
        }
        let mut tx = self.pool.begin().await?;
        let change = next_change(&mut tx).await?;
        let Some((seq, current)) = live_link(&mut tx, code).await? else {
            tx.rollback().await?;
            return Err(Error::NotFound(code.to_string()));
        };
        sqlx::query("UPDATE links SET deleted_at = $1 WHERE seq = $2")
            .bind(trunc_us(now))
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        record_change(&mut tx, change, code, None).await?;
        tx.commit().await?;
        Ok(current)
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<(i64, Link)>> {
        check_limit(query.limit)?;
        if let Some(t) = &query.tag {
            check_text("tag", t)?;
        }
        let sql = "SELECT seq, code, long_url, domain, expires_at, enabled, tags, redirect_type, org, \
                   created_at, updated_at, version FROM links \
                   WHERE deleted_at IS NULL AND seq > $1 \
                   AND ($2::boolean IS NULL OR enabled = $2) \
                   AND ($3::text IS NULL OR tags @> ARRAY[$3::text]) \
                   ORDER BY seq LIMIT $4";
        let rows = sqlx::query(sql)
            .bind(query.after_seq.unwrap_or(0))
            .bind(query.enabled)
            .bind(&query.tag)
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(link_from_row).collect()
    }

    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<(i64, LinkChange)>> {
        let rows = sqlx::query("SELECT change_seq, code, link FROM link_changes WHERE change_seq > $1 ORDER BY change_seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get("change_seq")?;
                let link: Option<String> = row.try_get("link")?;
                let change = match link {
                    Some(json) => LinkChange::Upserted(link_from_json(&json)?),
                    None => LinkChange::Deleted(row.try_get("code")?),
                };
                Ok((seq, change))
            })
            .collect()
    }

    async fn idempotency_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<IdempotencyRecord>> {
        check_time("now", now)?;
        if key.contains('\0') {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT key, request_hash, status, body, created_at FROM idempotency WHERE key = $1 AND created_at > $2",
        )
        .bind(key)
        .bind(now - IDEMPOTENCY_TTL)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status: i32 = row.try_get("status")?;
        Ok(Some(IdempotencyRecord {
            key: row.try_get("key")?,
            request_hash: row.try_get("request_hash")?,
            status: u16::try_from(status).map_err(|_| Error::Corrupt(format!("idempotency status {status}")))?,
            body: row.try_get("body")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    async fn idempotency_put(&self, record: &IdempotencyRecord) -> Result<()> {
        check_text("key", &record.key)?;
        check_text("request_hash", &record.request_hash)?;
        check_text("body", &record.body)?;
        check_time("created_at", record.created_at)?;
        let created = trunc_us(record.created_at);
        let cutoff = created - IDEMPOTENCY_TTL;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO idempotency (key, request_hash, status, body, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status, \
             body = excluded.body, created_at = excluded.created_at WHERE idempotency.created_at <= $6",
        )
        .bind(&record.key)
        .bind(&record.request_hash)
        .bind(i32::from(record.status))
        .bind(&record.body)
        .bind(created)
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(Error::IdempotencyKeyExists);
        }
        sqlx::query("DELETE FROM idempotency WHERE created_at <= $1").bind(cutoff).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
