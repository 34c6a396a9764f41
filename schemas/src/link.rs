//! Links: the stored [`Link`] record and the [`LinkMeta`] the dataflow joins clicks with.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// HTTP status a link redirects with. 302 is the default: browsers cache 301s, after
/// which clicks never reach the service again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "u16", into = "u16")]
pub enum RedirectType {
    /// `301 Moved Permanently`.
    Permanent,
    /// `302 Found` (default).
    #[default]
    Found,
}

impl RedirectType {
    /// The HTTP status code (301 or 302).
    pub fn status(self) -> u16 {
        match self {
            RedirectType::Permanent => 301,
            RedirectType::Found => 302,
        }
    }
}

impl From<RedirectType> for u16 {
    fn from(r: RedirectType) -> u16 {
        r.status()
    }
}

impl TryFrom<u16> for RedirectType {
    type Error = String;
    fn try_from(v: u16) -> Result<Self, String> {
        match v {
            301 => Ok(RedirectType::Permanent),
            302 => Ok(RedirectType::Found),
            other => Err(format!("redirect_type must be 301 or 302, got {other}")),
        }
    }
}

/// A short link as stored by the link store and returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Short code (case-sensitive), `[A-Za-z0-9_-]{1,64}`.
    pub code: String,
    /// Validated, normalized absolute http(s) target URL (ASCII only, IDN hosts in punycode).
    pub long_url: String,
    /// Custom short domain the link belongs to, `None` for the default base URL.
    pub domain: Option<String>,
    /// Instant from which the link answers 410 instead of redirecting.
    pub expires_at: Option<DateTime<Utc>>,
    /// Disabled links answer 404 (admin action or owner PATCH).
    pub enabled: bool,
    /// Free-form tags, order preserved, duplicates removed.
    pub tags: Vec<String>,
    /// Redirect status.
    pub redirect_type: RedirectType,
    /// Owning organisation (reserved for API keys; `None` until then).
    pub org: Option<String>,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last modification instant.
    pub updated_at: DateTime<Utc>,
    /// Monotonic revision, incremented on every update; the basis of the `ETag`.
    pub version: i64,
}

impl Link {
    /// The metadata of this link that the dataflow joins clicks with.
    pub fn meta(&self) -> LinkMeta {
        LinkMeta {
            code: self.code.clone(),
            org: self.org.clone(),
            tags: self.tags.clone(),
            domain: self.domain.clone(),
        }
    }
}

/// Link metadata as seen by the dataflow (a differential collection keyed by `code`):
/// an update is a retraction of the old value and an insertion of the new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LinkMeta {
    /// Short code.
    pub code: String,
    /// Owning organisation.
    pub org: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Custom domain.
    pub domain: Option<String>,
}
