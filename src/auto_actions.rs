//! Automatic actions on anomalies (`[admin.auto-actions]`, off by default): a *critical*
//! anomaly of one of the chosen kinds that names a link disables that link, and says so in
//! the audit log (actor `auto-action`, action `auto.disable`, the anomaly in reason and
//! details) and in the anomaly (its `actions` in `GET /v1/anomalies` and on its later
//! events).
//!
//! One task, in the process that holds the anomaly store (the dataflow process, role `all`
//! or `redirect`), follows the store's events from its cursor (stored in the anomaly store
//! under [`CURSOR_NAME`]; on the very first start the store's head, so anomalies stored
//! before auto actions were turned on are not acted on). For each event that qualifies —
//! severity `critical`, status `open` or `updated`, kind in `kinds`, a link `code`, no
//! `disable` recorded for the anomaly yet, and `window_end` within `max-age` of now (so an
//! old anomaly re-detected after `anomalies.redb` was lost does not disable anything) — it
//! places the admin hold through [`AutoAdmin::disable`] (the machinery of
//! `POST /v1/admin/links/{code}/disable`: the next redirect in every process is a 404 and the
//! owner cannot re-enable it; `POST /v1/admin/links/{code}/enable` lifts it), then records
//! the action in the anomaly store, then advances the cursor.
//!
//! Idempotent across restarts: an anomaly with a recorded `disable` is skipped, and a hold
//! placed before a crash but not yet recorded is recognised by its actor and reason
//! ([`AutoAdmin::disable`] writes nothing then), so a re-read never disables or audits twice.
//! One action per anomaly: a link an admin enabled again is not disabled again by later
//! events of the same anomaly (a new anomaly, e.g. the next burst, acts again).
//!
//! Failures: transient store errors are retried (capped backoff, the event is not skipped);
//! a deleted link or a non-retryable error is logged and the event skipped. Metrics:
//! `sluice_auto_actions_total{action="disable",outcome="applied|already_disabled|link_not_found|failed"}`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_connectors::anomaly_store::actions::AnomalyAction;
use sluice_connectors::anomaly_store::{AnomalyStore, StoredEvent};
use sluice_schemas::{AnomalyKind, AnomalyStatus, Severity};
use sluice_serving::admin::auto::{AUTO_ACTOR, AutoAdmin, AutoDisableOutcome, AutoTrigger};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Name of the auto-actions cursor in the anomaly store.
pub const CURSOR_NAME: &str = "auto-actions";
/// Events read per step.
const PAGE: usize = 256;
/// Longest wait between retries of a failing store.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The follower's cursor: the stored one, or on the very first call the store's head (then
/// stored), so anomalies stored before auto actions were first turned on are not acted on.
/// Called when the anomaly store opens, before the dataflow can add events, and again by the
/// follower.
///
/// Errors: [`sluice_connectors::Error::AnomalyStore`].
pub fn init_cursor(store: &AnomalyStore) -> sluice_connectors::Result<u64> {
    if let Some(c) = store.cursor(CURSOR_NAME)? {
        return Ok(c);
    }
    let head = store.head();
    store.set_cursor(CURSOR_NAME, head)?;
    Ok(head)
}

/// What an automatic action does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutoAction {
    /// Disable the link (an admin hold).
    #[default]
    Disable,
}

/// `[admin.auto-actions]` (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct AutoActionsSection {
    /// Act at all (default `false`).
    pub enabled: bool,
    /// The anomaly kinds acted on (`click_burst`, `visitor_flood`, `bot_share`,
    /// `referrer_spam`, `geo_shift`, `blocklisted_target`); at least one when enabled.
    pub kinds: Vec<AnomalyKind>,
    /// What to do: `"disable"`.
    pub action: AutoAction,
    /// Anomalies whose `window_end` is older than this (event time vs. the wall clock) are
    /// not acted on. At most 7 days.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for AutoActionsSection {
    fn default() -> Self {
        AutoActionsSection { enabled: false, kinds: Vec::new(), action: AutoAction::Disable, max_age: Duration::from_secs(15 * 60) }
    }
}

impl AutoActionsSection {
    /// Errors: enabled without any kind, a zero `max-age`.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.enabled {
            anyhow::ensure!(!self.kinds.is_empty(), "admin.auto-actions.kinds must name at least one anomaly kind when admin.auto-actions.enabled = true");
            anyhow::ensure!(!self.max_age.is_zero(), "admin.auto-actions.max-age must be positive");
        }
        Ok(())
    }
}

/// The running follower (module docs); [`Self::shutdown`] or dropping it stops it.
#[derive(Debug)]
pub struct AutoActions {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl AutoActions {
    /// Starts following `store`, acting through `admin`.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(section: &AutoActionsSection, store: Arc<AnomalyStore>, admin: AutoAdmin) -> AutoActions {
        let (stop, stopped) = watch::channel(false);
        let follower = Follower { kinds: section.kinds.clone(), action: section.action, max_age: section.max_age, store, admin, stopped };
        tracing::info!(kinds = ?section.kinds, action = ?section.action, "automatic actions on critical anomalies are on ([admin.auto-actions])");
        AutoActions { stop, task: Some(tokio::spawn(follower.run())) }
    }

