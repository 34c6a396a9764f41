//! Query parameters of `GET /v1/anomalies` and `GET /v1/anomalies/stream`, parsed with one
//! precise 400 per mistake (codes below), and the filter they describe.

use chrono::DateTime;
use serde_json::json;
use sluice_schemas::{Anomaly, AnomalyKind, Severity};

use crate::error::{ApiError, echo};
use crate::query::{get, pairs};

/// Default page size of the list.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size of the list.
pub const MAX_LIMIT: usize = 1000;
/// Earliest accepted instant (1970-01-01T00:00:00Z), ms.
const MIN_MS: i64 = 0;
/// Latest accepted instant (9999-12-31T23:59:59.999Z), ms.
const MAX_MS: i64 = 253_402_300_799_999;

const LIST_PARAMS: [&str; 7] = ["from", "to", "kind", "severity", "code", "limit", "cursor"];
const STREAM_PARAMS: [&str; 6] = ["from", "to", "kind", "severity", "code", "last_event_id"];

/// Which anomalies (or events) a request selects. An anomaly spans
/// `[window_start, window_end]` (event time); it matches `from`/`to` when that span meets
/// `[from, to)`: `window_start < to` and `window_end >= from`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnomalyFilter {
    /// Inclusive lower bound, ms UTC.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound, ms UTC.
    pub to_ms: Option<i64>,
    /// Kinds accepted (empty = all).
    pub kinds: Vec<AnomalyKind>,
    /// Severities accepted (empty = all).
    pub severities: Vec<Severity>,
    /// Exact link code.
    pub code: Option<String>,
}

impl AnomalyFilter {
    /// Whether `a` passes every condition.
    pub fn matches(&self, a: &Anomaly) -> bool {
        self.from_ms.is_none_or(|f| a.window_end >= f)
            && self.to_ms.is_none_or(|t| a.window_start < t)
            && (self.kinds.is_empty() || self.kinds.contains(&a.kind))
            && (self.severities.is_empty() || self.severities.contains(&a.severity))
            && self.code.as_ref().is_none_or(|c| a.code.as_deref() == Some(c.as_str()))
    }

    /// A short fingerprint of the filter, carried in cursors so a cursor is only used with
    /// the filter that produced it.
    fn fingerprint(&self) -> String {
        crate::cursor::fingerprint(&[&self.from_ms, &self.to_ms, &self.kinds, &self.severities, &self.code])
    }
}

/// Parsed `GET /v1/anomalies` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ListParams {
    /// The filter.
    pub filter: AnomalyFilter,
    /// Page size, 1..=1000 (default 100).
    pub limit: usize,
    /// Continue after this position (from `cursor`).
    pub after: Option<(i64, [u8; 16])>,
}

/// Parsed `GET /v1/anomalies/stream` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamParams {
    /// The filter.
    pub filter: AnomalyFilter,
    /// `last_event_id` from the query string.
    pub last_event_id: Option<u64>,
}

/// An RFC 3339 instant (any offset; a `+` that became a space in the query string is
/// accepted) → ms UTC. 400 `invalid_timestamp` (malformed; or outside 1970..=9999, the
/// message stating the accepted range).
///
/// Digits past the millisecond are not dropped: the instant is rounded *up* to the next
/// whole millisecond, which for millisecond event times selects exactly what the precise
/// bound would (`t ≥ from` and `t < to` hold for a whole-millisecond `t` exactly when they
/// hold against the bound rounded up).
fn instant(name: &str, raw: &str) -> Result<i64, ApiError> {
    let dt = rfc3339_param(name, raw)?;
    Ok(dt.timestamp_millis() + i64::from(dt.timestamp_subsec_nanos() % 1_000_000 != 0))
}

