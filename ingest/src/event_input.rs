//! The wire shape of an explicit click event (`POST /v1/events`, `sluice import`) and its
//! validation into a [`ClickEvent`].
//!
//! Why it exists: tests, backfills and the backup intake path need to inject clicks with
//! chosen ids, past timestamps and exact visitor identities. One validator serves the HTTP
//! endpoint and the importers, so an event is accepted (and becomes the same `ClickEvent`)
//! whichever way it arrives.
//!
//! Shape (JSON object, unknown members rejected):
//!
//! | member | type | rule |
//! |---|---|---|
//! | `event_id` | string | required, 1–[`MAX_EVENT_ID_BYTES`] bytes; see [`event_uuid`] |
//! | `code` | string | required, `[A-Za-z0-9_-]{1,64}` (the redirect's rule), a link's code (else `unknown_code`) |
//! | `ts` | integer or string | required: ms since the Unix epoch (UTC), or RFC 3339 with any offset; `0 ≤ ts ≤ now + future skew` |
//! | `ip` | string | the full client IP (IPv4 or IPv6); exactly one of `ip`/`ip_trunc` |
//! | `ip_trunc` | string | an IP; truncated to its /24 or /48 before use |
//! | `user_agent` (alias `ua`) | string | required (may be empty) |
//! | `referrer` | string or null | optional |
//! | `accept_language` | string or null | optional |
//! | `edge_region` | string or null | optional |
//!
//! Visitor identity: `visitor_id` = [`sluice_schemas::visitor_id`] with the server's salt of
//! the period containing `ts`, over the full `ip` when given (exactly what the redirect
//! computes for the same click), else over the truncated network address of `ip_trunc` (so
//! such events share a visitor with the redirect's clicks only if the redirect saw the same
//! network address, which it normally does not). The full IP is not stored: the event keeps
//! `ip_trunc` only.
//!
//! Text members longer than [`MAX_FIELD_BYTES`] are cut at a character boundary, as the
//! redirect cuts its headers, so the same click yields the same event on both paths.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value};
use sluice_schemas::{ClickEvent, VisitorSalt, truncate_ip, visitor_id};
use uuid::Uuid;

/// Most events in one request or import batch.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;
/// Longest `event_id`, in bytes.
pub const MAX_EVENT_ID_BYTES: usize = 256;
/// Longest kept `user_agent`/`referrer`/`accept_language`/`edge_region`, in bytes (the
/// redirect's header limit, `sluice_redirect::click::MAX_HEADER_BYTES`).
pub const MAX_FIELD_BYTES: usize = 8192;
/// Default tolerance for event times ahead of the server clock: 5 minutes, in ms. A future
/// `ts` would advance the dataflow's watermark and make live clicks late.
pub const DEFAULT_MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// BLAKE3 `derive_key` context of [`event_uuid`] (fixed forever: changing it changes ids).
pub const EVENT_ID_CONTEXT: &str = "sluice 2025-01 event_id from string v1";

/// Why one event was refused: a stable snake_case `reason` and a human `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// `not_an_object`, `malformed_json`, `unknown_field`, `missing_field`,
    /// `invalid_field`, `invalid_event_id`, `invalid_code`, `invalid_ts`, `ts_in_future`,
    /// `invalid_ip`, `ip_conflict`.
    pub reason: &'static str,
    /// What is wrong, naming the member (lowercase, no trailing period).
    pub message: String,
}

impl Rejection {
    /// A rejection with `reason` and `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Rejection { reason, message: message.into() }
    }
}

/// One explicit event after structural checks (types, required members), before the
/// semantic ones of [`EventInput::into_click_event`]. Serializes to the wire shape
/// (`ts` as integer ms, absent options omitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventInput {
    /// Caller's event id (a UUID or any other string, see [`event_uuid`]).
    pub event_id: String,
    /// Short code.
    pub code: String,
    /// Event time, ms since the Unix epoch, UTC.
    pub ts: i64,
    /// Full client IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Truncated (or to-be-truncated) client IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_trunc: Option<String>,
    /// User agent.
    pub user_agent: String,
    /// Referrer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// Accept-Language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_language: Option<String>,
    /// Edge/region name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_region: Option<String>,
}

