//! The JSON form of an anomaly event, shared by the list, the stream and webhook bodies.

use serde::{Deserialize, Serialize};
use sluice_connectors::anomaly_store::actions::AnomalyAction;
use sluice_connectors::anomaly_store::{LatestAnomaly, StoredEvent};
use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus, Evidence, Severity};
use utoipa::ToSchema;

use crate::stats::params::rfc3339_utc;

/// One anomaly event (a list item is the anomaly's latest event). Times are RFC 3339 UTC;
/// `window_start`/`window_end` are event time, `detected_at` the pipeline's processing time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnomalyEventBody {
    /// Sequence number of the event in the anomaly store (the SSE `id:`; monotonic).
    pub event_id: u64,
    /// Stable id of the anomaly (UUIDv8 derived from kind, key and first window).
    pub anomaly_id: uuid::Uuid,
    /// 0 for `open`, +1 per later event of the anomaly.
    pub revision: u32,
    /// `open`, `updated` or `closed`.
    pub status: AnomalyStatus,
    /// Kind of abuse.
    pub kind: AnomalyKind,
    /// `link:<code>`, `visitor:<16 hex>` or `network:<cidr>`.
    pub key: String,
    /// Severity as of this event.
    pub severity: Severity,
    /// The link concerned, if any.
    pub code: Option<String>,
    /// Owning organisation of `code`, if known.
    pub org: Option<String>,
    /// Start of the window of first detection.
    pub window_start: String,
    /// End of the latest window in which the condition held.
    pub window_end: String,
    /// The detector's measure (clicks or a 0..=1 share).
    pub observed: f64,
    /// What the baseline predicted (or the threshold).
    pub expected: f64,
    /// How far `observed` is beyond `expected`.
    pub score: f64,
    /// One-line description.
    pub summary: String,
    /// What was seen in the latest window. A `visitor_flood`'s `top_codes`,
    /// `top_user_agents` (and its `code`, the top link) count only the clicks since the
    /// detector started tracking the visitor or network (at its `info-min-clicks / 2`-th click
    /// in the window), so they may add up to fewer than `evidence.clicks` (by at most 14 for a
    /// visitor, 29 for a network with the default levels).
    pub evidence: Evidence,
    /// When the pipeline emitted the event.
    pub detected_at: String,
    /// What was done about the anomaly so far (automatic actions, `[admin.auto-actions]`),
    /// oldest first; `[]` when nothing.
    pub actions: Vec<AnomalyActionBody>,
}

/// An action taken because of an anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnomalyActionBody {
    /// `disable`.
    pub action: String,
    /// `applied` (this action disabled the link) or `already_disabled` (an admin hold was
    /// already on it; nothing changed).
    pub outcome: String,
    /// The link acted on.
    pub code: String,
    /// Who: `auto-action`.
    pub actor: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The anomaly event that triggered it.
    pub event_id: u64,
}

impl From<&AnomalyAction> for AnomalyActionBody {
    fn from(a: &AnomalyAction) -> Self {
        AnomalyActionBody {
            action: a.action.clone(),
            outcome: a.outcome.clone(),
            code: a.code.clone(),
            actor: a.actor.clone(),
            at: rfc3339_utc(a.at_ms),
            event_id: a.event_id,
        }
    }
}

impl AnomalyEventBody {
    /// The body of event `event_id` carrying `a`, without actions.
    pub fn new(event_id: u64, a: &Anomaly) -> AnomalyEventBody {
        AnomalyEventBody {
            event_id,
            anomaly_id: a.anomaly_id,
            revision: a.revision,
            status: a.status,
            kind: a.kind,
            key: a.key.clone(),
            severity: a.severity,
            code: a.code.clone(),
            org: a.org.clone(),
            window_start: rfc3339_utc(a.window_start),
            window_end: rfc3339_utc(a.window_end),
            observed: a.observed,
            expected: a.expected,
            score: a.score,
            summary: a.summary.clone(),
            evidence: a.evidence.clone(),
            detected_at: rfc3339_utc(a.detected_at),
            actions: Vec::new(),
        }
    }

    /// The same body with `actions`.
    pub fn with_actions(mut self, actions: &[AnomalyAction]) -> AnomalyEventBody {
        self.actions = actions.iter().map(AnomalyActionBody::from).collect();
        self
    }
}

impl From<&StoredEvent> for AnomalyEventBody {
    fn from(e: &StoredEvent) -> Self {
        AnomalyEventBody::new(e.event_id, &e.anomaly).with_actions(&e.actions)
    }
}

impl From<&LatestAnomaly> for AnomalyEventBody {
    fn from(l: &LatestAnomaly) -> Self {
        AnomalyEventBody::new(l.event_id, &l.anomaly).with_actions(&l.actions)
    }
}

/// A page of `GET /v1/anomalies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnomalyPage {
    /// Latest state of each matching anomaly, newest first (by `window_start`, then id).
    pub items: Vec<AnomalyEventBody>,
    /// Pass as `cursor` (with the same filters) for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
