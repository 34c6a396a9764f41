//! The export over the real dataflow (in-memory source, real enricher and views): byte-exact
//! CSV / JSON / NDJSON on a fixed input, chunking checked against one big query rendered by
//! a naive reference, and every error code.

use axum::http::StatusCode;
use chrono::TimeZone;
use chrono_tz::Tz;
use sluice_dataflows::views::{Bucket, StatsQuery};

use crate::reports::test_harness::*;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
/// An iOS app whose uap-core browser family is its name: `Café, Zürich`.
const CAFE_APP: &str = "Café, Zürich/3 CFNetwork/1494.0.7 Darwin/23.4.0";
/// An iOS app named `東京天気`.
const TOKYO_APP: &str = "東京天気/2.1 CFNetwork/1494.0.7 Darwin/23.4.0";
const GB: Option<&str> = Some("81.2.69.0");
const US: Option<&str> = Some("8.8.8.0");

/// The fixed input: clicks of `ab` on 2024-06-01 (IST = UTC+05:30), a duplicate, a bot, and
/// clicks just outside the IST day; one click of `cd`.
fn fixed_input() -> Vec<sluice_schemas::ClickEvent> {
    vec![
        // 09:01 IST, 09:15 IST, 09:29 IST: the 09:00+05:30 hour.
        click(1, "ab", ms("2024-06-01T03:31:00Z"), 1, CHROME, GB, Some("https://www.google.com/search?q=sluice")),
        click(2, "ab", ms("2024-06-01T03:45:00Z"), 2, IPHONE, US, Some("ios-app://a,\"b\"/x")),
        click(3, "ab", ms("2024-06-01T03:59:59Z"), 1, CHROME, GB, Some("https://www.google.com/")),
        // a duplicate of event 2 (counted once)
        click(2, "ab", ms("2024-06-01T03:45:00Z"), 2, IPHONE, US, Some("ios-app://a,\"b\"/x")),
        // 10:30 IST: an app with a comma and non-ASCII in its name; 10:40 IST: a bot
        click(4, "ab", ms("2024-06-01T05:00:00Z"), 3, CAFE_APP, GB, None),
        click(5, "ab", ms("2024-06-01T05:10:00Z"), 4, GOOGLEBOT, US, None),
        // 11:00 IST
        click(8, "ab", ms("2024-06-01T05:30:00Z"), 6, TOKYO_APP, US, Some("https://news.ycombinator.com/item?id=1")),
        // 23:59 IST
        click(6, "ab", ms("2024-06-01T18:29:00Z"), 5, CHROME, US, Some("https://news.ycombinator.com/item?id=1")),
        // 00:00 IST the next day and 23:59 IST the day before: outside the range
        click(7, "ab", ms("2024-06-01T18:30:00Z"), 5, CHROME, US, None),
        click(9, "ab", ms("2024-05-31T18:29:00Z"), 5, CHROME, US, None),
        click(10, "cd", ms("2024-06-01T04:00:00Z"), 7, IPHONE, GB, None),
    ]
}

async fn fixed() -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab", "cd", "empty"], ms("2024-06-02T00:00:00Z"), dir.path()).await;
    h.ingest(fixed_input());
    (h, dir)
}

