//! `POST /v1/events`: the backup intake path, the way tests inject exact events, and the
//! target of `sluice import`.
//!
//! Request: `Authorization: Bearer <ingest token>` when `[ingest] token` is configured;
//! without a token only loopback peers (the socket address, never `X-Forwarded-For`) may
//! post. Body: a JSON array of events (`Content-Type: application/json`) or one event per
//! line (`application/x-ndjson`; blank lines are skipped), at most
//! [`EventsConfig::max_events`] events and [`EventsConfig::max_body_bytes`] bytes. Each event
//! has the shape documented in [`crate::event_input`]. `?backfill=true` marks the accepted
//! events as backfill: they bypass the dataflow's lateness limit, not its dedup.
//!
//! Response: `200 {"accepted": n, "rejected": [{"index", "reason", "message"}]}` (NDJSON
//! rejections also carry the 1-based `line`); `index` counts events from 0 in body order
//! (blank NDJSON lines are not events). The accepted events are durable (fsync'd in the
//! click log, one atomic batch) before the response is sent. Duplicates are accepted: dedup
//! by `event_id` happens in the dataflow.
//!
//! Errors (DESIGN.md shape): 401 `unauthorized` (no or malformed bearer token) and
//! `invalid_token`; 403 `forbidden` (no token configured and the peer is not loopback);
//! 400 `invalid_parameter`, `malformed_json`, `duplicate_key` (an object of the body repeats
//! a member name; in NDJSON that line's event is rejected `duplicate_key` instead),
//! `invalid_body` (not an array), `invalid_utf8`,
//! `empty_batch`, `all_events_rejected` (details hold the rejections); 413
//! `payload_too_large` and `too_many_events`; 415 `unsupported_media_type` (and, from the
//! binary's router, `unsupported_content_encoding` for a body with a `Content-Encoding`); 503
//! `log_unavailable` (with `Retry-After`; nothing was stored) and `store_unavailable` (the
//! codes could not be checked; nothing was stored); 500 `internal`.
//!
//! Per-event reasons besides the schema's ([`Rejection`]): with an [`IntakeGate`] (the
//! binary always has one), `unknown_code` (no link has the code) and `too_late` (live
//! events: older than the dataflow's watermark minus its allowed lateness; backfill: older
//! than the watermark minus the longest retention, `[dataflow] long-retention`; either way
//! also older than that limit behind the newest event time accepted before, in this request
//! or an earlier one: [`gate::LatenessCheck`]). Events newer than the server clock plus the
//! skew tolerance ([`EventsConfig::max_future_skew_ms`]) are `ts_in_future`.

pub mod error;
pub mod gate;
mod telemetry;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::{Value, json};
use sluice_schemas::strict_json::{BoundedArray, StrictJsonError, array_from_slice_strict, from_str_strict};
use sluice_schemas::{ClickEvent, VisitorSalt};

pub use self::error::ApiError;
use self::error::echo;
pub use self::gate::IntakeGate;
use self::telemetry::EventsReceived;
use crate::event_input::{DEFAULT_MAX_FUTURE_SKEW_MS, MAX_EVENTS_PER_REQUEST, Rejection, Validation, rfc3339_ms as rfc3339, validate_value};
use crate::{DurableAppender, EventLog};

/// Route of the endpoint.
pub const EVENTS_PATH: &str = "/v1/events";
/// Default body limit of the endpoint: 32 MiB (10,000 events of ~3 KB), in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 << 20;

/// Settings of the endpoint (the binary's `[ingest]` section).
#[derive(Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// Bearer token required from callers; `None` = loopback peers only.
    pub token: Option<String>,
    /// Most events per request (default and upper bound [`MAX_EVENTS_PER_REQUEST`]).
    pub max_events: usize,
    /// Largest body in bytes (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub max_body_bytes: usize,
    /// Tolerance for `ts` ahead of the server clock, ms (default 5 minutes). The binary sets
    /// the smaller of `[ingest] max-future-skew` and `[dataflow] future-skew`, so no event it
    /// accepts is dead-lettered `future`.
    pub max_future_skew_ms: i64,
    /// `server.forwarded-header` when it names a header: without a token, a loopback request
    /// carrying it (or any header of [`sluice_schemas::client_address`]) came through a proxy.
    pub client_header: Option<String>,
}

