//! The intake gate: unknown codes and (live) events older than the allowed lateness are
//! rejected per event at intake; backfill bypasses lateness, not the code check.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};

use super::*;
use crate::http::gate::{IntakeGate, KnownCodes};

/// Links "ab" and "cd" exist; the oldest counted event time is settable (`i64::MIN` =
/// none yet); `fail` makes the store unreadable.
struct FakeGate {
    oldest: AtomicI64,
    /// The oldest backfill event time (`i64::MIN` = unknown, no check).
    oldest_backfill: i64,
    /// [`IntakeGate::lateness_limit_ms`] for (live, backfill); `None`: no in-request check.
    limits: Option<(i64, i64)>,
    fail: bool,
    /// [`IntakeGate::record_accepted`]'s arguments, in order.
    recorded: std::sync::Mutex<Vec<i64>>,
    /// [`IntakeGate::in_flight_margin_ms`].
    margin: i64,
}

impl FakeGate {
    fn new(oldest: i64, oldest_backfill: i64, limits: Option<(i64, i64)>, fail: bool) -> Self {
        FakeGate { oldest: AtomicI64::new(oldest), oldest_backfill, limits, fail, recorded: std::sync::Mutex::new(Vec::new()), margin: 0 }
    }

    fn recorded(&self) -> Vec<i64> {
        self.recorded.lock().expect("lock").clone()
    }
}

impl IntakeGate for FakeGate {
    fn known_codes<'a>(&'a self, codes: &'a BTreeSet<String>) -> KnownCodes<'a> {
        Box::pin(async move {
            if self.fail {
                return Err("connection refused".to_string());
            }
            Ok(codes.iter().filter(|c| ["ab", "cd"].contains(&c.as_str())).cloned().collect())
        })
    }

    fn oldest_live_ts_ms(&self) -> Option<i64> {
        Some(self.oldest.load(Ordering::Relaxed)).filter(|&o| o != i64::MIN)
    }

    fn oldest_backfill_ts_ms(&self) -> Option<i64> {
        Some(self.oldest_backfill).filter(|&o| o != i64::MIN)
    }

    fn lateness_limit_ms(&self, backfill: bool) -> Option<i64> {
        self.limits.map(|(live, long)| if backfill { long } else { live })
    }

    fn newest_accepted_ms(&self) -> Option<i64> {
        self.recorded().into_iter().max()
    }

    fn record_accepted(&self, ts_ms: i64) {
        self.recorded.lock().expect("lock").push(ts_ms);
    }

    fn in_flight_margin_ms(&self) -> i64 {
        self.margin
    }
}

fn gated(oldest: i64, fail: bool) -> Fixture {
    gated_with_backfill(oldest, i64::MIN, fail)
}

fn gated_with_backfill(oldest: i64, oldest_backfill: i64, fail: bool) -> Fixture {
    gated_with(Arc::new(FakeGate::new(oldest, oldest_backfill, None, fail)))
}

fn gated_with(gate: Arc<FakeGate>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = ClickLog::open(dir.path()).expect("open log");
    let state = EventsState::new(DurableAppender::new(log.clone()), salt(), EventsConfig::default()).with_clock(Arc::new(|| NOW)).with_gate(gate);
    Fixture { log, router: events_router(state), _dir: dir }
}

fn ids(log: &ClickLog) -> Vec<Uuid> {
    log.read_entries(0, 100).expect("read").into_iter().map(|e| e.event.event_id).collect()
}

fn at(id: &str, code: &str, ts: i64) -> Value {
    json!({"event_id": id, "code": code, "ts": ts, "ip": "192.0.2.30", "user_agent": UA})
}

fn reasons(r: &Resp) -> Vec<(u64, String)> {
    r.body["rejected"]
        .as_array()
        .or_else(|| r.body["error"]["details"]["rejected"].as_array())
        .expect("rejected list")
        .iter()
        .map(|x| (x["index"].as_u64().expect("index"), x["reason"].as_str().expect("reason").to_owned()))
        .collect()
}

