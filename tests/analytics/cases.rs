//! The real-world cases of `../shared/cases/README.md` that concern stats, through the
//! whole system: redirects or `POST /v1/events` → click log → dataflow → the stats API.
//! Each case runs on its own fresh server (cases inject fixed 2024 event times, and a
//! fresh pipeline measures lateness against the events' own watermark).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{BROWSER_UA, Server, clicks, event, ms, rows, uniques};

async fn fresh() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |_| {}).await;
    (dir, s)
}

fn today() -> String {
    "bucket=day".to_string()
}

/// C01: link-preview fetchers and crawlers get the redirect but are not clicks; bot
/// traffic is reported apart, and never under a human browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c01_link_previews_are_not_clicks() {
    let (_d, s) = fresh().await;
    let code = s.link("c01").await;
    let bots = [
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Twitterbot/1.0",
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        "Discordbot/2.0; +https://discordapp.com",
        "TelegramBot (like TwitterBot)",
        "WhatsApp/2.23.20.0",
        "Mastodon/4.2.0 (http.rb/5.1.1; +https://social-a.example/)",
        "Mastodon/4.2.0 (http.rb/5.1.1; +https://social-b.example/)",
    ];
    for ua in bots {
        assert_eq!(s.click(Method::GET, &code, ua, &[]).await, StatusCode::FOUND, "{ua}");
    }
    assert_eq!(s.click(Method::GET, &code, BROWSER_UA, &[]).await, StatusCode::FOUND);
    s.sync().await;
    let body = s.stats(&code, &today()).await;
    assert_eq!((clicks(&body), uniques(&body)), (1, 1), "{body}");
    assert_eq!(body["totals"]["bot_clicks"].as_u64(), Some(9));
    let body = s.stats(&code, "bucket=day&include_bots=true&dimensions=browser").await;
    assert_eq!(clicks(&body), 10);
    let chrome: u64 =
        body["dimension_totals"].as_array().expect("totals").iter().filter(|t| t["browser"] == "Chrome").map(|t| t["clicks"].as_u64().unwrap_or(0)).sum();
    assert_eq!(chrome, 1, "only the human is under Chrome: {body}");
    let body = s.stats(&code, "bucket=day&include_bots=true&dimensions=device").await;
    let bot_device: u64 =
        body["dimension_totals"].as_array().expect("totals").iter().filter(|t| t["device"] == "bot").map(|t| t["clicks"].as_u64().unwrap_or(0)).sum();
    assert_eq!(bot_device, 9, "{body}");
    s.stop().await;
}

/// C02: HEAD answers like GET and is not a click.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c02_head_requests_are_not_clicks() {
    let (_d, s) = fresh().await;
    let code = s.link("c02").await;
    for _ in 0..3 {
        assert_eq!(s.click(Method::HEAD, &code, BROWSER_UA, &[]).await, StatusCode::FOUND);
    }
    s.sync().await;
    assert_eq!(clicks(&s.stats(&code, &today()).await), 0);
    assert_eq!(s.click(Method::GET, &code, BROWSER_UA, &[]).await, StatusCode::FOUND);
    s.sync().await;
    let body = s.stats(&code, &today()).await;
    assert_eq!((clicks(&body), uniques(&body)), (1, 1));
    s.stop().await;
}

