//! Export, report jobs and the live stream as `sluice serve` mounts them (a complete
//! in-process [`sluice::job::system::System`]): byte-for-byte CSV and JSON on a small fixed
//! input (expected text written by hand from the documented semantics), a report job's
//! file equal to them, exact per-second counts read from the server-sent events after real
//! redirects, every bad parameter answered with its 4xx code, and the OpenAPI document.
//! Jobs surviving a restart of the real binary are in `process.rs`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{BROWSER_UA, Server, event, ms, now_ms};

const IPHONE_UA: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
const GOOGLEBOT_UA: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// The fixed input: link `rx-a` on 2024-06-01 (UTC; IST = UTC+05:30) — two human visitors
/// in the 09:00 IST hour (one of them twice, via Google), an app referrer whose domain holds
/// a comma and quotes, an exact duplicate, a bot, a direct click at 11:00 IST and one at
/// 00:00 IST the next day; one click of `rx-b`.
pub fn fixed_events() -> Vec<Value> {
    vec![
        event("rx-1", "rx-a", ms("2024-06-01T03:31:00Z"), "192.0.2.1", BROWSER_UA, Some("https://www.google.com/search?q=a")),
        event("rx-2", "rx-a", ms("2024-06-01T03:45:00Z"), "192.0.2.2", IPHONE_UA, Some("ios-app://a,\"b\"/x")),
        event("rx-3", "rx-a", ms("2024-06-01T03:59:59Z"), "192.0.2.1", BROWSER_UA, Some("https://www.google.com/")),
        event("rx-2", "rx-a", ms("2024-06-01T03:45:00Z"), "192.0.2.2", IPHONE_UA, Some("ios-app://a,\"b\"/x")),
        event("rx-4", "rx-b", ms("2024-06-01T04:00:00Z"), "192.0.2.9", BROWSER_UA, None),
        event("rx-5", "rx-a", ms("2024-06-01T05:10:00Z"), "192.0.2.5", GOOGLEBOT_UA, None),
        event("rx-6", "rx-a", ms("2024-06-01T05:30:00Z"), "192.0.2.3", BROWSER_UA, None),
        event("rx-7", "rx-a", ms("2024-06-01T18:30:00Z"), "192.0.2.4", BROWSER_UA, None),
    ]
}

/// `rx-a` over the IST day 2024-06-01, hourly in Asia/Kolkata, by referrer domain. Rows:
/// buckets ascending, then clicks descending, then values ascending; the app referrer
/// `ios-app://a,"b"/x` as `(invalid)` (no app is named so); CRLF after every record; no bot, the duplicate once, 00:00 IST next day outside.
pub const CSV_IST_HOURLY: &str = "bucket,code,referrer_domain,clicks,uniques\r\n\
2024-06-01T09:00:00+05:30,rx-a,google.com,2,1\r\n\
2024-06-01T09:00:00+05:30,rx-a,(invalid),1,1\r\n\
2024-06-01T11:00:00+05:30,rx-a,(direct),1,1\r\n";

/// The query of [`CSV_IST_HOURLY`] (without `code`/`format`).
pub const IST_HOURLY: &str = "from=2024-06-01T00:00:00%2B05:30&to=2024-06-02T00:00:00%2B05:30&bucket=hour&tz=Asia/Kolkata&dimensions=referrer_domain";

/// `rx-a` by UTC day and referrer domain as a JSON array: `(direct)` (11:00 IST and 00:00
/// IST next day: two visitors) and `google.com` tie at 2 clicks and sort by value.
pub const JSON_UTC_DAILY: &str = "[\n\
{\"bucket\":\"2024-06-01T00:00:00Z\",\"code\":\"rx-a\",\"referrer_domain\":\"(direct)\",\"clicks\":2,\"uniques\":2},\n\
{\"bucket\":\"2024-06-01T00:00:00Z\",\"code\":\"rx-a\",\"referrer_domain\":\"google.com\",\"clicks\":2,\"uniques\":1},\n\
{\"bucket\":\"2024-06-01T00:00:00Z\",\"code\":\"rx-a\",\"referrer_domain\":\"(invalid)\",\"clicks\":1,\"uniques\":1}\n\
]\n";

/// The query of [`JSON_UTC_DAILY`].
pub const UTC_DAILY: &str = "from=2024-06-01T00:00:00Z&to=2024-06-03T00:00:00Z&bucket=day&dimensions=referrer_domain";

