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

/// Visitors of the capped-uniques test: `N` distinct ids whose sketch estimates more than
/// `N + 3` visitors (found by a seeded search; the row of `N` clicks, and the range of
/// `N + 3` clicks below, then have a raw estimate above their clicks).
const N: u64 = 3_500;

fn overcounted_visitors() -> Vec<u64> {
    (0..200u64)
        .map(|seed| (0..N).map(|i| seed * 1_000_000 + i).collect::<Vec<u64>>())
        .find(|ids| estimate(ids) > N + 3)
        .expect("a seed whose estimate exceeds the clicks")
}

fn estimate(ids: &[u64]) -> u64 {
    let mut s = sluice_dataflows::sketch::VisitorSketch::new();
    ids.iter().for_each(|&id| s.insert(id));
    s.uniques()
}

/// Uniques are capped at the clicks of the same rows: a day of `N` clicks by `N` visitors
/// whose sketch estimates more than `N` reports `N`, in every figure the stats API, the
/// summary and the export give (a row set with 3 clicks must never report 4 uniques).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniques_never_exceed_the_clicks_of_the_same_rows() {
    let ids = overcounted_visitors();
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab"], ms("2024-06-06T12:00:00Z"), dir.path()).await;
    let day_a = ms("2024-06-05T00:00:00Z");
    let mut events: Vec<_> =
        ids.iter().enumerate().map(|(i, &v)| click(i as u128 + 1, "ab", day_a + (i as i64 % 1440) * 60_000, v, UA, Some("192.0.2.0"), None)).collect();
    // The next day: 3 clicks by 2 of the same visitors.
    let day_b = ms("2024-06-06T00:00:00Z");
    for (j, &v) in [ids[0], ids[1], ids[0]].iter().enumerate() {
        events.push(click(1_000_000 + j as u128, "ab", day_b + j as i64 * 60_000, v, UA, Some("192.0.2.0"), None));
    }
    h.ingest(events);

    // The naive figures: min(raw estimate of the selection's visitors, its clicks).
    let a_row = estimate(&ids).min(N);
    let b_row = estimate(&ids[..2]).min(3);
    let total = estimate(&ids).min(N + 3);
    assert!(estimate(&ids) > N + 3, "the raw estimate exceeds the clicks");
    assert_eq!((a_row, b_row, total), (N, 2, N + 3));

    let source = ViewSource { views: h.handle.views().clone(), frontier: Arc::new(NoFrontier) };
    let stats = StatsState::new(Arc::clone(&h.store), source, StatsConfig::default());
    let range = "from=2024-06-05T00:00:00Z&to=2024-06-07T00:00:00Z";
    let (st, v) = get(&stats, &format!("/v1/links/ab/stats?{range}&bucket=day")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v.get("dimension_totals_truncated").is_none(), "no breakdown, no flag: {v}");
    assert_eq!(
        (&v["rows"], &v["totals"]["clicks"], &v["totals"]["uniques"]),
        (
            &json!([{"day": "2024-06-05T00:00:00Z", "clicks": N, "uniques": a_row}, {"day": "2024-06-06T00:00:00Z", "clicks": 3, "uniques": b_row}]),
            &json!(N + 3),
            &json!(total)
        )
    );
    let (st, v) = get(&stats, &format!("/v1/links/ab/stats?{range}&bucket=day&dimensions=device&order_by=uniques")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["dimension_totals_truncated"], json!(false), "{v}");
    let device = v["rows"][0]["device"].clone();
    assert_eq!(
        (&v["rows"], &v["dimension_totals"], &v["totals"]["uniques"]),
        (
            &json!([{"day": "2024-06-05T00:00:00Z", "device": device, "clicks": N, "uniques": a_row}, {"day": "2024-06-06T00:00:00Z", "device": device, "clicks": 3, "uniques": b_row}]),
            &json!([{"device": device, "clicks": N + 3, "uniques": total}]),
            &json!(total)
        )
    );
    let (st, v) = get(&stats, &format!("/v1/stats/summary?{range}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((&v["totals"]["clicks"], &v["totals"]["uniques"]), (&json!(N + 3), &json!(total)));
    assert_eq!(v["top_links"], json!([{"code": "ab", "clicks": N + 3, "uniques": total}]));
    assert_eq!((&v["top_countries"][0]["clicks"], &v["top_countries"][0]["uniques"]), (&json!(N + 3), &json!(total)), "{v}");
    assert_eq!((&v["top_referrers"][0]["clicks"], &v["top_referrers"][0]["uniques"]), (&json!(N + 3), &json!(total)), "{v}");

    let (st, _, body) = h.send("GET", &format!("/v1/stats/export?code=ab&{range}&bucket=day"), None).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("bucket,code,clicks,uniques\r\n2024-06-05T00:00:00Z,ab,{N},{a_row}\r\n2024-06-06T00:00:00Z,ab,3,{b_row}\r\n")
    );
}

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
const GB: Option<&str> = Some("81.2.69.0");
const US: Option<&str> = Some("8.8.8.0");