/// C15: ranges are exact instants, half-open, in any offset; day buckets in a zone; the
/// unencoded `+` of a query string is read as `+`, never shifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c15_ranges_and_day_buckets_in_time_zones() {
    let (_d, s) = fresh().await;
    let l = s.link("c15").await;
    let l2 = s.link("c15b").await;
    let ts = ["2024-06-01T03:30:00Z", "2024-06-01T04:30:00Z", "2024-06-02T03:59:59Z", "2024-06-02T04:00:00Z"];
    let evs: Vec<Value> = ts.iter().enumerate().map(|(i, t)| event(&format!("c15-{i}"), &l, ms(t), &format!("192.0.2.{}", 10 + i), BROWSER_UA, None)).collect();
    s.events(&evs, false).await;
    s.events(
        &[
            event("c15-5", &l2, ms("2024-06-01T18:29:59Z"), "192.0.2.50", BROWSER_UA, None),
            event("c15-6", &l2, ms("2024-06-01T18:30:00Z"), "192.0.2.51", BROWSER_UA, None),
        ],
        false,
    )
    .await;
    s.sync().await;
    // 1. New York day, half-open.
    let b = s.stats(&l, "bucket=hour&from=2024-06-01T00:00:00-04:00&to=2024-06-02T00:00:00-04:00").await;
    assert_eq!(clicks(&b), 2, "T2 and T3: {b}");
    // 2. UTC days, labelled with Z.
    let b = s.stats(&l, "bucket=day&from=2024-06-01T00:00:00Z&to=2024-06-03T00:00:00Z").await;
    assert_eq!(rows(&b, "day").iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(), vec![("2024-06-01T00:00:00Z", 2), ("2024-06-02T00:00:00Z", 2)]);
    // 3. New York days.
    let b = s.stats(&l, "tz=America/New_York&bucket=day&from=2024-05-31T00:00:00-04:00&to=2024-06-03T00:00:00-04:00").await;
    assert_eq!(
        rows(&b, "day").iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(),
        vec![("2024-05-31T00:00:00-04:00", 1), ("2024-06-01T00:00:00-04:00", 2), ("2024-06-02T00:00:00-04:00", 1)]
    );
    // 4. Half-hour offset.
    let b = s.stats(&l2, "tz=Asia/Kolkata&bucket=day&from=2024-06-01T00:00:00%2B05:30&to=2024-06-03T00:00:00%2B05:30").await;
    assert_eq!(
        rows(&b, "day").iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(),
        vec![("2024-06-01T00:00:00+05:30", 1), ("2024-06-02T00:00:00+05:30", 1)]
    );
    let b = s.stats(&l2, "from=2024-06-02T00:00:00%2B05:30&to=2024-06-03T00:00:00%2B05:30").await;
    assert_eq!(clicks(&b), 1, "T6 only");
    // 5. The same query with '+' unencoded (decoded to a space): read correctly.
    let b = s.stats(&l2, "from=2024-06-02T00:00:00+05:30&to=2024-06-03T00:00:00+05:30").await;
    assert_eq!(clicks(&b), 1, "unencoded '+': {b}");
    assert_eq!(b["from"].as_str(), Some("2024-06-01T18:30:00Z"));
    s.stop().await;
}

/// C16: DST days have 25 and 23 hours; two distinct 02:00 rows; UTC invariants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c16_dst_days_in_berlin() {
    let (_d, s) = fresh().await;
    let a = s.link("c16a").await;
    let b = s.link("c16b").await;
    let h = 3_600_000;
    let fall = ms("2024-10-26T22:15:00Z");
    let spring = ms("2024-03-30T23:15:00Z");
    // Spring (March) first: event times ascend in the log.
    let evs: Vec<Value> = (0..23).map(|i| event(&format!("c16b-{i}"), &b, spring + i * h, &format!("198.51.100.{i}"), BROWSER_UA, None)).collect();
    s.events(&evs, true).await;
    let evs: Vec<Value> = (0..25).map(|i| event(&format!("c16a-{i}"), &a, fall + i * h, &format!("192.0.2.{i}"), BROWSER_UA, None)).collect();
    s.events(&evs, false).await;
    s.sync().await;
    // A: 25 hours, two 02:00 rows.
    let body = s.stats(&a, "tz=Europe/Berlin&bucket=hour&from=2024-10-27T00:00:00%2B02:00&to=2024-10-28T00:00:00%2B01:00").await;
    let r = rows(&body, "hour");
    assert_eq!(r.len(), 25, "{body}");
    assert!(r.iter().all(|x| x.1 == 1));
    let two: Vec<&str> = r.iter().map(|x| x.0.as_str()).filter(|l| l.starts_with("2024-10-27T02:00:00")).collect();
    assert_eq!(two, vec!["2024-10-27T02:00:00+02:00", "2024-10-27T02:00:00+01:00"]);
    let body = s.stats(&a, "tz=Europe/Berlin&bucket=day&from=2024-10-27T00:00:00%2B02:00&to=2024-10-28T00:00:00%2B01:00").await;
    assert_eq!(rows(&body, "day").iter().map(|x| (x.0.as_str(), x.1)).collect::<Vec<_>>(), vec![("2024-10-27T00:00:00+02:00", 25)]);
    // B: 23 hours, no 02:00 row and no placeholder.
    let body = s.stats(&b, "tz=Europe/Berlin&bucket=hour&from=2024-03-31T00:00:00%2B01:00&to=2024-04-01T00:00:00%2B02:00").await;
    let r = rows(&body, "hour");
    assert_eq!(r.len(), 23);
    assert!(r.iter().all(|x| !x.0.contains("T02:")), "{body}");
    let body = s.stats(&b, "tz=Europe/Berlin&bucket=day&from=2024-03-31T00:00:00%2B01:00&to=2024-04-01T00:00:00%2B02:00").await;
    assert_eq!(clicks(&body), 23);
    // C: UTC hours of 2024-10-27: 23 rows 00:00..22:00 with 1 click, no 23:00 row (no
    // zero-fill), no hour twice; the sum equals the UTC day.
    let body = s.stats(&a, "bucket=hour&from=2024-10-27T00:00:00Z&to=2024-10-28T00:00:00Z").await;
    let r = rows(&body, "hour");
    let want: Vec<String> = (0..23).map(|i| format!("2024-10-27T{i:02}:00:00Z")).collect();
    assert_eq!(r.iter().map(|x| x.0.clone()).collect::<Vec<_>>(), want);
    assert!(r.iter().all(|x| x.1 == 1));
    let day = s.stats(&a, "bucket=day&from=2024-10-27T00:00:00Z&to=2024-10-28T00:00:00Z").await;
    assert_eq!(rows(&day, "day"), vec![("2024-10-27T00:00:00Z".to_string(), 23, 23)]);
    s.stop().await;
}