impl std::fmt::Debug for EventsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsConfig")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("max_events", &self.max_events)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_future_skew_ms", &self.max_future_skew_ms)
            .field("client_header", &self.client_header)
            .finish()
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            token: None,
            max_events: MAX_EVENTS_PER_REQUEST,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_future_skew_ms: DEFAULT_MAX_FUTURE_SKEW_MS,
            client_header: None,
        }
    }
}

/// Clock of the endpoint: ms since the Unix epoch, UTC.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Everything the endpoint needs. Cheap to clone.
#[derive(Clone)]
pub struct EventsState<L: EventLog> {
    appender: DurableAppender<L>,
    salt: VisitorSalt,
    config: Arc<EventsConfig>,
    clock: Clock,
    gate: Option<Arc<dyn IntakeGate>>,
    /// Held from a request's lateness check to the end of its append, so the events reach
    /// the log in the order they were checked in (see [`gate_events`]).
    order: Arc<tokio::sync::Mutex<()>>,
}

impl<L: EventLog> EventsState<L> {
    /// State appending to `appender`'s log, deriving visitor ids with `salt` (the
    /// redirect's), using the system clock. An empty configured token counts as none.
    pub fn new(appender: DurableAppender<L>, salt: VisitorSalt, mut config: EventsConfig) -> Self {
        config.token = config.token.filter(|t| !t.is_empty());
        config.max_events = config.max_events.clamp(1, MAX_EVENTS_PER_REQUEST);
        let clock: Clock = Arc::new(|| chrono::Utc::now().timestamp_millis());
        tracing::info!(
            auth = if config.token.is_some() { "bearer token" } else { "loopback peers only" },
            max_events = config.max_events,
            max_body_bytes = config.max_body_bytes,
            "POST /v1/events ready"
        );
        EventsState { appender, salt, config: Arc::new(config), clock, gate: None, order: Arc::default() }
    }

    /// Checks each event's code and (unless backfill) its lateness with `gate` (see
    /// [`gate`]): events failing them are rejected `unknown_code` / `too_late`.
    pub fn with_gate(mut self, gate: Arc<dyn IntakeGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether callers must present a token (else: loopback peers only).
    pub fn requires_token(&self) -> bool {
        self.config.token.is_some()
    }
}

/// The router fragment serving `POST /v1/events` (merge it into the API router; the body
/// limit is enforced by the handler itself, independent of other routes' limits).
pub fn events_router<L: EventLog>(state: EventsState<L>) -> Router {
    Router::new().route(EVENTS_PATH, post(post_events::<L>)).with_state(state)
}

/// One refused event of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedEvent {
    /// 0-based position among the request's events.
    pub index: usize,
    /// 1-based line of the body (NDJSON only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Stable reason code (see [`Rejection`]).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    JsonArray,
    Ndjson,
}

