//! [`AdminStore`] for the PostgreSQL link store: every write transaction first locks the
//! `change_counter` row (as every link write does), so blocklist scans, holds, audit appends
//! and link inserts are serialized in commit order.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_schemas::Link;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::admin::{
    blocklist_source, check_audit, check_audit_limit, check_hold, with_affected, AdminStore, AuditQuery, AuditRecord,
    BlocklistAdded, BlocklistEntry, HoldOutcome, LinkFilter, LinkHold,
};
use super::common::{apply_patch, check_text, check_time, trunc_us};
use super::postgres::{link_from_row, live_link, next_change, record_change, PostgresLinkStore};
use super::LinkPatch;
use crate::{Error, Result};

const LINK_COLS: &str = "l.seq, l.code, l.long_url, l.domain, l.expires_at, l.enabled, l.tags, l.redirect_type, \
                         l.org, l.created_at, l.updated_at, l.version";

type Tx = Transaction<'static, Postgres>;

/// Serializes this transaction with every other writer (without taking a change number).
async fn lock_writers(tx: &mut Tx) -> Result<()> {
    sqlx::query("SELECT last FROM change_counter WHERE id = 1 FOR UPDATE").execute(&mut **tx).await?;
    Ok(())
}

async fn holds_of(tx: &mut Tx, seq: i64) -> Result<Vec<(LinkHold, bool)>> {
    let rows = sqlx::query(
        "SELECT source, reason, actor, was_enabled, created_at FROM link_holds WHERE link_seq = $1 \
         ORDER BY created_at, source",
    )
    .bind(seq)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| {
            let hold = LinkHold {
                source: r.try_get("source")?,
                reason: r.try_get("reason")?,
                actor: r.try_get("actor")?,
                created_at: r.try_get("created_at")?,
            };
            Ok((hold, r.try_get::<bool, _>("was_enabled")?))
        })
        .collect()
}

/// Writes `enabled` through the normal update path (version + 1, a change-feed entry).
async fn set_enabled(tx: &mut Tx, seq: i64, current: &Link, enabled: bool, now: DateTime<Utc>) -> Result<Link> {
    let next = apply_patch(current, &LinkPatch { enabled: Some(enabled), ..LinkPatch::default() }, now);
    let change = next_change(tx).await?;
    sqlx::query("UPDATE links SET enabled = $1, updated_at = $2, version = $3 WHERE seq = $4")
        .bind(next.enabled)
        .bind(next.updated_at)
        .bind(next.version)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    record_change(tx, change, &next.code, Some(&next)).await?;
    Ok(next)
}

async fn add_hold(tx: &mut Tx, seq: i64, current: &Link, hold: &LinkHold, now: DateTime<Utc>) -> Result<HoldOutcome> {
    let existing = holds_of(tx, seq).await?;
    let was_enabled = existing.first().map_or(current.enabled, |(_, w)| *w);
    sqlx::query(
        "INSERT INTO link_holds (link_seq, source, reason, actor, was_enabled, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (link_seq, source) DO NOTHING",
    )
    .bind(seq)
    .bind(&hold.source)
    .bind(&hold.reason)
    .bind(&hold.actor)
    .bind(was_enabled)
    .bind(trunc_us(hold.created_at))
    .execute(&mut **tx)
    .await?;
    let (link, changed) =
        if current.enabled { (set_enabled(tx, seq, current, false, now).await?, true) } else { (current.clone(), false) };
    let holds = holds_of(tx, seq).await?.into_iter().map(|(h, _)| h).collect();
    Ok(HoldOutcome { link, changed, holds })
}

async fn remove_hold(tx: &mut Tx, seq: i64, current: &Link, source: &str, now: DateTime<Utc>) -> Result<HoldOutcome> {
    let was: Option<bool> =
        sqlx::query_scalar("DELETE FROM link_holds WHERE link_seq = $1 AND source = $2 RETURNING was_enabled")
            .bind(seq)
            .bind(source)
            .fetch_optional(&mut **tx)
            .await?;
    let holds: Vec<LinkHold> = holds_of(tx, seq).await?.into_iter().map(|(h, _)| h).collect();
    match was {
        Some(owner) if holds.is_empty() && owner != current.enabled => {
            Ok(HoldOutcome { link: set_enabled(tx, seq, current, owner, now).await?, changed: true, holds })
        }
        _ => Ok(HoldOutcome { link: current.clone(), changed: false, holds }),
    }
}