/// C17: uniques over a range or across dimension values are a union, never a sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c17_uniques_are_unions() {
    let (_d, s) = fresh().await;
    let l = s.link("c17").await;
    let a = Some("https://a.example/");
    let evs = vec![
        event("c17-1", &l, ms("2024-07-01T12:00:00Z"), "192.0.2.10", BROWSER_UA, a),
        event("c17-2", &l, ms("2024-07-01T12:00:00Z"), "192.0.2.20", BROWSER_UA, a),
        event("c17-3", &l, ms("2024-07-02T12:00:00Z"), "192.0.2.10", BROWSER_UA, a),
        event("c17-4", &l, ms("2024-07-02T13:00:00Z"), "192.0.2.10", BROWSER_UA, Some("https://b.example/")),
        event("c17-5", &l, ms("2024-07-03T12:00:00Z"), "192.0.2.10", BROWSER_UA, a),
    ];
    s.events(&evs, false).await;
    s.sync().await;
    let range = "from=2024-07-01T00:00:00Z&to=2024-07-04T00:00:00Z";
    // The visitor salt rotates daily (salt-period 1d), so V1 is one visitor per day.
    let body = s.stats(&l, &format!("bucket=day&{range}")).await;
    assert_eq!(rows(&body, "day"), vec![("2024-07-01T00:00:00Z".into(), 2, 2), ("2024-07-02T00:00:00Z".into(), 2, 1), ("2024-07-03T00:00:00Z".into(), 1, 1)]);
    assert_eq!(clicks(&body), 5);
    assert_eq!(uniques(&body), 4, "per-day salts: V1 counts once per day (documented), never 5 or a sum of 4 rows");
    let body = s.stats(&l, &format!("bucket=day&{range}&dimensions=referrer_domain")).await;
    let t: Vec<(String, u64, u64)> = body["dimension_totals"]
        .as_array()
        .expect("totals")
        .iter()
        .map(|d| (d["referrer_domain"].as_str().unwrap_or("").to_string(), d["clicks"].as_u64().unwrap_or(0), d["uniques"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(t, vec![("a.example".into(), 4, 4), ("b.example".into(), 1, 1)]);
    assert_eq!(uniques(&body), 4, "overall uniques stay the union");
    s.stop().await;
}

/// C17 with a salt that never rotates: the exact numbers of the case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c17_with_a_fixed_salt_counts_each_visitor_once_over_the_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |c| c.visitor.salt_period = sluice::config::SaltPeriod::Never).await;
    let l = s.link("c17n").await;
    let a = Some("https://a.example/");
    let evs = vec![
        event("c17-1", &l, ms("2024-07-01T12:00:00Z"), "192.0.2.10", BROWSER_UA, a),
        event("c17-2", &l, ms("2024-07-01T12:00:00Z"), "192.0.2.20", BROWSER_UA, a),
        event("c17-3", &l, ms("2024-07-02T12:00:00Z"), "192.0.2.10", BROWSER_UA, a),
        event("c17-4", &l, ms("2024-07-02T13:00:00Z"), "192.0.2.10", BROWSER_UA, Some("https://b.example/")),
        event("c17-5", &l, ms("2024-07-03T12:00:00Z"), "192.0.2.10", BROWSER_UA, a),
    ];
    s.events(&evs, false).await;
    s.sync().await;
    let range = "from=2024-07-01T00:00:00Z&to=2024-07-04T00:00:00Z";
    let body = s.stats(&l, &format!("bucket=day&{range}")).await;
    assert_eq!((clicks(&body), uniques(&body)), (5, 2), "not 4");
    let body = s.stats(&l, &format!("bucket=day&{range}&dimensions=referrer_domain")).await;
    let t: Vec<(String, u64, u64)> = body["dimension_totals"]
        .as_array()
        .expect("totals")
        .iter()
        .map(|d| (d["referrer_domain"].as_str().unwrap_or("").to_string(), d["clicks"].as_u64().unwrap_or(0), d["uniques"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(t, vec![("a.example".into(), 4, 2), ("b.example".into(), 1, 1)]);
    assert_eq!(uniques(&body), 2, "not 3");
    s.stop().await;
}

/// C19 (1–4): duplicates by event id count once, first copy wins, a payload match alone
/// does not dedup. (Part 5, the restart, is in `process.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c19_duplicates_count_once() {
    let (_d, s) = fresh().await;
    let l = s.link("c19").await;
    let now = crate::harness::now_ms();
    let e = event("c19-0001", &l, now, "192.0.2.30", BROWSER_UA, None);
    s.events(&[e.clone(), e.clone(), e.clone()], false).await;
    s.sync().await;
    let b = s.stats(&l, &today()).await;
    assert_eq!((clicks(&b), uniques(&b)), (1, 1));
    for _ in 0..3 {
        s.events(std::slice::from_ref(&e), false).await;
    }
    let other = event("c19-0001", &l, now, "192.0.2.30", "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", Some("https://x.example/"));
    s.events(&[other], false).await;
    s.sync().await;
    let b = s.stats(&l, "bucket=day&dimensions=browser").await;
    assert_eq!(clicks(&b), 1);
    let t = b["dimension_totals"].as_array().expect("totals");
    assert_eq!(t.len(), 1, "no double entry in any dimension: {b}");
    assert_eq!(t[0]["browser"].as_str(), Some("Chrome"), "first copy wins");
    s.events(&[event("c19-0002", &l, now, "192.0.2.30", BROWSER_UA, None)], false).await;
    s.sync().await;
    assert_eq!(clicks(&s.stats(&l, &today()).await), 2);
    s.stop().await;
}

/// C21: with no further traffic, the minute holding the last click becomes complete (an
/// idle log does not hold it back until the next event), the watermark keeps advancing
/// while the log is idle, and after the silence a click on another link appears without
/// re-emitting anything. Polls with 30 s deadlines: how fast is the freshness benchmark's
/// business (BENCHMARKS.md), not this test's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c21_a_quiet_log_does_not_hold_results_back() {
    let (_d, s) = fresh().await;
    let a = s.link("c21a").await;
    let b = s.link("c21b").await;
    let _c = s.link("c21c").await;
    let visible_within = |code: String, want: u64, limit: std::time::Duration| {
        let s = &s;
        async move {
            let t0 = std::time::Instant::now();
            loop {
                let body = s.stats(&code, "bucket=minute").await;
                if clicks(&body) == want {
                    return body;
                }
                assert!(t0.elapsed() < limit, "{code}: {want} clicks not visible within {limit:?} without further traffic: {body}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(s.click(Method::GET, &a, BROWSER_UA, &[]).await, StatusCode::FOUND);
    let a_rows = rows(&visible_within(a.clone(), 1, std::time::Duration::from_secs(30)).await, "minute");
    let w = |b: &Value| b["freshness"]["watermark"].as_str().map(ms).expect("watermark");
    let w1 = w(&s.stats(&a, "bucket=minute").await);
    // Idle timeout is 5 s: afterwards the watermark follows the processing clock.
    let t0 = std::time::Instant::now();
    loop {
        let body = s.stats(&a, "bucket=minute").await;
        if w(&body) > w1 + 500 {
            break;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "the watermark advances while idle: stuck at {}", w(&body));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // After the silence, one click on B appears; A's rows are unchanged.
    assert_eq!(s.click(Method::GET, &b, BROWSER_UA, &[]).await, StatusCode::FOUND);
    visible_within(b.clone(), 1, std::time::Duration::from_secs(30)).await;
    assert_eq!(rows(&s.stats(&a, "bucket=minute").await, "minute"), a_rows, "nothing re-emitted or double-counted");
    s.stop().await;
}

/// C13 through the pipeline: clicks before the deadline count, the requests after it (410,
/// GET and HEAD) add nothing; an unknown code adds nothing to any link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c13_expired_links_add_no_clicks() {
    let (_d, s) = fresh().await;
    // 10 s ahead: creating the link and three clicks must land before the deadline even on a
    // loaded machine.
    let expires = crate::harness::now_ms() + 10_000;
    let expires_text = chrono::DateTime::from_timestamp_millis(expires).expect("instant").to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let r = s
        .http
        .post(s.path("/v1/links"))
        .json(&serde_json::json!({"long_url": "https://example.com/c13", "custom_alias": "c13", "expires_at": expires_text}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::CREATED);
    for _ in 0..3 {
        assert_eq!(s.click(Method::GET, "c13", BROWSER_UA, &[]).await, StatusCode::FOUND);
    }
    while crate::harness::now_ms() <= expires + 20 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(s.click(Method::GET, "c13", BROWSER_UA, &[]).await, StatusCode::GONE);
    assert_eq!(s.click(Method::HEAD, "c13", BROWSER_UA, &[]).await, StatusCode::GONE);
    assert_eq!(s.click(Method::GET, "never-existed-c13", BROWSER_UA, &[]).await, StatusCode::NOT_FOUND);
    s.sync().await;
    let body = s.stats("c13", &today()).await;
    assert_eq!((clicks(&body), uniques(&body)), (3, 1), "{body}");
    assert_eq!(body["totals"]["bot_clicks"].as_u64(), Some(0));
    let summary = s.get("/v1/stats/summary").await.2;
    assert_eq!(summary["totals"]["clicks"].as_u64(), Some(3), "{summary}");
    s.stop().await;
}

/// C22: messy referrers never cost the click and land in sensible rows; the service's own
/// host is not a referrer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c22_referrers_through_real_redirects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |c| c.server.base_url = Some("https://sho.rt.example".into())).await;
    let l = s.link("c22").await;
    let long = format!("https://m.search.example/s?q={}", "a".repeat(3000));
    let own = format!("https://sho.rt.example/{l}");
    let referrers: Vec<Option<&str>> =
        vec![None, Some(""), Some("https:/"), Some(&long), Some("https://WWW.Example.COM:8443/path?x=1"), Some("android-app://com.example.app/"), Some(&own)];
    for r in &referrers {
        let headers: Vec<(&str, &str)> = r.iter().map(|v| ("referer", *v)).collect();
        assert_eq!(s.click(Method::GET, &l, BROWSER_UA, &headers).await, StatusCode::FOUND, "{r:?}");
    }
    s.events(
        &[
            event("c22-e1", &l, crate::harness::now_ms(), "192.0.2.1", BROWSER_UA, Some("https://m.social.example\r")),
            event("c22-e2", &l, crate::harness::now_ms(), "192.0.2.2", BROWSER_UA, Some(" https://m.social.example/ ")),
        ],
        false,
    )
    .await;
    s.sync().await;
    let b = s.stats(&l, "bucket=day&dimensions=referrer_domain").await;
    assert_eq!(clicks(&b), 9);
    let got: std::collections::BTreeMap<String, u64> = b["dimension_totals"]
        .as_array()
        .expect("totals")
        .iter()
        .map(|d| (d["referrer_domain"].as_str().unwrap_or("").to_string(), d["clicks"].as_u64().unwrap_or(0)))
        .collect();
    assert!(!got.contains_key("sho.rt.example") && !got.contains_key("rt.example"), "own host is not a referrer: {got:?}");
    // The documented policy (README "Policies"): no, empty and own-host referrers are
    // (direct); `https:/` (no host) is (invalid); app referrers keep their package name.
    let want: std::collections::BTreeMap<String, u64> =
        [("(direct)", 3), ("(invalid)", 1), ("com.example.app", 1), ("m.search.example", 1), ("m.social.example", 2), ("www.example.com", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    assert_eq!(got, want);
    s.stop().await;
}

/// C23: IPv6 clients through a trusted proxy: every textual form of one address is one
/// visitor, IPv4-mapped equals IPv4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c23_ipv6_visitors_through_a_trusted_proxy() {
    let (_d, s) = fresh().await;
    let l = s.link("c23").await;
    for xff in ["2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0001", "::ffff:192.0.2.10", "192.0.2.10", "[2001:db8::1]:51234"] {
        assert_eq!(s.click(Method::GET, &l, BROWSER_UA, &[("x-forwarded-for", xff)]).await, StatusCode::FOUND, "{xff}");
    }
    s.sync().await;
    let b = s.stats(&l, "bucket=day&dimensions=country").await;
    assert_eq!((clicks(&b), uniques(&b)), (5, 2), "{b}");
    let countries: Vec<&str> = b["dimension_totals"].as_array().expect("totals").iter().filter_map(|d| d["country"].as_str()).collect();
    assert_eq!(countries, vec!["ZZ"], "documentation ranges are unknown");
    s.stop().await;
}