async fn post_events<L: EventLog>(State(state): State<EventsState<L>>, req: Request) -> Response {
    let started = Instant::now();
    match handle(&state, req).await {
        Ok((accepted, rejected, backfill)) => {
            EventsReceived { accepted: accepted as u64, rejected: &rejected, backfill, elapsed: started.elapsed() }.emit();
            let body = json!({ "accepted": accepted, "rejected": rejected });
            (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn handle<L: EventLog>(state: &EventsState<L>, req: Request) -> Result<(usize, Vec<RejectedEvent>, bool), ApiError> {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    authorize(state.config.token.as_deref(), state.config.client_header.as_deref(), peer, req.headers())?;
    let backfill = parse_query(req.uri().query())?;
    let format = body_format(req.headers())?;
    let limit = state.config.max_body_bytes;
    let too_large = || {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("request body is larger than {limit} bytes"))
            .with_details(json!({ "max_body_bytes": limit }))
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| if is_length_limit(&e) { too_large() } else { ApiError::bad_request("invalid_body", format!("could not read the request body: {e}")) })?;
    let items = split_body(&bytes, format, state.config.max_events)?;
    let ctx = Validation { salt: &state.salt, now_ms: (state.clock)(), max_future_skew_ms: state.config.max_future_skew_ms };
    let mut valid: Vec<(usize, Option<usize>, ClickEvent)> = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, (line, item)) in items.into_iter().enumerate() {
        match item.and_then(|v| validate_value(v, &ctx)) {
            Ok(ev) => valid.push((index, line, ev)),
            Err(Rejection { reason, message }) => rejected.push(RejectedEvent { index, line, reason, message }),
        }
    }
    // Codes are looked up before the order lock (a store read); the lateness check and the
    // append run under it, so a request checked after another stores after it too.
    let known = match &state.gate {
        Some(gate) => Some(known_codes(gate.as_ref(), &valid).await?),
        None => None,
    };
    let _in_order = state.order.lock().await;
    let accepted = match (&state.gate, known) {
        (Some(gate), Some(known)) => gate_events(gate.as_ref(), valid, &known, backfill, ctx.now_ms, &mut rejected),
        _ => valid.into_iter().map(|(_, _, ev)| ev).collect(),
    };
    rejected.sort_by_key(|r| r.index);
    if accepted.is_empty() {
        EventsReceived { accepted: 0, rejected: &rejected, backfill, elapsed: std::time::Duration::ZERO }.emit();
        return Err(ApiError::bad_request("all_events_rejected", format!("all {} events were rejected", rejected.len()))
            .with_details(json!({ "accepted": 0, "rejected": rejected })));
    }
    let n = accepted.len();
    let newest = accepted.iter().map(|ev| ev.ts).max();
    state.appender.append_durable_marked(accepted, backfill).await?;
    // Stored: the next requests' events are checked against these too (gate::LatenessCheck).
    // An event ahead of the clock (within the future skew) moves the dataflow's watermark
    // only to its processing clock when it reads it (DESIGN, C21): gate::accepted_time_ms.
    if let (Some(gate), Some(ts)) = (&state.gate, newest) {
        gate.record_accepted(gate::accepted_time_ms(ts, ctx.now_ms, gate.in_flight_margin_ms()));
    }
    Ok((n, rejected, backfill))
}

/// Applies the gate to the valid events in body order: `unknown_code` for codes no link
/// has, then `too_late` for event times before the oldest counted one (live events: the
/// allowed lateness; backfill: the longest retention). The events of one request reach
/// the dataflow in body order, each raising its partition's watermark to its event time,
/// so an event is also refused when it is older than the limit
/// ([`IntakeGate::lateness_limit_ms`]) behind an event accepted before it: in the same
/// request, or in an earlier one ([`IntakeGate::newest_accepted_ms`], which the views'
/// watermark may not show yet); the dataflow would dead-letter it `too_late`. Called under
/// the state's order lock, held until the accepted events are stored: a request checked
/// after another cannot store before it (which would let the dataflow read the older
/// events after the newer ones and dead-letter them).
fn gate_events(
    gate: &dyn IntakeGate,
    valid: Vec<(usize, Option<usize>, ClickEvent)>,
    known: &BTreeSet<String>,
    backfill: bool,
    now_ms: i64,
    rejected: &mut Vec<RejectedEvent>,
) -> Vec<ClickEvent> {
    let from_views = if backfill { gate.oldest_backfill_ts_ms() } else { gate.oldest_live_ts_ms() };
    let mut lateness =
        gate::LatenessCheck::after(from_views, gate.lateness_limit_ms(backfill), gate.newest_accepted_ms()).capped_at(now_ms, gate.in_flight_margin_ms());
    let mut accepted = Vec::with_capacity(valid.len());
    for (index, line, ev) in valid {
        let refusal = if !known.contains(&ev.code) {
            Some(("unknown_code", format!("no link has the code \"{}\"", ev.code)))
        } else {
            lateness.admit(ev.ts).err().map(|o| {
                let message = if backfill {
                    format!(
                        "\"ts\" {} is older than the longest retention ([dataflow] long-retention): the oldest event time any view keeps is {} ({o} ms)",
                        rfc3339(ev.ts),
                        rfc3339(o)
                    )
                } else {
                    format!(
                        "\"ts\" {} is older than the allowed lateness: the oldest counted event time is {} ({o} ms); send history with ?backfill=true (sluice import)",
                        rfc3339(ev.ts),
                        rfc3339(o)
                    )
                };
                ("too_late", message)
            })
        };
        match refusal {
            Some((reason, message)) => rejected.push(RejectedEvent { index, line, reason, message }),
            None => accepted.push(ev),
        }
    }
    accepted
}

/// The codes of `valid` that name a link ([`IntakeGate::known_codes`]).
///
/// Errors: 503 `store_unavailable` when the link store cannot be read (nothing is stored).
async fn known_codes(gate: &dyn IntakeGate, valid: &[(usize, Option<usize>, ClickEvent)]) -> Result<BTreeSet<String>, ApiError> {
    let codes: BTreeSet<String> = valid.iter().map(|(_, _, ev)| ev.code.clone()).collect();
    if codes.is_empty() {
        return Ok(BTreeSet::new());
    }
    gate.known_codes(&codes).await.map_err(|message| {
        tracing::warn!(error = %message, "could not read the link store for POST /v1/events");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the link store could not be read to check the events' codes; nothing was stored, retry later",
        )
    })
}

/// Whether reading the body failed on its length limit (`http-body-util`'s
/// `LengthLimitError` somewhere in the cause chain of axum's error).
fn is_length_limit(err: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Checks the caller (see the module docs). The token comparison takes the same time for
/// every token of the configured length.
fn authorize(token: Option<&str>, client_header: Option<&str>, peer: Option<IpAddr>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = token else {
        // A loopback peer that forwards for someone else (a reverse proxy on this host) is
        // not a local caller: the same rule as the admin endpoints.
        // Also a page that rebound its own domain to 127.0.0.1 (its domain is the `Host`).
        let forwarded =
            sluice_schemas::client_address::forwarded_for_someone(headers, client_header) || !sluice_schemas::client_address::host_is_loopback(headers);
        return match peer {
            Some(ip) if is_loopback(ip) && forwarded => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "no ingest token is configured, so only direct loopback clients may post events; this request came through a proxy, or named a host other than localhost, 127.0.0.1 or [::1] (set [ingest] token)",
            )),
            Some(ip) if is_loopback(ip) => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "no ingest token is configured, so only loopback clients may post events (set [ingest] token)",
            )),
        };
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing \"Authorization: Bearer <ingest token>\" header"));
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim()))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the Authorization header must be \"Bearer <ingest token>\""))?;
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "the bearer token is not the configured ingest token"))
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `backfill=true|false|1|0` is the only parameter, given at most once (400
/// `duplicate_parameter` otherwise, like the other endpoints). Names and values are decoded
/// as `application/x-www-form-urlencoded` (WHATWG URL Standard §5.1: `+` is a space, `%XX` a
/// byte; [`sluice_schemas::form`]); one that is not UTF-8 once decoded is 400 `invalid_parameter` with
/// `details.reason`, as on the API's routes.
fn parse_query(query: Option<&str>) -> Result<bool, ApiError> {
    let pairs = sluice_schemas::form::decode_pairs(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.message(echo)).with_details(e.details()))?;
    let mut backfill = None;
    for (k, v) in pairs {
        if k != "backfill" {
            return Err(ApiError::bad_request("unknown_parameter", format!("unknown query parameter \"{}\"", echo(&k)))
                .with_details(json!({ "parameter": k, "supported": ["backfill"] })));
        }
        if backfill.is_some() {
            return Err(ApiError::bad_request("duplicate_parameter", "query parameter \"backfill\" is given more than once")
                .with_details(json!({ "parameter": "backfill" })));
        }
        backfill = Some(match v.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            other => {
                return Err(ApiError::bad_request("invalid_parameter", format!("\"backfill\" must be true or false (or 1 / 0), got \"{}\"", echo(other)))
                    .with_details(json!({ "parameter": "backfill", "value": other, "allowed": ["true", "false", "1", "0"] })));
            }
        });
    }
    Ok(backfill.unwrap_or(false))
}

