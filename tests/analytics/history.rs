//! Exports, report jobs and the summary over ranges the in-memory views no longer hold
//! (`sluice serve` in-process, short retention: minute rows 2 h, 15-minute and coarser rows
//! 3 days). Clicks of 2026-11-28 are counted while fresh (so their rows reach ClickHouse),
//! then a live click moves the watermark to now and the views evict them.
//! * With ClickHouse (feature `integration-tests`): `GET /v1/stats/export` (CSV, JSON, NDJSON;
//!   minute, hour in Asia/Kolkata, day; bots; a maintained breakdown and an ad-hoc
//!   `browser,os`) and report jobs answer from it, equal to a naive reference over the
//!   events sent and to `GET /v1/links/{code}/stats`; a refused combination is the same 400
//!   on both; the summary refuses the old range with a message that names what the views hold
//!   and points at the per-link endpoint.
//! * Without ClickHouse: `POST /v1/reports/export` over such a range is the 400
//!   `GET /v1/stats/export` gives (same body), never a 202 and a failed job.

// The reference and ClickHouse helpers serve the `integration-tests` test only.
#![cfg_attr(not(feature = "integration-tests"), allow(dead_code))]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Timelike};
use chrono_tz::Tz;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice::config::Config;

use crate::harness::{BROWSER_UA, Server, event, ms, now_ms};

const IPHONE_UA: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
const GOOGLEBOT_UA: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const GOOGLE: Option<&str> = Some("https://www.google.com/search?q=sluice");
const HN: Option<&str> = Some("https://news.ycombinator.com/item?id=1");

/// One click sent, with the values the enricher derives from it (what a row is keyed by).
struct Click {
    id: &'static str,
    code: &'static str,
    ts: &'static str,
    ip: &'static str,
    ua: &'static str,
    referrer: Option<&'static str>,
    bot: bool,
    country: &'static str,
    browser: &'static str,
    os: &'static str,
    referrer_domain: &'static str,
}

#[allow(clippy::too_many_arguments)]
fn c(
    id: &'static str,
    code: &'static str,
    ts: &'static str,
    ip: &'static str,
    ua: &'static str,
    referrer: Option<&'static str>,
    country: &'static str,
    referrer_domain: &'static str,
) -> Click {
    let (bot, browser, os) = match ua {
        BROWSER_UA => (false, "Chrome", "Windows"),
        IPHONE_UA => (false, "Mobile Safari", "iOS"),
        _ => (true, "Googlebot", "Other"),
    };
    Click { id, code, ts, ip, ua, referrer, bot, country, browser, os, referrer_domain }
}

/// Clicks of 2026-11-28 (UTC; Asia/Kolkata = UTC+05:30), in time order. Visitors are
/// (IP, user agent): 81.2.69.1 with Chrome twice, 8.8.8.8 with the iPhone twice (`hy-1`
/// also once on `hy-2`).
fn clicks() -> Vec<Click> {
    vec![
        c("hy-01", "hy-1", "2026-11-28T10:07:05Z", "81.2.69.1", BROWSER_UA, GOOGLE, "GB", "google.com"),
        c("hy-02", "hy-1", "2026-11-28T10:07:40Z", "8.8.8.8", IPHONE_UA, None, "US", "(direct)"),
        c("hy-03", "hy-1", "2026-11-28T10:08:10Z", "81.2.69.1", BROWSER_UA, HN, "GB", "ycombinator.com"),
        c("hy-04", "hy-1", "2026-11-28T10:08:30Z", "8.8.8.9", GOOGLEBOT_UA, None, "US", "(direct)"),
        c("hy-05", "hy-1", "2026-11-28T10:09:59Z", "8.8.8.8", IPHONE_UA, GOOGLE, "US", "google.com"),
        c("hy-06", "hy-1", "2026-11-28T10:10:00Z", "81.2.69.2", BROWSER_UA, None, "GB", "(direct)"),
        c("hy-07", "hy-2", "2026-11-28T10:15:00Z", "8.8.8.8", IPHONE_UA, None, "US", "(direct)"),
        c("hy-08", "hy-1", "2026-11-28T10:31:00Z", "81.2.69.3", IPHONE_UA, HN, "GB", "ycombinator.com"),
        c("hy-09", "hy-2", "2026-11-28T10:50:00Z", "81.2.69.1", BROWSER_UA, GOOGLE, "GB", "google.com"),
        c("hy-10", "hy-1", "2026-11-28T11:20:00Z", "8.8.8.10", BROWSER_UA, None, "US", "(direct)"),
    ]
}

