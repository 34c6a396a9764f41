//! Stats routes over the real dataflow with a short retention: ranges older than what the
//! views hold are refused with `range_not_retained` (naming the retained start per bucket)
//! when no long-term store is configured, instead of an empty 200.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_dataflows::clock::ManualClock;
use sluice_dataflows::config::{PipelineConfig, SemanticsConfig};
use tower::ServiceExt;

use super::routes;
use super::state::{StatsConfig, StatsState, ViewSource};
use crate::reports::test_harness::{Harness, click, ms};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0";

/// Views retaining 2 days of rollups (2 h of minutes), holding one click of "ab" at
/// 2024-06-01T10:00Z and one at 2024-06-06T10:00Z (the watermark).
async fn evicted() -> (Harness, StatsState) {
    let now = ms("2024-06-06T10:00:30Z");
    let clock = Arc::new(ManualClock::new(now));
    let semantics = SemanticsConfig {
        allowed_lateness: Duration::from_secs(3600),
        dedup_horizon: Duration::from_secs(3600),
        minute_retention: Duration::from_secs(2 * 3600),
        long_retention: Duration::from_secs(2 * 86_400),
        ..SemanticsConfig::default()
    };
    let config = PipelineConfig { workers: 1, semantics, ..PipelineConfig::default() };
    let h = Harness::pipeline_with(&["ab"], clock.clone(), clock, config).await;
    h.ingest(vec![click(1, "ab", ms("2024-06-01T10:00:00Z"), 1, UA, Some("192.0.2.0"), None)]);
    h.ingest(vec![click(2, "ab", ms("2024-06-06T10:00:00Z"), 2, UA, Some("192.0.2.0"), None)]);
    let source = ViewSource { views: h.handle.views().clone(), frontier: Arc::new(NoFrontier) };
    let stats = StatsState::new(Arc::clone(&h.store), source, StatsConfig::default());
    (h, stats)
}

struct NoFrontier;

impl super::state::Frontier for NoFrontier {
    fn covered_until(&self, _: u64) -> Option<i64> {
        None
    }
    fn backlog(&self) -> u64 {
        0
    }
}

async fn get(stats: &StatsState, uri: &str) -> (StatusCode, Value) {
    let req = Request::get(uri).body(Body::empty()).expect("request");
    let resp = routes(stats.clone()).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("json body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_older_than_the_retention_are_refused_not_empty() {
    let (_h, stats) = evicted().await;
    // Watermark 2024-06-06T10:00Z − 2 days: quarter hours from 2024-06-04T10:00Z are held;
    // minutes from 2024-06-06T08:00Z.
    let retained = json!({"minute": "2024-06-06T08:00:00Z", "hour": "2024-06-04T10:00:00Z", "day": "2024-06-04T10:00:00Z"});
    for uri in [
        "/v1/links/ab/stats?from=2024-06-01T00:00:00Z&to=2024-06-07T00:00:00Z&bucket=day",
        "/v1/links/ab/stats?from=2024-06-04T09:45:00Z&to=2024-06-04T12:00:00Z&bucket=hour",
        "/v1/stats/summary?from=2024-06-01T00:00:00Z&to=2024-06-07T00:00:00Z",
    ] {
        let (st, v) = get(&stats, uri).await;
        assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("range_not_retained")), "{uri}: {v}");
        assert_eq!(v["error"]["details"]["retained_from"], retained, "{uri}");
    }
    let (st, v) = get(&stats, "/v1/links/ab/stats?from=2024-06-06T07:00:00Z&to=2024-06-06T11:00:00Z&bucket=minute").await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("range_not_retained")), "{v}");
    assert_eq!(v["error"]["details"]["retained_from"]["minute"], "2024-06-06T08:00:00Z");

    // At or after the retained start: answered, with the click that is still held.
    let (st, v) = get(&stats, "/v1/links/ab/stats?from=2024-06-04T10:00:00Z&to=2024-06-07T00:00:00Z&bucket=hour").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["totals"]["clicks"], 1);
    let (st, v) = get(&stats, "/v1/links/ab/stats?from=2024-06-06T08:00:00Z&to=2024-06-06T11:00:00Z&bucket=minute").await;
    assert_eq!((st, &v["totals"]["clicks"]), (StatusCode::OK, &json!(1)), "{v}");
    let (st, v) = get(&stats, "/v1/stats/summary?from=2024-06-05T00:00:00Z&to=2024-06-07T00:00:00Z").await;
    assert_eq!((st, &v["totals"]["clicks"]), (StatusCode::OK, &json!(1)), "{v}");
}

/// An empty `tz=` is refused (it used to be read as UTC), on the stats and the export alike;
/// an absent `tz` stays UTC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_tz_is_refused_and_an_absent_one_is_utc() {
    let (_h, stats) = evicted().await;
    let range = "from=2024-06-06T00:00:00Z&to=2024-06-07T00:00:00Z&bucket=day";
    let (st, v) = get(&stats, &format!("/v1/links/ab/stats?{range}&tz=")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(
        v,
        json!({"error": {"code": "unknown_timezone", "message": "tz is empty: give an IANA time zone name (e.g. UTC, Europe/Berlin, Asia/Kolkata) or leave tz out for UTC", "details": {"tz": ""}}})
    );
    let (st, v) = get(&stats, &format!("/v1/links/ab/stats?{range}")).await;
    assert_eq!((st, &v["tz"], &v["totals"]["clicks"]), (StatusCode::OK, &json!("UTC"), &json!(1)), "{v}");

    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab"], ms("2024-06-02T00:00:00Z"), dir.path()).await;
    let (st, _, body) = h.send("GET", &format!("/v1/stats/export?code=ab&{range}&tz="), None).await;
    assert_eq!((st, crate::reports::test_harness::error_code(&body).as_str()), (StatusCode::BAD_REQUEST, "unknown_timezone"));
}