/// The body's format from `Content-Type` (parsed by
/// [`sluice_schemas::media_type::parse_media_type`]): `application/json`
/// (an array) or one of the NDJSON types; a `charset` parameter, when present, must name
/// UTF-8 (RFC 8259 §8.1), as on every JSON route of the API (the one check of both:
/// [`sluice_schemas::media_type::check_json_charset`]).
///
/// Errors: 415 `unsupported_media_type` (details `{content_type}`) otherwise, also for a
/// header that does not parse as a media type.
fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let refuse =
        |message: String| Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message).with_details(json!({ "content_type": ct })));
    let expected = "expected content-type application/json (an array of events) or application/x-ndjson (one event per line)";
    let Some(media_type) = sluice_schemas::media_type::parse_media_type(ct) else {
        return refuse(expected.to_owned());
    };
    let format = match media_type.essence().as_str() {
        "application/json" => BodyFormat::JsonArray,
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => BodyFormat::Ndjson,
        _ => return refuse(expected.to_owned()),
    };
    sluice_schemas::media_type::check_json_charset(&media_type, "events").map(|()| format).or_else(|e| refuse(e.to_string()))
}

type Item = (Option<usize>, Result<Value, Rejection>);

/// The body's events in order: each with its NDJSON line and its JSON value (or why the
/// line is not JSON).
fn split_body(bytes: &[u8], format: BodyFormat, max_events: usize) -> Result<Vec<Item>, ApiError> {
    let too_many = |n: usize| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_events", format!("{n} events in one request; at most {max_events} are allowed"))
            .with_details(json!({ "events": n, "max_events": max_events }))
    };
    let items: Vec<Item> = match format {
        BodyFormat::JsonArray => {
            // Counted while parsing: at most `max_events` values are ever held.
            let arr = array_from_slice_strict(bytes, max_events).map_err(|e| match e {
                StrictJsonError::DuplicateKey { key, line, column } => ApiError::bad_request(
                    "duplicate_key",
                    format!("request body repeats the key {} in one object (line {line}, column {column}); send each member once", Value::from(echo(&key))),
                )
                .with_details(json!({ "key": key, "line": line, "column": column })),
                StrictJsonError::Syntax(e) => {
                    let details = json!({ "line": e.line(), "column": e.column() });
                    ApiError::bad_request("malformed_json", format!("request body is not valid json: {}", StrictJsonError::Syntax(e))).with_details(details)
                }
                e @ StrictJsonError::ByteOrderMark => {
                    ApiError::bad_request("malformed_json", format!("request body is not valid json: {e}")).with_details(json!({ "line": 1, "column": 1 }))
                }
                e @ StrictJsonError::InvalidUtf8 { byte } => {
                    ApiError::bad_request("invalid_utf8", format!("request body is not utf-8: {e}")).with_details(json!({ "byte": byte }))
                }
            })?;
            let arr = match arr {
                BoundedArray::Items(arr) => arr,
                BoundedArray::TooLong { len } => return Err(too_many(len)),
                BoundedArray::NotArray => return Err(ApiError::bad_request("invalid_body", "expected a json array of events (send one event as [event])")),
            };
            arr.into_iter().map(|v| (None, Ok(v))).collect()
        }
        BodyFormat::Ndjson => {
            let text = std::str::from_utf8(bytes).map_err(|e| {
                ApiError::bad_request("invalid_utf8", format!("request body is not utf-8: {e}")).with_details(json!({ "byte": e.valid_up_to() }))
            })?;
            let lines = || text.split('\n').enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty());
            // Counted before anything is collected.
            let n = lines().count();
            if n > max_events {
                return Err(too_many(n));
            }
            lines()
                .map(|(n, l)| {
                    let parsed = from_str_strict(l).map_err(|e| match e {
                        StrictJsonError::DuplicateKey { key, .. } => {
                            Rejection::new("duplicate_key", format!("line {n} repeats the key {} in one object", Value::from(echo(&key))))
                        }
                        e @ (StrictJsonError::Syntax(_) | StrictJsonError::ByteOrderMark | StrictJsonError::InvalidUtf8 { .. }) => {
                            Rejection::new("malformed_json", format!("line {n} is not valid json: {e}"))
                        }
                    });
                    (Some(n), parsed)
                })
                .collect()
        }
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("empty_batch", "the request contains no events"));
    }
    Ok(items)
}

#[cfg(test)]
mod tests;