fn value(c: &Click, dim: &str) -> &'static str {
    match dim {
        "country" => c.country,
        "browser" => c.browser,
        "os" => c.os,
        "referrer_domain" => c.referrer_domain,
        "device" => match c.browser {
            "Chrome" => "desktop",
            "Mobile Safari" => "mobile",
            _ => "bot",
        },
        other => panic!("no reference value for dimension {other}"),
    }
}

/// The start of the bucket holding `ts` (minutes in UTC, hours and days local to `tz`).
fn bucket_start(ts: i64, bucket: &str, tz: Tz) -> i64 {
    if bucket == "minute" {
        return ts.div_euclid(60_000) * 60_000;
    }
    let local = tz.timestamp_millis_opt(ts).single().expect("instant").naive_local();
    let start = if bucket == "hour" { local.date().and_hms_opt(local.hour(), 0, 0) } else { local.date().and_hms_opt(0, 0, 0) };
    tz.from_local_datetime(&start.expect("time")).earliest().expect("local time exists").timestamp_millis()
}

fn label(ms: i64, tz: Tz) -> String {
    tz.timestamp_millis_opt(ms).single().expect("instant").to_rfc3339_opts(chrono::SecondsFormat::Secs, tz == Tz::UTC)
}

/// One exported row: bucket label, code, dimension values, clicks, uniques.
type Row = (String, String, Vec<String>, u64, u64);

/// Reference cells: (bucket start, dimension values) → (clicks, visitors as (IP, user agent)).
type Cells<'a> = BTreeMap<(i64, Vec<String>), (u64, BTreeSet<(&'a str, &'a str)>)>;

/// A query of the reference.
struct Q<'a> {
    from: &'a str,
    to: &'a str,
    bucket: &'a str,
    tz: Tz,
    dims: &'a [&'a str],
    bots: bool,
}

/// The naive reference: every click of `code` in `[from, to)` (bots only with `bots`)
/// grouped by bucket and dimension values; clicks counted, distinct (IP, user agent)
/// visitors; buckets ascending, then clicks descending, then values ascending.
fn reference(code: &str, q: &Q) -> Vec<Row> {
    let (from, to) = (ms(q.from), ms(q.to));
    let mut cells: Cells = BTreeMap::new();
    let all = clicks();
    for c in all.iter().filter(|c| c.code == code && (q.bots || !c.bot)) {
        let ts = ms(c.ts);
        if ts < from || ts >= to {
            continue;
        }
        let values = q.dims.iter().map(|d| value(c, d).to_string()).collect();
        let cell = cells.entry((bucket_start(ts, q.bucket, q.tz), values)).or_default();
        cell.0 += 1;
        cell.1.insert((c.ip, c.ua));
    }
    let mut rows: Vec<(i64, Vec<String>, u64, u64)> = cells.into_iter().map(|((b, v), (n, set))| (b, v, n, set.len() as u64)).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then_with(|| a.1.cmp(&b.1)));
    rows.into_iter().map(|(b, v, n, u)| (label(b, q.tz), code.to_string(), v, n, u)).collect()
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\r', '\n']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_string() }
}

/// The rows as an export file (`csv`, `json` or `ndjson`) with columns `dims`.
fn render(format: &str, dims: &[&str], rows: &[Row]) -> String {
    let object = |r: &Row| {
        let mut o = format!("{{\"bucket\":{},\"code\":{}", json!(r.0), json!(r.1));
        for (d, v) in dims.iter().zip(&r.2) {
            o.push_str(&format!(",{}:{}", json!(d), json!(v)));
        }
        o + &format!(",\"clicks\":{},\"uniques\":{}}}", r.3, r.4)
    };
    match format {
        "csv" => {
            let mut out = format!("bucket,code{},clicks,uniques\r\n", dims.iter().map(|d| format!(",{d}")).collect::<String>());
            for r in rows {
                let values: String = r.2.iter().map(|v| format!(",{}", csv_field(v))).collect();
                out.push_str(&format!("{},{}{values},{},{}\r\n", csv_field(&r.0), csv_field(&r.1), r.3, r.4));
            }
            out
        }
        "json" if rows.is_empty() => "[]\n".to_string(),
        "json" => format!("[\n{}\n]\n", rows.iter().map(object).collect::<Vec<_>>().join(",\n")),
        _ => rows.iter().map(|r| object(r) + "\n").collect(),
    }
}

