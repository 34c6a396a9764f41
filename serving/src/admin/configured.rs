//! The configuration's `[links] blocklist` applied to the links that already exist.
//!
//! A static entry refuses new targets through the URL policy ([`crate::url_policy`]), but
//! links created before it was configured would keep redirecting. So a process that serves
//! the API applies its static entries at start-up, before it serves any redirect or API
//! request (the `sluice` binary's start-up gate answers those 503 `starting` meanwhile)
//! ([`apply_configured_blocklist`]), through the same store mechanism as
//! `POST /v1/admin/blocklist`: each entry not stored yet is added to the store's blocklist
//! with actor [`CONFIG_ACTOR`], which holds every live link it covers (hold source
//! `blocklist:<pattern>`, the link disabled as an ordinary change, so the redirect caches of
//! every process drop it) and appends a `blocklist.add` audit record. An entry a previous
//! start stored from the configuration that the configuration no longer lists is removed
//! (`blocklist.remove`, actor [`CONFIG_ACTOR`]): its links get their owner's `enabled` back
//! unless another hold keeps them disabled.
//!
//! From then on such a link behaves exactly as one held by a run-time entry: its redirect is
//! a 404, its owner's `PATCH {"enabled": true}` is 409 `link_held`, other `PATCH` fields are
//! applied while it stays disabled, `POST /v1/admin/links/{code}/enable` is 409
//! `link_blocklisted`, and the dataflow's `blocklisted_target` detector gets the entry
//! through the periodic sync of the store's blocklist ([`super::feed`]). The redirect's hot
//! path does no blocklist work at all.
//!
//! Stored entries of the configuration are told apart by their actor: `GET
//! /v1/admin/blocklist` lists them under `config`, not `items`, and `DELETE
//! /v1/admin/blocklist/{pattern}` does not remove them (the configuration does, at the next
//! start). An entry an administrator added before it was also configured keeps its actor
//! and stays when the configuration drops it again. Processes that serve the API over one
//! store should list the same entries: each start makes the stored configuration entries
//! those of the starting process.

use std::collections::BTreeSet;

use sluice_connectors::{AuditRecord, BlocklistEntry, HoldOutcome, LinkChange};

use super::policy::{canonical_pattern, covers, target_host};
use crate::state::ApiState;

/// Actor of the blocklist entries, holds and audit records written for the configuration's
/// `[links] blocklist` (admin requests are `admin-token` or `loopback`, automatic actions
/// `auto`).
pub const CONFIG_ACTOR: &str = "config";

/// Reason recorded with an entry (and its holds and audit record) added from the configuration.
pub const ADDED_REASON: &str = "listed in [links] blocklist";

/// Reason recorded in the audit record of an entry the configuration no longer lists.
pub const REMOVED_REASON: &str = "no longer listed in [links] blocklist";

/// What [`apply_configured_blocklist`] changed (all empty when the store already matched the
/// configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfiguredBlocklist {
    /// Patterns of the configuration stored by this call, sorted.
    pub added: Vec<String>,
    /// Patterns stored from an earlier configuration and removed by this call, sorted.
    pub removed: Vec<String>,
    /// Codes of the live links the added patterns hold (an owner-disabled link included), in
    /// creation order per pattern.
    pub held: Vec<String>,
    /// Codes of the live links the removed patterns released, in creation order per pattern.
    pub released: Vec<String>,
}

