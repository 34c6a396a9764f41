//! Anomalies: what the abuse detectors of the dataflow emit (issue 7), and what the
//! `anomalies` topic, the anomaly API, SSE streams and webhooks carry.
//!
//! An anomaly is one incident of one [`AnomalyKind`] on one **key** (a link, a visitor or a
//! client network). Its lifecycle is a stream of events sharing one stable
//! [`Anomaly::anomaly_id`]: one [`AnomalyStatus::Open`], any number of
//! [`AnomalyStatus::Updated`] (when its severity or observed value changes materially), and
//! one [`AnomalyStatus::Closed`] once the condition has been absent for the configured quiet
//! period. At most one anomaly per `(kind, key)` is open at a time. `revision` numbers the
//! events of one anomaly (0 = open), so `(anomaly_id, revision)` identifies an event: a
//! consumer that sees the same pair twice (replay after a restart) can drop the copy.
//!
//! Times are **event time** (ms since the Unix epoch, UTC) except [`Anomaly::detected_at`],
//! which is the processing clock of the pipeline when the event was emitted.
//!
//! The Avro form (`schemas/avro/anomaly.avsc`) is in [`avro`].

pub mod avro;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What kind of abuse an anomaly reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// A link's human clicks in the window far above its own baseline (key `link:<code>`).
    ClickBurst,
    /// One visitor (`visitor:<id>`) or one client network (`network:<cidr>`) sending clicks
    /// beyond a per-window threshold.
    VisitorFlood,
    /// The share of bot clicks on a link beyond a threshold (key `link:<code>`).
    BotShare,
    /// A referrer domain new to a link suddenly dominating its clicks (key `link:<code>`).
    ReferrerSpam,
    /// A link's traffic suddenly concentrated in one country unlike its baseline
    /// (key `link:<code>`).
    GeoShift,
    /// Clicks on a link whose target host is on the admin blocklist (key `link:<code>`).
    BlocklistedTarget,
}

impl AnomalyKind {
    /// Every kind, in declaration order.
    pub const ALL: [AnomalyKind; 6] = [
        AnomalyKind::ClickBurst,
        AnomalyKind::VisitorFlood,
        AnomalyKind::BotShare,
        AnomalyKind::ReferrerSpam,
        AnomalyKind::GeoShift,
        AnomalyKind::BlocklistedTarget,
    ];

    /// Stable snake_case name (`click_burst`, ...): API values, metric labels, Avro symbols
    /// are the upper-case form.
    pub const fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::ClickBurst => "click_burst",
            AnomalyKind::VisitorFlood => "visitor_flood",
            AnomalyKind::BotShare => "bot_share",
            AnomalyKind::ReferrerSpam => "referrer_spam",
            AnomalyKind::GeoShift => "geo_shift",
            AnomalyKind::BlocklistedTarget => "blocklisted_target",
        }
    }

    /// Parses [`Self::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<AnomalyKind> {
        AnomalyKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How bad an anomaly is. Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look; normal traffic may produce it now and then.
    Info,
    /// Likely abuse.
    Warning,
    /// Abuse beyond doubt at a volume that calls for action (what automatic actions key on).
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// Stable lowercase name (`info`, `warning`, `critical`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// Parses [`Self::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Which event of an anomaly's lifecycle this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyStatus {
    /// First detection (revision 0).
    Open,
    /// Still going; severity or observed value changed materially.
    Updated,
    /// Ended: the condition has been absent for the quiet period. Carries the last values
    /// at which it held. No further event has this `anomaly_id`.
    Closed,
}

impl AnomalyStatus {
    /// Stable lowercase name (`open`, `updated`, `closed`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AnomalyStatus::Open => "open",
            AnomalyStatus::Updated => "updated",
            AnomalyStatus::Closed => "closed",
        }
    }
}

/// One value and how many clicks had it (a "top N" entry of the evidence).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tally {
    /// The value (country code, referrer domain, user agent, short code, visitor id).
    pub value: String,
    /// Clicks in the window with that value.
    pub count: u64,
}