/// The query parameter `name` as an RFC 3339 date-time with an offset, at full precision,
/// as the instant filters of the API read it (anomalies, the admin audit log): a `+` of
/// the offset that became a space in the query string is taken back.
///
/// Errors (400 `invalid_timestamp`, details `{parameter, value}`): malformed; outside
/// 1970-01-01T00:00:00Z..=9999-12-31T23:59:59.999Z (the message and `details.min`/`max`
/// state the range).
pub(crate) fn rfc3339_param(name: &str, raw: &str) -> Result<DateTime<chrono::FixedOffset>, ApiError> {
    // Errors echo the value with its '+' restored, as it was sent.
    let s = crate::rfc3339::restore_offset_plus(raw);
    let invalid = |reason: String| {
        ApiError::bad_request(
            "invalid_timestamp",
            format!(
                "\"{name}\" must be an RFC 3339 date-time with an offset between 1970 and 9999 (e.g. 2024-06-01T00:00:00Z), got \"{}\": {reason}",
                echo(&s)
            ),
        )
        .with_details(json!({ "parameter": name, "value": s }))
    };
    let dt = crate::rfc3339::parse(&s).map_err(invalid)?;
    // Checked on the instant rounded up to the millisecond, as [`instant`] reads it.
    let up = dt.timestamp_millis() + i64::from(dt.timestamp_subsec_nanos() % 1_000_000 != 0);
    if (MIN_MS..=MAX_MS).contains(&up) { Ok(dt) } else { Err(crate::stats::params::out_of_range(name, &s, MIN_MS, MAX_MS)) }
}

fn list_of<T: Copy>(name: &str, raw: Option<&str>, parse: fn(&str) -> Option<T>, allowed: &[&str], code: &'static str) -> Result<Vec<T>, ApiError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for v in raw.split(',') {
        match parse(v.trim()) {
            Some(x) => out.push(x),
            None => {
                return Err(ApiError::bad_request(code, format!("\"{name}\" must be a comma-separated list of {}, got \"{}\"", allowed.join(", "), echo(v)))
                    .with_details(json!({ "parameter": name, "value": v, "allowed": allowed })));
            }
        }
    }
    Ok(out)
}

fn filter(pairs: &[(String, String)]) -> Result<AnomalyFilter, ApiError> {
    let from_ms = get(pairs, "from").map(|v| instant("from", v)).transpose()?;
    let to_ms = get(pairs, "to").map(|v| instant("to", v)).transpose()?;
    if let (Some(f), Some(t)) = (from_ms, to_ms)
        && f >= t
    {
        return Err(ApiError::bad_request("invalid_range", "\"from\" must be earlier than \"to\"").with_details(
            json!({ "from": get(pairs, "from").map(crate::rfc3339::restore_offset_plus), "to": get(pairs, "to").map(crate::rfc3339::restore_offset_plus) }),
        ));
    }
    let kind_names: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.as_str()).collect();
    let kinds = list_of("kind", get(pairs, "kind"), AnomalyKind::parse, &kind_names, "invalid_kind")?;
    let severity_names: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    let severities = list_of("severity", get(pairs, "severity"), Severity::parse, &severity_names, "invalid_severity")?;
    let code = match get(pairs, "code") {
        None => None,
        Some(c) if crate::alias::is_code_charset(c) => Some(c.to_string()),
        Some(c) => {
            return Err(ApiError::bad_request(
                "invalid_code",
                format!("\"code\" must be a short code ([A-Za-z0-9_-], 1 to 64 characters), got \"{}\"", echo(c)),
            )
            .with_details(json!({ "parameter": "code", "value": c })));
        }
    };
    Ok(AnomalyFilter { from_ms, to_ms, kinds, severities, code })
}