impl ConfiguredBlocklist {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Makes the store's configuration entries equal to `state`'s static blocklist (module
/// docs): adds the missing ones, holding the live links they cover, and removes those no
/// longer configured, releasing their links. Every changed link goes through `state`'s
/// link-change hooks (redirect caches of this and, with Redis, every other process; the
/// dataflow's metadata feed). Idempotent; a store without admin state changes nothing.
///
/// Errors: the store's (nothing is half-applied per entry: each entry is added or removed
/// with its holds and audit record in one transaction; a retry applies what is left).
pub async fn apply_configured_blocklist(state: &ApiState) -> sluice_connectors::Result<ConfiguredBlocklist> {
    let Some(admin) = state.inner.store.admin() else { return Ok(ConfiguredBlocklist::default()) };
    let configured: BTreeSet<String> = state.inner.policy.blocklist.iter().map(|p| canonical_pattern(p)).collect();
    let stored = admin.blocklist_list().await?;
    let mut out = ConfiguredBlocklist::default();
    for pattern in &configured {
        if stored.iter().any(|e| canonical_pattern(&e.pattern) == *pattern) {
            continue;
        }
        let now = crate::links::now_ms();
        let entry = BlocklistEntry { pattern: pattern.clone(), reason: Some(ADDED_REASON.into()), actor: CONFIG_ACTOR.into(), created_at: now };
        let matches = |l: &sluice_schemas::Link| target_host(&l.long_url).is_some_and(|h| covers(pattern, &h));
        let added = admin.blocklist_add(&entry, &matches, &audit("blocklist.add", pattern, ADDED_REASON, now)).await?;
        // Stored meanwhile by another process: it held the links and wrote the record.
        if added.added {
            notify(state, &added.links);
            out.added.push(pattern.clone());
            out.held.extend(added.links.iter().map(|o| o.link.code.clone()));
        }
    }
    for e in stored.iter().filter(|e| e.actor == CONFIG_ACTOR && !configured.contains(&canonical_pattern(&e.pattern))) {
        let now = crate::links::now_ms();
        // `None`: removed meanwhile by another process.
        if let Some(released) = admin.blocklist_remove(&e.pattern, now, &audit("blocklist.remove", &e.pattern, REMOVED_REASON, now)).await? {
            notify(state, &released);
            out.removed.push(canonical_pattern(&e.pattern));
            out.released.extend(released.iter().map(|o| o.link.code.clone()));
        }
    }
    out.removed.sort();
    Ok(out)
}

/// Whether the stored entry `e` was stored from a configuration's `[links] blocklist`.
pub fn is_configured(e: &BlocklistEntry) -> bool {
    e.actor == CONFIG_ACTOR
}

fn audit(action: &str, pattern: &str, reason: &str, at: chrono::DateTime<chrono::Utc>) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at,
        actor: CONFIG_ACTOR.into(),
        action: action.into(),
        target: pattern.into(),
        reason: Some(reason.into()),
        origin_ip: None,
        details: serde_json::Value::Null,
    }
}

