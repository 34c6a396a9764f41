//! OpenAPI description of the stats endpoints and of `POST /v1/events` (served by the
//! ingest crate, documented here so the one document at `/v1/openapi.json` lists it).
//! Merged into [`crate::openapi::ApiDoc`] by [`crate::openapi::openapi_json`].

use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::dto::{Freshness, LinkStatsResponse, StatsTotals, SummaryLink, SummaryResponse};
use crate::dto::{ErrorBody, ErrorDetail};

/// One event of `POST /v1/events` (unknown members are refused).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventInputDoc {
    /// 1–256 bytes. A UUID is used as is; any other string maps to a fixed UUIDv8 (BLAKE3
    /// of the string), so the same string is always the same event.
    pub event_id: String,
    /// Short code, `[A-Za-z0-9_-]{1,64}`, of an existing link: an event for a code no link has
    /// is refused per event (`unknown_code` in `rejected`).
    pub code: String,
    /// Event time: integer ms since the epoch, or RFC 3339 with any offset; not before 1970,
    /// at most `[ingest] max-future-skew` (5 min; `[dataflow] future-skew` when smaller) ahead
    /// of the server clock.
    #[schema(value_type = Object)]
    pub ts: serde_json::Value,
    /// Full client IP (the visitor id is derived from it; only its /24 or /48 is stored).
    /// Exactly one of `ip` and `ip_trunc`.
    pub ip: Option<String>,
    /// Truncated client network instead of `ip`.
    pub ip_trunc: Option<String>,
    /// User agent (alias `ua`), may be empty.
    pub user_agent: String,
    /// Referrer URL.
    pub referrer: Option<String>,
    /// `Accept-Language` header value.
    pub accept_language: Option<String>,
    /// Edge region.
    pub edge_region: Option<String>,
}

/// A refused event of `POST /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventRejectionDoc {
    /// Index of the event in the body, from 0.
    pub index: usize,
    /// 1-based line (NDJSON bodies only).
    pub line: Option<usize>,
    /// Stable reason code.
    pub reason: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Answer of `POST /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventsAnswerDoc {
    /// Events stored durably (duplicates included: dedup happens in the dataflow).
    pub accepted: usize,
    /// Refused events.
    pub rejected: Vec<EventRejectionDoc>,
}

/// Posts explicit click events (backup intake, tests, `sluice import`).
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    // Both body formats of `POST /v1/events` (sluice_ingest::http's body_format): the NDJSON
    // body is the same events, one object per line.
    request_body(
        description = "A JSON array (application/json) or one event per line (application/x-ndjson), at most 10,000 events and 32 MiB",
        content(
            (Vec<EventInputDoc> = "application/json"),
            (EventInputDoc = "application/x-ndjson"),
        ),
    ),
    params(
        ("backfill" = Option<bool>, Query, description = "Mark the events as backfill: they bypass the dataflow's lateness limit (not dedup)"),
        ("Authorization" = Option<String>, Header, description = "Bearer <[ingest] token>; without a configured token only loopback peers may post"),
    ),
    responses(
        (status = 200, description = "Accepted events are durable; refused ones are listed", body = EventsAnswerDoc),
        (status = 400, description = "invalid_parameter, malformed_json, invalid_body, invalid_utf8, empty_batch, all_events_rejected", body = ErrorBody),
        (status = 401, description = "unauthorized or invalid_token", body = ErrorBody),
        (status = 403, description = "forbidden: no token configured and the peer is not loopback", body = ErrorBody),
        (status = 413, description = "payload_too_large or too_many_events", body = ErrorBody),
        (status = 415, description = "unsupported_media_type, or unsupported_content_encoding for a body with a Content-Encoding (send it uncompressed)", body = ErrorBody),
        (status = 503, description = "log_unavailable: nothing was stored, retry", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn post_events_doc() {}

/// The stats and events part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(super::handlers::link_stats, super::handlers::summary, post_events_doc),
    components(schemas(
        LinkStatsResponse, SummaryResponse, SummaryLink, StatsTotals, Freshness,
        EventInputDoc, EventRejectionDoc, EventsAnswerDoc, ErrorBody, ErrorDetail
    )),
    tags(
        (name = "stats", description = "Clicks and unique visitors from the live dataflow views"),
        (name = "events", description = "Explicit click events (backup intake, backfill)"),
    )
)]
pub struct StatsDoc;
