//! Every error of the stats endpoints, served by a real process: status, stable code, the
//! DESIGN.md error shape, and no caching of errors.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{BROWSER_UA, Server, event, now_ms, q};

fn assert_error(status: StatusCode, body: &Value, want_status: u16, want_code: &str, what: &str) {
    assert_eq!(status.as_u16(), want_status, "{what}: {body}");
    assert_eq!(body["error"]["code"].as_str(), Some(want_code), "{what}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stats_error_has_its_status_and_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |_| {}).await;
    let code = s.link("errs").await;
    // A click now moves the watermark, so minute rows older than 48 h are no longer retained.
    let live = s.link("errs-live").await;
    s.events(
        &[
            event("e-1", &code, now_ms() - 60_000, "81.2.69.160", BROWSER_UA, None),
            event("e-2", &code, now_ms() - 60_000, "81.2.69.161", BROWSER_UA, None),
            event("e-3", &live, now_ms() - 60_000, "81.2.69.162", BROWSER_UA, None),
        ],
        false,
    )
    .await;
    s.sync().await;

    let day = 86_400_000;
    // 7 minutes past a quarter hour: never 15-minute aligned (those ranges are covered by
    // 15-minute rows, which are retained), whatever the time of day the test runs at.
    let old_unaligned = (now_ms() - 5 * day).div_euclid(900_000) * 900_000 + 60_000 * 7;
    let aligned_today = now_ms().div_euclid(day) * day;
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("/v1/links/{code}/stats?from=2024-06-02T00:00:00Z&to=2024-06-01T00:00:00Z"), 400, "invalid_range"),
        (format!("/v1/links/{code}/stats?bucket=minute&from=2024-06-01T00:00:00Z&to=2024-06-04T00:00:00Z"), 400, "range_too_long"),
        (format!("/v1/links/{code}/stats?bucket=hour&from=2024-01-01T00:00:00Z&to=2024-06-01T00:00:00Z"), 400, "range_too_long"),
        (format!("/v1/links/{code}/stats?tz=Europe/Atlantis"), 400, "unknown_timezone"),
        (format!("/v1/links/{code}/stats?limit=0"), 400, "invalid_limit"),
        (format!("/v1/links/{code}/stats?limit=100001"), 400, "invalid_limit"),
        (format!("/v1/links/{code}/stats?dimensions=city"), 400, "invalid_dimensions"),
        (format!("/v1/links/{code}/stats?dimensions=browser,os"), 400, "invalid_dimensions"),
        (format!("/v1/links/{code}/stats?from=yesterday"), 400, "invalid_timestamp"),
        (format!("/v1/links/{code}/stats?from=2024-06-01T00:00:00"), 400, "invalid_timestamp"),
        (format!("/v1/links/{code}/stats?to=2024-06-01T00:00:30Z"), 400, "unaligned_range"),
        (format!("/v1/links/{code}/stats?bucket=week"), 400, "invalid_bucket"),
        (format!("/v1/links/{code}/stats?order_by=random"), 400, "invalid_order_by"),
        (format!("/v1/links/{code}/stats?include_bots=maybe"), 400, "invalid_parameter"),
        (format!("/v1/links/{code}/stats?color=red"), 400, "unknown_parameter"),
        (format!("/v1/links/{code}/stats?tz=UTC&tz=UTC"), 400, "duplicate_parameter"),
        // Minute rows at the unaligned edge are evicted (48 h behind the watermark).
        (format!("/v1/links/{code}/stats?from={}&to={}", q(old_unaligned), q(aligned_today)), 400, "range_not_retained"),
        // Liberia used UTC−0:44:30 until 1972: local days cannot be built from 15-minute rows.
        (format!("/v1/links/{code}/stats?tz=Africa/Monrovia&from=1970-01-01T00:00:00Z&to=1970-01-05T00:00:00Z"), 400, "unsupported_tz_offset"),
        ("/v1/links/no-such-link/stats".to_string(), 404, "not_found"),
        ("/v1/links/not%20a%20code/stats".to_string(), 404, "not_found"),
        ("/v1/stats/summary?limit=1001".to_string(), 400, "invalid_limit"),
        // Rust's integer parser takes a sign; a limit is plain digits.
        ("/v1/stats/summary?limit=%2B5".to_string(), 400, "invalid_limit"),
        (format!("/v1/links/{code}/stats?limit=%2B5"), 400, "invalid_limit"),
        // Bytes that are not UTF-8 once decoded are refused, not read as U+FFFD.
        ("/v1/stats/summary?tag=%FF".to_string(), 400, "invalid_parameter"),
        ("/v1/stats/summary?org=a%C3".to_string(), 400, "invalid_parameter"),
        (format!("/v1/links/{code}/stats?tz=UTC%FF"), 400, "invalid_parameter"),
        ("/v1/stats/summary?from=2024-06-02T00:00:00Z&to=2024-06-01T00:00:00Z".to_string(), 400, "invalid_range"),
        ("/v1/stats/summary?from=2020-01-01T00:00:00Z&to=2024-06-01T00:00:00Z".to_string(), 400, "range_too_long"),
        ("/v1/stats/summary?tag=".to_string(), 400, "invalid_parameter"),
        ("/v1/stats/summary?bucket=day".to_string(), 400, "unknown_parameter"),
        ("/v1/stats/summary?to=2024-06-01T00:00:01Z".to_string(), 400, "unaligned_range"),
        // Sub-millisecond digits are not dropped: not a whole minute.
        (format!("/v1/links/{code}/stats?from=2024-06-01T00:00:00.000000001Z&to=2024-06-02T00:00:00Z"), 400, "unaligned_range"),
        ("/v1/stats/summary?to=2024-06-01T00:00:00.0001Z".to_string(), 400, "unaligned_range"),
        (format!("/v1/links/{code}/stats?from=1900-01-01T00:00:00Z"), 400, "invalid_timestamp"),
        // An unencoded '+' in a zone that does not exist: the hint says to encode it.
        (format!("/v1/links/{code}/stats?tz=Etc/GMT+15"), 400, "unknown_timezone"),
    ];
    for (path, status, code) in &cases {
        let (st, headers, body) = s.get(path).await;
        assert_error(st, &body, *status, code, path);
        assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"), "{path}: errors are not cached");
    }
    // Out-of-range instants say which range is accepted.
    let (_, _, body) = s.get(&format!("/v1/links/{code}/stats?from=1900-01-01T00:00:00Z")).await;
    assert_eq!(
        body["error"]["message"].as_str(),
        Some("\"from\" must lie between 1970-01-01T00:00:00Z and 9999-12-31T23:59:00Z, got \"1900-01-01T00:00:00Z\""),
        "{body}"
    );
    assert_eq!(
        (body["error"]["details"]["min"].as_str(), body["error"]["details"]["max"].as_str()),
        (Some("1970-01-01T00:00:00Z"), Some("9999-12-31T23:59:00Z"))
    );
    // A zone whose offset is not a multiple of 15 minutes says which parameter, zone, offset
    // and instant (the zone name in any case is the zone's own).
    for tz in ["Africa/Monrovia", "africa/MONROVIA"] {
        let (_, _, body) = s.get(&format!("/v1/links/{code}/stats?tz={tz}&from=1970-01-01T00:00:00Z&to=1970-01-05T00:00:00Z")).await;
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "code": "unsupported_tz_offset",
                "message": "time zone \"Africa/Monrovia\" has the UTC offset -00:44:30 at 1970-01-01T00:00:00Z, not a multiple of 15 minutes: its local hours and days in this range cannot be counted",
                "details": {"parameter": "tz", "value": "Africa/Monrovia", "utc_offset": "-00:44:30", "at": "1970-01-01T00:00:00Z"},
            }}),
            "{tz}"
        );
    }
    let (_, _, body) = s.get(&format!("/v1/links/{code}/stats?tz=Etc/GMT+15")).await;
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("%2B")), "hints to encode '+': {body}");
    // A zone with '+', encoded or not (form decoding made it a space): Etc/GMT+5 is UTC-05:00.
    for tz in ["Etc%2FGMT%2B5", "Etc/GMT%2B5", "Etc/GMT+5"] {
        let (st, _, body) = s.get(&format!("/v1/links/{code}/stats?tz={tz}&bucket=day")).await;
        assert_eq!(st, StatusCode::OK, "{tz}: {body}");
        assert_eq!(body["tz"].as_str(), Some("Etc/GMT+5"), "{tz}: {body}");
        let label = body["rows"][0]["day"].as_str().expect("one day row");
        assert!(label.ends_with("T00:00:00-05:00"), "{tz}: local midnight at UTC-05:00: {label}");
    }
    // A deleted link answers 404 although the views still hold its clicks.
    let r = s.http.delete(s.path(&format!("/v1/links/{code}"))).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (st, _, body) = s.get(&format!("/v1/links/{code}/stats")).await;
    assert_error(st, &body, 404, "not_found", "deleted link");
    // ... and is not listed in the summary (also when it outranks the live links), whose
    // totals keep its clicks (they happened).
    let (st, _, body) = s.get("/v1/stats/summary?limit=1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["top_links"], serde_json::json!([{"code": live, "clicks": 1, "uniques": 1}]), "a deleted link is not listed: {body}");
    assert_eq!((body["links"].as_u64(), body["totals"]["clicks"].as_u64()), (Some(1), Some(3)), "{body}");
    assert_eq!(body["partial"], false, "one process counts every link: {body}");
    s.stop().await;
}