#[tokio::test]
async fn unknown_codes_and_too_late_events_are_rejected_per_event() {
    let oldest = NOW - 3_600_000;
    let f = gated(oldest, false);
    let body = json!([
        at("e0", "ab", NOW - 60_000),
        at("e1", "nope", NOW - 60_000),
        at("e2", "cd", oldest - 1),
        at("e3", "cd", oldest),
        at("e4", "ab", NOW + 3_600_000),
        at("e5", "zz", oldest - 1),
    ]);
    let r = post_json(&f.router, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["accepted"], 2);
    assert_eq!(reasons(&r), vec![(1, "unknown_code".into()), (2, "too_late".into()), (4, "ts_in_future".into()), (5, "unknown_code".into())]);
    let msg = r.body["rejected"][1]["message"].as_str().expect("message");
    assert!(msg.contains("2024-12-31T23:00:00.000Z") && msg.contains("backfill"), "{msg}");
    assert_eq!(ids(&f.log), vec![event_uuid("e0"), event_uuid("e3")]);
}

/// The dataflow reads a request's events in body order, each raising the partition's
/// watermark: an event more than the lateness behind one accepted before it in the same
/// request would be dead-lettered, so the intake refuses it — also before the views have a
/// watermark. Refused events raise nothing. Backfill uses its own (longer) limit.
#[tokio::test]
async fn events_too_late_behind_an_earlier_event_of_the_same_request_are_refused() {
    const H: i64 = 3_600_000;
    let f = gated_with(Arc::new(FakeGate::new(i64::MIN, i64::MIN, Some((48 * H, 400 * 24 * H)), false)));
    let body = json!([
        at("u0", "nope", NOW),        // unknown: refused, raises nothing
        at("a0", "ab", NOW - 50 * H), // first accepted: nothing before it
        at("a1", "cd", NOW - 2 * H),  // raises the request's watermark to NOW - 2 h
        at("late", "ab", NOW - 50 * H - 1),
        at("edge", "ab", NOW - 50 * H), // exactly the limit behind: counted
        at("a2", "cd", NOW - H),
        at("late2", "cd", NOW - 49 * H - 1),
    ]);
    let r = post_json(&f.router, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(reasons(&r), vec![(0, "unknown_code".into()), (3, "too_late".into()), (6, "too_late".into())]);
    assert_eq!(ids(&f.log), vec![event_uuid("a0"), event_uuid("a1"), event_uuid("edge"), event_uuid("a2")]);
    // Backfill: the long retention is the limit.
    let body = json!([at("b0", "ab", NOW), at("b1", "ab", NOW - 399 * 24 * H), at("b2", "ab", NOW - 400 * 24 * H - 1)]);
    let r = send(&f.router, &format!("{EVENTS_PATH}?backfill=true"), loopback(), &[("content-type", "application/json")], body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(reasons(&r), vec![(2, "too_late".into())]);
}

/// Finding (QA): a request right after one that stored an event of now was checked only
/// against the views' watermark, which had not moved yet: an event 401 days old (backfill)
/// was accepted, then dead-lettered. The gate's newest stored event time bounds the next
/// requests (live and backfill events raise it alike); only stored events raise it.
#[tokio::test]
async fn events_too_late_behind_an_event_of_an_earlier_request_are_refused() {
    const H: i64 = 3_600_000;
    let gate = Arc::new(FakeGate::new(i64::MIN, i64::MIN, Some((48 * H, 400 * 24 * H)), false));
    let f = gated_with(gate.clone());
    let post = |backfill: bool, body: Value| {
        let uri = if backfill { format!("{EVENTS_PATH}?backfill=true") } else { EVENTS_PATH.to_owned() };
        let router = &f.router;
        async move { send(router, &uri, loopback(), &[("content-type", "application/json")], body.to_string()).await }
    };
    let r = post(true, json!([at("now", "ab", NOW - H), at("x", "nope", NOW)])).await;
    assert_eq!((r.status, &r.body["accepted"]), (StatusCode::OK, &json!(1)), "{}", r.body);
    assert_eq!(gate.recorded(), vec![NOW - H], "the stored event's time, not the refused one's");
    let r = post(true, json!([at("old", "ab", NOW - H - 400 * 24 * H - 1)])).await;
    assert_error(&r, 400, "all_events_rejected");
    assert_eq!(reasons(&r), vec![(0, "too_late".into())]);
    assert_eq!(gate.recorded(), vec![NOW - H], "nothing stored, nothing recorded");
    // Live, against the backfill event's time: exactly the lateness behind is counted.
    let r = post(false, json!([at("late", "ab", NOW - 49 * H - 1), at("edge", "cd", NOW - 49 * H)])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(reasons(&r), vec![(0, "too_late".into())]);
    assert_eq!(gate.recorded(), vec![NOW - H, NOW - 49 * H]);
    assert_eq!(ids(&f.log), vec![event_uuid("now"), event_uuid("edge")]);
}

#[tokio::test]
async fn events_the_log_failed_to_store_raise_no_accepted_time() {
    let gate = Arc::new(FakeGate::new(i64::MIN, i64::MIN, Some((1, 1)), false));
    let state = EventsState::new(DurableAppender::new(BrokenLog), salt(), EventsConfig::default()).with_clock(Arc::new(|| NOW)).with_gate(gate.clone());
    let r = post_json(&events_router(state), &json!([at("a", "ab", NOW)])).await;
    assert_error(&r, 503, "log_unavailable");
    assert_eq!(gate.recorded(), Vec::<i64>::new());
}

#[tokio::test]
async fn backfill_bypasses_lateness_but_not_the_code_check() {
    let f = gated(NOW - 3_600_000, false);
    let body = json!([at("old", "ab", NOW - 400 * 86_400_000), at("unknown", "nope", NOW - 400 * 86_400_000)]);
    let r = send(&f.router, &format!("{EVENTS_PATH}?backfill=true"), loopback(), &[("content-type", "application/json")], body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["accepted"], 1);
    assert_eq!(reasons(&r), vec![(1, "unknown_code".into())]);
    assert_eq!(ids(&f.log), vec![event_uuid("old")]);
    assert_eq!(logged(&f.log), vec![("ab".to_string(), true)]);
}

#[tokio::test]
async fn backfill_older_than_the_longest_retention_is_too_late() {
    let oldest_backfill = NOW - 400 * 86_400_000;
    let f = gated_with_backfill(NOW - 3_600_000, oldest_backfill, false);
    let body = json!([at("kept", "ab", oldest_backfill), at("gone", "ab", oldest_backfill - 1), at("older", "cd", 0)]);
    let r = send(&f.router, &format!("{EVENTS_PATH}?backfill=true"), loopback(), &[("content-type", "application/json")], body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["accepted"], 1);
    assert_eq!(reasons(&r), vec![(1, "too_late".into()), (2, "too_late".into())]);
    assert_eq!(
        r.body["rejected"][0]["message"],
        format!(
            "\"ts\" {} is older than the longest retention ([dataflow] long-retention): the oldest event time any view keeps is {} ({oldest_backfill} ms)",
            rfc3339(oldest_backfill - 1),
            rfc3339(oldest_backfill)
        )
    );
    assert_eq!(ids(&f.log), vec![event_uuid("kept")]);
    assert_eq!(logged(&f.log), vec![("ab".to_string(), true)]);
}

#[tokio::test]
async fn all_rejected_by_the_gate_is_400_and_nothing_is_stored() {
    let f = gated(NOW - 3_600_000, false);
    let ndjson = format!("{}\n\n{}\n", at("a", "nope", NOW), at("b", "ab", NOW - 7_200_000));
    let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", "application/x-ndjson")], ndjson).await;
    assert_error(&r, 400, "all_events_rejected");
    assert_eq!(reasons(&r), vec![(0, "unknown_code".into()), (1, "too_late".into())]);
    assert_eq!(r.body["error"]["details"]["rejected"][1]["line"], 3);
    assert!(logged(&f.log).is_empty());
}

#[tokio::test]
async fn no_watermark_yet_means_no_lateness_check_and_an_unreadable_store_is_503() {
    let f = gated(i64::MIN, false);
    let r = post_json(&f.router, &json!([at("x", "ab", 0)])).await;
    assert_eq!((r.status, &r.body["accepted"]), (StatusCode::OK, &json!(1)), "{}", r.body);

    let f = gated(i64::MIN, true);
    let r = post_json(&f.router, &json!([at("y", "ab", NOW)])).await;
    assert_error(&r, 503, "store_unavailable");
    assert!(logged(&f.log).is_empty());
}

#[tokio::test]
async fn duplicate_keys_are_refused_never_last_wins() {
    let f = fixture(EventsConfig::default());
    let body = format!(r#"[{{"event_id": "d1", "code": "ab", "ts": {}, "ts": {}, "ip": "192.0.2.30", "user_agent": "x"}}]"#, NOW - 60_000, NOW);
    let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", "application/json")], body).await;
    assert_error(&r, 400, "duplicate_key");
    assert_eq!(r.body["error"]["details"]["key"], "ts");
    assert!(logged(&f.log).is_empty());
    // NDJSON: only the line with the repeat is rejected.
    let ndjson = format!(
        "{}\n{{\"event_id\": \"d2\", \"code\": \"ab\", \"code\": \"cd\", \"ts\": {NOW}, \"ip\": \"192.0.2.30\", \"user_agent\": \"x\"}}\n",
        at("d1", "ab", NOW)
    );
    let r = send(&f.router, EVENTS_PATH, loopback(), &[("content-type", "application/x-ndjson")], ndjson).await;
    assert_eq!((r.status, &r.body["accepted"]), (StatusCode::OK, &json!(1)), "{}", r.body);
    assert_eq!(reasons(&r), vec![(1, "duplicate_key".into())]);
    assert_eq!(r.body["rejected"][0]["line"], 2);
}

const HOUR: i64 = 3_600_000;
const LIMITS: Option<(i64, i64)> = Some((48 * HOUR, 400 * 24 * HOUR));

/// One client's clock 4 min 50 s fast (inside the 5 min future skew) moves the lateness
/// cut only to the server's clock, as it moves the dataflow's watermark (attack of session
/// 44: the cut followed the fast clock, refusing events 47 h 56 m behind the real time for
/// five minutes): within one request and for the requests after it.
#[tokio::test]
async fn an_event_ahead_of_the_clock_counts_as_stamped_now_for_the_events_after_it() {
    let gate = Arc::new(FakeGate::new(i64::MIN, i64::MIN, LIMITS, false));
    let f = gated_with(Arc::clone(&gate));
    let (fast, old) = (NOW + 290_000, NOW - 47 * HOUR - 57 * 60_000);
    let r = post_json(&f.router, &json!([at("f1", "ab", fast), at("o1", "ab", old)])).await;
    assert_eq!((r.status, &r.body["accepted"]), (StatusCode::OK, &json!(2)), "{}", r.body);
    assert_eq!(gate.recorded(), vec![NOW], "recorded at the clock, not at {fast}");
    let r = post_json(&f.router, &json!([at("o2", "ab", old), at("o3", "ab", NOW - 48 * HOUR)])).await;
    assert_eq!((r.status, &r.body["accepted"]), (StatusCode::OK, &json!(2)), "{}", r.body);
    // One ms further behind the clock than the limit is still too late.
    let r = post_json(&f.router, &json!([at("o4", "ab", NOW - 48 * HOUR - 1)])).await;
    assert_error(&r, 400, "all_events_rejected");
    assert_eq!(ids(&f.log), ["f1", "o1", "o2", "o3"].map(event_uuid).to_vec());
}

/// Requests in flight together (half at the clock, half 5 days behind) are stored in the
/// order they were checked in: reading the log in order, as the dataflow does, no accepted
/// event trails one stored before it by more than the limit, so none would be
/// dead-lettered (attack of session 44: 8 accepted, 2 to 4 dead-lettered; the checks ran
/// before either request stored). Every accepted event is stored, every other refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_store_in_the_order_they_were_checked_in() {
    for round in 0..20 {
        let gate = Arc::new(FakeGate::new(i64::MIN, i64::MIN, LIMITS, false));
        let f = gated_with(Arc::clone(&gate));
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let (router, barrier) = (f.router.clone(), Arc::clone(&barrier));
                let ts = if i % 2 == 0 { NOW } else { NOW - 5 * 24 * HOUR };
                tokio::spawn(async move {
                    barrier.wait().await;
                    post_json(&router, &json!([at(&format!("r{round}-{i}"), "ab", ts)])).await
                })
            })
            .collect();
        let mut accepted = 0;
        for t in tasks {
            let r = t.await.expect("task");
            assert!(r.status == StatusCode::OK || r.body["error"]["code"] == "all_events_rejected", "{}", r.body);
            accepted += r.body["accepted"].as_u64().unwrap_or(0);
        }
        let stored = f.log.read_entries(0, 100).expect("read");
        assert_eq!(stored.len() as u64, accepted, "round {round}");
        let mut newest = i64::MIN;
        for e in &stored {
            assert!(e.event.ts >= newest.saturating_sub(48 * HOUR), "round {round}: an accepted event would be dead-lettered: {stored:?}");
            newest = newest.max(e.event.ts);
        }
    }
}

/// With an in-flight margin, an event ahead of the clock counts as stamped at most the
/// margin after it: the dataflow reads it later than the intake's clock and raises its
/// watermark to its own clock then, so an event of the same request just inside the limit
/// behind the intake's clock would be dead-lettered (attack of session 44: `[now+4m50s,
/// now−48h+3ms]` accepted both, the dataflow dead-lettered the second). Refused now; one
/// the margin further ahead is accepted, and the next request is checked the same way.
#[tokio::test]
async fn an_event_ahead_of_the_clock_counts_as_stamped_at_most_the_margin_after_it() {
    let gate = Arc::new(FakeGate { margin: 60_000, ..FakeGate::new(i64::MIN, i64::MIN, LIMITS, false) });
    let f = gated_with(Arc::clone(&gate));
    let fast = NOW + 290_000;
    let r = post_json(&f.router, &json!([at("m1", "ab", fast), at("m2", "ab", NOW - 48 * HOUR + 3), at("m3", "ab", NOW - 48 * HOUR + 60_000)])).await;
    assert_eq!((r.status, &r.body["accepted"]), (StatusCode::OK, &json!(2)), "{}", r.body);
    assert_eq!(reasons(&r), vec![(1, "too_late".into())]);
    assert_eq!(gate.recorded(), vec![NOW + 60_000]);
    let r = post_json(&f.router, &json!([at("m4", "ab", NOW - 48 * HOUR + 59_999), at("m5", "ab", NOW - 48 * HOUR + 60_000)])).await;
    assert_eq!(reasons(&r), vec![(0, "too_late".into())]);
    assert_eq!(ids(&f.log), ["m1", "m3", "m5"].map(event_uuid).to_vec());
    // Not ahead of the clock: the time itself; ahead by less than the margin: itself.
    assert_eq!(crate::http::gate::accepted_time_ms(NOW - 5, NOW, 60_000), NOW - 5);
    assert_eq!(crate::http::gate::accepted_time_ms(NOW + 5, NOW, 60_000), NOW + 5);
    assert_eq!(crate::http::gate::accepted_time_ms(NOW + 290_000, NOW, 60_000), NOW + 60_000);
    assert_eq!(crate::http::gate::accepted_time_ms(NOW + 290_000, NOW, 0), NOW);
}
