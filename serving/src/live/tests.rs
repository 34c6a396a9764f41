//! The live stream over the real dataflow: connect, inject clicks, read ticks with the exact
//! counts; keep-alives; disconnect closes the stream; errors before the stream.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use sluice_dataflows::clock::{Clock, SystemClock};
use tower::ServiceExt;

use super::LiveConfig;
use crate::reports::test_harness::*;
use crate::reports::{ReportsState, routes};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// One parsed server-sent event: (event name, data) or a comment.
#[derive(Debug, Clone, PartialEq)]
enum Sse {
    Event(String, serde_json::Value),
    Comment(String),
}

/// Reads a streaming SSE body incrementally.
struct Reader {
    body: Body,
    buf: String,
}

impl Reader {
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data, mut comment) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("json data"));
                    } else if let Some(v) = line.strip_prefix(':') {
                        comment = Some(v.trim().to_owned());
                    }
                }
                return match (name, data, comment) {
                    (Some(n), Some(d), _) => Sse::Event(n, d),
                    (_, _, Some(c)) => Sse::Comment(c),
                    other => panic!("unexpected sse block {block:?}: {other:?}"),
                };
            }
            let frame =
                tokio::time::timeout(Duration::from_secs(30), self.body.frame()).await.expect("an sse frame within 10 s").expect("stream open").expect("frame");
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&data).expect("utf-8"));
            }
        }
    }

    async fn tick(&mut self) -> serde_json::Value {
        loop {
            if let Sse::Event(name, data) = self.next().await {
                assert_eq!(name, "tick");
                return data;
            }
        }
    }
}

async fn connect(state: &ReportsState, uri: &str) -> Reader {
    let req = Request::builder().uri(uri).body(Body::empty()).expect("request");
    let resp = crate::with_fallbacks(routes(state.clone())).oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    Reader { body: resp.into_body(), buf: String::new() }
}