async fn fixed_server(dir: &std::path::Path) -> Server {
    let s = Server::start_in(dir, |_| {}).await;
    s.link("rx-a").await;
    s.link("rx-b").await;
    s.link("rx-quiet").await;
    s.events(&fixed_events(), false).await;
    s.sync().await;
    s
}

/// `GET` returning status, headers and the body as text.
async fn get_text(s: &Server, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let r = s.http.get(s.path(path)).send().await.expect("get");
    let (st, h) = (r.status(), r.headers().clone());
    (st, h, r.text().await.expect("text body"))
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn post_report(s: &Server, body: &Value) -> (StatusCode, Value) {
    let r = s.http.post(s.path("/v1/reports/export")).json(body).send().await.expect("post report");
    let st = r.status();
    (st, r.json().await.expect("json"))
}

/// Polls `GET /v1/jobs/{id}` until the job has finished.
async fn wait_job(s: &Server, id: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let (st, _, v) = s.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if matches!(v["status"].as_str(), Some("succeeded" | "failed")) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "job {id} did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_report_job_are_byte_exact_on_a_fixed_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = fixed_server(dir.path()).await;

    let (st, h, body) = get_text(&s, &format!("/v1/stats/export?code=rx-a&{IST_HOURLY}")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body, CSV_IST_HOURLY);
    assert_eq!(header(&h, "content-type"), Some("text/csv; charset=utf-8; header=present"));
    assert_eq!(header(&h, "content-disposition"), Some("attachment; filename=\"sluice-rx-a-hour-20240531T1830Z-20240601T1830Z.csv\""));
    let (_, _, explicit) = get_text(&s, &format!("/v1/stats/export?code=rx-a&{IST_HOURLY}&format=csv")).await;
    assert_eq!(explicit, CSV_IST_HOURLY, "format=csv is the default");

    let (st, h, body) = get_text(&s, &format!("/v1/stats/export?code=rx-a&{UTC_DAILY}&format=json")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body, JSON_UTC_DAILY);
    assert_eq!(header(&h, "content-type"), Some("application/json"));

    // Without a breakdown, with bots: 5 human clicks + the Googlebot, 5 visitors.
    let (_, _, body) =
        get_text(&s, "/v1/stats/export?code=rx-a&from=2024-06-01T00:00:00Z&to=2024-06-03T00:00:00Z&bucket=day&include_bots=true&format=ndjson").await;
    assert_eq!(body, "{\"bucket\":\"2024-06-01T00:00:00Z\",\"code\":\"rx-a\",\"clicks\":6,\"uniques\":5}\n");
    // A link without clicks: the header row only.
    let (_, _, body) = get_text(&s, &format!("/v1/stats/export?code=rx-quiet&{IST_HOURLY}")).await;
    assert_eq!(body, "bucket,code,referrer_domain,clicks,uniques\r\n");

    // The same export as a report job: 202 with the job, then the download is the same bytes.
    let (st, job) = post_report(&s, &json!({"codes": ["rx-a"], "from": "2024-06-01T00:00:00+05:30", "to": "2024-06-02T00:00:00+05:30", "bucket": "hour", "tz": "Asia/Kolkata", "dimensions": "referrer_domain"})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{job}");
    let id = job["job_id"].as_str().expect("job_id").to_owned();
    assert_eq!(job["status"], "queued");
    let done = wait_job(&s, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["download"].as_str(), Some(format!("/v1/jobs/{id}/download").as_str()));
    assert_eq!((done["rows"].as_u64(), done["bytes"].as_u64()), (Some(3), Some(CSV_IST_HOURLY.len() as u64)));
    let (st, h, body) = get_text(&s, &format!("/v1/jobs/{id}/download")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body, CSV_IST_HOURLY);
    assert_eq!(header(&h, "content-disposition"), Some("attachment; filename=\"sluice-rx-a-hour-20240531T1830Z-20240601T1830Z.csv\""));
    assert!(dir.path().join("exports").join(format!("{id}.csv")).exists(), "the file lives in <data dir>/exports");

    // Two codes as JSON: one array, the codes' rows one after the other, codes sorted.
    let (st, job) =
        post_report(&s, &json!({"codes": ["rx-b", "rx-a"], "from": "2024-06-01T00:00:00Z", "to": "2024-06-03T00:00:00Z", "bucket": "day", "format": "json"}))
            .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{job}");
    let id = job["job_id"].as_str().expect("job_id").to_owned();
    assert_eq!(wait_job(&s, &id).await["status"], "succeeded");
    let (_, _, body) = get_text(&s, &format!("/v1/jobs/{id}/download")).await;
    assert_eq!(
        body,
        "[\n{\"bucket\":\"2024-06-01T00:00:00Z\",\"code\":\"rx-a\",\"clicks\":5,\"uniques\":4},\n\
         {\"bucket\":\"2024-06-01T00:00:00Z\",\"code\":\"rx-b\",\"clicks\":1,\"uniques\":1}\n]\n"
    );
    s.stop().await;
}

fn assert_error(st: StatusCode, body: &Value, want: u16, code: &str, what: &str) {
    assert_eq!(st.as_u16(), want, "{what}: {body}");
    assert_eq!(body["error"]["code"].as_str(), Some(code), "{what}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_export_job_or_live_request_gets_its_4xx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = fixed_server(dir.path()).await;
    let gets: Vec<(&str, u16, &str)> = vec![
        ("/v1/stats/export?code=rx-a&format=xlsx", 400, "invalid_format"),
        ("/v1/stats/export?format=csv", 400, "missing_code"),
        ("/v1/stats/export?code=", 400, "missing_code"),
        ("/v1/stats/export?code=rx-a&code=rx-b", 400, "duplicate_parameter"),
        ("/v1/stats/export?code=rx-a&limit=10", 400, "unknown_parameter"),
        ("/v1/stats/export?code=rx-a&order_by=clicks", 400, "unknown_parameter"),
        ("/v1/stats/export?code=rx-a&colour=red", 400, "unknown_parameter"),
        ("/v1/stats/export?code=rx-a&bucket=week", 400, "invalid_bucket"),
        ("/v1/stats/export?code=rx-a&tz=Mars/Olympus", 400, "unknown_timezone"),
        ("/v1/stats/export?code=rx-a&from=2024-06-02T00:00:00Z&to=2024-06-01T00:00:00Z", 400, "invalid_range"),
        ("/v1/stats/export?code=rx-a&bucket=minute&from=2024-06-01T00:00:00Z&to=2024-06-05T00:00:00Z", 400, "range_too_long"),
        ("/v1/stats/export?code=rx-a&from=noon", 400, "invalid_timestamp"),
        ("/v1/stats/export?code=rx-a&dimensions=city", 400, "invalid_dimensions"),
        ("/v1/stats/export?code=no-such-link", 404, "not_found"),
        ("/v1/jobs/not-a-uuid", 404, "not_found"),
        ("/v1/jobs/0190a6e0-0000-7000-8000-00000000abcd", 404, "not_found"),
        ("/v1/jobs/not-a-uuid/download", 404, "not_found"),
        ("/v1/jobs/0190a6e0-0000-7000-8000-00000000abcd/download", 404, "not_found"),
        ("/v1/links/rx-a/stats/live?include_bots=maybe", 400, "invalid_parameter"),
        ("/v1/links/rx-a/stats/live?bucket=minute", 400, "unknown_parameter"),
        ("/v1/links/no-such-link/stats/live", 404, "not_found"),
    ];
    for (path, status, code) in gets {
        let (st, h, text) = get_text(&s, path).await;
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        assert_error(st, &body, status, code, path);
        assert_eq!(header(&h, "content-type"), Some("application/json"), "{path}");
    }
    let posts: Vec<(Value, u16, &str)> = vec![
        (json!({}), 400, "invalid_codes"),
        (json!({"codes": []}), 400, "invalid_codes"),
        (json!({"codes": ["rx-a"], "all_links": true}), 400, "invalid_codes"),
        (json!({"codes": ["rx-a", "nope-1"]}), 404, "not_found"),
        (json!({"codes": ["rx-a"], "format": "xlsx"}), 400, "invalid_format"),
        (json!({"codes": ["rx-a"], "bucket": "fortnight"}), 400, "invalid_bucket"),
        (json!({"codes": ["rx-a"], "tz": "Nowhere/Special"}), 400, "unknown_timezone"),
        (json!({"codes": ["rx-a"], "from": "2024-06-02T00:00:00Z", "to": "2024-06-01T00:00:00Z"}), 400, "invalid_range"),
        (json!({"codes": ["rx-a"], "colour": "red"}), 400, "unknown_field"),
    ];
    for (body, status, code) in posts {
        let (st, v) = post_report(&s, &body).await;
        assert_error(st, &v, status, code, &body.to_string());
    }
    let r = s.http.post(s.path("/v1/reports/export")).header("content-type", "application/json").body("{\"codes\": [").send().await.expect("post");
    let st = r.status();
    assert_error(st, &r.json().await.expect("json"), 400, "malformed_json", "truncated body");
    s.stop().await;
}

/// One server-sent event.
#[derive(Debug)]
struct Sse {
    event: String,
    data: String,
}

/// Reads server-sent events from a streaming response (comments skipped).
struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    async fn open(s: &Server, path: &str) -> SseReader {
        let resp = s.http.get(s.path(path)).send().await.expect("connect live stream");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(resp.headers(), "content-type"), Some("text/event-stream"));
        SseReader { resp, buf: String::new() }
    }

    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.is_empty() && data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Sse { event, data };
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.resp.chunk()).await.expect("an event within 30 s").expect("stream read");
            self.buf.push_str(std::str::from_utf8(&chunk.expect("the stream does not end")).expect("utf-8"));
        }
    }

    /// The next `tick` event's data.
    async fn tick(&mut self) -> Value {
        let e = self.next().await;
        assert_eq!(e.event, "tick", "{e:?}");
        serde_json::from_str(&e.data).expect("tick data is JSON")
    }
}