/// A deleted link is left out of the summary's `links` count and `top_links` wherever it
/// ranks, inside the top or outside it, for every `limit`; its clicks stay in the totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_links_are_not_counted_whatever_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |_| {}).await;
    // (alias, clicks, deleted): deleted links ranked first, in the middle and last
    let plan: [(&str, u64, bool); 5] = [("top-gone", 5, true), ("a1", 4, false), ("mid-gone", 3, true), ("a2", 2, false), ("low-gone", 1, true)];
    let mut events = Vec::new();
    let mut codes = Vec::new();
    for (alias, clicks, _) in plan {
        let code = s.link(alias).await;
        for i in 0..clicks {
            events.push(event(&format!("{alias}-{i}"), &code, now_ms() - 60_000, &format!("81.2.69.{}", 10 + i), BROWSER_UA, None));
        }
        codes.push(code);
    }
    s.events(&events, false).await;
    s.sync().await;
    for ((_, _, deleted), code) in plan.iter().zip(&codes) {
        if *deleted {
            let r = s.http.delete(s.path(&format!("/v1/links/{code}"))).send().await.expect("delete");
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
        }
    }
    // The reference: the live links by clicks descending; the totals over every click.
    let live: Vec<(&String, u64)> = plan.iter().zip(&codes).filter(|((_, _, d), _)| !d).map(|((_, n, _), c)| (c, *n)).collect();
    let all_clicks: u64 = plan.iter().map(|(_, n, _)| n).sum();
    for limit in 1..=6 {
        let (st, _, body) = s.get(&format!("/v1/stats/summary?limit={limit}")).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let want_top: Vec<Value> = live.iter().take(limit).map(|(c, n)| serde_json::json!({"code": c, "clicks": n, "uniques": n})).collect();
        assert_eq!(body["top_links"], Value::Array(want_top), "limit={limit}: {body}");
        assert_eq!(body["links"].as_u64(), Some(live.len() as u64), "limit={limit}: {body}");
        assert_eq!(body["totals"]["clicks"].as_u64(), Some(all_clicks), "limit={limit}: {body}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_answers_are_cached_briefly_and_report_freshness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |_| {}).await;
    let code = s.link("fresh").await;
    s.sync().await;
    let (st, headers, body) = s.get(&format!("/v1/links/{code}/stats")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("private, max-age=2"));
    assert_eq!(body["rows"], Value::Array(vec![]), "no clicks: no rows (no zero-fill)");
    assert_eq!((body["bucket"].as_str(), body["tz"].as_str()), (Some("day"), Some("UTC")));
    assert_eq!(body["freshness"]["backlog_events"].as_u64(), Some(0));
    assert_eq!(body["freshness"]["watermark"], Value::Null, "no event yet");
    let lag = body["freshness"]["lag_ms"].as_i64().expect("lag_ms once caught up");
    assert!((0..5_000).contains(&lag), "idle views are fresh: {lag} ms");
    let as_of = chrono::DateTime::parse_from_rfc3339(body["freshness"]["as_of"].as_str().expect("as_of")).expect("rfc3339");
    assert!((now_ms() - as_of.timestamp_millis()).abs() < 10_000);
    // An export says the same in headers (its body is the rows alone).
    let (st, headers, body) = s.get(&format!("/v1/stats/export?code={code}&format=json")).await;
    assert_eq!((st, &body), (StatusCode::OK, &Value::Array(vec![])));
    assert_eq!(headers.get("sluice-backlog-events").and_then(|v| v.to_str().ok()), Some("0"));
    let as_of = headers.get("sluice-as-of").and_then(|v| v.to_str().ok()).expect("sluice-as-of once caught up");
    let as_of = chrono::DateTime::parse_from_rfc3339(as_of).expect("rfc3339");
    assert!((now_ms() - as_of.timestamp_millis()).abs() < 10_000, "{as_of}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_without_the_click_log_answers_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |c| c.server.role = sluice::config::Role::Api).await;
    let code = s.link("apionly").await;
    for path in [format!("/v1/links/{code}/stats"), "/v1/stats/summary".to_string()] {
        let (st, _, body) = s.get(&path).await;
        assert_error(st, &body, 503, "stats_unavailable", &path);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_stats_and_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |_| {}).await;
    let (st, _, doc) = s.get("/v1/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for (p, method) in [("/v1/links/{code}/stats", "get"), ("/v1/stats/summary", "get"), ("/v1/events", "post"), ("/v1/links", "post")] {
        assert!(paths.get(p).and_then(|x| x.get(method)).is_some(), "{method} {p} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    let params: Vec<&str> =
        paths["/v1/links/{code}/stats"]["get"]["parameters"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
    for name in ["code", "from", "to", "bucket", "tz", "dimensions", "include_bots", "limit", "order_by"] {
        assert!(params.contains(&name), "parameter {name} in {params:?}");
    }
    assert!(doc["components"]["schemas"].get("LinkStatsResponse").is_some());
    s.stop().await;
}