async fn live_harness(dir: &std::path::Path, live: LiveConfig) -> Harness {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut h = Harness::pipeline(&["ab", "cd"], Arc::clone(&clock), clock).await;
    h.state = Some(h.reports(dir, Default::default()).with_live_config(live));
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_carry_the_exact_counts_of_the_current_minute() {
    // Stay clear of a minute boundary: the clicks and the ticks must share their minute.
    let in_minute = SystemClock.now_ms().rem_euclid(60_000);
    if in_minute > 40_000 {
        tokio::time::sleep(Duration::from_millis((61_000 - in_minute) as u64)).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let h = live_harness(dir.path(), LiveConfig::default()).await;
    let state = h.state();
    let mut humans = connect(state, "/v1/links/ab/stats/live").await;
    let mut all = connect(state, "/v1/links/ab/stats/live?include_bots=true").await;
    assert_eq!(state.open_live_streams(), 2);
    let first = humans.tick().await;
    assert_eq!((first["second_clicks"].as_u64(), first["minute_clicks"].as_u64(), first["minute_uniques"].as_u64()), (Some(0), Some(0), Some(0)));
    let ts = first["ts"].as_str().expect("ts");
    assert!(ts.ends_with('Z') && ts.len() == 20, "{ts}");
    all.tick().await;

    // Three human clicks by two visitors, one bot click, one click of another link.
    let now = SystemClock.now_ms();
    h.ingest(vec![
        click(1, "ab", now, 1, CHROME, Some("81.2.69.0"), None),
        click(2, "ab", now, 2, CHROME, Some("8.8.8.0"), None),
        click(3, "ab", now, 1, CHROME, Some("81.2.69.0"), None),
        click(4, "ab", now, 3, GOOGLEBOT, Some("8.8.8.0"), None),
        click(5, "cd", now, 4, CHROME, Some("8.8.8.0"), None),
    ]);
    let (mut sum, mut last_ts) = (0, ms(ts));
    let tick = loop {
        let t = humans.tick().await;
        let t_ms = ms(t["ts"].as_str().expect("ts"));
        // Ticks fall on whole seconds (several apart only if this reader was slow).
        assert!(t_ms > last_ts && (t_ms - last_ts) % 1000 == 0, "{t} after {last_ts}");
        last_ts = t_ms;
        sum += t["second_clicks"].as_u64().expect("second_clicks");
        if t["minute_clicks"] == 3 {
            break t;
        }
        assert_eq!(t["minute_clicks"], 0, "clicks become visible together: {t}");
    };
    assert_eq!((tick["minute_uniques"].as_u64(), sum), (Some(2), 3));
    // The next tick: nothing new in that second.
    let next = humans.tick().await;
    assert_eq!((next["second_clicks"].as_u64(), next["minute_clicks"].as_u64(), next["minute_uniques"].as_u64()), (Some(0), Some(3), Some(2)));
    // With bots: four clicks by three visitors.
    let with_bots = loop {
        let t = all.tick().await;
        if t["minute_clicks"] != 0 {
            break t;
        }
    };
    assert_eq!((with_bots["second_clicks"].as_u64(), with_bots["minute_clicks"].as_u64(), with_bots["minute_uniques"].as_u64()), (Some(4), Some(4), Some(3)));

    // Disconnecting ends the streams.
    drop(humans);
    wait_until(Duration::from_secs(30), "one stream to close", || async { (state.open_live_streams() == 1).then_some(()) }).await;
    drop(all);
    wait_until(Duration::from_secs(30), "all streams to close", || async { (state.open_live_streams() == 0).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_comments_between_ticks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = live_harness(dir.path(), LiveConfig { tick: Duration::from_secs(3600), keep_alive: Duration::from_millis(100) }).await;
    let mut r = connect(h.state(), "/v1/links/cd/stats/live").await;
    assert!(matches!(r.next().await, Sse::Event(name, _) if name == "tick"));
    assert_eq!(r.next().await, Sse::Comment("keep-alive".into()));
    assert_eq!(r.next().await, Sse::Comment("keep-alive".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_before_the_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = live_harness(dir.path(), LiveConfig::default()).await;
    for (uri, status, code) in [
        ("/v1/links/nope/stats/live", StatusCode::NOT_FOUND, "not_found"),
        ("/v1/links/bad%20code/stats/live", StatusCode::NOT_FOUND, "not_found"),
        ("/v1/links/ab/stats/live?include_bots=sometimes", StatusCode::BAD_REQUEST, "invalid_parameter"),
        ("/v1/links/ab/stats/live?include_bots=1&include_bots=0", StatusCode::BAD_REQUEST, "duplicate_parameter"),
        ("/v1/links/ab/stats/live?window=5m", StatusCode::BAD_REQUEST, "unknown_parameter"),
    ] {
        let (st, headers, body) = h.send("GET", uri, None).await;
        assert_eq!((st, error_code(&body).as_str()), (status, code), "{uri}");
        assert_eq!(headers["content-type"], "application/json");
    }
    assert_eq!(h.state().open_live_streams(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_of_a_deleted_link_ends_with_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = live_harness(dir.path(), LiveConfig { tick: Duration::from_millis(20), keep_alive: Duration::from_secs(3600) }).await;
    let mut r = connect(h.state(), "/v1/links/ab/stats/live").await;
    let mut other = connect(h.state(), "/v1/links/cd/stats/live").await;
    // More ticks than one link check: the link exists, the stream goes on.
    for _ in 0..super::LINK_CHECK_TICKS + 2 {
        r.tick().await;
    }
    h.store.delete("ab", None, chrono::Utc::now()).await.expect("deleted");
    // Within the next link check (plus a tick of slack), the stream says so and ends.
    let mut end = None;
    for _ in 0..=super::LINK_CHECK_TICKS {
        match r.next().await {
            Sse::Event(name, data) if name == "error" => {
                end = Some(data);
                break;
            }
            Sse::Event(name, _) => assert_eq!(name, "tick"),
            Sse::Comment(c) => panic!("unexpected comment {c}"),
        }
    }
    let end = end.expect("an error event within one link check of the delete");
    assert_eq!(end["error"]["code"], "not_found", "{end}");
    // The body ends after the error event.
    let rest = tokio::time::timeout(Duration::from_secs(10), r.body.frame()).await.expect("the stream ends");
    assert!(rest.is_none(), "{rest:?}");
    drop(r);
    // The other link's stream is not affected.
    for _ in 0..super::LINK_CHECK_TICKS + 2 {
        other.tick().await;
    }
    wait_until(Duration::from_secs(10), "the ended stream to be released", || async { (h.state().open_live_streams() == 1).then_some(()) }).await;
}