/// The query string of `q` (without `code`/`format`).
fn query(q: &Q) -> String {
    let enc = |s: &str| s.replace('+', "%2B");
    format!("from={}&to={}&bucket={}&tz={}&dimensions={}&include_bots={}", enc(q.from), enc(q.to), q.bucket, q.tz.name(), q.dims.join(","), q.bots)
}

/// Short retention (module docs), with `tweak` applied on top.
fn short_retention(c: &mut Config) {
    c.dataflow.allowed_lateness = Duration::from_secs(3600);
    c.dataflow.dedup_horizon = Duration::from_secs(3600);
    c.dataflow.minute_retention = Duration::from_secs(2 * 3600);
    c.dataflow.long_retention = Duration::from_secs(3 * 86_400);
}

/// Sends [`clicks`] (the first events the server sees: nothing is late yet), waits until
/// they are counted (and `counted` holds, e.g. ClickHouse has them), then one live click of
/// `hy-1` a minute ago, which moves the watermark to now: 2026-11-28 leaves the views.
async fn send_then_evict<F: std::future::Future<Output = ()>>(s: &Server, counted: impl FnOnce() -> F) {
    s.link("hy-1").await;
    s.link("hy-2").await;
    let events: Vec<Value> = clicks().iter().map(|c| event(c.id, c.code, ms(c.ts), c.ip, c.ua, c.referrer)).collect();
    s.events(&events, false).await;
    s.sync().await;
    counted().await;
    s.events(&[event("hy-live", "hy-1", now_ms() - 60_000, "192.0.2.50", BROWSER_UA, None)], false).await;
    s.sync().await;
    let (st, _, v) = s.get("/v1/stats/summary?from=2026-11-28T00:00:00Z&to=2026-11-29T00:00:00Z").await;
    assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("range_not_retained")), "2026-11-28 left the views: {v}");
}

async fn get_text(s: &Server, path: &str) -> (StatusCode, String) {
    let r = s.http.get(s.path(path)).send().await.expect("get");
    let st = r.status();
    (st, r.text().await.expect("text body"))
}

async fn post_report(s: &Server, body: &Value) -> (StatusCode, Value) {
    let r = s.http.post(s.path("/v1/reports/export")).json(body).send().await.expect("post report");
    let st = r.status();
    (st, r.json().await.expect("json"))
}

