//! [`AdminStore`]: the admin controls' durable state, kept in the link store's database so
//! it commits atomically with the link changes it causes.
//!
//! - the run-time **blocklist** of destination domains (normalized by the caller: lowercase
//!   ASCII/punycode, no trailing dot, no port; an entry covers its subdomains);
//! - **holds**: why a link is administratively disabled — an explicit admin disable
//!   ([`HOLD_ADMIN`]) or a blocklist entry ([`blocklist_source`]). While a link has a hold its
//!   `enabled` is `false`, written through the normal update path (version + 1, a change-feed
//!   entry), so caches and the dataflow see it like any other change. When the last hold goes,
//!   the owner's own `enabled` value from before the first hold is restored;
//! - the append-only **audit log** of admin and automatic actions (the database refuses
//!   `UPDATE`/`DELETE` on it). Every mutating method appends its audit record in the same
//!   transaction as the change it records.
//!
//! Both backends implement it (SQLite and PostgreSQL, migration `0002_admin.sql`); reach it
//! through [`super::LinkStore::admin`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sluice_schemas::Link;

use crate::Result;

/// Hold source of an explicit admin disable (`POST /v1/admin/links/{code}/disable`).
pub const HOLD_ADMIN: &str = "admin";

/// Hold source of the blocklist entry `pattern`: `"blocklist:<pattern>"`.
pub fn blocklist_source(pattern: &str) -> String {
    format!("blocklist:{pattern}")
}

/// Largest page [`AdminStore::audit_list`] returns.
pub const MAX_AUDIT_LIMIT: u32 = 1000;

/// One blocklist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlocklistEntry {
    /// Normalized domain (module docs).
    pub pattern: String,
    /// Why it was added, if given.
    pub reason: Option<String>,
    /// Who added it (`"admin-token"`, `"loopback"`, `"auto"`).
    pub actor: String,
    /// When (UTC, microseconds).
    pub created_at: DateTime<Utc>,
}

/// One hold on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkHold {
    /// [`HOLD_ADMIN`] or `"blocklist:<pattern>"`.
    pub source: String,
    /// Why, if given.
    pub reason: Option<String>,
    /// Who placed it.
    pub actor: String,
    /// When (UTC, microseconds).
    pub created_at: DateTime<Utc>,
}

/// A link after a hold was placed or released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldOutcome {
    /// The link's state after the operation.
    pub link: Link,
    /// Whether `enabled` flipped, i.e. a new version and a change-feed entry were written
    /// (the caller must then invalidate caches, as after any update).
    pub changed: bool,
    /// The holds the link has now, oldest first.
    pub holds: Vec<LinkHold>,
}

/// Result of [`AdminStore::blocklist_add`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlocklistAdded {
    /// `false` when the entry already existed (nothing changed, no audit record written).
    pub added: bool,
    /// The live links held by this entry, in creation order.
    pub links: Vec<HoldOutcome>,
}

/// One audit record. `seq` is assigned by the store (pass 0 when appending); it grows in
/// commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Position in the log (1, 2, ...; gaps possible in PostgreSQL).
    pub seq: i64,
    /// When the action happened (UTC, stored with microsecond resolution).
    pub at: DateTime<Utc>,
    /// Who: `"admin-token"`, `"loopback"`, `"auto"` (automatic actions).
    pub actor: String,
    /// What: `blocklist.add`, `blocklist.remove`, `link.disable`, `link.enable`, `auto.disable`, ...
    pub action: String,
    /// On what: a link code or a blocklist pattern.
    pub target: String,
    /// Why, if given.
    pub reason: Option<String>,
    /// The client address the request came from (`None` for automatic actions).
    pub origin_ip: Option<String>,
    /// Structured extras (a JSON object; the store adds `"affected": [codes]` for blocklist
    /// changes).
    pub details: Value,
}

/// Filter and keyset position for [`AdminStore::audit_list`] (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Page size, 1..=[`MAX_AUDIT_LIMIT`].
    pub limit: u32,
    /// Only records with `seq` below this (the decoded cursor).
    pub before_seq: Option<i64>,
    /// Only records at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Only records before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
}