fn tick_ms(t: &Value) -> i64 {
    ms(t["ts"].as_str().expect("ts"))
}

/// Reads ticks until `minute_clicks` reaches `want` (at most 45 s, and within the minute), checking on the way that
/// ticks fall on ascending whole seconds of `minute`, counts never go down and each tick's
/// `second_clicks` is exactly the increase since the previous one. Returns the last tick and
/// the sum of `second_clicks` read. `None` when the minute ended first (the caller retries).
async fn ticks_until(live: &mut SseReader, prev: &Value, minute: i64, want: u64) -> Option<(Value, u64)> {
    let (mut prev, mut sum) = (prev.clone(), 0);
    let t0 = Instant::now();
    loop {
        let t = live.tick().await;
        if tick_ms(&t).div_euclid(60_000) * 60_000 != minute {
            return None;
        }
        let step = tick_ms(&t) - tick_ms(&prev);
        assert!(step > 0 && step % 1000 == 0, "ticks on whole seconds, ascending: {prev} then {t}");
        let (c, p) = (t["minute_clicks"].as_u64().expect("minute_clicks"), prev["minute_clicks"].as_u64().expect("minute_clicks"));
        assert!(c >= p, "counts never go down: {prev} then {t}");
        assert_eq!(t["second_clicks"].as_u64(), Some(c - p), "second_clicks is the increase: {prev} then {t}");
        sum += c - p;
        if c == want {
            return Some((t, sum));
        }
        assert!(c < want, "more clicks than sent: {t}");
        assert!(t0.elapsed() < Duration::from_secs(45), "{want} clicks not visible within 45 s: {t}");
        prev = t;
    }
}