/// What the detector saw in the window of the event: enough for an analyst (or an automatic
/// action) to judge the anomaly without querying anything else. Lists are sorted by count,
/// descending, then by value, and hold at most the configured top-N entries; fields a kind
/// does not use are empty (`0`, `[]`, `None`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    /// Length of the sliding window the counts cover, ms.
    pub window_ms: i64,
    /// Every click of the key in the window (humans and bots, before any per-visitor cap).
    pub clicks: u64,
    /// Human clicks among them (link kinds; after the per-visitor cap).
    pub human_clicks: u64,
    /// Bot clicks among them (link kinds; after the per-visitor cap).
    pub bot_clicks: u64,
    /// Distinct visitors among the window's clicks.
    pub visitors: u64,
    /// Share of the window's clicks from its busiest visitor, 0..=1.
    pub top_visitor_share: f64,
    /// Human clicks by country (ISO 3166-1 alpha-2, `ZZ` unknown).
    pub top_countries: Vec<Tally>,
    /// Human clicks by registrable referrer domain (`(direct)` for none).
    pub top_referrers: Vec<Tally>,
    /// Clicks by user agent: the browser family for link kinds, the raw `User-Agent` for
    /// visitor floods. For a visitor flood it counts only the clicks since the detector
    /// started tracking the visitor or network (see `top_codes`).
    pub top_user_agents: Vec<Tally>,
    /// Clicks by short code (visitor floods). It counts only the clicks in the window since
    /// the detector started tracking the visitor or network, at its
    /// `max(1, info-min-clicks / 2)`-th click in the window (`network-info-min-clicks` for
    /// a network; 15th for a visitor, 30th for a network by default): the earlier ones are not listed while they stay in the window,
    /// so these counts (and `top_user_agents`) may add up to up to 14 (network: 29) fewer
    /// than `clicks`. Tracking lasts while the key has clicks in the window or an open
    /// anomaly, and starts over after that.
    pub top_codes: Vec<Tally>,
    /// Clicks by visitor id (16 hex digits; network floods).
    pub top_visitors: Vec<Tally>,
    /// The client network (`203.0.113.0/24`, `2001:db8:1::/48`) of a flooding visitor
    /// (taken from a click since tracking started, see `top_codes`), or the flooding network.
    pub network: Option<String>,
    /// Target host of the link (blocklisted targets).
    pub target_host: Option<String>,
    /// Blocklist patterns matching the target host (blocklisted targets).
    pub blocklist_patterns: Vec<String>,
    /// Minutes of history behind the baseline (`expected`) of baseline-relative kinds.
    pub baseline_minutes: u32,
}

/// One event of an anomaly's lifecycle (module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Anomaly {
    /// Stable id of the anomaly: [`anomaly_id`]`(kind, key, window_start)`.
    pub anomaly_id: Uuid,
    /// 0 for `open`, incremented by every later event of the same anomaly.
    pub revision: u32,
    /// Lifecycle event.
    pub status: AnomalyStatus,
    /// Kind of abuse.
    pub kind: AnomalyKind,
    /// What the anomaly is about: `link:<code>`, `visitor:<16 hex digits>` or
    /// `network:<cidr>`. One open anomaly per `(kind, key)`.
    pub key: String,
    /// Severity as of this event.
    pub severity: Severity,
    /// The link concerned: the key's link, or the link a flooding visitor/network hit most.
    pub code: Option<String>,
    /// Owning organisation of `code` (from link metadata), if known.
    pub org: Option<String>,
    /// Start of the window in which the anomaly was first detected (event time, ms UTC);
    /// constant over the anomaly's events.
    pub window_start: i64,
    /// End (exclusive) of the latest window in which the condition held (event time, ms
    /// UTC): the detection time for `open`, the last time it still held for `closed`.
    pub window_end: i64,
    /// The detector's measure in the latest window where the condition held (clicks, or a
    /// share 0..=1; see the kind's documentation).
    pub observed: f64,
    /// What the baseline predicted for `observed` (or the threshold for absolute kinds).
    pub expected: f64,
    /// How far `observed` is beyond `expected` (z-score for bursts, `observed / threshold`
    /// otherwise); larger is worse.
    pub score: f64,
    /// One-line human-readable description.
    pub summary: String,
    /// What was seen (counts of the latest window where the condition held).
    pub evidence: Evidence,
    /// Processing time when the event was emitted (ms since the epoch UTC, the pipeline's
    /// clock). Not part of the anomaly's identity.
    pub detected_at: i64,
}