fn notify(state: &ApiState, outcomes: &[HoldOutcome]) {
    for o in outcomes.iter().filter(|o| o.changed) {
        state.notify(LinkChange::Upserted(o.link.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;
    use sluice_connectors::{LinkPatch, LinkStore, SqliteLinkStore};

    use super::*;
    use crate::ApiConfig;

    fn state(store: Arc<dyn LinkStore>, blocklist: &[&str], changes: Arc<Mutex<Vec<String>>>) -> ApiState {
        let mut cfg = ApiConfig::new(url::Url::parse("https://s.example").expect("url"));
        cfg.blocklist = blocklist.iter().map(|s| (*s).to_owned()).collect();
        let hook = move |c: &LinkChange| {
            if let LinkChange::Upserted(l) = c {
                changes.lock().push(format!("{} {}", l.code, l.enabled));
            }
        };
        ApiState::new(store, cfg).with_hook(Arc::new(hook))
    }

    async fn link(store: &dyn LinkStore, code: &str, url: &str) {
        let now = crate::links::now_ms();
        let l = sluice_schemas::Link {
            code: code.into(),
            long_url: url.into(),
            domain: None,
            expires_at: None,
            enabled: true,
            tags: vec![],
            redirect_type: sluice_schemas::RedirectType::Found,
            org: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        store.insert(&l).await.expect("insert");
    }

    #[tokio::test]
    async fn configured_entries_hold_existing_links_and_release_them_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn LinkStore> = Arc::new(SqliteLinkStore::open_dir(dir.path()).await.expect("store"));
        link(store.as_ref(), "a", "https://evil.example/a").await;
        link(store.as_ref(), "b", "https://sub.evil.example/b").await;
        link(store.as_ref(), "c", "https://notevil.example/c").await;
        link(store.as_ref(), "d", "https://evil.example/d").await;
        store.update("d", &LinkPatch { enabled: Some(false), ..LinkPatch::default() }, None, crate::links::now_ms()).await.expect("owner disables d");
        let admin = store.admin().expect("admin");

        let changes = Arc::new(Mutex::new(Vec::new()));
        let s = state(Arc::clone(&store), &["EVIL.example"], Arc::clone(&changes));
        let out = apply_configured_blocklist(&s).await.expect("apply");
        assert_eq!(
            out,
            ConfiguredBlocklist { added: vec!["evil.example".into()], removed: vec![], held: vec!["a".into(), "b".into(), "d".into()], released: vec![] }
        );
        // Only links whose `enabled` flipped are announced.
        assert_eq!(*changes.lock(), ["a false", "b false"]);
        assert_eq!(admin.link_holds("a").await.expect("holds")[0].source, "blocklist:evil.example");
        assert_eq!(admin.link_holds("a").await.expect("holds")[0].actor, CONFIG_ACTOR);
        assert!(admin.link_holds("c").await.expect("holds").is_empty());
        let stored = admin.blocklist_list().await.expect("list");
        assert_eq!((stored.len(), stored[0].actor.as_str(), stored[0].reason.as_deref()), (1, CONFIG_ACTOR, Some(ADDED_REASON)));
        // Again with the same configuration: nothing to do, no audit record.
        changes.lock().clear();
        assert!(apply_configured_blocklist(&s).await.expect("again").is_empty());
        assert!(changes.lock().is_empty());

        // The configuration drops it: released, the owner's own `enabled` back.
        let s = state(Arc::clone(&store), &[], Arc::clone(&changes));
        let out = apply_configured_blocklist(&s).await.expect("release");
        assert_eq!(
            out,
            ConfiguredBlocklist { added: vec![], removed: vec!["evil.example".into()], held: vec![], released: vec!["a".into(), "b".into(), "d".into()] }
        );
        assert_eq!(*changes.lock(), ["a true", "b true"]);
        assert!(!store.get("d").await.expect("get").expect("d").enabled);
        assert!(admin.blocklist_list().await.expect("list").is_empty());
        let audit = admin.audit_list(&sluice_connectors::AuditQuery { limit: 10, ..Default::default() }).await.expect("audit");
        let got: Vec<(&str, &str, &str, serde_json::Value)> =
            audit.iter().map(|r| (r.action.as_str(), r.actor.as_str(), r.target.as_str(), r.details.clone())).collect();
        assert_eq!(
            got,
            [
                ("blocklist.remove", CONFIG_ACTOR, "evil.example", serde_json::json!({"affected": ["a", "b", "d"]})),
                ("blocklist.add", CONFIG_ACTOR, "evil.example", serde_json::json!({"affected": ["a", "b", "d"]})),
            ]
        );
    }

    #[tokio::test]
    async fn an_administrators_entry_is_neither_duplicated_nor_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn LinkStore> = Arc::new(SqliteLinkStore::open_dir(dir.path()).await.expect("store"));
        link(store.as_ref(), "a", "https://evil.example/a").await;
        let admin = store.admin().expect("admin");
        let now = crate::links::now_ms();
        let entry = BlocklistEntry { pattern: "evil.example".into(), reason: None, actor: "admin-token".into(), created_at: now };
        let mut record = audit("blocklist.add", "evil.example", "x", now);
        record.actor = "admin-token".into();
        admin.blocklist_add(&entry, &|_| true, &record).await.expect("admin adds");
        let changes = Arc::new(Mutex::new(Vec::new()));
        // Configured too: already stored, nothing changes.
        assert!(apply_configured_blocklist(&state(Arc::clone(&store), &["evil.example"], Arc::clone(&changes))).await.expect("apply").is_empty());
        // No longer configured: the administrator's entry stays.
        assert!(apply_configured_blocklist(&state(Arc::clone(&store), &[], Arc::clone(&changes))).await.expect("apply").is_empty());
        assert_eq!(admin.blocklist_list().await.expect("list")[0].actor, "admin-token");
        assert!(!store.get("a").await.expect("get").expect("a").enabled);
        assert!(changes.lock().is_empty());
    }
}