/// Records the owner's `enabled` on the holds of link `seq`; whether it has any.
pub(super) async fn record_owner_enabled(tx: &mut Tx, seq: i64, owner: bool) -> Result<bool> {
    let n = sqlx::query("UPDATE link_holds SET was_enabled = $1 WHERE link_seq = $2")
        .bind(owner)
        .bind(seq)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(n > 0)
}

async fn held_by(tx: &mut Tx, source: &str) -> Result<Vec<(i64, Link)>> {
    let sql = format!(
        "SELECT {LINK_COLS} FROM links l JOIN link_holds h ON h.link_seq = l.seq \
         WHERE h.source = $1 AND l.deleted_at IS NULL ORDER BY l.seq"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(source).fetch_all(&mut **tx).await?;
    rows.iter().map(link_from_row).collect()
}

async fn append(tx: &mut Tx, r: &AuditRecord) -> Result<AuditRecord> {
    check_audit(r)?;
    let at = trunc_us(r.at);
    let details = serde_json::to_string(&r.details).map_err(|e| Error::Corrupt(e.to_string()))?;
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO admin_audit (at, actor, action, target, reason, origin_ip, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
    )
    .bind(at)
    .bind(&r.actor)
    .bind(&r.action)
    .bind(&r.target)
    .bind(&r.reason)
    .bind(&r.origin_ip)
    .bind(details)
    .fetch_one(&mut **tx)
    .await?;
    Ok(AuditRecord { seq, at, ..r.clone() })
}

fn audit_from_row(r: &PgRow) -> Result<AuditRecord> {
    let details: String = r.try_get("details")?;
    Ok(AuditRecord {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        reason: r.try_get("reason")?,
        origin_ip: r.try_get("origin_ip")?,
        details: serde_json::from_str(&details).map_err(|e| Error::Corrupt(format!("audit details: {e}")))?,
    })
}

#[async_trait]
impl AdminStore for PostgresLinkStore {
    async fn blocklist_add(&self, entry: &BlocklistEntry, matches: LinkFilter<'_>, audit: &AuditRecord) -> Result<BlocklistAdded> {
        check_text("pattern", &entry.pattern)?;
        let source = blocklist_source(&entry.pattern);
        let hold = LinkHold { source, reason: entry.reason.clone(), actor: entry.actor.clone(), created_at: entry.created_at };
        check_hold(&hold, entry.created_at)?;
        check_audit(audit)?;
        let mut tx = self.pool().begin().await?;
        lock_writers(&mut tx).await?;
        let added = sqlx::query(
            "INSERT INTO blocklist (pattern, reason, actor, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (pattern) DO NOTHING",
        )
        .bind(&entry.pattern)
        .bind(&entry.reason)
        .bind(&entry.actor)
        .bind(trunc_us(entry.created_at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let mut links = Vec::new();
        if !added {
            for (seq, link) in held_by(&mut tx, &hold.source).await? {
                let holds = holds_of(&mut tx, seq).await?.into_iter().map(|(h, _)| h).collect();
                links.push(HoldOutcome { link, changed: false, holds });
            }
            tx.commit().await?;
            return Ok(BlocklistAdded { added, links });
        }
        let sql = format!("SELECT {LINK_COLS} FROM links l WHERE l.deleted_at IS NULL AND strpos(lower(l.long_url), $1) > 0 ORDER BY l.seq");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&entry.pattern).fetch_all(&mut *tx).await?;
        let candidates: Vec<(i64, Link)> = rows.iter().map(link_from_row).collect::<Result<_>>()?;
        for (seq, link) in candidates.into_iter().filter(|(_, l)| matches(l)) {
            links.push(add_hold(&mut tx, seq, &link, &hold, entry.created_at).await?);
        }
        let codes: Vec<String> = links.iter().map(|o| o.link.code.clone()).collect();
        append(&mut tx, &AuditRecord { details: with_affected(&audit.details, &codes), ..audit.clone() }).await?;
        tx.commit().await?;
        Ok(BlocklistAdded { added, links })
    }

    async fn blocklist_remove(&self, pattern: &str, now: DateTime<Utc>, audit: &AuditRecord) -> Result<Option<Vec<HoldOutcome>>> {
        check_text("pattern", pattern)?;
        check_time("now", now)?;
        check_audit(audit)?;
        let mut tx = self.pool().begin().await?;
        lock_writers(&mut tx).await?;
        let removed = sqlx::query("DELETE FROM blocklist WHERE pattern = $1").bind(pattern).execute(&mut *tx).await?.rows_affected();
        if removed == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let source = blocklist_source(pattern);
        let mut out = Vec::new();
        for (seq, link) in held_by(&mut tx, &source).await? {
            out.push(remove_hold(&mut tx, seq, &link, &source, now).await?);
        }
        // Holds of links deleted meanwhile go too.
        sqlx::query("DELETE FROM link_holds WHERE source = $1").bind(&source).execute(&mut *tx).await?;
        let codes: Vec<String> = out.iter().map(|o| o.link.code.clone()).collect();
        append(&mut tx, &AuditRecord { details: with_affected(&audit.details, &codes), ..audit.clone() }).await?;
        tx.commit().await?;
        Ok(Some(out))
    }

    async fn blocklist_list(&self) -> Result<Vec<BlocklistEntry>> {
        let rows = sqlx::query("SELECT pattern, reason, actor, created_at FROM blocklist ORDER BY pattern")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BlocklistEntry {
                    pattern: r.try_get("pattern")?,
                    reason: r.try_get("reason")?,
                    actor: r.try_get("actor")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn hold_link(&self, code: &str, hold: &LinkHold, now: DateTime<Utc>, audit: Option<&AuditRecord>) -> Result<HoldOutcome> {
        if code.contains('\0') {
            return Err(Error::NotFound(code.to_string()));
        }
        check_hold(hold, now)?;
        audit.map(check_audit).transpose()?;
        let mut tx = self.pool().begin().await?;
        lock_writers(&mut tx).await?;
        let Some((seq, current)) = live_link(&mut tx, code).await? else {
            tx.rollback().await?;
            return Err(Error::NotFound(code.to_string()));
        };
        let out = add_hold(&mut tx, seq, &current, hold, now).await?;
        if let Some(a) = audit {
            append(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn release_link(&self, code: &str, source: &str, now: DateTime<Utc>, audit: Option<&AuditRecord>) -> Result<HoldOutcome> {
        if code.contains('\0') {
            return Err(Error::NotFound(code.to_string()));
        }
        check_text("source", source)?;
        check_time("now", now)?;
        audit.map(check_audit).transpose()?;
        let mut tx = self.pool().begin().await?;
        lock_writers(&mut tx).await?;
        let Some((seq, current)) = live_link(&mut tx, code).await? else {
            tx.rollback().await?;
            return Err(Error::NotFound(code.to_string()));
        };
        let out = remove_hold(&mut tx, seq, &current, source, now).await?;
        if let Some(a) = audit {
            append(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn link_holds(&self, code: &str) -> Result<Vec<LinkHold>> {
        if code.contains('\0') {
            return Err(Error::NotFound(code.to_string()));
        }
        let mut tx = self.pool().begin().await?;
        let Some((seq, _)) = live_link(&mut tx, code).await? else {
            return Err(Error::NotFound(code.to_string()));
        };
        let holds = holds_of(&mut tx, seq).await?.into_iter().map(|(h, _)| h).collect();
        tx.commit().await?;
        Ok(holds)
    }

    async fn audit_append(&self, record: &AuditRecord) -> Result<AuditRecord> {
        let mut tx = self.pool().begin().await?;
        lock_writers(&mut tx).await?;
        let out = append(&mut tx, record).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn audit_list(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
        check_audit_limit(q.limit)?;
        for (field, v) in [("actor", &q.actor), ("action", &q.action)] {
            if let Some(s) = v {
                check_text(field, s)?;
            }
        }
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, reason, origin_ip, details FROM admin_audit \
             WHERE ($1::BIGINT IS NULL OR seq < $1) AND ($2::TIMESTAMPTZ IS NULL OR at >= $2) \
             AND ($3::TIMESTAMPTZ IS NULL OR at < $3) AND ($4::TEXT IS NULL OR actor = $4) \
             AND ($5::TEXT IS NULL OR action = $5) ORDER BY seq DESC LIMIT $6",
        )
        .bind(q.before_seq)
        .bind(q.from)
        .bind(q.to)
        .bind(&q.actor)
        .bind(&q.action)
        .bind(i64::from(q.limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(audit_from_row).collect()
    }
}