/// Polls the job until it finished; returns its final state.
async fn wait_job(s: &Server, id: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let (st, _, v) = s.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        if matches!(v["status"].as_str(), Some("succeeded" | "failed")) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "job {id} did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The 2026-11-28 minute range of the review (`10:07` to `10:10`).
const MINUTES: Q = Q { from: "2026-11-28T10:07:00Z", to: "2026-11-28T10:10:00Z", bucket: "minute", tz: Tz::UTC, dims: &[], bots: false };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_clickhouse_a_report_over_an_evicted_range_is_the_exports_400() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), short_retention).await;
    send_then_evict(&s, || async {}).await;
    let report_of = |q: &Q| json!({"codes": ["hy-1"], "from": q.from, "to": q.to, "bucket": q.bucket, "tz": q.tz.name(), "dimensions": q.dims.join(","), "include_bots": q.bots});
    let hour_edges = Q { from: "2026-11-28T10:07:00Z", to: "2026-11-28T12:00:00Z", bucket: "hour", ..MINUTES };
    for q in [MINUTES, hour_edges] {
        let (st, text) = get_text(&s, &format!("/v1/stats/export?code=hy-1&{}", query(&q))).await;
        let export: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!((st, export["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("range_not_retained")), "{export}");
        let message = export["error"]["message"].as_str().expect("message");
        assert!(message.contains("no long-term store (ClickHouse) is configured"), "{message}");
        let retained = &export["error"]["details"]["retained_from"];
        assert!(retained["minute"].as_str().is_some_and(|t| ms(t) > ms(q.to)), "{export}");
        // The report: the same 400, body for body, and no job.
        let (st, report) = post_report(&s, &report_of(&q)).await;
        assert_eq!((st, &report), (StatusCode::BAD_REQUEST, &export), "report of {}", query(&q));
        let (st, report) = post_report(&s, &json!({"all_links": true, "from": q.from, "to": q.to, "bucket": q.bucket})).await;
        assert_eq!((st, &report), (StatusCode::BAD_REQUEST, &export), "all-links report of {}", query(&q));
    }
    // The summary says what the views hold, without bucket wording.
    let (st, _, v) = s.get("/v1/stats/summary?from=2026-11-28T00:00:00Z&to=2026-11-29T00:00:00Z").await;
    let held = v["error"]["details"]["retained_from"]["hour"].as_str().expect("retained_from.hour").to_string();
    let want = format!(
        "the summary is computed from the in-memory views only, which hold clicks from {held} on; start the range at or after it; older clicks are not kept (no long-term store (ClickHouse) is configured)"
    );
    assert_eq!((st, v["error"]["message"].as_str()), (StatusCode::BAD_REQUEST, Some(want.as_str())), "{v}");
    s.stop().await;
}

#[cfg(feature = "integration-tests")]
mod with_clickhouse {
    use super::*;
    use crate::clickhouse::Ch;
    use sluice_connectors::clickhouse::{ClickHouseConfig, Password};

    /// Polls ClickHouse until `sql` (one number) answers `want`, at most 60 s.
    async fn await_number(ch: &Ch, sql: &str, want: u64) {
        let t0 = Instant::now();
        loop {
            let got = ch.query(sql).await.ok().and_then(|t| t.trim().parse::<u64>().ok());
            if got == Some(want) {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "{sql}: {got:?} after 60 s, want {want}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every table the answers read holds every click of 2026-11-28.
    async fn await_clicks(ch: &Ch) {
        let all = clicks();
        await_number(ch, "SELECT count() FROM events_enriched FINAL WHERE toDate(ts) = '2026-11-28'", all.len() as u64).await;
        for code in ["hy-1", "hy-2"] {
            let n = all.iter().filter(|c| c.code == code).count() as u64;
            for table in ["rollups_minute", "rollups_quarter", "rollups_hour", "rollups_day"] {
                let sql = format!("SELECT sum(clicks) FROM {table} FINAL WHERE code = '{code}' AND view = 'total' AND toDate(bucket) = '2026-11-28'");
                await_number(ch, &sql, n).await;
            }
        }
    }

    /// `rows` of a stats answer as export rows (dimension values in `dims` order).
    fn stats_rows(code: &str, body: &Value, bucket: &str, dims: &[&str]) -> Vec<Row> {
        body["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                let values = dims.iter().map(|d| r[*d].as_str().expect("value").to_string()).collect();
                (
                    r[bucket].as_str().expect("label").to_string(),
                    code.to_string(),
                    values,
                    r["clicks"].as_u64().expect("clicks"),
                    r["uniques"].as_u64().expect("uniques"),
                )
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_and_report_jobs_read_evicted_ranges_from_clickhouse() {
        let ch = Ch::fresh("hist");
        let cfg = ClickHouseConfig {
            url: Some(ch.url.clone()),
            user: ch.user.clone(),
            password: Password(ch.password.clone()),
            database: ch.database.clone(),
            flush_interval: Duration::from_millis(100),
            ..ClickHouseConfig::default()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Server::start_in(dir.path(), move |c| {
            short_retention(c);
            c.clickhouse = cfg;
        })
        .await;
        send_then_evict(&s, || await_clicks(&ch)).await;

        let kolkata: Tz = "Asia/Kolkata".parse().expect("tz");
        let day = Q { from: "2026-11-28T00:00:00Z", to: "2026-11-29T00:00:00Z", bucket: "day", ..MINUTES };
        let cases = [
            // The review's range: minute rows, gone from memory.
            (MINUTES, "csv"),
            (Q { bots: true, ..MINUTES }, "ndjson"),
            // Hours in +05:30 with an unaligned start, by country, bots included.
            (Q { from: "2026-11-28T15:37:00+05:30", to: "2026-11-28T17:00:00+05:30", bucket: "hour", tz: kolkata, dims: &["country"], bots: true }, "json"),
            (Q { dims: &["device"], ..day }, "csv"),
            // A combination the views do not maintain (ClickHouse's raw clicks, exact uniques).
            (Q { dims: &["browser", "os"], ..day }, "csv"),
            (Q { from: "2026-11-28T10:00:00Z", to: "2026-11-28T12:00:00Z", bucket: "hour", dims: &["os", "country", "browser"], ..MINUTES }, "ndjson"),
        ];
        for (q, format) in &cases {
            let want = reference("hy-1", q);
            assert!(!want.is_empty(), "the case has rows: {}", query(q));
            let (st, body) = get_text(&s, &format!("/v1/stats/export?code=hy-1&format={format}&{}", query(q))).await;
            assert_eq!(st, StatusCode::OK, "{}: {body}", query(q));
            assert_eq!(body, render(format, q.dims, &want), "{}", query(q));
            // The stats endpoint answers the same rows for the same query.
            let stats = s.stats("hy-1", &query(q)).await;
            assert_eq!(stats_rows("hy-1", &stats, q.bucket, q.dims), want, "stats of {}", query(q));
        }

        // Report jobs over the same ranges: the file is the export's bytes (codes sorted).
        let jobs = [(Q { bucket: "minute", ..day }, "csv"), (Q { dims: &["browser", "os"], bucket: "hour", tz: kolkata, ..day }, "ndjson")];
        for (q, format) in &jobs {
            let body = json!({"codes": ["hy-2", "hy-1"], "from": q.from, "to": q.to, "bucket": q.bucket, "tz": q.tz.name(), "dimensions": q.dims.join(","), "include_bots": q.bots, "format": format});
            let (st, job) = post_report(&s, &body).await;
            assert_eq!(st, StatusCode::ACCEPTED, "{job}");
            let done = wait_job(&s, job["job_id"].as_str().expect("job_id")).await;
            assert_eq!(done["status"], "succeeded", "{done}");
            let want: Vec<Row> = ["hy-1", "hy-2"].iter().flat_map(|code| reference(code, q)).collect();
            assert_eq!(done["rows"].as_u64(), Some(want.len() as u64), "{done}");
            let (st, file) = get_text(&s, &format!("/v1/jobs/{}/download", done["job_id"].as_str().expect("id"))).await;
            assert_eq!((st, file), (StatusCode::OK, render(format, q.dims, &want)), "report {body}");
        }

        // A combination nobody answers: the same 400 from the export and the report.
        let (st, text) = get_text(&s, "/v1/stats/export?code=hy-1&dimensions=browser,os,country,device").await;
        let export: Value = serde_json::from_str(&text).expect("json error");
        assert_eq!((st, export["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_dimensions")), "{export}");
        let (st, report) = post_report(&s, &json!({"codes": ["hy-1"], "dimensions": "browser,os,country,device"})).await;
        assert_eq!((st, report), (StatusCode::BAD_REQUEST, export));

        // The summary is the views' only: the old range is refused, naming what they hold and
        // the per-link endpoint (no bucket, no claim that ClickHouse is missing).
        let (st, _, v) = s.get("/v1/stats/summary?from=2026-11-28T00:00:00Z&to=2026-11-29T00:00:00Z").await;
        let held = v["error"]["details"]["retained_from"]["hour"].as_str().expect("retained_from.hour").to_string();
        assert!(ms(&held) > ms("2026-11-29T00:00:00Z"), "{v}");
        let want = format!(
            "the summary is computed from the in-memory views only, which hold clicks from {held} on; start the range at or after it; older clicks of one link are answered by GET /v1/links/{{code}}/stats (from ClickHouse)"
        );
        assert_eq!((st, v["error"]["message"].as_str()), (StatusCode::BAD_REQUEST, Some(want.as_str())), "{v}");
        // From what the views hold: the live click only.
        let (st, _, v) = s.get(&format!("/v1/stats/summary?from={held}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!((&v["totals"]["clicks"], &v["links"], &v["top_links"][0]["code"]), (&json!(1), &json!(1), &json!("hy-1")), "{v}");
        s.stop().await;
        ch.drop_database().await;
    }
}
