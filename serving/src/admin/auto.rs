//! The link side of the automatic actions on anomalies (`[admin.auto-actions]` in the
//! binary, which follows the anomaly store and calls [`AutoAdmin::disable`]).
//!
//! An automatic disable is the same admin hold as `POST /v1/admin/links/{code}/disable`
//! ([`HOLD_ADMIN`], so `POST /v1/admin/links/{code}/enable` lifts it and the owner cannot
//! re-enable the link), placed by actor [`AUTO_ACTOR`] with the anomaly named in its reason,
//! committed together with an audit record (`action` [`AUTO_DISABLE`], no origin IP,
//! `details` naming the anomaly), after which the link-change hooks run (redirect caches in
//! this process and, with Redis, every other process).
//!
//! Idempotent per anomaly: before writing, the link's holds are read; an admin hold already
//! placed by [`AUTO_ACTOR`] for this anomaly (a restart after the hold, before the caller
//! recorded it) or by anyone else changes nothing and writes no second audit record.

use serde_json::json;
use sluice_connectors::{AdminStore, AuditRecord, HOLD_ADMIN, LinkHold};

use super::MAX_REASON_CHARS;
use crate::state::ApiState;
use sluice_connectors::LinkChange;

/// Actor of automatic actions (holds and audit records).
pub const AUTO_ACTOR: &str = "auto-action";
/// Audit action of an automatic disable.
pub const AUTO_DISABLE: &str = "auto.disable";

/// What an automatic disable did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoDisableOutcome {
    /// This call placed the hold and wrote the audit record.
    Applied,
    /// The hold for this anomaly was placed earlier (with its audit record); nothing written.
    AppliedEarlier,
    /// Another admin hold was already on the link; nothing written.
    AlreadyDisabled,
}

/// The anomaly behind an automatic action.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoTrigger {
    /// Its id.
    pub anomaly_id: uuid::Uuid,
    /// Its kind (`click_burst`, ...).
    pub kind: String,
    /// Its severity as of the triggering event.
    pub severity: String,
    /// The anomaly store event that triggered the action.
    pub event_id: u64,
    /// Its one-line summary.
    pub summary: String,
}

impl AutoTrigger {
    /// The hold and audit reason: `"critical click_burst anomaly <id>: <summary>"`, cut to
    /// [`MAX_REASON_CHARS`]. Always contains the anomaly id (the idempotency check looks for it).
    pub fn reason(&self) -> String {
        let full = format!("{} {} anomaly {}: {}", self.severity, self.kind, self.anomaly_id, self.summary);
        full.chars().filter(|c| !c.is_control()).take(MAX_REASON_CHARS).collect()
    }
}

/// Applies automatic actions to links (module docs).
#[derive(Clone, Debug)]
pub struct AutoAdmin {
    api: ApiState,
}

impl AutoAdmin {
    /// Over the link API's state (its store and change hooks); `None` when the store keeps
    /// no admin state (then no hold can be placed).
    pub fn new(api: ApiState) -> Option<AutoAdmin> {
        api.inner.store.admin()?;
        Some(AutoAdmin { api })
    }

    fn store(&self) -> &dyn AdminStore {
        self.api.inner.store.admin().unwrap_or_else(|| unreachable!("checked in AutoAdmin::new"))
    }

    /// Disables link `code` because of `trigger` (module docs).
    ///
    /// Errors: [`sluice_connectors::Error::NotFound`] when the link does not exist (deleted),
    /// database errors (retryable ones: [`sluice_connectors::Error::retryable`]).
    pub async fn disable(&self, code: &str, trigger: &AutoTrigger) -> Result<AutoDisableOutcome, sluice_connectors::Error> {
        let store = self.store();
        let id = trigger.anomaly_id.to_string();
        let holds = store.link_holds(code).await?;
        if let Some(h) = holds.iter().find(|h| h.source == HOLD_ADMIN) {
            return Ok(if h.actor == AUTO_ACTOR && h.reason.as_deref().is_some_and(|r| r.contains(&id)) {
                AutoDisableOutcome::AppliedEarlier
            } else {
                AutoDisableOutcome::AlreadyDisabled
            });
        }
        let reason = trigger.reason();
        let at = crate::links::now_ms();
        let audit = AuditRecord {
            seq: 0,
            at,
            actor: AUTO_ACTOR.to_owned(),
            action: AUTO_DISABLE.to_owned(),
            target: code.to_owned(),
            reason: Some(reason.clone()),
            origin_ip: None,
            details: json!({ "anomaly_id": id, "kind": trigger.kind, "severity": trigger.severity, "event_id": trigger.event_id }),
        };
        let hold = LinkHold { source: HOLD_ADMIN.into(), reason: Some(reason), actor: AUTO_ACTOR.to_owned(), created_at: at };
        let out = store.hold_link(code, &hold, at, Some(&audit)).await?;
        if out.changed {
            self.api.notify(LinkChange::Upserted(out.link.clone()));
        }
        super::count(AUTO_DISABLE);
        tracing::warn!(code, anomaly_id = %id, kind = trigger.kind, "link disabled automatically ([admin.auto-actions])");
        Ok(AutoDisableOutcome::Applied)
    }
}