/// Parses the list's query string.
///
/// Errors (400): `unknown_parameter`, `duplicate_parameter`, `invalid_timestamp`,
/// `invalid_range` (`from` ≥ `to`), `invalid_kind`, `invalid_severity`, `invalid_code`,
/// `invalid_limit` (not 1..=1000), `invalid_cursor` (not a cursor of this endpoint, or made
/// with different filters).
pub fn parse_list(raw: Option<&str>) -> Result<ListParams, ApiError> {
    let p = pairs(raw, &LIST_PARAMS)?;
    let filter = filter(&p)?;
    let limit = crate::query::limit(get(&p, "limit"), DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = get(&p, "cursor").map(|c| decode_cursor(c, &filter)).transpose()?;
    Ok(ListParams { filter, limit, after })
}

/// Parses the stream's query string (same filter errors as [`parse_list`], plus
/// `invalid_last_event_id`).
pub fn parse_stream(raw: Option<&str>) -> Result<StreamParams, ApiError> {
    let p = pairs(raw, &STREAM_PARAMS)?;
    let filter = filter(&p)?;
    let last_event_id = get(&p, "last_event_id").map(|v| last_event_id("last_event_id", v)).transpose()?;
    Ok(StreamParams { filter, last_event_id })
}

/// A `Last-Event-ID` value (header or query parameter): a decimal event id, plain digits
/// (surrounding spaces ignored, as HTTP does around a header value; no sign). 400
/// `invalid_last_event_id`.
pub fn last_event_id(name: &str, raw: &str) -> Result<u64, ApiError> {
    let v = raw.trim();
    v.parse::<u64>().ok().filter(|_| crate::query::is_digits(v)).ok_or_else(|| {
        ApiError::bad_request("invalid_last_event_id", format!("{name} must be a decimal event id (the id: of an event), got \"{}\"", echo(raw)))
            .with_details(json!({ "parameter": name, "value": raw }))
    })
}

/// `GET /v1/anomalies` cursors ([`crate::cursor::Sealed`]): position `window_start` and
/// anomaly id (32 hex digits), bound to the filter.
const CURSOR: crate::cursor::Sealed = crate::cursor::Sealed { kind: "a2", fields: 2, other: crate::cursor::OTHER_FILTERS, hint: crate::cursor::SAME_FILTERS };

/// The cursor continuing after `(window_start, id)` under `filter`: base64url (no padding)
/// of `"a2:<window_start>:<id hex>:<fingerprint>"` (not a contract), the fingerprint
/// covering the filter and the position, so an edited cursor, or one used with other
/// filters, is 400 `invalid_cursor`.
pub fn encode_cursor(window_start: i64, id: &[u8; 16], filter: &AnomalyFilter) -> String {
    CURSOR.encode(&[&window_start.to_string(), &hex_encode(id)], &filter.fingerprint())
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn decode_cursor(raw: &str, filter: &AnomalyFilter) -> Result<(i64, [u8; 16]), ApiError> {
    let fields = CURSOR.decode(raw, &filter.fingerprint())?;
    let (ws, id) = (fields[0].as_str(), fields[1].as_str());
    let ws: i64 = ws.parse().map_err(|_| CURSOR.not_this(raw))?;
    // 32 ASCII hex digits (so every 2-byte slice below is on a char boundary: a multibyte
    // character in a crafted cursor is refused, not a panic; `+` is no digit here).
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CURSOR.not_this(raw));
    }
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).map_err(|_| CURSOR.not_this(raw))?;
    }
    Ok((ws, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(raw: &str) -> &'static str {
        parse_list(Some(raw)).expect_err(raw).code
    }

    #[test]
    fn every_mistake_has_its_code() {
        assert_eq!(code("bogus=1"), "unknown_parameter");
        assert_eq!(code("kind=click_burst&kind=bot_share"), "duplicate_parameter");
        assert_eq!(code("from=yesterday"), "invalid_timestamp");
        assert_eq!(code("from=2024-06-01T00:00:00"), "invalid_timestamp");
        assert_eq!(code("from=2024-06-02T00:00:00Z&to=2024-06-01T00:00:00Z"), "invalid_range");
        assert_eq!(code("from=2024-06-01T00:00:00Z&to=2024-06-01T00:00:00Z"), "invalid_range");
        assert_eq!(code("kind=burst"), "invalid_kind");
        assert_eq!(code("kind=click_burst,"), "invalid_kind");
        assert_eq!(code("severity=high"), "invalid_severity");
        assert_eq!(code("code=a%2Fb"), "invalid_code");
        assert_eq!(code("limit=0"), "invalid_limit");
        assert_eq!(code("limit=1001"), "invalid_limit");
        assert_eq!(code("limit=x"), "invalid_limit");
        assert_eq!(code("cursor=zzz"), "invalid_cursor");
        assert_eq!(parse_stream(Some("last_event_id=-1")).expect_err("neg").code, "invalid_last_event_id");
        assert_eq!(parse_stream(Some("last_event_id=%2B0")).expect_err("plus").code, "invalid_last_event_id");
        // The range's edges hold for the instant as read (rounded up to the millisecond).
        assert_eq!(parse_list(Some("from=1969-12-31T23:59:59.9999Z")).expect("rounds to 0").filter.from_ms, Some(0));
        assert_eq!(parse_list(Some("to=9999-12-31T23:59:59.999Z")).expect("max").filter.to_ms, Some(MAX_MS));
        assert_eq!(parse_list(Some("to=9999-12-31T23:59:59.9991Z")).expect_err("past max").code, "invalid_timestamp");
        assert_eq!(parse_stream(Some("last_event_id=%207%20")).expect("spaces").last_event_id, Some(7));
        assert_eq!(parse_list(Some("from=2024-06-01T05:30:00%FF")).expect_err("utf8").code, "invalid_parameter");
        assert_eq!(parse_stream(Some("limit=5")).expect_err("limit").code, "unknown_parameter");
    }

    #[test]
    fn values_parse() {
        let p = parse_list(Some("from=2024-06-01T05:30:00%2B05:30&to=2024-06-02T00:00:00Z&kind=click_burst,bot_share&severity=critical&code=ab_1&limit=7"))
            .expect("valid");
        assert_eq!(p.filter.from_ms, Some(1_717_200_000_000));
        assert_eq!(p.filter.to_ms, Some(1_717_286_400_000));
        assert_eq!(p.filter.kinds, vec![AnomalyKind::ClickBurst, AnomalyKind::BotShare]);
        assert_eq!(p.filter.severities, vec![Severity::Critical]);
        assert_eq!(p.filter.code.as_deref(), Some("ab_1"));
        assert_eq!(p.limit, 7);
        // '+' decoded to a space by form encoding is repaired.
        assert_eq!(parse_list(Some("from=2024-06-01T05:30:00+05:30")).expect("plus").filter.from_ms, Some(1_717_200_000_000));
        assert_eq!(parse_list(None).expect("empty").limit, DEFAULT_LIMIT);
        assert_eq!(parse_list(Some("limit=7")).expect("7").limit, 7);
        for bad in ["limit=%2B5", "limit=+5", "limit=0", "limit=1001", "limit="] {
            assert_eq!(parse_list(Some(bad)).expect_err(bad).code, "invalid_limit", "{bad}");
        }
        assert_eq!(parse_list(Some("code=%FF")).expect_err("utf8").code, "invalid_parameter");
        // Digits past the millisecond round the bound up (exact for millisecond event times).
        let p = parse_list(Some("from=2024-06-01T00:00:00.000000001Z&to=2024-06-01T00:00:00.002500Z")).expect("nanos");
        assert_eq!((p.filter.from_ms, p.filter.to_ms), (Some(1_717_200_000_001), Some(1_717_200_000_003)));
        let p = parse_list(Some("from=2024-06-01T00:00:00.007000000Z")).expect("whole ms");
        assert_eq!(p.filter.from_ms, Some(1_717_200_000_007));
        // Out of range: the message states the accepted range.
        let e = parse_list(Some("from=1900-01-01T00:00:00Z")).expect_err("1900");
        assert_eq!(e.code, "invalid_timestamp");
        assert_eq!(e.message, "\"from\" must lie between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z, got \"1900-01-01T00:00:00Z\"");
    }

    #[test]
    fn cursors_round_trip_only_with_their_filter() {
        let f = parse_list(Some("kind=click_burst")).expect("valid").filter;
        let id = [7u8; 16];
        let c = encode_cursor(-5, &id, &f);
        assert_eq!(parse_list(Some(&format!("kind=click_burst&cursor={c}"))).expect("same").after, Some((-5, id)));
        assert_eq!(parse_list(Some(&format!("kind=bot_share&cursor={c}"))).expect_err("other").code, "invalid_cursor");
    }

    /// QA finding: an id of 32 bytes holding a multibyte character panicked (a slice inside
    /// the character); a `+` sign passed `from_str_radix`. Both are 400 `invalid_cursor`,
    /// even sealed with a matching fingerprint (a forger who knows the format).
    #[test]
    fn crafted_cursor_ids_are_invalid_cursor_never_a_panic() {
        let f = parse_list(None).expect("valid").filter;
        let fp = f.fingerprint();
        let not_this = "cursor is not valid here: not a cursor of this endpoint; use the next_cursor of a previous page with the same filters";
        for id in [format!("€{}", "0".repeat(29)), format!("0€{}", "0".repeat(28)), format!("+f{}", "0".repeat(30)), format!("{}é", "0".repeat(30))] {
            let c = CURSOR.encode(&["0", &id], &fp);
            let e = parse_list(Some(&format!("cursor={c}"))).expect_err(&id);
            assert_eq!((e.code, e.message.as_str()), ("invalid_cursor", not_this), "{id}");
        }
        let c = CURSOR.encode(&["0", &"0f".repeat(16)], &fp);
        assert_eq!(parse_list(Some(&format!("cursor={c}"))).expect("well-formed").after, Some((0, [0x0f; 16])));
    }

    /// QA finding (session 54): an anomalies cursor (then `"a1:<window_start>:<id>:<filter
    /// fingerprint>"`) with its position edited was accepted, paging from wherever the edit
    /// pointed. Its fingerprint now covers the position: any edit is 400 `invalid_cursor`.
    #[test]
    fn edited_cursors_are_invalid_cursor() {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let f = parse_list(Some("kind=click_burst")).expect("valid").filter;
        let c = encode_cursor(1_717_200_000_000, &[7u8; 16], &f);
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(&c).expect("b64")).expect("utf8");
        let id = "07".repeat(16);
        let prefix = format!("a2:1717200000000:{id}:");
        assert!(text.starts_with(&prefix), "{text}");
        let fp = &text[prefix.len()..];
        assert_eq!(parse_list(Some(&format!("kind=click_burst&cursor={c}"))).expect("untouched").after, Some((1_717_200_000_000, [7u8; 16])));
        let other = "cursor is not valid here: it was made with different filters (or altered); use the next_cursor of a previous page with the same filters";
        for edited in [
            format!("a2:1717200000001:{id}:{fp}"),
            format!("a2:1717200000000:{}08:{fp}", "07".repeat(15)),
            format!("a2:1717200000000:{id}:{}{}", if fp.starts_with('0') { '1' } else { '0' }, &fp[1..]),
        ] {
            let edited = URL_SAFE_NO_PAD.encode(edited);
            let e = parse_list(Some(&format!("kind=click_burst&cursor={edited}"))).expect_err(&edited);
            assert_eq!((e.code, e.message.as_str(), e.details), ("invalid_cursor", other, json!({"cursor": edited})), "{edited}");
        }
        // The cursor of the version before (position not sealed) is refused, not misread.
        let old = URL_SAFE_NO_PAD.encode(format!("a1:1717200000000:{id}:{}", f.fingerprint()));
        let e = parse_list(Some(&format!("kind=click_burst&cursor={old}"))).expect_err("a1");
        assert_eq!(
            (e.code, e.message.as_str()),
            ("invalid_cursor", "cursor is not valid here: not a cursor of this endpoint; use the next_cursor of a previous page with the same filters")
        );
    }
}