/// Decides whether a live link is covered by a new blocklist entry (the caller parses the
/// target's host; the store only pre-filters by substring).
pub type LinkFilter<'a> = &'a (dyn Fn(&Link) -> bool + Send + Sync);

/// The admin controls' storage (module docs). Errors: [`crate::Error::NotFound`] for an
/// unknown code, [`crate::Error::InvalidValue`] for NUL characters, out-of-range instants or a
/// bad limit, database errors as elsewhere.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Adds `entry` and, atomically with it, holds every live link whose target contains
    /// `entry.pattern` and passes `matches`, appending `audit` (with `"affected"` codes).
    /// An existing entry changes nothing and returns the links it holds.
    async fn blocklist_add(&self, entry: &BlocklistEntry, matches: LinkFilter<'_>, audit: &AuditRecord) -> Result<BlocklistAdded>;

    /// Removes the entry and its holds (links without other holds get their owner's
    /// `enabled` back), appending `audit` (with `"affected"` codes). `None` when there was no
    /// such entry (nothing written).
    async fn blocklist_remove(&self, pattern: &str, now: DateTime<Utc>, audit: &AuditRecord) -> Result<Option<Vec<HoldOutcome>>>;

    /// Every entry, sorted by pattern.
    async fn blocklist_list(&self) -> Result<Vec<BlocklistEntry>>;

    /// Places hold `source` on the live link `code` (idempotent: an existing hold of this
    /// source is kept as it was) and appends `audit` if given.
    async fn hold_link(&self, code: &str, hold: &LinkHold, now: DateTime<Utc>, audit: Option<&AuditRecord>) -> Result<HoldOutcome>;

    /// Releases hold `source` of the live link `code` (no-op if absent) and appends `audit`
    /// if given; the owner's `enabled` comes back when no hold is left.
    async fn release_link(&self, code: &str, source: &str, now: DateTime<Utc>, audit: Option<&AuditRecord>) -> Result<HoldOutcome>;

    /// The holds of the live link `code`, oldest first ([`crate::Error::NotFound`] if none).
    async fn link_holds(&self, code: &str) -> Result<Vec<LinkHold>>;

    /// Appends one record; returns it with its `seq` and `at` as stored.
    async fn audit_append(&self, record: &AuditRecord) -> Result<AuditRecord>;

    /// A page of records, newest first.
    async fn audit_list(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>>;
}

/// `details` with `"affected": codes` added (a non-object `details` is wrapped as `"value"`).
pub(crate) fn with_affected(details: &Value, codes: &[String]) -> Value {
    let mut obj = match details {
        Value::Object(m) => m.clone(),
        Value::Null => serde_json::Map::new(),
        other => {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), other.clone());
            m
        }
    };
    obj.insert("affected".into(), Value::from(codes.to_vec()));
    Value::Object(obj)
}

/// Checks an audit record's strings and instant.
pub(crate) fn check_audit(r: &AuditRecord) -> Result<()> {
    use super::common::{check_text, check_time};
    check_time("at", r.at)?;
    check_text("actor", &r.actor)?;
    check_text("action", &r.action)?;
    check_text("target", &r.target)?;
    if let Some(s) = &r.reason {
        check_text("reason", s)?;
    }
    if let Some(s) = &r.origin_ip {
        check_text("origin_ip", s)?;
    }
    Ok(())
}

/// Checks a hold's strings.
pub(crate) fn check_hold(h: &LinkHold, now: DateTime<Utc>) -> Result<()> {
    use super::common::{check_text, check_time};
    check_time("now", now)?;
    check_text("source", &h.source)?;
    check_text("actor", &h.actor)?;
    if let Some(s) = &h.reason {
        check_text("reason", s)?;
    }
    Ok(())
}

/// Checks an audit page size.
pub(crate) fn check_audit_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_AUDIT_LIMIT {
        return Err(crate::Error::InvalidValue { field: "limit", reason: format!("{limit} is outside 1..={MAX_AUDIT_LIMIT}") });
    }
    Ok(())
}
