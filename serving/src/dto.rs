//! Request and response bodies of the link API (also the OpenAPI schemas).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::stats::params::rfc3339_utc;

/// `serialize_with` helpers writing an instant the way every timestamp of the API is
/// written ([`rfc3339_utc`]): RFC 3339 in UTC (`Z`) with millisecond precision (a finer
/// stored instant is floored to its millisecond), the fraction left out when it is zero
/// (`2026-12-01T19:50:41.123Z`, `2026-12-01T19:50:41Z`).
pub mod instant_ms {
    use super::*;

    /// Writes `t` ([`instant_ms`]).
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339_utc(t.timestamp_millis()))
    }

    /// Writes `t` ([`instant_ms`]), `null` for `None`.
    pub fn option<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&rfc3339_utc(t.timestamp_millis())),
            None => s.serialize_none(),
        }
    }
}

/// Body of `POST /v1/links`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLinkRequest {
    /// Absolute http(s) URL, at most 8192 bytes after normalization; surrounding whitespace
    /// is trimmed, IDN hosts become punycode, non-ASCII path/query bytes are percent-encoded.
    pub long_url: String,
    /// 1–64 characters of `[A-Za-z0-9_-]`, case-sensitive, not a reserved word; generated
    /// (7 base62 characters) when absent.
    #[serde(default)]
    pub custom_alias: Option<String>,
    /// One of the service's own short domains: the base URL's host (without its port) or a
    /// `--short-domain`, in any case, with or without a trailing dot, Unicode or punycode;
    /// 400 `unknown_domain` otherwise. Chooses the host of `short_url` only (codes are
    /// global); echoed normalized (lower case, punycode). Absent: the base URL's host.
    #[serde(default)]
    pub domain: Option<String>,
    /// RFC 3339 instant (any offset) from which the link answers 410; must be in the future.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Up to 32 tags of 1–64 characters each (no control characters); duplicates removed.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// 302 (default) or 301. Any other number (however large, negative or fractional) is
    /// 400 `invalid_redirect_type` ([`crate::links::parse_redirect_type`]).
    #[serde(default)]
    #[schema(value_type = Option<u16>)]
    pub redirect_type: Option<RedirectTypeNumber>,
    /// The organisation the link belongs to: `GET /v1/stats/summary?org=` counts the clicks
    /// the link gets while it has it. 1–64 characters of `[A-Za-z0-9_.-]`, case-sensitive,
    /// stored as given; 400 `invalid_org` otherwise ([`crate::links::validate_org`]). Absent
    /// or `null`: none.
    #[serde(default)]
    pub org: Option<String>,
}

/// Body of `PATCH /v1/links/{code}`; absent fields stay unchanged.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateLinkRequest {
    /// New target, validated like on create (`null` is refused: omit it to keep it).
    #[serde(default, deserialize_with = "not_null")]
    pub long_url: Option<String>,
    /// Enable or disable (disabled links answer 404; `null` is refused).
    #[serde(default, deserialize_with = "not_null")]
    pub enabled: Option<bool>,
    /// New expiry (RFC 3339, in the future), or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
    /// Replacement tags (`[]` clears them; `null` is refused).
    #[serde(default, deserialize_with = "not_null")]
    pub tags: Option<Vec<String>>,
    /// 302 or 301 (`null` is refused; any other number is 400 `invalid_redirect_type`).
    #[serde(default, deserialize_with = "not_null")]
    #[schema(value_type = Option<u16>)]
    pub redirect_type: Option<RedirectTypeNumber>,
    /// New organisation (the rules of create: 400 `invalid_org`), or `null` to remove it.
    /// Clicks from the change on count under the new one in `GET /v1/stats/summary?org=`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub org: Option<Option<String>>,
    /// Not supported: renaming a link is refused with 400 `alias_rename_unsupported`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub custom_alias: Option<Option<serde_json::Value>>,
}

/// `redirect_type` as sent: any JSON number, kept as it is, so that every number but 301
/// and 302 — also one no integer type holds (`100000000000000000000` reads as `1e20`), a
/// negative or a fractional one — gets the one answer, 400 `invalid_redirect_type`
/// ([`crate::links::parse_redirect_type`]), never serde's wording about `u16` or floating
/// point. A value of another type is a body of the wrong type (`expected 301 or 302`).
#[derive(Debug, Clone, PartialEq)]
pub struct RedirectTypeNumber(pub serde_json::Number);

impl<'de> Deserialize<'de> for RedirectTypeNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RedirectTypeNumber;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("301 or 302")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RedirectTypeNumber(v.into()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RedirectTypeNumber(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                serde_json::Number::from_f64(v).map(RedirectTypeNumber).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Float(v), &self))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Deserializes a field that is present (possibly `null`) as `Some(..)`, so absent and
/// `null` can be told apart together with `#[serde(default)]`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Deserializes a field that, when present, must not be `null` (a `null` would otherwise
/// read as "absent" and silently change nothing). Error: "null is not allowed ...".
fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom("null is not allowed here; omit the field to keep its value")),
    }
}

/// A link as returned by the API. Timestamps are RFC 3339 UTC, milliseconds ([`instant_ms`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LinkResponse {
    /// Short code (case-sensitive).
    pub code: String,
    /// Full short URL to share.
    pub short_url: String,
    /// Normalized target.
    pub long_url: String,
    /// The short domain given at creation, normalized (lower case, punycode, no trailing
    /// dot; the base URL's host included); `null` when none was given.
    pub domain: Option<String>,
    /// Expiry instant, `null` for none.
    #[serde(serialize_with = "instant_ms::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the link redirects.
    pub enabled: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// The organisation the link belongs to, `null` for none.
    #[serde(default)]
    pub org: Option<String>,
    /// 301 or 302.
    pub redirect_type: u16,
    /// Creation instant.
    #[serde(serialize_with = "instant_ms::serialize")]
    pub created_at: DateTime<Utc>,
    /// Last modification instant.
    #[serde(serialize_with = "instant_ms::serialize")]
    pub updated_at: DateTime<Utc>,
}

/// Query parameters of `GET /v1/links`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Opaque cursor from a previous page's `next_cursor`, bound to that page's filters
    /// (`tag`, `enabled`, `org`) and position: with other filters, or edited, it is 400
    /// `invalid_cursor`. Another `limit` is fine.
    pub cursor: Option<String>,
    /// Only links carrying this tag (any spelling: matched after trimming and Unicode NFC,
    /// as tags are stored).
    pub tag: Option<String>,
    /// Only enabled (`true` or `1`) or disabled (`false` or `0`) links. Anything else: 400
    /// `invalid_parameter`.
    #[param(value_type = Option<bool>)]
    pub enabled: Option<String>,
    /// Only links of this organisation (exact, case-sensitive). A value no link could carry
    /// (the rules of `org` on create) is 400 `invalid_parameter`.
    pub org: Option<String>,
}

/// One page of links, in creation order (the store's insertion order; `created_at` of
/// concurrent creates may be a millisecond or two out of it). `next_cursor` is `null` on the last page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LinkPage {
    /// Links of this page.
    pub items: Vec<LinkResponse>,
    /// Cursor for the next page, `null` when this page is the last.
    pub next_cursor: Option<String>,
}

/// Error body: `{"error": {"code", "message", "details"?}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Inside [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (`alias_conflict`, `url_too_long`, ...).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Structured details, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}
