//! Timestamps of the API read by `sluice_serving::rfc3339`: digits past the nanosecond
//! round up (never dropped), and errors echo what was meant.

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

