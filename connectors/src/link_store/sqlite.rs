//! The embedded default link store: one SQLite file (`links.db` in `--data-dir`) in WAL mode.
//!
//! Writes go through a pool of exactly one connection, so SQLite never answers "database is
//! locked" between our own writers and writes are serialized in commit order; reads use a
//! separate pool and, thanks to WAL, never wait for the writer. Commits use
//! `synchronous=FULL`: a link the API acknowledged survives a power cut.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_schemas::{Link, RedirectType};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use super::common::{
    apply_patch, check_limit, check_patch, check_text, check_time, from_us, link_from_json, link_json,
    prepare_insert, trunc_us, IDEMPOTENCY_TTL, TOMBSTONE_PERIOD,
};
use super::{IdempotencyRecord, LinkChange, LinkPatch, LinkStore, ListQuery};
use crate::{Error, Result};

/// File name of the link store inside the data directory.
pub const SQLITE_FILE_NAME: &str = "links.db";

/// Migrations for the SQLite schema (`connectors/migrations/sqlite/`).
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The live link with code `?1`.
pub(super) const SELECT_LIVE: &str = "SELECT seq, code, long_url, domain, expires_at_us, enabled, tags, redirect_type, org, \
                           created_at_us, updated_at_us, version FROM links WHERE code = ?1 AND deleted_at_us IS NULL";

/// SQLite implementation of [`LinkStore`].
#[derive(Debug, Clone)]
pub struct SqliteLinkStore {
    writer: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
}

impl SqliteLinkStore {
    /// Opens (creating if missing) `links.db` inside `data_dir` (created too if missing) and
    /// applies pending migrations.
    ///
    /// Errors: [`Error::Config`] if the directory cannot be created, [`Error::Database`] /
    /// [`Error::Migrate`] if the file cannot be opened or migrated.
    pub async fn open_dir(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::Config(format!("could not create data dir \"{}\": {e}", data_dir.display())))?;
        Self::open_file(&data_dir.join(SQLITE_FILE_NAME)).await
    }

    /// Opens (creating if missing) the SQLite database file at `path` and applies pending
    /// migrations. The parent directory must exist.
    pub async fn open_file(path: &Path) -> Result<Self> {
        Self::open_with_options(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens from a `sqlite:` URL (e.g. `sqlite:///var/lib/sluice/links.db` or
    /// `sqlite://data/links.db`); see [`SqliteConnectOptions`] for the accepted forms.
    pub async fn open_url(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?;
        if let Some(parent) = opts.get_filename().parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::Config(format!("could not create directory \"{}\": {e}", parent.display())))?;
        }
        Self::open_with_options(opts).await
    }

    /// Opens with explicit connection options (the file name must be set); WAL, `FULL`
    /// synchronous commits, foreign keys and a 10 s busy timeout are always applied.
    pub async fn open_with_options(opts: SqliteConnectOptions) -> Result<Self> {
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let path = opts.get_filename().to_path_buf();
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.create_if_missing(false))
            .await?;
        tracing::debug!(path = %path.display(), "sqlite link store open");
        Ok(Self { writer, reader, path })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn writer_pool(&self) -> &SqlitePool {
        &self.writer
    }

    pub(crate) fn reader_pool(&self) -> &SqlitePool {
        &self.reader
    }

    /// Closes both pools, waiting for connections to finish (checkpoints the WAL).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

pub(super) fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn time_col(row: &SqliteRow, col: &str) -> Result<DateTime<Utc>> {
    let v: i64 = row.try_get(col)?;
    from_us(v).ok_or_else(|| Error::Corrupt(format!("column {col} holds out-of-range time {v}")))
}

pub(super) fn link_from_row(row: &SqliteRow) -> Result<(i64, Link)> {
    let tags: String = row.try_get("tags")?;
    let tags: Vec<String> =
        serde_json::from_str(&tags).map_err(|e| Error::Corrupt(format!("tags column is not a json string array: {e}")))?;
    let redirect: i64 = row.try_get("redirect_type")?;
    let redirect_type = u16::try_from(redirect)
        .ok()
        .and_then(|r| RedirectType::try_from(r).ok())
        .ok_or_else(|| Error::Corrupt(format!("redirect_type {redirect}")))?;
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
        created_at: time_col(row, "created_at_us")?,
        updated_at: time_col(row, "updated_at_us")?,
        version: row.try_get("version")?,
    };
    Ok((row.try_get("seq")?, link))
}