/// Waits (polling the clock) until at least 15 s are left in the current UTC minute, so a
/// scenario of a few seconds stays within one minute in the usual case.
async fn early_in_a_minute() {
    while now_ms().rem_euclid(60_000) > 45_000 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_ticks_carry_exact_counts_after_real_redirects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |_| {}).await;
    // Up to three attempts, each on a fresh link: one whose minute ends mid-way is retried.
    for attempt in 0..3 {
        early_in_a_minute().await;
        let code = s.link(&format!("live-{attempt}")).await;
        let mut live = SseReader::open(&s, &format!("/v1/links/{code}/stats/live")).await;
        let first = live.tick().await;
        let minute = tick_ms(&first).div_euclid(60_000) * 60_000;
        assert_eq!(
            (first["second_clicks"].as_u64(), first["minute_clicks"].as_u64(), first["minute_uniques"].as_u64()),
            (Some(0), Some(0), Some(0)),
            "{first}"
        );
        assert_eq!(tick_ms(&first).rem_euclid(1000), 0, "whole seconds: {first}");
        // Five human clicks from three visitors (addresses through the trusted proxy), one HEAD.
        for ip in ["198.51.100.1", "198.51.100.2", "198.51.100.1", "198.51.100.3", "198.51.100.2"] {
            assert_eq!(s.click(Method::GET, &code, BROWSER_UA, &[("x-forwarded-for", ip)]).await, StatusCode::FOUND);
        }
        assert_eq!(s.click(Method::HEAD, &code, BROWSER_UA, &[]).await, StatusCode::FOUND);
        let Some((t, sum)) = ticks_until(&mut live, &first, minute, 5).await else { continue };
        assert_eq!((sum, t["minute_uniques"].as_u64()), (5, Some(3)), "{t}");
        // A bot (not a click by default) and two more humans, one of them a returning visitor.
        assert_eq!(s.click(Method::GET, &code, "Twitterbot/1.0", &[("x-forwarded-for", "198.51.100.9")]).await, StatusCode::FOUND);
        for ip in ["198.51.100.4", "198.51.100.1"] {
            assert_eq!(s.click(Method::GET, &code, BROWSER_UA, &[("x-forwarded-for", ip)]).await, StatusCode::FOUND);
        }
        let Some((t, sum)) = ticks_until(&mut live, &t, minute, 7).await else { continue };
        assert_eq!((sum, t["minute_uniques"].as_u64()), (2, Some(4)), "{t}");
        // With bots, a new stream starts from the whole minute so far: 8 clicks, 5 visitors.
        s.sync().await;
        let mut bots = SseReader::open(&s, &format!("/v1/links/{code}/stats/live?include_bots=true")).await;
        let b = bots.tick().await;
        if tick_ms(&b).div_euclid(60_000) * 60_000 != minute {
            continue;
        }
        assert_eq!((b["second_clicks"].as_u64(), b["minute_clicks"].as_u64(), b["minute_uniques"].as_u64()), (Some(0), Some(8), Some(5)), "{b}");
        drop((live, bots));
        s.stop().await;
        return;
    }
    panic!("three attempts each crossed a minute boundary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_export_jobs_and_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |_| {}).await;
    let (st, _, doc) = s.get("/v1/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for (p, method) in [
        ("/v1/stats/export", "get"),
        ("/v1/reports/export", "post"),
        ("/v1/jobs/{job_id}", "get"),
        ("/v1/jobs/{job_id}/download", "get"),
        ("/v1/links/{code}/stats/live", "get"),
    ] {
        assert!(paths.get(p).and_then(|x| x.get(method)).is_some(), "{method} {p} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    let params: Vec<&str> = paths["/v1/stats/export"]["get"]["parameters"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(params, ["code", "format", "escape_formulas", "from", "to", "bucket", "tz", "dimensions", "include_bots"]);
    for schema in ["ReportRequest", "JobStatusBody", "LiveTick"] {
        assert!(doc["components"]["schemas"].get(schema).is_some(), "{schema}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_only_process_answers_503_and_a_stopped_server_releases_its_job_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |c| c.server.role = sluice::config::Role::Api).await;
    s.link("api-only").await;
    for path in ["/v1/stats/export?code=api-only", "/v1/jobs/0190a6e0-0000-7000-8000-00000000abcd", "/v1/links/api-only/stats/live"] {
        let (st, _, text) = get_text(&s, path).await;
        assert_error(st, &serde_json::from_str(&text).expect("json"), 503, "stats_unavailable", path);
    }
    let (st, v) = post_report(&s, &json!({"codes": ["api-only"]})).await;
    assert_error(st, &v, 503, "stats_unavailable", "POST /v1/reports/export");
    s.stop().await;

    // A full server on another directory: a job is created, the server stops, a new one in
    // the same process opens the same job table (a graceful stop closes it) and serves the job.
    let dir = tempfile::tempdir().expect("tempdir");
    let s = fixed_server(dir.path()).await;
    let (st, job) = post_report(&s, &json!({"codes": ["rx-a"], "from": "2024-06-01T00:00:00+05:30", "to": "2024-06-02T00:00:00+05:30", "bucket": "hour", "tz": "Asia/Kolkata", "dimensions": "referrer_domain"})).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{job}");
    let id = job["job_id"].as_str().expect("job_id").to_owned();
    s.stop().await;
    let s = Server::start_in(dir.path(), |_| {}).await;
    assert_eq!(wait_job(&s, &id).await["status"], "succeeded");
    let (_, _, body) = get_text(&s, &format!("/v1/jobs/{id}/download")).await;
    assert_eq!(body, CSV_IST_HOURLY);
    s.stop().await;
}
