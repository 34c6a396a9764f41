//! Click events: the raw [`ClickEvent`] minted at the redirect and the [`EnrichedClick`]
//! the dataflow derives from it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One click: a `GET /{code}` that produced a redirect (DESIGN.md, "Semantics").
///
/// Minted by the redirect service (or accepted by `POST /v1/events`), appended to the
/// click log (embedded or Kafka `click_events_raw`) and consumed by the dataflow.
/// The full client IP is never part of this record: only `ip_trunc`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClickEvent {
    /// UUIDv7 minted at the redirect; the dedup key of the pipeline.
    pub event_id: Uuid,
    /// Short code (case-sensitive) that was followed.
    pub code: String,
    /// Event time: the redirect's clock at the redirect, ms since the Unix epoch, UTC.
    pub ts: i64,
    /// Client IP truncated to its /24 (IPv4) or /48 (IPv6) network address, in canonical
    /// text form (`"203.0.113.0"`, `"2001:db8:1::"`); `None` when unknown.
    pub ip_trunc: Option<String>,
    /// Keyed hash of (period salt, full client IP, user agent): see [`crate::visitor_id`].
    pub visitor_id: u64,
    /// `User-Agent` header as sent (may be empty).
    pub user_agent: String,
    /// `Referer` header as sent; `None` when absent.
    pub referrer: Option<String>,
    /// `Accept-Language` header as sent; `None` when absent.
    pub accept_language: Option<String>,
    /// Name of the edge/region that served the redirect (configuration), `None` if unset.
    pub edge_region: Option<String>,
}

/// A click after enrichment and the link-metadata join: what the rollups count.
///
/// Dimension values are normalized strings: `country` is ISO 3166-1 alpha-2 or `"ZZ"`;
/// `device` is one of `desktop|mobile|tablet|bot|other`; `referrer_domain` is a registrable
/// domain (Public Suffix List), `"(direct)"` or `"(invalid)"`; `referrer_medium` is one of
/// `search|social|ai_assistant|email|internal|unknown|direct`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EnrichedClick {
    /// Dedup key copied from the raw event.
    pub event_id: Uuid,
    /// Short code.
    pub code: String,
    /// Event time, ms since the Unix epoch, UTC.
    pub ts: i64,
    /// Visitor id copied from the raw event.
    pub visitor_id: u64,
    /// ISO 3166-1 alpha-2 country, `"ZZ"` when unknown.
    pub country: String,
    /// Device class: `desktop|mobile|tablet|bot|other`.
    pub device: String,
    /// Browser family from uap-core (`"Other"` when unmatched).
    pub browser: String,
    /// OS family from uap-core (`"Other"` when unmatched).
    pub os: String,
    /// Registrable referrer domain, `"(direct)"` or `"(invalid)"`.
    pub referrer_domain: String,
    /// Referrer medium.
    pub referrer_medium: String,
    /// Known crawler / link-preview fetcher.
    pub is_bot: bool,
    /// Owning organisation from link metadata, if any.
    pub org: Option<String>,
}