/// Takes the next change number (see the migration: the counter row serializes writers).
pub(super) async fn next_change(tx: &mut Transaction<'static, Sqlite>) -> Result<i64> {
    Ok(sqlx::query_scalar("UPDATE change_counter SET last = last + 1 WHERE id = 1 RETURNING last")
        .fetch_one(&mut **tx)
        .await?)
}

pub(super) async fn record_change(tx: &mut Transaction<'static, Sqlite>, seq: i64, code: &str, link: Option<&Link>) -> Result<()> {
    let json = link.map(link_json).transpose()?;
    sqlx::query("INSERT INTO link_changes (change_seq, code, link) VALUES (?1, ?2, ?3)")
        .bind(seq)
        .bind(code)
        .bind(json)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn write_tags(tx: &mut Transaction<'static, Sqlite>, seq: i64, tags: &[String]) -> Result<()> {
    sqlx::query("DELETE FROM link_tags WHERE link_seq = ?1").bind(seq).execute(&mut **tx).await?;
    for tag in tags {
        sqlx::query("INSERT INTO link_tags (tag, link_seq) VALUES (?1, ?2)")
            .bind(tag)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub(super) async fn live_link(tx: &mut Transaction<'static, Sqlite>, code: &str) -> Result<Option<(i64, Link)>> {
    let row = sqlx::query(SELECT_LIVE).bind(code).fetch_optional(&mut **tx).await?;
    row.as_ref().map(link_from_row).transpose()
}

#[async_trait]
impl LinkStore for SqliteLinkStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn admin(&self) -> Option<&dyn super::AdminStore> {
        Some(self)
    }

    async fn insert(&self, link: &Link) -> Result<Link> {
        let link = prepare_insert(link)?;
        let tags_json = serde_json::to_string(&link.tags).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut tx = self.writer.begin().await?;
        let seq = next_change(&mut tx).await?;
        // A tombstone at least TOMBSTONE_PERIOD old no longer blocks the code: remove it so
        // the unique index admits the new link.
        sqlx::query("DELETE FROM links WHERE code = ?1 AND deleted_at_us IS NOT NULL AND deleted_at_us <= ?2")
            .bind(&link.code)
            .bind(us(link.created_at - TOMBSTONE_PERIOD))
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO links (seq, code, long_url, domain, expires_at_us, enabled, tags, redirect_type, org, \
             created_at_us, updated_at_us, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT (code) DO NOTHING",
        )
        .bind(seq)
        .bind(&link.code)
        .bind(&link.long_url)
        .bind(&link.domain)
        .bind(link.expires_at.map(us))
        .bind(link.enabled)
        .bind(&tags_json)
        .bind(i64::from(link.redirect_type.status()))
        .bind(&link.org)
        .bind(us(link.created_at))
        .bind(us(link.updated_at))
        .bind(link.version)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(Error::CodeTaken(link.code));
        }
        write_tags(&mut tx, seq, &link.tags).await?;
        record_change(&mut tx, seq, &link.code, Some(&link)).await?;
        tx.commit().await?;
        Ok(link)
    }

    async fn get(&self, code: &str) -> Result<Option<Link>> {
        let row = sqlx::query(SELECT_LIVE).bind(code).fetch_optional(&self.reader).await?;
        Ok(row.as_ref().map(link_from_row).transpose()?.map(|(_, l)| l))
    }

    async fn update(&self, code: &str, patch: &LinkPatch, expected_version: Option<i64>, now: DateTime<Utc>) -> Result<Link> {
        check_patch(patch, now)?;
        let mut tx = self.writer.begin().await?;
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
            && super::admin_sqlite::record_owner_enabled(&mut tx, seq, owner).await?
        {
            next.enabled = false;
        }
        let tags_json = serde_json::to_string(&next.tags).map_err(|e| Error::Corrupt(e.to_string()))?;
        sqlx::query(
            "UPDATE links SET long_url = ?1, expires_at_us = ?2, enabled = ?3, tags = ?4, redirect_type = ?5, \
             updated_at_us = ?6, version = ?7 WHERE seq = ?8",
        )
        .bind(&next.long_url)
        .bind(next.expires_at.map(us))
        .bind(next.enabled)
        .bind(&tags_json)
        .bind(i64::from(next.redirect_type.status()))
        .bind(us(next.updated_at))
        .bind(next.version)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        if patch.tags.is_some() {
            write_tags(&mut tx, seq, &next.tags).await?;
        }
        record_change(&mut tx, change, code, Some(&next)).await?;
        tx.commit().await?;
        Ok(next)
    }

    async fn delete(&self, code: &str, now: DateTime<Utc>) -> Result<Link> {
        check_time("now", now)?;
        let mut tx = self.writer.begin().await?;
        let change = next_change(&mut tx).await?;
        let Some((seq, current)) = live_link(&mut tx, code).await? else {
            tx.rollback().await?;
            return Err(Error::NotFound(code.to_string()));
        };
        sqlx::query("UPDATE links SET deleted_at_us = ?1 WHERE seq = ?2")
            .bind(us(trunc_us(now)))
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        write_tags(&mut tx, seq, &[]).await?;
        record_change(&mut tx, change, code, None).await?;
        tx.commit().await?;
        Ok(current)
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<(i64, Link)>> {
        check_limit(query.limit)?;
        if let Some(t) = &query.tag {
            check_text("tag", t)?;
        }
        let sql = "SELECT l.seq, l.code, l.long_url, l.domain, l.expires_at_us, l.enabled, l.tags, l.redirect_type, \
                   l.org, l.created_at_us, l.updated_at_us, l.version FROM links l \
                   WHERE l.deleted_at_us IS NULL AND l.seq > ?1 \
                   AND (?2 IS NULL OR l.enabled = ?2) \
                   AND (?3 IS NULL OR EXISTS (SELECT 1 FROM link_tags t WHERE t.tag = ?3 AND t.link_seq = l.seq)) \
                   ORDER BY l.seq LIMIT ?4";
        let rows = sqlx::query(sql)
            .bind(query.after_seq.unwrap_or(0))
            .bind(query.enabled)
            .bind(&query.tag)
            .bind(i64::from(query.limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(link_from_row).collect()
    }

    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<(i64, LinkChange)>> {
        let rows = sqlx::query("SELECT change_seq, code, link FROM link_changes WHERE change_seq > ?1 ORDER BY change_seq LIMIT ?2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
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
        let row = sqlx::query(
            "SELECT key, request_hash, status, body, created_at_us FROM idempotency WHERE key = ?1 AND created_at_us > ?2",
        )
        .bind(key)
        .bind(us(now - IDEMPOTENCY_TTL))
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status: i64 = row.try_get("status")?;
        Ok(Some(IdempotencyRecord {
            key: row.try_get("key")?,
            request_hash: row.try_get("request_hash")?,
            status: u16::try_from(status).map_err(|_| Error::Corrupt(format!("idempotency status {status}")))?,
            body: row.try_get("body")?,
            created_at: time_col(&row, "created_at_us")?,
        }))
    }

    async fn idempotency_put(&self, record: &IdempotencyRecord) -> Result<()> {
        check_text("key", &record.key)?;
        check_text("request_hash", &record.request_hash)?;
        check_text("body", &record.body)?;
        check_time("created_at", record.created_at)?;
        let created = trunc_us(record.created_at);
        let cutoff = us(created - IDEMPOTENCY_TTL);
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "INSERT INTO idempotency (key, request_hash, status, body, created_at_us) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status, \
             body = excluded.body, created_at_us = excluded.created_at_us WHERE idempotency.created_at_us <= ?6",
        )
        .bind(&record.key)
        .bind(&record.request_hash)
        .bind(i64::from(record.status))
        .bind(&record.body)
        .bind(us(created))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(Error::IdempotencyKeyExists);
        }
        // Purge expired records (indexed range delete; usually a handful of rows).
        sqlx::query("DELETE FROM idempotency WHERE created_at_us <= ?1").bind(cutoff).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