/// The server-side context of validation: the visitor salt, the clock and the future skew.
#[derive(Debug, Clone)]
pub struct Validation<'a> {
    /// Salt source shared with the redirect.
    pub salt: &'a VisitorSalt,
    /// Current time, ms since the Unix epoch, UTC.
    pub now_ms: i64,
    /// Tolerance for `ts` ahead of `now_ms`, ms.
    pub max_future_skew_ms: i64,
}

const KNOWN: [&str; 10] = ["event_id", "code", "ts", "ip", "ip_trunc", "user_agent", "ua", "referrer", "accept_language", "edge_region"];

/// The `ClickEvent.event_id` of a caller's id: a string that parses as a UUID (hyphenated,
/// simple, braced or `urn:uuid:` form) is that UUID; any other string `s` becomes the
/// UUIDv8 (RFC 9562 §5.8) whose 122 free bits are the first 16 bytes of
/// `BLAKE3::derive_key(EVENT_ID_CONTEXT, s)` with the version and variant bits overwritten.
/// Deterministic across processes and releases, so resending `"c19-0001"` is a duplicate.
pub fn event_uuid(id: &str) -> Uuid {
    if let Ok(u) = Uuid::try_parse(id) {
        return u;
    }
    let key = blake3::derive_key(EVENT_ID_CONTEXT, id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&key[..16]);
    Uuid::new_v8(b)
}

/// Whether `s` can be a short code: `[A-Za-z0-9_-]{1,64}` (the redirect's rule).
pub fn is_code(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn take_string(m: &mut Map<String, Value>, key: &str) -> Result<Option<String>, Rejection> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Rejection::new("invalid_field", format!("\"{key}\" must be a string, got {}", type_name(&other)))),
    }
}

/// A required string member: absent is `missing_field`; present with another type,
/// `null` included, is `invalid_field` (the member is there, its value is no string).
fn take_required_string(m: &mut Map<String, Value>, key: &str) -> Result<String, Rejection> {
    match m.remove(key) {
        None => Err(Rejection::new("missing_field", format!("\"{key}\" is required"))),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(Rejection::new("invalid_field", format!("\"{key}\" must be a string, got {}", type_name(&other)))),
    }
}

/// `user_agent` or its alias `ua`: a string (may be empty) or absent. Unlike the optional
/// members, `null` is not read as absent: the member is there with a value that is not a
/// string (400 `invalid_field`, as for any other type).
fn take_user_agent(m: &mut Map<String, Value>, key: &str) -> Result<Option<String>, Rejection> {
    match m.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Rejection::new("invalid_field", format!("\"{key}\" must be a string (it may be empty), got {}", type_name(&other)))),
    }
}

/// `ms` (since the epoch) as RFC 3339 UTC with milliseconds (`2024-03-10T06:30:00.000Z`),
/// how event times are shown in messages; the bare number outside chrono's range.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A JSON number as `ts`: an `i64` is taken as is. Otherwise 400 `invalid_ts`, echoing the
/// number only as the caller wrote it (serde_json reads JSON numbers without
/// `arbitrary_precision`): an integer beyond `i64` that fits a `u64` is out of range, shown
/// as that integer; a fraction below 2^53 is no integer, shown as read (`1.5`); a whole
/// value below 2^53 written with a fraction or an exponent (`1e12`, `1000000000000.0`: the
/// text sent is not kept) is named by its integer and refused for how it is written. Any other
/// number (an integer beyond `u64` such as 2^64, a fraction or exponent form of 2^53 and
/// more) is held as an `f64` that may not be the number sent (2^64 reads back as
/// `1.8446744073709552e19`), so it is out of range without an echo.
fn ts_of_number(n: &serde_json::Number) -> Result<i64, Rejection> {
    /// Below this magnitude an `f64`'s shortest form is what the caller wrote (up to
    /// spelling: `1.50` shows as `1.5`).
    const EXACT_F64: f64 = 9_007_199_254_740_992.0; // 2^53
    let range = format!("must be an integer number of ms between 0 and {}", i64::MAX);
    if let Some(ms) = n.as_i64() {
        Ok(ms)
    } else if let Some(big) = n.as_u64() {
        Err(Rejection::new("invalid_ts", format!("\"ts\" {big} is out of range ({range})")))
    } else if let Some(f) = n.as_f64().filter(|f| f.abs() < EXACT_F64) {
        if f.fract() == 0.0 {
            // Exact: |f| < 2^53.
            let whole = f as i64;
            return Err(Rejection::new(
                "invalid_ts",
                format!(
                    "\"ts\" must be an integer number of ms since the Unix epoch (UTC) without a fraction or an exponent, got a number \
                     equal to {whole} written with one (such as {f:e} or {whole}.0): send {whole}"
                ),
            ));
        }
        Err(Rejection::new("invalid_ts", format!("\"ts\" must be an integer number of ms since the epoch, got {n}")))
    } else {
        Err(Rejection::new("invalid_ts", format!("\"ts\" is out of range ({range})")))
    }
}