/// Namespace string hashed in front of every anomaly id (version 1 of the derivation).
const ID_NAMESPACE: &[u8] = b"sluice.anomaly.v1";

/// The id of the anomaly of `kind` on `key` first detected in the window starting at
/// `window_start` (ms UTC): a version 8 UUID (RFC 9562, "custom") holding the first 122 bits
/// of BLAKE3(`"sluice.anomaly.v1" 0x00 kind 0x00 key 0x00 window_start as 8 little-endian
/// bytes`). Deterministic: every worker, process and replay derives the same id.
pub fn anomaly_id(kind: AnomalyKind, key: &str, window_start: i64) -> Uuid {
    let mut h = blake3::Hasher::new();
    h.update(ID_NAMESPACE);
    h.update(&[0]);
    h.update(kind.as_str().as_bytes());
    h.update(&[0]);
    h.update(key.as_bytes());
    h.update(&[0]);
    h.update(&window_start.to_le_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Key of a link: `link:<code>`.
pub fn link_key(code: &str) -> String {
    format!("link:{code}")
}

/// Key of a visitor: `visitor:<visitor_id as 16 lowercase hex digits>`.
pub fn visitor_key(visitor_id: u64) -> String {
    format!("visitor:{visitor_id:016x}")
}

/// Key of a client network: `network:<cidr>` (`network:203.0.113.0/24`).
pub fn network_key(cidr: &str) -> String {
    format!("network:{cidr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_version_8_and_distinct_per_input() {
        let a = anomaly_id(AnomalyKind::ClickBurst, "link:ab12", 1_700_000_000_000);
        assert_eq!(a, anomaly_id(AnomalyKind::ClickBurst, "link:ab12", 1_700_000_000_000));
        assert_eq!(a.get_version_num(), 8);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        for other in [
            anomaly_id(AnomalyKind::BotShare, "link:ab12", 1_700_000_000_000),
            anomaly_id(AnomalyKind::ClickBurst, "link:ab13", 1_700_000_000_000),
            anomaly_id(AnomalyKind::ClickBurst, "link:ab12", 1_700_000_001_000),
        ] {
            assert_ne!(a, other);
        }
        // Pinned: changing the derivation changes every stored id.
        let mut h = blake3::Hasher::new();
        h.update(b"sluice.anomaly.v1\0click_burst\0link:ab12\0");
        h.update(&1_700_000_000_000i64.to_le_bytes());
        let d = h.finalize();
        let mut want = [0u8; 16];
        want.copy_from_slice(&d.as_bytes()[..16]);
        want[6] = (want[6] & 0x0f) | 0x80;
        want[8] = (want[8] & 0x3f) | 0x80;
        assert_eq!(a.as_bytes(), &want);
    }

    #[test]
    fn names_round_trip_and_serde_uses_them() {
        for k in AnomalyKind::ALL {
            assert_eq!(AnomalyKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).expect("json"), serde_json::json!(k.as_str()));
        }
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).expect("json"), serde_json::json!(s.as_str()));
        }
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
        assert_eq!(AnomalyKind::parse("burst"), None);
        assert_eq!(visitor_key(255), "visitor:00000000000000ff");
        assert_eq!(network_key("203.0.113.0/24"), "network:203.0.113.0/24");
        assert_eq!(link_key("ab12"), "link:ab12");
    }
}
