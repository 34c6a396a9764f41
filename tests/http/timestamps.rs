//! Timestamps of the API read by `sluice_serving::rfc3339`: digits past the nanosecond
//! round up (never dropped), and errors echo what was meant.

use axum::http::Method;
use serde_json::json;

use crate::harness::{Backend, TestApp};

#[tokio::test]
async fn digits_past_the_nanosecond_are_never_dropped() {
    let app = TestApp::start(Backend::Sqlite).await;
    let code = app.create_url("https://example.com/ts").await;
    // 1e-13 s past the minute is not the minute.
    let from = "2026-12-05T01:00:00.0000000000001Z";
    let r = app.get(&format!("/v1/links/{code}/stats?bucket=minute&from={from}&to=2026-12-05T02:00:00Z")).await;
    let err = r.assert_error(400, "unaligned_range");
    assert_eq!(
        err,
        json!({
            "code": "unaligned_range",
            "message": format!("\"from\" must be a whole minute (stats are kept per minute), got \"{from}\""),
            "details": {"parameter": "from", "value": from},
        })
    );
    // An expiry 1e-13 s past midnight is stored at the next millisecond, never before.
    let link = app.create(json!({"long_url": "https://example.com/ts", "expires_at": "2030-01-01T00:00:00.0000000000001Z"})).await;
    assert_eq!(link["expires_at"], "2030-01-01T00:00:00.001Z");
    // Zeros past the ninth digit change nothing.
    let link = app.create(json!({"long_url": "https://example.com/ts", "expires_at": "2030-01-01T00:00:00.0000000000000Z"})).await;
    assert_eq!(link["expires_at"], "2030-01-01T00:00:00Z");
}

#[tokio::test]
async fn errors_echo_an_unencoded_offset_plus_as_sent() {
    let app = crate::admin::with_token(Backend::Sqlite).await;
    let code = app.create_url("https://example.com/ts").await;
    // '+' unencoded in a query string is form-decoded to a space, then taken back.
    let r = crate::admin::admin(&app, Method::GET, "/v1/admin/audit?from=2026-12-05T01:00:00+00:00&to=2026-12-05T01:00:00Z", None).await;
    let err = r.assert_error(400, "invalid_range");
    assert_eq!(err["details"], json!({"from": "2026-12-05T01:00:00+00:00", "to": "2026-12-05T01:00:00Z"}));
    // (`/v1/anomalies`, served by the dataflow process: sluice_serving::anomalies::tests.)
    let sent = "1970-01-01T00:30:00+01:00";
    let r = app.get(&format!("/v1/links/{code}/stats?from={sent}")).await;
    let err = r.assert_error(400, "invalid_timestamp");
    assert_eq!(err["message"], format!("\"from\" must lie between 1970-01-01T00:00:00Z and 9999-12-31T23:59:00Z, got \"{sent}\""));
    assert_eq!(err["details"]["value"], sent);
}

#[tokio::test]
async fn a_misplaced_leap_second_says_why_and_from_is_checked_first() {
    let app = crate::admin::with_token(Backend::Sqlite).await;
    let code = app.create_url("https://example.com/ts").await;
    let leap = "2026-12-05T00:59:60Z";
    let reason = "second 60 (a leap second) is only valid at 23:59:60 UTC";
    let r = app.get(&format!("/v1/links/{code}/stats?from={leap}")).await;
    assert_eq!(
        r.assert_error(400, "invalid_timestamp"),
        json!({
            "code": "invalid_timestamp",
            "message": format!("\"from\" must be an RFC 3339 date-time with an offset (e.g. 2024-06-01T00:00:00Z or 2024-06-01T00:00:00%2B05:30), got \"{leap}\": {reason}"),
            "details": {"parameter": "from", "value": leap},
        })
    );
    let want = json!({
        "code": "invalid_timestamp",
        "message": format!("\"from\" must be an RFC 3339 date-time with an offset between 1970 and 9999 (e.g. 2024-06-01T00:00:00Z), got \"{leap}\": {reason}"),
        "details": {"parameter": "from", "value": leap},
    });
    assert_eq!(crate::admin::admin(&app, Method::GET, &format!("/v1/admin/audit?from={leap}"), None).await.assert_error(400, "invalid_timestamp"), want);
    // Both ends bad: every route names `from` (stats read `to` first before).
    for path in [format!("/v1/links/{code}/stats?from=&to="), format!("/v1/links/{code}/stats?to=&from=")] {
        let err = app.get(&path).await.assert_error(400, "invalid_timestamp");
        assert_eq!(err["details"], json!({"parameter": "from", "value": ""}), "{path}");
    }
    let err = crate::admin::admin(&app, Method::GET, "/v1/admin/audit?from=&to=", None).await.assert_error(400, "invalid_timestamp");
    assert_eq!(err["details"], json!({"parameter": "from", "value": ""}));
}