fn parse_ts(v: Value) -> Result<i64, Rejection> {
    match v {
        Value::Number(n) => ts_of_number(&n),
        // (Second 60 only at 23:59:60 UTC, as every API input: `sluice_schemas::rfc3339`.)
        Value::String(s) => sluice_schemas::rfc3339::parse(s.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|e| Rejection::new("invalid_ts", format!("\"ts\" is not an RFC 3339 timestamp ({e}): \"{}\"", cut(s, 64)))),
        other => Err(Rejection::new("invalid_ts", format!("\"ts\" must be an integer (ms) or an RFC 3339 string, got {}", type_name(&other)))),
    }
}

impl EventInput {
    /// Structural validation of one JSON value: an object with the members of the module
    /// table, of the right types. Errors with the first problem found, in the order
    /// not an object → unknown member → missing/invalid member.
    pub fn from_value(v: Value) -> Result<EventInput, Rejection> {
        let Value::Object(mut m) = v else {
            return Err(Rejection::new("not_an_object", format!("an event must be a json object, got {}", type_name(&v))));
        };
        let mut unknown: Vec<&String> = m.keys().filter(|k| !KNOWN.contains(&k.as_str())).collect();
        unknown.sort();
        if let Some(k) = unknown.first() {
            return Err(Rejection::new("unknown_field", format!("unknown member \"{}\"", cut((*k).clone(), 64))));
        }
        let event_id = take_required_string(&mut m, "event_id")?;
        let code = take_required_string(&mut m, "code")?;
        let ts = match m.remove("ts") {
            None => {
                return Err(Rejection::new("missing_field", "\"ts\" is required"));
            }
            Some(v) => parse_ts(v)?,
        };
        let ip = take_string(&mut m, "ip")?;
        let ip_trunc = take_string(&mut m, "ip_trunc")?;
        let user_agent = match (take_user_agent(&mut m, "user_agent")?, take_user_agent(&mut m, "ua")?) {
            (Some(_), Some(_)) => {
                return Err(Rejection::new("invalid_field", "give \"user_agent\" or its alias \"ua\", not both"));
            }
            (Some(u), None) | (None, Some(u)) => u,
            (None, None) => {
                return Err(Rejection::new("missing_field", "\"user_agent\" is required (it may be empty)"));
            }
        };
        Ok(EventInput {
            event_id,
            code,
            ts,
            ip,
            ip_trunc,
            user_agent,
            referrer: take_string(&mut m, "referrer")?,
            accept_language: take_string(&mut m, "accept_language")?,
            edge_region: take_string(&mut m, "edge_region")?,
        })
    }

