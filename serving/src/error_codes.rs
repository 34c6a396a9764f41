//! Every error `code` the HTTP API answers with, by HTTP status: the one list the README
//! ("Error codes") and the OpenAPI document (`info.description`) reproduce. The link API,
//! stats, reports, anomalies, webhooks and admin ([`crate::error::ApiError`]), the events
//! intake (`sluice-ingest`), the redirect path (`sluice-redirect`) and the HTTP server of
//! the `sluice` binary (head limits, timeouts, `/readyz`) all draw their codes from it; a
//! test of the binary crate (`tests/http/error_codes.rs`) scans their sources and fails on a code missing here or listed
//! here but never emitted.

/// `(HTTP status, codes answered with it)`, statuses ascending, codes sorted.
pub const ERROR_CODES: &[(u16, &[&str])] = &[
    (
        400,
        &[
            "alias_rename_unsupported",
            "alias_reserved",
            "all_events_rejected",
            "control_characters",
            "credentials_in_url",
            "duplicate_header",
            "duplicate_key",
            "duplicate_parameter",
            "empty_batch",
            "expires_in_past",
            "invalid_alias",
            "invalid_body",
            "invalid_bucket",
            "invalid_code",
            "invalid_codes",
            "invalid_cursor",
            "invalid_dimensions",
            "invalid_etag",
            "invalid_expires_at",
            "invalid_format",
            "invalid_host",
            "invalid_idempotency_key",
            "invalid_kind",
            "invalid_last_event_id",
            "invalid_limit",
            "invalid_order_by",
            "invalid_org",
            "invalid_parameter",
            "invalid_path",
            "invalid_pattern",
            "invalid_port",
            "invalid_range",
            "invalid_reason",
            "invalid_redirect_type",
            "invalid_request",
            "invalid_secret",
            "invalid_severity",
            "invalid_tags",
            "invalid_timestamp",
            "invalid_url",
            "invalid_utf8",
            "invalid_webhook_url",
            "last_event_id_ahead",
            "malformed_json",
            "malformed_request",
            "missing_code",
            "missing_host",
            "pattern_public_suffix",
            "pattern_wildcard",
            "range_not_retained",
            "range_too_long",
            "redirect_loop",
            "unaligned_range",
            "unknown_domain",
            "unknown_field",
            "unknown_parameter",
            "unknown_timezone",
            "unsupported_dimensions",
            "unsupported_scheme",
            "unsupported_tz_offset",
            "unsupported_url_scheme",
            "url_too_long",
            "webhook_host_unresolvable",
            "webhook_url_forbidden",
        ],
    ),
    (401, &["invalid_token", "unauthorized"]),
    (403, &["admin_loopback_only", "cross_origin_request", "forbidden"]),
    (404, &["not_found", "webhook_not_found"]),
    (405, &["method_not_allowed"]),
    (408, &["request_timeout"]),
    (409, &["alias_conflict", "job_not_ready", "link_blocklisted", "link_held", "too_many_webhooks"]),
    (410, &["export_gone", "link_expired"]),
    (412, &["precondition_failed"]),
    (413, &["payload_too_large", "too_many_events"]),
    (414, &["uri_too_long"]),
    (415, &["unsupported_content_encoding", "unsupported_media_type"]),
    (422, &["idempotency_key_reused", "policy_violation"]),
    (429, &["rate_limited"]),
    (431, &["headers_too_large", "too_many_headers"]),
    (500, &["export_write_failed", "internal", "jobs_store_damaged", "jobs_store_failed"]),
    (501, &["unsupported_transfer_encoding"]),
    (
        503,
        &[
            "admin_unavailable",
            "anomalies_not_local",
            "anomaly_store_unavailable",
            "jobs_store_unavailable",
            "log_unavailable",
            "not_ready",
            "prefetch_refused",
            "starting",
            "stats_history_unavailable",
            "stats_not_local",
            "stats_unavailable",
            "store_unavailable",
        ],
    ),
];

/// Codes only ever seen as a failed report job's `error.code` (`GET /v1/jobs/{job_id}`),
/// never as a response status. A failed job's `error.code` may also be any code above that
/// stopped the export.
pub const JOB_FAILURE_CODES: &[&str] = &["job_interrupted"];

/// The lists as one line of text for the OpenAPI description: `400: a, b; 401: c; ...;
/// failed job only: job_interrupted`.
pub fn summary() -> String {
    let mut parts: Vec<String> = ERROR_CODES.iter().map(|(status, codes)| format!("{status}: {}", codes.join(", "))).collect();
    parts.push(format!("failed report job only: {}", JOB_FAILURE_CODES.join(", ")));
    parts.join("; ")
}