const IST_DAY: &str = "from=2024-06-01T00:00:00%2B05:30&to=2024-06-02T00:00:00%2B05:30";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_is_byte_exact_with_rfc_4180_quoting() {
    let (h, _dir) = fixed().await;
    let (st, headers, body) = h.send("GET", &format!("/v1/stats/export?code=ab&{IST_DAY}&bucket=hour&tz=Asia/Kolkata&dimensions=referrer_domain"), None).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let want = "bucket,code,referrer_domain,clicks,uniques\r\n\
                2024-06-01T09:00:00+05:30,ab,google.com,2,1\r\n\
                2024-06-01T09:00:00+05:30,ab,(invalid),1,1\r\n\
                2024-06-01T10:00:00+05:30,ab,(direct),1,1\r\n\
                2024-06-01T11:00:00+05:30,ab,ycombinator.com,1,1\r\n\
                2024-06-01T23:00:00+05:30,ab,ycombinator.com,1,1\r\n";
    assert_eq!(String::from_utf8(body.to_vec()).expect("utf-8"), want);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8; header=present");
    assert_eq!(headers["content-disposition"], "attachment; filename=\"sluice-ab-hour-20240531T1830Z-20240601T1830Z.csv\"");
    assert_eq!(headers["cache-control"], "no-store");

    // With bots: the Googlebot click joins the 10:00 (direct) row.
    let (_, _, body) =
        h.send("GET", &format!("/v1/stats/export?code=ab&{IST_DAY}&bucket=hour&tz=Asia/Kolkata&dimensions=referrer_domain&include_bots=true"), None).await;
    assert!(String::from_utf8_lossy(&body).contains("2024-06-01T10:00:00+05:30,ab,(direct),2,2\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_keeps_unicode_verbatim_and_quotes_commas() {
    let (h, _dir) = fixed().await;
    let (st, _, body) = h
        .send(
            "GET",
            "/v1/stats/export?code=ab&from=2024-06-01T00:00:00Z&to=2024-06-02T00:00:00Z&bucket=day&dimensions=browser&include_bots=true&format=csv",
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // Day buckets in UTC: events 1..8 and 7 (18:30Z) are on 2024-06-01 UTC; 9 is not.
    let want = "bucket,code,browser,clicks,uniques\r\n\
                2024-06-01T00:00:00Z,ab,Chrome,4,2\r\n\
                2024-06-01T00:00:00Z,ab,\"Café, Zürich\",1,1\r\n\
                2024-06-01T00:00:00Z,ab,Googlebot,1,1\r\n\
                2024-06-01T00:00:00Z,ab,Mobile Safari,1,1\r\n\
                2024-06-01T00:00:00Z,ab,東京天気,1,1\r\n";
    assert_eq!(String::from_utf8(body.to_vec()).expect("utf-8"), want);
    // No value here starts like a formula: escaping them changes nothing.
    let (st, _, escaped) = h
        .send(
            "GET",
            "/v1/stats/export?code=ab&from=2024-06-01T00:00:00Z&to=2024-06-02T00:00:00Z&bucket=day&dimensions=browser&include_bots=true&escape_formulas=true",
            None,
        )
        .await;
    assert_eq!((st, String::from_utf8(escaped.to_vec()).expect("utf-8")), (StatusCode::OK, want.to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_ndjson_are_exact() {
    let (h, _dir) = fixed().await;
    let q = format!("code=ab&{IST_DAY}&bucket=day&tz=Asia/Kolkata&dimensions=device,country");
    let (st, headers, body) = h.send("GET", &format!("/v1/stats/export?{q}&format=json"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["content-disposition"], "attachment; filename=\"sluice-ab-day-20240531T1830Z-20240601T1830Z.json\"");
    let want = "[\n\
        {\"bucket\":\"2024-06-01T00:00:00+05:30\",\"code\":\"ab\",\"device\":\"desktop\",\"country\":\"GB\",\"clicks\":2,\"uniques\":1},\n\
        {\"bucket\":\"2024-06-01T00:00:00+05:30\",\"code\":\"ab\",\"device\":\"mobile\",\"country\":\"US\",\"clicks\":2,\"uniques\":2},\n\
        {\"bucket\":\"2024-06-01T00:00:00+05:30\",\"code\":\"ab\",\"device\":\"desktop\",\"country\":\"US\",\"clicks\":1,\"uniques\":1},\n\
        {\"bucket\":\"2024-06-01T00:00:00+05:30\",\"code\":\"ab\",\"device\":\"mobile\",\"country\":\"GB\",\"clicks\":1,\"uniques\":1}\n]\n";
    assert_eq!(String::from_utf8(body.to_vec()).expect("utf-8"), want);
    let parsed: serde_json::Value = serde_json::from_slice(&body).expect("valid json");
    assert_eq!(parsed.as_array().map(Vec::len), Some(4));

    let (st, headers, body) = h.send("GET", &format!("/v1/stats/export?{q}&format=ndjson"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let want_nd: String = want.lines().filter(|l| l.starts_with('{')).map(|l| format!("{}\n", l.trim_end_matches(','))).collect();
    assert_eq!(String::from_utf8(body.to_vec()).expect("utf-8"), want_nd);

    // A link without clicks: header only / empty array / nothing.
    for (format, want) in [("csv", "bucket,code,clicks,uniques\r\n"), ("json", "[]\n"), ("ndjson", "")] {
        let (st, _, body) = h.send("GET", &format!("/v1/stats/export?code=empty&{IST_DAY}&format={format}"), None).await;
        assert_eq!((st, String::from_utf8_lossy(&body).as_ref()), (StatusCode::OK, want), "{format}");
    }
}

/// Naive reference: one views query over the whole range, rendered by hand.
fn reference_csv(h: &Harness, code: &str, from: i64, to: i64, bucket: Bucket, tz: Tz, dims: &[sluice_dataflows::model::Dimension]) -> String {
    let mut q = StatsQuery::new(code, from, to, bucket);
    q.tz = tz;
    q.dimensions = dims.to_vec();
    let r = h.handle.views().query(&q).expect("query");
    let mut out = String::from("bucket,code");
    for d in dims {
        out.push(',');
        out.push_str(d.as_str());
    }
    out.push_str(",clicks,uniques\r\n");
    for row in r.rows {
        let t = tz.timestamp_millis_opt(row.bucket_start_ms).single().expect("instant");
        let label = if tz == Tz::UTC { t.format("%Y-%m-%dT%H:%M:%SZ").to_string() } else { t.format("%Y-%m-%dT%H:%M:%S%:z").to_string() };
        out.push_str(&format!("{label},{code}"));
        for v in &row.dims {
            out.push(',');
            out.push_str(v);
        }
        out.push_str(&format!(",{},{}\r\n", row.clicks, row.uniques));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_export_equals_one_big_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["zz"], ms("2024-06-03T00:00:00Z"), dir.path()).await;
    // 12,000 clicks spread over two days, 40 visitors, 3 countries, deterministic.
    let start = ms("2024-06-01T00:00:00Z");
    let ips = [GB, US, Some("1.1.1.0")];
    let events = (0..12_000u64)
        .map(|i| {
            // every minute of the two days (7919 is coprime to 2880), seconds scattered
            let ts = start + ((i * 7919 % 2880) * 60_000 + (i * 7001) % 60_000) as i64;
            click(1000 + u128::from(i), "zz", ts, i % 40, if i % 3 == 0 { IPHONE } else { CHROME }, ips[(i % 3) as usize], None)
        })
        .collect();
    h.ingest(events);
    use sluice_dataflows::model::Dimension::{self, Country, Device};
    type Case = (&'static str, i64, i64, Bucket, Tz, Vec<Dimension>);
    let cases: [Case; 3] = [
        ("bucket=minute", start, start + 2 * 86_400_000, Bucket::Minute, Tz::UTC, vec![]),
        ("bucket=hour&tz=Asia/Kathmandu&dimensions=country", start, start + 2 * 86_400_000, Bucket::Hour, chrono_tz::Asia::Kathmandu, vec![Country]),
        (
            "bucket=hour&tz=America/New_York&dimensions=country,device",
            start + 60_000,
            start + 2 * 86_400_000 - 60_000,
            Bucket::Hour,
            chrono_tz::America::New_York,
            vec![Country, Device],
        ),
    ];
    for (params, from, to, bucket, tz, dims) in cases {
        let uri = format!("/v1/stats/export?code=zz&from={}&to={}&{params}", crate::stats::params::rfc3339_utc(from), crate::stats::params::rfc3339_utc(to));
        let (st, _, body) = h.send("GET", &uri, None).await;
        assert_eq!(st, StatusCode::OK, "{params}: {}", String::from_utf8_lossy(&body));
        let want = reference_csv(&h, "zz", from, to, bucket, tz, &dims);
        assert!(want.lines().count() > 40, "{params}: the case must span several chunks");
        assert_eq!(String::from_utf8(body.to_vec()).expect("utf-8"), want, "{params}");
    }

    // The body really streams: the two-day minute export by country (~90 KiB) arrives in
    // several frames of at least 64 KiB each (the last one excepted).
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let uri = format!(
        "/v1/stats/export?code=zz&from={}&to={}&bucket=minute",
        crate::stats::params::rfc3339_utc(start),
        crate::stats::params::rfc3339_utc(start + 2 * 86_400_000)
    );
    let uri = format!("{uri}&dimensions=country");
    let req = axum::http::Request::builder().uri(uri).body(axum::body::Body::empty()).expect("request");
    let mut body = crate::reports::routes(h.state().clone()).oneshot(req).await.expect("infallible").into_body();
    let mut sizes = Vec::new();
    while let Some(frame) = body.frame().await {
        sizes.push(frame.expect("frame").into_data().expect("data").len());
    }
    let bytes: usize = sizes.iter().sum();
    assert!(bytes > 80 * 1024 && sizes.len() >= 2, "{sizes:?}");
    assert!(sizes[..sizes.len() - 1].iter().all(|&n| n >= 64 * 1024), "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_streaming_use_the_json_shape() {
    let (h, _dir) = fixed().await;
    let cases: &[(&str, StatusCode, &str)] = &[
        ("format=csv", StatusCode::BAD_REQUEST, "missing_code"),
        ("code=", StatusCode::BAD_REQUEST, "missing_code"),
        ("code=ab&format=xlsx", StatusCode::BAD_REQUEST, "invalid_format"),
        ("code=ab&format=", StatusCode::BAD_REQUEST, "invalid_format"),
        ("code=ab&format=%20", StatusCode::BAD_REQUEST, "invalid_format"),
        ("code=ab%FF", StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("code=ab&tz=UTC%C3", StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("code=ab&limit=5", StatusCode::BAD_REQUEST, "unknown_parameter"),
        ("code=ab&order_by=clicks", StatusCode::BAD_REQUEST, "unknown_parameter"),
        ("code=ab&colour=red", StatusCode::BAD_REQUEST, "unknown_parameter"),
        ("code=ab&code=cd", StatusCode::BAD_REQUEST, "duplicate_parameter"),
        ("code=ab&format=csv&format=json", StatusCode::BAD_REQUEST, "duplicate_parameter"),
        ("code=ab&bucket=hour&bucket=day", StatusCode::BAD_REQUEST, "duplicate_parameter"),
        ("code=ab&from=yesterday", StatusCode::BAD_REQUEST, "invalid_timestamp"),
        ("code=ab&from=2024-06-01T00:00:30Z", StatusCode::BAD_REQUEST, "unaligned_range"),
        ("code=ab&from=2024-06-02T00:00:00Z&to=2024-06-01T00:00:00Z", StatusCode::BAD_REQUEST, "invalid_range"),
        ("code=ab&from=2024-05-01T00:00:00Z&to=2024-06-01T00:00:00Z&bucket=minute", StatusCode::BAD_REQUEST, "range_too_long"),
        ("code=ab&bucket=week", StatusCode::BAD_REQUEST, "invalid_bucket"),
        ("code=ab&tz=Mars/Olympus", StatusCode::BAD_REQUEST, "unknown_timezone"),
        ("code=ab&dimensions=country,browser", StatusCode::BAD_REQUEST, "invalid_dimensions"),
        ("code=ab&include_bots=maybe", StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("code=ab&escape_formulas=yes", StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("code=ab&format=json&escape_formulas=true", StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("code=ab&escape_formulas=1&escape_formulas=0", StatusCode::BAD_REQUEST, "duplicate_parameter"),
        ("code=nope", StatusCode::NOT_FOUND, "not_found"),
        ("code=%F0%9F%92%A5", StatusCode::NOT_FOUND, "not_found"),
        ("code=%20ab%20", StatusCode::NOT_FOUND, "not_found"),
    ];
    for (q, status, code) in cases {
        let (st, headers, body) = h.send("GET", &format!("/v1/stats/export?{q}"), None).await;
        assert_eq!((st, error_code(&body).as_str()), (*status, *code), "{q}");
        assert_eq!(headers["content-type"], "application/json", "{q}");
        if *code == "unknown_parameter" {
            // Every unknown_parameter lists what an export takes, refused stats knobs too.
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            let want = serde_json::json!(["code", "format", "escape_formulas", "from", "to", "bucket", "tz", "dimensions", "include_bots"]);
            assert_eq!(v["error"]["details"]["supported"], want, "{q}");
        }
    }
    let (_, _, body) = h.send("GET", "/v1/stats/export?code=ab&format=xlsx", None).await;
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"]["details"], serde_json::json!({"parameter": "format", "value": "xlsx", "allowed": ["csv", "json", "ndjson"]}));
    let (st, _, _) = h.send("POST", "/v1/stats/export?code=ab", None).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_minutes_are_refused_before_the_first_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::at(&["ab"], ms("2024-06-10T00:00:00Z"), dir.path()).await;
    h.ingest(fixed_input());
    // A click four days later moves the watermark: minute rows before 2024-06-03 are evicted.
    h.ingest(vec![click(99, "ab", ms("2024-06-05T00:00:00Z"), 9, CHROME, GB, None)]);
    let (st, _, body) = h.send("GET", "/v1/stats/export?code=ab&from=2024-06-01T03:31:00Z&to=2024-06-01T06:00:00Z&bucket=hour", None).await;
    assert_eq!((st, error_code(&body).as_str()), (StatusCode::BAD_REQUEST, "range_not_retained"));
    // The unaligned end is checked up front too.
    let (st, _, body) = h.send("GET", "/v1/stats/export?code=ab&from=2024-06-01T00:00:00Z&to=2024-06-01T06:01:00Z&bucket=hour", None).await;
    assert_eq!((st, error_code(&body).as_str()), (StatusCode::BAD_REQUEST, "range_not_retained"));
    // A range before the long (hour/day) retention, 400 days before the watermark: refused,
    // never exported as a header without rows; minute buckets likewise before 2024-06-03.
    for q in [
        "from=2023-01-01T00:00:00Z&to=2023-01-02T00:00:00Z&bucket=hour",
        "from=1970-01-01T00:00:00Z&to=1970-01-02T00:00:00Z&bucket=day",
        "from=2024-06-01T03:00:00Z&to=2024-06-01T04:00:00Z&bucket=minute",
    ] {
        let (st, _, body) = h.send("GET", &format!("/v1/stats/export?code=ab&{q}"), None).await;
        assert_eq!((st, error_code(&body).as_str()), (StatusCode::BAD_REQUEST, "range_not_retained"), "{q}");
    }
    // 15-minute aligned ranges are still answered from quarter rows.
    let (st, _, body) = h.send("GET", "/v1/stats/export?code=ab&from=2024-06-01T03:30:00Z&to=2024-06-01T06:00:00Z&bucket=hour", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        String::from_utf8(body.to_vec()).expect("utf-8"),
        "bucket,code,clicks,uniques\r\n2024-06-01T03:00:00Z,ab,3,2\r\n2024-06-01T05:00:00Z,ab,2,2\r\n"
    );
}

#[tokio::test]
async fn a_process_without_views_answers_503() {
    use std::sync::Arc;
    let store: Arc<dyn sluice_connectors::LinkStore> = Arc::new(crate::testing::MemoryLinkStore::new());
    insert_link(store.as_ref(), "ab").await;
    let stats = crate::stats::state::StatsState::without_views(store, Default::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let state = crate::ReportsState::start(stats, dir.path());
    assert!(state.jobs().is_none());
    for uri in ["/v1/stats/export?code=ab", "/v1/links/ab/stats/live", "/v1/jobs/0190a6e0-0000-7000-8000-000000000000"] {
        let (st, _, body) = send(&state, "GET", uri, None).await;
        assert_eq!((st, error_code(&body).as_str()), (StatusCode::SERVICE_UNAVAILABLE, "stats_unavailable"), "{uri}");
    }
    let (st, _, body) = send(&state, "POST", "/v1/reports/export", Some(("application/json", r#"{"codes":["ab"]}"#))).await;
    assert_eq!((st, error_code(&body).as_str()), (StatusCode::SERVICE_UNAVAILABLE, "stats_unavailable"));
}