    /// Cuts the text members (`user_agent`, `referrer`, `accept_language`, `edge_region`)
    /// to [`MAX_FIELD_BYTES`] at a character boundary: the cut [`Self::into_click_event`]
    /// makes before anything else reads them, so an event cut here (by a client such as
    /// `sluice import`, to keep its requests small) becomes the same [`ClickEvent`].
    pub fn cut_text_fields(&mut self) {
        fn cut_in_place(s: &mut String) {
            if s.len() > MAX_FIELD_BYTES {
                *s = cut(std::mem::take(s), MAX_FIELD_BYTES);
            }
        }
        cut_in_place(&mut self.user_agent);
        for s in [&mut self.referrer, &mut self.accept_language, &mut self.edge_region].into_iter().flatten() {
            cut_in_place(s);
        }
    }

    /// Semantic validation and conversion (see the module docs): the id, code, time range
    /// and IPs are checked; `visitor_id` and `ip_trunc` are derived; text members are cut to
    /// [`MAX_FIELD_BYTES`] ([`Self::cut_text_fields`]).
    pub fn into_click_event(mut self, ctx: &Validation<'_>) -> Result<ClickEvent, Rejection> {
        self.cut_text_fields();
        if self.event_id.is_empty() || self.event_id.len() > MAX_EVENT_ID_BYTES {
            return Err(Rejection::new("invalid_event_id", format!("\"event_id\" must be 1 to {MAX_EVENT_ID_BYTES} bytes, got {}", self.event_id.len())));
        }
        let event_id = event_uuid(&self.event_id);
        if event_id.is_nil() {
            // The dataflow refuses the nil UUID (it marks "no id"); refuse it here, where the
            // caller is told, rather than acknowledge a click that is never counted.
            return Err(Rejection::new("invalid_event_id", "\"event_id\" must not be the nil UUID 00000000-0000-0000-0000-000000000000"));
        }
        if !is_code(&self.code) {
            return Err(Rejection::new("invalid_code", format!("\"code\" must match [A-Za-z0-9_-]{{1,64}}: \"{}\"", cut(self.code, 80))));
        }
        if self.ts < 0 {
            return Err(Rejection::new("invalid_ts", format!("\"ts\" {} is before 1970-01-01T00:00:00Z", self.ts)));
        }
        if self.ts > ctx.now_ms.saturating_add(ctx.max_future_skew_ms) {
            return Err(Rejection::new(
                "ts_in_future",
                format!("\"ts\" {} is more than {} ms ahead of the server clock ({})", rfc3339_ms(self.ts), ctx.max_future_skew_ms, rfc3339_ms(ctx.now_ms)),
            ));
        }
        let parse = |key: &str, s: &str| {
            s.trim().parse::<IpAddr>().map_err(|_| Rejection::new("invalid_ip", format!("\"{key}\" is not an IP address: \"{}\"", cut(s.to_owned(), 64))))
        };
        let visitor_ip = match (&self.ip, &self.ip_trunc) {
            (Some(_), Some(_)) => {
                return Err(Rejection::new("ip_conflict", "give \"ip\" or \"ip_trunc\", not both"));
            }
            (None, None) => {
                return Err(Rejection::new("missing_field", "one of \"ip\" or \"ip_trunc\" is required"));
            }
            (Some(ip), None) => parse("ip", ip)?,
            (None, Some(t)) => {
                let net = truncate_ip(parse("ip_trunc", t)?);
                net.parse::<IpAddr>().map_err(|_| Rejection::new("invalid_ip", "\"ip_trunc\" could not be truncated"))?
            }
        };
        Ok(ClickEvent {
            event_id,
            code: self.code,
            ts: self.ts,
            ip_trunc: Some(truncate_ip(visitor_ip)),
            visitor_id: visitor_id(ctx.salt, self.ts, visitor_ip, &self.user_agent),
            user_agent: self.user_agent,
            referrer: self.referrer,
            accept_language: self.accept_language,
            edge_region: self.edge_region,
        })
    }
}

/// Both validation steps on one JSON value.
pub fn validate_value(v: Value, ctx: &Validation<'_>) -> Result<ClickEvent, Rejection> {
    EventInput::from_value(v)?.into_click_event(ctx)
}

#[cfg(test)]
#[path = "event_input_tests.rs"]
mod tests;
