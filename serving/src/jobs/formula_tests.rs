//! `escape_formulas` of `POST /v1/reports/export`: the job's CSV equals the synchronous
//! export with the same flag, byte for byte, escaped or verbatim; JSON refuses it.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;

use crate::reports::ReportsState;
use crate::reports::test_harness::*;

const NOW: &str = "2024-06-02T00:00:00Z";
/// An app user agent: uap-core's CFNetwork rule takes the browser family from the app name,
/// which the clicker chooses.
const FORMULA_APP: &str = "=1+2/3 CFNetwork/1494.0.7 Darwin/23.4.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const RANGE: &str = r#""from": "2024-06-01T00:00:00Z", "to": "2024-06-02T00:00:00Z", "bucket": "day", "dimensions": "browser""#;

async fn job_file(state: &ReportsState, body: &str) -> (Value, String) {
    let (st, _, b) = send(state, "POST", "/v1/reports/export", Some(("application/json", body))).await;
    let v: Value = serde_json::from_slice(&b).expect("json body");
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().expect("job_id").to_owned();
    let done = wait_until(Duration::from_secs(30), "the job to finish", || async {
        let (_, _, b) = send(state, "GET", &format!("/v1/jobs/{id}"), None).await;
        let v: Value = serde_json::from_slice(&b).expect("json body");
        matches!(v["status"].as_str(), Some("succeeded" | "failed")).then_some(v)
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let (st, _, b) = send(state, "GET", &format!("/v1/jobs/{id}/download"), None).await;
    assert_eq!(st, StatusCode::OK);
    (done, String::from_utf8(b.to_vec()).expect("utf-8"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_escapes_formulas_like_the_synchronous_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab"], ms(NOW), dir.path()).await;
    h.ingest(vec![
        click(1, "ab", ms("2024-06-01T03:00:00Z"), 1, FORMULA_APP, Some("8.8.8.0"), None),
        click(2, "ab", ms("2024-06-01T04:00:00Z"), 2, CHROME, Some("8.8.8.0"), None),
    ]);
    let state = h.state();
    let verbatim = "bucket,code,browser,clicks,uniques\r\n\
                    2024-06-01T00:00:00Z,ab,=1+2,1,1\r\n\
                    2024-06-01T00:00:00Z,ab,Chrome,1,1\r\n";
    let escaped = verbatim.replace(",=1+2,", ",'=1+2,");

    let (done, file) = job_file(state, &format!(r#"{{"codes": ["ab"], {RANGE}, "escape_formulas": true}}"#)).await;
    assert_eq!(file, escaped);
    assert_eq!(done["escape_formulas"], true);
    let (st, _, b) = send(
        state,
        "GET",
        "/v1/stats/export?code=ab&from=2024-06-01T00:00:00Z&to=2024-06-02T00:00:00Z&bucket=day&dimensions=browser&escape_formulas=true",
        None,
    )
    .await;
    assert_eq!((st, String::from_utf8(b.to_vec()).expect("utf-8")), (StatusCode::OK, escaped.clone()));

    // Off (absent or false): verbatim, as the synchronous export without the flag.
    for flag in ["", r#", "escape_formulas": false"#] {
        let (done, file) = job_file(state, &format!(r#"{{"codes": ["ab"], {RANGE}{flag}}}"#)).await;
        assert_eq!(file, verbatim, "flag {flag:?}");
        assert_eq!(done["escape_formulas"], false);
    }

    // JSON values are never read as formulas: the flag is refused with a JSON format, and a
    // non-boolean is a bad body.
    let (st, _, b) = send(
        state,
        "POST",
        "/v1/reports/export",
        Some(("application/json", &format!(r#"{{"codes": ["ab"], {RANGE}, "format": "json", "escape_formulas": true}}"#))),
    )
    .await;
    let v: Value = serde_json::from_slice(&b).expect("json body");
    assert_eq!(
        (st, v["error"]["code"].as_str(), v["error"]["details"]["parameter"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_parameter"), Some("escape_formulas")),
        "{v}"
    );
    let (st, _, b) =
        send(state, "POST", "/v1/reports/export", Some(("application/json", &format!(r#"{{"codes": ["ab"], {RANGE}, "escape_formulas": "yes"}}"#)))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&b));
}
