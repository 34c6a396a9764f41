//! An in-memory [`LinkStore`] with the same observable behaviour as the real stores, for
//! fast unit tests (feature `testing`). Not durable; not for production.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use parking_lot::Mutex;
use sluice_connectors::{Error, IdempotencyRecord, LinkChange, LinkPatch, LinkStore, ListQuery, Result, UpdateOutcome};
use sluice_schemas::Link;

/// How long a deleted code stays blocked.
const TOMBSTONE_DAYS: i64 = 30;
/// How long an idempotency record counts.
const IDEMPOTENCY_HOURS: i64 = 24;

#[derive(Default)]
struct State {
    next_seq: i64,
    /// code → (seq, link)
    live: HashMap<String, (i64, Link)>,
    tombstones: HashMap<String, DateTime<Utc>>,
    /// Codes [`LinkStore::retire_codes`] retired.
    retired: HashSet<String>,
    changes: BTreeMap<i64, LinkChange>,
    idempotency: HashMap<String, IdempotencyRecord>,
}

impl State {
    fn bump(&mut self) -> i64 {
        self.next_seq += 1;
        self.next_seq
    }
}

/// In-memory link store.
#[derive(Default)]
pub struct MemoryLinkStore {
    state: Mutex<State>,
}

impl MemoryLinkStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl LinkStore for MemoryLinkStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn retire_codes(&self, codes: &[String]) -> Result<()> {
        self.state.lock().retired.extend(codes.iter().filter(|c| !c.contains('\0')).cloned());
        Ok(())
    }

    async fn insert(&self, link: &Link) -> Result<Link> {
        insert_locked(&mut self.state.lock(), link)
    }

    async fn insert_idempotent(&self, link: &Link, record: &IdempotencyRecord) -> Result<Link> {
        let mut s = self.state.lock();
        if live_record(&s, &record.key, record.created_at).is_some() {
            return Err(Error::IdempotencyKeyExists);
        }
        let stored = insert_locked(&mut s, link)?;
        s.idempotency.insert(record.key.clone(), record.clone());
        Ok(stored)
    }

    async fn get(&self, code: &str) -> Result<Option<Link>> {
        Ok(self.state.lock().live.get(code).map(|(_, l)| l.clone()))
    }

    async fn update(&self, code: &str, patch: &LinkPatch, expected_version: Option<i64>, now: DateTime<Utc>) -> Result<UpdateOutcome> {
        let mut s = self.state.lock();
        let (_, link) = s.live.get_mut(code).ok_or_else(|| Error::NotFound(code.to_owned()))?;
        if let Some(expected) = expected_version
            && expected != link.version
        {
            return Err(Error::VersionMismatch { code: code.to_owned(), expected, actual: link.version });
        }
        let mut next = link.clone();
        if let Some(u) = &patch.long_url {
            next.long_url = u.clone();
        }
        if let Some(e) = patch.enabled {
            next.enabled = e;
        }
        if let Some(e) = patch.expires_at {
            next.expires_at = e;
        }
        if let Some(t) = &patch.tags {
            next.tags = t.clone();
        }
        if let Some(r) = patch.redirect_type {
            next.redirect_type = r;
        }
        if let Some(o) = &patch.org {
            next.org.clone_from(o);
        }
        // As the real stores: a patch that changes nothing writes no revision.
        if next == *link {
            return Ok(UpdateOutcome { link: next, written: false });
        }
        next.version += 1;
        next.updated_at = now;
        *link = next.clone();
        let change_seq = s.bump();
        s.changes.insert(change_seq, LinkChange::Upserted(next.clone()));
        Ok(UpdateOutcome { link: next, written: true })
    }

    async fn delete(&self, code: &str, expected_version: Option<i64>, now: DateTime<Utc>) -> Result<Link> {
        let mut s = self.state.lock();
        let actual = s.live.get(code).ok_or_else(|| Error::NotFound(code.to_owned()))?.1.version;
        if let Some(expected) = expected_version.filter(|&v| v != actual) {
            return Err(Error::VersionMismatch { code: code.to_owned(), expected, actual });
        }
        let (_, link) = s.live.remove(code).ok_or_else(|| Error::NotFound(code.to_owned()))?;
        s.tombstones.insert(code.to_owned(), now);
        let seq = s.bump();
        s.changes.insert(seq, LinkChange::Deleted(code.to_owned()));
        Ok(link)
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<(i64, Link)>> {
        let s = self.state.lock();
        let mut rows: Vec<(i64, Link)> = s
            .live
            .values()
            .filter(|(seq, l)| {
                query.after_seq.is_none_or(|a| *seq > a)
                    && query.tag.as_ref().is_none_or(|t| l.tags.contains(t))
                    && query.enabled.is_none_or(|e| l.enabled == e)
                    && query.org.as_ref().is_none_or(|o| l.org.as_ref() == Some(o))
            })
            .cloned()
            .collect();
        rows.sort_by_key(|(seq, _)| *seq);
        rows.truncate(query.limit as usize);
        Ok(rows)
    }

    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<(i64, LinkChange)>> {
        let s = self.state.lock();
        Ok(s.changes.range(after + 1..).take(limit as usize).map(|(k, v)| (*k, v.clone())).collect())
    }

    async fn idempotency_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<IdempotencyRecord>> {
        Ok(live_record(&self.state.lock(), key, now).cloned())
    }

    async fn idempotency_put(&self, record: &IdempotencyRecord) -> Result<()> {
        let mut s = self.state.lock();
        if live_record(&s, &record.key, record.created_at).is_some() {
            return Err(Error::IdempotencyKeyExists);
        }
        s.idempotency.insert(record.key.clone(), record.clone());
        Ok(())
    }
}

/// The record for `key` unexpired at `now`.
fn live_record<'a>(s: &'a State, key: &str, now: DateTime<Utc>) -> Option<&'a IdempotencyRecord> {
    s.idempotency.get(key).filter(|r| now - r.created_at < Duration::hours(IDEMPOTENCY_HOURS))
}

/// [`LinkStore::insert`] under the store's lock.
fn insert_locked(s: &mut State, link: &Link) -> Result<Link> {
    if s.live.contains_key(&link.code) || s.retired.contains(&link.code) {
        return Err(Error::CodeTaken(link.code.clone()));
    }
    if let Some(deleted_at) = s.tombstones.get(&link.code)
        && link.created_at - *deleted_at < Duration::days(TOMBSTONE_DAYS)
    {
        return Err(Error::CodeTaken(link.code.clone()));
    }
    let seq = s.bump();
    s.live.insert(link.code.clone(), (seq, link.clone()));
    s.changes.insert(seq, LinkChange::Upserted(link.clone()));
    Ok(link.clone())
}
