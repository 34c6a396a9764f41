//! [`AdminStore`] for the PostgreSQL link store: every write transaction first locks the
//! `change_counter` row (as every link write does), so blocklist scans, holds, audit appends
//! and link inserts are serialized in commit order. The logic is `admin_shared`'s; this
//! module holds the PostgreSQL dialect (instants are `timestamptz` columns).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sluice_schemas::Link;
use sqlx::Row;
use sqlx::postgres::PgPool;

use super::LinkPatch;
use super::admin::{
    AdminStore, AuditQuery, AuditRecord, BlocklistAdded, BlocklistEntry, HoldOutcome, LinkFilter, LinkHold, blocklist_source, check_audit, check_audit_limit,
    check_hold, with_affected,
};
use super::admin_shared::admin_store;
use super::common::{apply_patch, check_text, check_time, trunc_us};
use super::postgres::{CREATED_AT_COL, DbRow, PostgresLinkStore, Tx, enc_time, get_time, link_from_row, live_link, next_change, record_change};
use crate::{Error, Result};

const AT_COL: &str = "at";

const HOLDS_OF: &str = "SELECT source, reason, actor, was_enabled, created_at FROM link_holds WHERE link_seq = $1 \
                        ORDER BY created_at, source";
const SET_ENABLED: &str = "UPDATE links SET enabled = $1, updated_at = $2, version = $3 WHERE seq = $4";
const INSERT_HOLD: &str = "INSERT INTO link_holds (link_seq, source, reason, actor, was_enabled, created_at) \
                           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (link_seq, source) DO NOTHING";
const DELETE_HOLD: &str = "DELETE FROM link_holds WHERE link_seq = $1 AND source = $2 RETURNING was_enabled";
const SET_OWNER_ENABLED: &str = "UPDATE link_holds SET was_enabled = $1 WHERE link_seq = $2";
const HELD_BY: &str = "SELECT l.seq, l.code, l.long_url, l.domain, l.expires_at, l.enabled, l.tags, l.redirect_type, \
                       l.org, l.created_at, l.updated_at, l.version FROM links l JOIN link_holds h ON h.link_seq = l.seq \
                       WHERE h.source = $1 AND l.deleted_at IS NULL ORDER BY l.seq";
const INSERT_AUDIT: &str = "INSERT INTO admin_audit (at, actor, action, target, reason, origin_ip, details) \
                            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq";
const INSERT_BLOCKLIST: &str = "INSERT INTO blocklist (pattern, reason, actor, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (pattern) DO NOTHING";
const SCAN_BLOCKLIST: &str = "SELECT l.seq, l.code, l.long_url, l.domain, l.expires_at, l.enabled, l.tags, \
                              l.redirect_type, l.org, l.created_at, l.updated_at, l.version FROM links l \
                              WHERE l.deleted_at IS NULL AND strpos(lower(l.long_url), $1) > 0 ORDER BY l.seq";
const DELETE_BLOCKLIST: &str = "DELETE FROM blocklist WHERE pattern = $1";
const DELETE_HOLDS_OF_SOURCE: &str = "DELETE FROM link_holds WHERE source = $1";
const LIST_BLOCKLIST: &str = "SELECT pattern, reason, actor, created_at FROM blocklist ORDER BY pattern";
const LIST_AUDIT: &str = "SELECT seq, at, actor, action, target, reason, origin_ip, details FROM admin_audit \
                          WHERE ($1::BIGINT IS NULL OR seq < $1) AND ($2::TIMESTAMPTZ IS NULL OR at >= $2) \
                          AND ($3::TIMESTAMPTZ IS NULL OR at < $3) AND ($4::TEXT IS NULL OR actor = $4) \
                          AND ($5::TEXT IS NULL OR action = $5) ORDER BY seq DESC LIMIT $6";

/// A transaction serialized with every other writer (without taking a change number).
async fn begin_write(store: &PostgresLinkStore) -> Result<Tx> {
    let mut tx = store.pool().begin().await?;
    sqlx::query("SELECT last FROM change_counter WHERE id = 1 FOR UPDATE").execute(&mut *tx).await?;
    Ok(tx)
}

async fn begin_read(store: &PostgresLinkStore) -> Result<Tx> {
    Ok(store.pool().begin().await?)
}

fn read_pool(store: &PostgresLinkStore) -> PgPool {
    store.pool().clone()
}

admin_store!(PostgresLinkStore);