    /// Stops the follower and waits for it (an action in progress completes).
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for AutoActions {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Whether an error is worth retrying the same event for.
enum Step {
    Done,
    Retry(String),
}

struct Follower {
    kinds: Vec<AnomalyKind>,
    action: AutoAction,
    max_age: Duration,
    store: Arc<AnomalyStore>,
    admin: AutoAdmin,
    stopped: watch::Receiver<bool>,
}

async fn blocking<T: Send + 'static>(
    store: &Arc<AnomalyStore>,
    f: impl FnOnce(&AnomalyStore) -> sluice_connectors::Result<T> + Send + 'static,
) -> Result<T, String> {
    let s = Arc::clone(store);
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("anomaly store task failed: {e}")),
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("sluice_auto_actions_total", "action" => "disable", "outcome" => outcome).increment(1);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Follower {
    /// Sleeps `d` unless stopped first; returns whether to go on.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => !*self.stopped.borrow(),
            _ = self.stopped.changed() => false,
        }
    }

    async fn run(mut self) {
        let mut delay = Duration::from_millis(100);
        // The cursor: stored, or the head on the first start (then stored).
        let mut cursor = loop {
            let got = blocking(&self.store, init_cursor).await;
            match got {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "auto actions: could not read their cursor, retrying");
                    if !self.pause(delay).await {
                        return;
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
        };
        let mut head = self.store.subscribe();
        loop {
            if *self.stopped.borrow() {
                return;
            }
            head.mark_unchanged();
            let events = match blocking(&self.store, move |s| s.events_after(cursor, PAGE)).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "auto actions: could not read anomaly events, retrying");
                    if !self.pause(delay).await {
                        return;
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                    continue;
                }
            };
            if events.is_empty() {
                tokio::select! {
                    r = head.changed() => if r.is_err() { return },
                    _ = self.stopped.changed() => return,
                }
                continue;
            }
            let before = cursor;
            for ev in &events {
                match self.handle(ev).await {
                    Step::Done => cursor = ev.event_id,
                    Step::Retry(e) => {
                        tracing::warn!(error = %e, event_id = ev.event_id, "auto actions: transient failure, retrying the event");
                        break;
                    }
                }
            }
            if cursor != before {
                delay = Duration::from_millis(100);
                let c = cursor;
                if let Err(e) = blocking(&self.store, move |s| s.set_cursor(CURSOR_NAME, c)).await {
                    // Harmless: a restart re-reads from the older cursor and skips what is done.
                    tracing::warn!(error = %e, "auto actions: could not store their cursor");
                }
            } else {
                if !self.pause(delay).await {
                    return;
                }
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }

    /// Whether `ev` calls for an action: the code to act on.
    fn qualifies<'a>(&self, ev: &'a StoredEvent) -> Option<&'a str> {
        let a = &ev.anomaly;
        if a.severity != Severity::Critical || a.status == AnomalyStatus::Closed || !self.kinds.contains(&a.kind) {
            return None;
        }
        let code = a.code.as_deref()?;
        if ev.actions.iter().any(|x| x.action == "disable") {
            return None;
        }
        let max_age_ms = i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX);
        if a.window_end < now_ms().saturating_sub(max_age_ms) {
            tracing::info!(code, anomaly_id = %a.anomaly_id, "auto actions: anomaly older than admin.auto-actions.max-age, not acted on");
            return None;
        }
        Some(code)
    }

    async fn handle(&self, ev: &StoredEvent) -> Step {
        let Some(code) = self.qualifies(ev) else { return Step::Done };
        let AutoAction::Disable = self.action;
        let a = &ev.anomaly;
        let trigger = AutoTrigger {
            anomaly_id: a.anomaly_id,
            kind: a.kind.as_str().to_owned(),
            severity: a.severity.as_str().to_owned(),
            event_id: ev.event_id,
            summary: a.summary.clone(),
        };
        let outcome = match self.admin.disable(code, &trigger).await {
            Ok(AutoDisableOutcome::Applied | AutoDisableOutcome::AppliedEarlier) => "applied",
            Ok(AutoDisableOutcome::AlreadyDisabled) => "already_disabled",
            Err(sluice_connectors::Error::NotFound(_)) => {
                tracing::warn!(code, anomaly_id = %a.anomaly_id, "auto actions: the anomaly's link no longer exists");
                count("link_not_found");
                return Step::Done;
            }
            Err(e) if e.retryable() => return Step::Retry(e.to_string()),
            Err(e) => {
                tracing::error!(error = %e, code, anomaly_id = %a.anomaly_id, "auto actions: could not disable the link");
                count("failed");
                return Step::Done;
            }
        };
        let record = AnomalyAction {
            action: "disable".into(),
            outcome: outcome.into(),
            code: code.to_owned(),
            actor: AUTO_ACTOR.into(),
            at_ms: now_ms(),
            event_id: ev.event_id,
        };
        let id = *a.anomaly_id.as_bytes();
        match blocking(&self.store, move |s| s.record_action(&id, &record)).await {
            Ok(_) => {
                count(outcome);
                Step::Done
            }
            // The hold is in place; the retry recognises it and only records.
            Err(e) => Step::Retry(e),
        }
    }
}

#[cfg(test)]
mod tests;
