//! Request and response bodies of `/v1/admin/...`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::{LinkResponse, instant_ms};

/// `POST /v1/admin/blocklist`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlocklistRequest {
    /// A domain (also covers its subdomains). Any spelling: case, a trailing dot, a port, a
    /// scheme and path, Unicode or punycode (`"Bücher.Example.:443"` → `xn--bcher-kva.example`).
    pub pattern: String,
    /// Why (recorded in the audit log), at most 1000 characters.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One run-time blocklist entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlocklistEntryResponse {
    /// Normalized domain (lowercase ASCII/punycode, no port, no trailing dot).
    pub pattern: String,
    /// Why it was added.
    pub reason: Option<String>,
    /// Who added it (`admin-token`, `loopback`; `config` for an entry of `[links] blocklist`,
    /// which `POST` answers as already present).
    pub actor: String,
    /// When (RFC 3339 UTC, milliseconds, as every timestamp of the API).
    #[serde(serialize_with = "instant_ms::serialize")]
    pub created_at: DateTime<Utc>,
}

/// Answer of `POST /v1/admin/blocklist` (201 when added, 200 when it already existed).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlocklistAddResponse {
    /// The entry.
    pub entry: BlocklistEntryResponse,
    /// Whether this request added it.
    pub added: bool,
    /// Existing links whose target it covers: they no longer redirect (404) from this
    /// response on, in every process; their past clicks are kept.
    pub affected_links: Vec<LinkResponse>,
}

/// Answer of `GET /v1/admin/blocklist`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlocklistList {
    /// Run-time entries, sorted by pattern (the stored entries of the configuration, actor
    /// `config`, are listed under `config` instead).
    pub items: Vec<BlocklistEntryResponse>,
    /// The static entries of the configuration (`[links] blocklist`), normalized: they refuse
    /// new targets and, from the start of the process on, hold the existing links they cover
    /// like run-time entries; they cannot be removed through the API.
    pub config: Vec<String>,
}

/// Answer of `DELETE /v1/admin/blocklist/{pattern}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlocklistRemoveResponse {
    /// The normalized pattern removed.
    pub pattern: String,
    /// Links this entry held, as they are now (redirecting again unless another hold or
    /// their owner keeps them disabled).
    pub released_links: Vec<LinkResponse>,
}

/// `POST /v1/admin/links/{code}/disable` and `.../enable`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Why (recorded in the audit log), at most 1000 characters; required for `disable`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One hold keeping a link disabled.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HoldResponse {
    /// `admin` (an admin disable) or `blocklist:<pattern>`.
    pub source: String,
    /// Why.
    pub reason: Option<String>,
    /// Who.
    pub actor: String,
    /// Since when (RFC 3339 UTC, milliseconds, as every timestamp of the API).
    #[serde(serialize_with = "instant_ms::serialize")]
    pub created_at: DateTime<Utc>,
}

/// Answer of disable / enable: the link as it is now and the holds it has.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminLinkResponse {
    /// The link (`enabled` is the effective state the redirect uses).
    pub link: LinkResponse,
    /// Holds keeping it disabled, oldest first (empty after a successful enable).
    pub holds: Vec<HoldResponse>,
}

/// Query of `GET /v1/admin/audit`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page, bound to that page's filters (`from`, `to`,
    /// `actor`, `action`) and position: with other filters, or edited, it is 400
    /// `invalid_cursor`. Another `limit` is fine.
    pub cursor: Option<String>,
    /// Only records at or after this instant (RFC 3339).
    pub from: Option<String>,
    /// Only records before this instant (RFC 3339).
    pub to: Option<String>,
    /// Only this actor (`admin-token`, `loopback`, `auto`).
    pub actor: Option<String>,
    /// Only this action (`blocklist.add`, `blocklist.remove`, `link.disable`, `link.enable`, `auto.disable`).
    pub action: Option<String>,
}

/// One audit record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// When (RFC 3339 UTC, milliseconds, as every timestamp of the API; the `from`/`to`
    /// filters compare the stored instant, which a record written before this rule may hold
    /// to the microsecond).
    #[serde(serialize_with = "instant_ms::serialize")]
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what: a link code or a blocklist pattern.
    pub target: String,
    /// Why.
    pub reason: Option<String>,
    /// Client address of the request (absent for automatic actions).
    pub origin_ip: Option<String>,
    /// Extras, e.g. `{"affected": ["code", ...]}` for blocklist changes.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Records, newest first.
    pub items: Vec<AuditEntry>,
    /// Cursor of the next (older) page; `null` on the last page (as on `GET /v1/links`).
    pub next_cursor: Option<String>,
}