/// Stats over the real dataflow of "ab": on 2024-06-05, 2 desktop clicks from GB (one
/// visitor), 1 mobile click from US and 1 desktop click from US.
async fn by_country_and_device() -> (Harness, StatsState, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab"], ms("2024-06-06T12:00:00Z"), dir.path()).await;
    h.ingest(vec![
        click(1, "ab", ms("2024-06-05T10:00:00Z"), 1, UA, GB, None),
        click(2, "ab", ms("2024-06-05T10:01:00Z"), 1, UA, GB, None),
        click(3, "ab", ms("2024-06-05T11:00:00Z"), 2, IPHONE, US, None),
        click(4, "ab", ms("2024-06-05T12:00:00Z"), 3, UA, US, None),
    ]);
    let source = ViewSource { views: h.handle.views().clone(), frontier: Arc::new(NoFrontier) };
    let stats = StatsState::new(Arc::clone(&h.store), source, StatsConfig::default());
    (h, stats, dir)
}

/// Finding: `dimensions=device,country` is accepted although the README named only
/// `country,device`. Both orders are the one maintained pair: the same rows and totals,
/// the answer naming the dimensions in the order asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_country_device_pair_is_answered_in_either_order() {
    let (_h, stats, _dir) = by_country_and_device().await;
    let range = "from=2024-06-05T00:00:00Z&to=2024-06-06T00:00:00Z&bucket=day";
    let (st, v) = get(&stats, &format!("/v1/links/ab/stats?{range}&dimensions=country,device")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let rows = json!([
        {"day": "2024-06-05T00:00:00Z", "country": "GB", "device": "desktop", "clicks": 2, "uniques": 1},
        {"day": "2024-06-05T00:00:00Z", "country": "US", "device": "desktop", "clicks": 1, "uniques": 1},
        {"day": "2024-06-05T00:00:00Z", "country": "US", "device": "mobile", "clicks": 1, "uniques": 1},
    ]);
    let totals = json!([
        {"country": "GB", "device": "desktop", "clicks": 2, "uniques": 1},
        {"country": "US", "device": "desktop", "clicks": 1, "uniques": 1},
        {"country": "US", "device": "mobile", "clicks": 1, "uniques": 1},
    ]);
    assert_eq!(
        (&v["dimensions"], &v["rows"], &v["dimension_totals"], &v["totals"]["clicks"], &v["totals"]["uniques"]),
        (&json!(["country", "device"]), &rows, &totals, &json!(4), &json!(3)),
        "{v}"
    );
    let (st, w) = get(&stats, &format!("/v1/links/ab/stats?{range}&dimensions=device,country")).await;
    assert_eq!(st, StatusCode::OK, "{w}");
    assert_eq!(
        (&w["dimensions"], &w["rows"], &w["dimension_totals"], &w["totals"]["clicks"], &w["totals"]["uniques"]),
        (&json!(["device", "country"]), &rows, &totals, &json!(4), &json!(3)),
        "{w}"
    );
    // A breakdown of a range without clicks: `dimension_totals` is there, empty; without a
    // breakdown it is absent.
    let empty = "from=2024-06-01T00:00:00Z&to=2024-06-02T00:00:00Z&bucket=day";
    let (st, e) = get(&stats, &format!("/v1/links/ab/stats?{empty}&dimensions=country")).await;
    assert_eq!((st, &e["rows"], &e["dimension_totals"], &e["dimension_totals_truncated"]), (StatusCode::OK, &json!([]), &json!([]), &json!(false)), "{e}");
    let (st, e) = get(&stats, &format!("/v1/links/ab/stats?{empty}")).await;
    assert_eq!((st, e.get("dimension_totals"), e.get("dimension_totals_truncated")), (StatusCode::OK, None, None), "{e}");
    for other in ["country,browser", "device,country,os"] {
        let (st, e) = get(&stats, &format!("/v1/links/ab/stats?{range}&dimensions={other}")).await;
        assert_eq!((st, e["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_dimensions")), "{other}: {e}");
    }
}

/// `tz` is read ignoring case and answered under its canonical IANA name, the bucket labels
/// in that zone (`utc` is `UTC`, `ASIA/KATHMANDU` is `Asia/Kathmandu`, UTC+05:45).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tz_is_read_ignoring_case_and_answered_canonically() {
    let (_h, stats, _dir) = by_country_and_device().await;
    let (st, v) = get(&stats, "/v1/links/ab/stats?from=2024-06-05T00:00:00Z&to=2024-06-06T00:00:00Z&bucket=day&tz=utc").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((&v["tz"], &v["rows"]), (&json!("UTC"), &json!([{"day": "2024-06-05T00:00:00Z", "clicks": 4, "uniques": 3}])), "{v}");
    let range = "from=2024-06-04T18:15:00Z&to=2024-06-05T18:15:00Z";
    let (st, v) = get(&stats, &format!("/v1/links/ab/stats?{range}&bucket=day&tz=ASIA/KATHMANDU")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!((&v["tz"], &v["rows"]), (&json!("Asia/Kathmandu"), &json!([{"day": "2024-06-05T00:00:00+05:45", "clicks": 4, "uniques": 3}])), "{v}");
}
