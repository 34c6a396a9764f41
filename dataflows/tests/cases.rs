//! Real-world cases from `shared/cases/README.md` that concern the dataflow: C15 (half-open
//! ranges and time zones), C16 (DST days), C17 (uniques are unions), C19 (dedup), C21
//! (idle watermark), plus time-zone day totals and restart-by-replay.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Timelike};
use chrono_tz::Tz;
use sluice_dataflows::changes::ChangeBatch;
use sluice_dataflows::dead_letter::DeadLetterReason;
use sluice_dataflows::hash::route_str;
use sluice_dataflows::model::{Dimension, Granularity, View};
use sluice_dataflows::pipeline::PipelineOutputs;
use sluice_dataflows::views::tz::{local_date, offset_at};
use sluice_dataflows::views::{Bucket, StatsQuery, StatsResult, Views};
use support::*;

fn q(code: &str, from: &str, to: &str, bucket: Bucket, tz: Tz) -> StatsQuery {
    let mut q = StatsQuery::new(code, ms(from), ms(to), bucket);
    q.tz = tz;
    q
}

fn rows(r: &StatsResult) -> Vec<(i64, u64)> {
    r.rows.iter().map(|x| (x.bucket_start_ms, x.clicks)).collect()
}

fn wait_until(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One partition, like the embedded log.
fn single(now: &str) -> Harness {
    Harness::start(config(1), 1, ms(now), None, PipelineOutputs::default())
}

fn push(h: &Harness, id: u128, code: &str, ts: &str, visitor: u64) {
    h.feed.push(0, event(id, code, ms(ts), visitor, BROWSER_UA, Some("8.8.8.0"), None), false);
}

#[test]
fn c15_ranges_are_half_open_instants_in_any_zone() {
    let h = single("2024-06-05T00:00:00Z");
    for (i, t) in ["2024-06-01T03:30:00Z", "2024-06-01T04:30:00Z", "2024-06-02T03:59:59Z", "2024-06-02T04:00:00Z"].iter().enumerate() {
        push(&h, i as u128 + 1, "L", t, i as u64 + 1);
    }
    push(&h, 5, "L2", "2024-06-01T18:29:59Z", 5);
    push(&h, 6, "L2", "2024-06-01T18:30:00Z", 6);
    h.sync();
    let v = h.handle.views();
    let ny = chrono_tz::America::New_York;
    // 1. hour buckets over a New York day given as offsets: T2 and T3 only (T4 == to).
    let r = v.query(&q("L", "2024-06-01T00:00:00-04:00", "2024-06-02T00:00:00-04:00", Bucket::Hour, Tz::UTC)).unwrap();
    assert_eq!(r.totals.clicks, 2);
    // 2. UTC days
    let r = v.query(&q("L", "2024-06-01T00:00:00Z", "2024-06-03T00:00:00Z", Bucket::Day, Tz::UTC)).unwrap();
    assert_eq!(rows(&r), vec![(ms("2024-06-01T00:00:00Z"), 2), (ms("2024-06-02T00:00:00Z"), 2)]);
    // 3. New York days
    let r = v.query(&q("L", "2024-05-31T00:00:00-04:00", "2024-06-03T00:00:00-04:00", Bucket::Day, ny)).unwrap();
    let labelled: Vec<(String, u64)> = r.rows.iter().map(|x| (local_date(ny, x.bucket_start_ms).unwrap(), x.clicks)).collect();
    assert_eq!(labelled, vec![("2024-05-31".into(), 1), ("2024-06-01".into(), 2), ("2024-06-02".into(), 1)]);
    // 4. +05:30: T5 on June 1st, T6 on June 2nd
    let kol = chrono_tz::Asia::Kolkata;
    let r = v.query(&q("L2", "2024-06-01T00:00:00+05:30", "2024-06-03T00:00:00+05:30", Bucket::Day, kol)).unwrap();
    let labelled: Vec<(String, u64)> = r.rows.iter().map(|x| (local_date(kol, x.bucket_start_ms).unwrap(), x.clicks)).collect();
    assert_eq!(labelled, vec![("2024-06-01".into(), 1), ("2024-06-02".into(), 1)]);
    let r = v.query(&q("L2", "2024-06-02T00:00:00+05:30", "2024-06-03T00:00:00+05:30", Bucket::Hour, Tz::UTC)).unwrap();
    assert_eq!(r.totals.clicks, 1);
}

fn hourly(h: &Harness, code: &str, first: &str, n: u32, base_id: u128) {
    for i in 0..n {
        h.feed.push(0, event(base_id + u128::from(i), code, ms(first) + i64::from(i) * HOUR, u64::from(i), BROWSER_UA, None, None), false);
    }
}

#[test]
fn c16_dst_days_have_25_and_23_hours_and_utc_invariants_hold() {
    let berlin = chrono_tz::Europe::Berlin;
    // A. fall back
    let h = single("2024-10-28T12:00:00Z");
    hourly(&h, "fall", "2024-10-26T22:15:00Z", 25, 1000);
    h.sync();
    let v = h.handle.views();
    let r = v.query(&q("fall", "2024-10-27T00:00:00+02:00", "2024-10-28T00:00:00+01:00", Bucket::Hour, berlin)).unwrap();
    assert_eq!(r.rows.len(), 25);
    assert!(r.rows.iter().all(|x| x.clicks == 1));
    let twos: Vec<i32> = r
        .rows
        .iter()
        .filter(|x| berlin.timestamp_millis_opt(x.bucket_start_ms).unwrap().hour() == 2)
        .map(|x| offset_at(berlin, x.bucket_start_ms).unwrap())
        .collect();
    assert_eq!(twos, vec![7200, 3600], "two distinct 02:00 rows, +02:00 then +01:00");
    let r = v.query(&q("fall", "2024-10-27T00:00:00+02:00", "2024-10-28T00:00:00+01:00", Bucket::Day, berlin)).unwrap();
    assert_eq!(rows(&r), vec![(ms("2024-10-26T22:00:00Z"), 25)]);
    assert_eq!(local_date(berlin, r.rows[0].bucket_start_ms).unwrap(), "2024-10-27");
    // C. UTC invariants on the same data: 23 hour rows, 23:00 left out (no zero-fill)
    let hours = v.query(&q("fall", "2024-10-27T00:00:00Z", "2024-10-28T00:00:00Z", Bucket::Hour, Tz::UTC)).unwrap();
    let expect: Vec<(i64, u64)> = (0..23).map(|i| (ms("2024-10-27T00:00:00Z") + i * HOUR, 1)).collect();
    assert_eq!(rows(&hours), expect);
    let day = v.query(&q("fall", "2024-10-27T00:00:00Z", "2024-10-28T00:00:00Z", Bucket::Day, Tz::UTC)).unwrap();
    let minutes = v.query(&q("fall", "2024-10-27T00:00:00Z", "2024-10-28T00:00:00Z", Bucket::Minute, Tz::UTC)).unwrap();
    assert_eq!(rows(&day), vec![(ms("2024-10-27T00:00:00Z"), 23)]);
    assert_eq!(minutes.rows.iter().map(|x| x.clicks).sum::<u64>(), 23);
    assert_eq!(hours.totals, day.totals);
    assert_eq!(minutes.totals, day.totals);

    // B. spring forward
    let h = single("2024-04-01T12:00:00Z");
    hourly(&h, "spring", "2024-03-30T23:15:00Z", 23, 2000);
    h.sync();
    let v = h.handle.views();
    let r = v.query(&q("spring", "2024-03-31T00:00:00+01:00", "2024-04-01T00:00:00+02:00", Bucket::Hour, berlin)).unwrap();
    assert_eq!(r.rows.len(), 23);
    assert!(r.rows.iter().all(|x| x.clicks == 1 && berlin.timestamp_millis_opt(x.bucket_start_ms).unwrap().hour() != 2));
    let r = v.query(&q("spring", "2024-03-31T00:00:00+01:00", "2024-04-01T00:00:00+02:00", Bucket::Day, berlin)).unwrap();
    assert_eq!(rows(&r), vec![(ms("2024-03-30T23:00:00Z"), 23)]);
}

#[test]
fn known_day_totals_in_kolkata_kathmandu_and_new_york_across_dst() {
    // One click every 15 minutes for five UTC days around the US DST change of 2024-03-10.
    let h = single("2024-03-14T00:00:00Z");
    let start = ms("2024-03-08T00:00:00Z");
    for i in 0..(5 * 96) {
        h.feed.push(0, event(10_000 + i as u128, "tz", start + i * 15 * MIN, i as u64 % 7, BROWSER_UA, None, None), false);
    }
    h.sync();
    let v = h.handle.views();
    let day_totals = |tz: Tz, from: &str, to: &str| -> Vec<(String, u64)> {
        let r = v.query(&q("tz", from, to, Bucket::Day, tz)).unwrap();
        r.rows.iter().map(|x| (local_date(tz, x.bucket_start_ms).unwrap(), x.clicks)).collect()
    };
    // Kolkata (+05:30): day 2024-03-09 local = [03-08T18:30Z, 03-09T18:30Z): 96 quarters.
    assert_eq!(
        day_totals(chrono_tz::Asia::Kolkata, "2024-03-09T00:00:00+05:30", "2024-03-11T00:00:00+05:30"),
        vec![("2024-03-09".into(), 96), ("2024-03-10".into(), 96)]
    );
    // Kathmandu (+05:45): the first local day is cut by the data start at 00:00Z (05:45 local):
    // 05:45..24:00 local = 73 quarters.
    assert_eq!(
        day_totals(chrono_tz::Asia::Kathmandu, "2024-03-08T00:00:00+05:45", "2024-03-10T00:00:00+05:45"),
        vec![("2024-03-08".into(), 73), ("2024-03-09".into(), 96)]
    );
    // New York: 2024-03-10 has 23 hours (92 quarters); the days around it have 96.
    assert_eq!(
        day_totals(chrono_tz::America::New_York, "2024-03-09T00:00:00-05:00", "2024-03-12T00:00:00-04:00"),
        vec![("2024-03-09".into(), 96), ("2024-03-10".into(), 92), ("2024-03-11".into(), 96)]
    );
}

#[test]
fn c17_uniques_over_a_range_are_a_union_not_a_sum() {
    let h = single("2024-07-05T00:00:00Z");
    let (v1, v2) = (0x1111, 0x2222);
    let a = Some("https://a.example/");
    let b = Some("https://b.example/");
    let clicks = [
        (1, "2024-07-01T12:00:00Z", v1, a),
        (2, "2024-07-02T12:00:00Z", v1, a),
        (3, "2024-07-03T12:00:00Z", v1, a),
        (4, "2024-07-02T13:00:00Z", v1, b),
        (5, "2024-07-01T12:00:00Z", v2, a),
    ];
    for (id, t, vis, r) in clicks {
        h.feed.push(0, event(id, "L", ms(t), vis, BROWSER_UA, Some("8.8.8.0"), r), false);
    }
    h.sync();
    let v = h.handle.views();
    let r = v.query(&q("L", "2024-07-01T00:00:00Z", "2024-07-04T00:00:00Z", Bucket::Day, Tz::UTC)).unwrap();
    let table: Vec<(i64, u64, u64)> = r.rows.iter().map(|x| (x.bucket_start_ms, x.clicks, x.uniques)).collect();
    assert_eq!(table, vec![(ms("2024-07-01T00:00:00Z"), 2, 2), (ms("2024-07-02T00:00:00Z"), 2, 1), (ms("2024-07-03T00:00:00Z"), 1, 1),]);
    assert_eq!((r.totals.clicks, r.totals.uniques), (5, 2));
    let mut qd = q("L", "2024-07-01T00:00:00Z", "2024-07-04T00:00:00Z", Bucket::Day, Tz::UTC);
    qd.dimensions = vec![Dimension::ReferrerDomain];
    let r = v.query(&qd).unwrap();
    let by: Vec<(String, u64, u64)> = r.by_dimension.iter().map(|d| (d.dims[0].to_string(), d.clicks, d.uniques)).collect();
    assert_eq!(by, vec![("a.example".into(), 4, 2), ("b.example".into(), 1, 1)]);
    assert_eq!(r.totals.uniques, 2);
}

/// Rows of the change stream must never decrease (C19 item 6).
fn monotone_changes(batches: &[ChangeBatch]) {
    type RowId = (String, Granularity, i64, View, bool, Vec<String>);
    let mut last: HashMap<RowId, u64> = HashMap::new();
    for b in batches {
        for r in &b.rows {
            let key = (r.code.to_string(), r.granularity, r.bucket_start_ms, r.view, r.is_bot, r.dims.iter().map(|d| d.to_string()).collect());
            let prev = last.insert(key, r.clicks).unwrap_or(0);
            assert!(r.clicks >= prev, "row decreased: {r:?}");
        }
    }
}

#[test]
fn c19_duplicates_count_once_first_copy_wins_and_never_slip_through() {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&batches);
    let outputs = PipelineOutputs {
        changes: Some(Arc::new(move |b: ChangeBatch| sink.lock().unwrap().push(b))),
        dead_letters: None,
        anomalies: None,
        stored_anomalies: Default::default(),
    };
    let mut cfg = config(1);
    cfg.change_interval = Duration::ZERO;
    let h = Harness::start(cfg, 1, ms("2024-07-10T00:00:00Z"), None, outputs);
    let t = ms("2024-07-01T12:00:00Z");
    let e = |id: u128, ua: &str, referrer: Option<&str>| event(id, "L", t, 42, ua, Some("192.0.2.0"), referrer);
    let range = q("L", "2024-07-01T00:00:00Z", "2024-07-02T00:00:00Z", Bucket::Day, Tz::UTC);
    let totals = |v: &Views| {
        let r = v.query(&range).unwrap();
        (r.totals.clicks, r.totals.uniques)
    };
    // 1. three copies at once
    for _ in 0..3 {
        h.feed.push(0, e(0xc19_0001, BROWSER_UA, None), false);
    }
    h.sync();
    assert_eq!(totals(h.handle.views()), (1, 1));
    // 2. resent while event time advances, up to exactly the allowed lateness (48 h)
    for (k, dt) in [30_000, 60_000, 90_000, 150_000, 24 * HOUR, 48 * HOUR].into_iter().enumerate() {
        h.feed.push(0, event(0xf111 + k as u128, "filler", t + dt, 1, BROWSER_UA, None, None), false);
        h.feed.push(0, e(0xc19_0001, BROWSER_UA, None), false);
        h.sync();
        assert_eq!(totals(h.handle.views()), (1, 1), "resend at +{dt} ms");
    }
    // 3. E′: same id, other user agent and referrer: first copy wins, no extra dimension row
    h.feed.push(0, e(0xc19_0001, USER_AGENTS[1], Some("https://t.co/x")), false);
    h.sync();
    let mut qd = range.clone();
    qd.dimensions = vec![Dimension::Browser];
    let r = h.handle.views().query(&qd).unwrap();
    assert_eq!(r.by_dimension.len(), 1);
    assert_eq!((&*r.by_dimension[0].dims[0], r.by_dimension[0].clicks), ("Chrome", 1));
    qd.dimensions = vec![Dimension::ReferrerDomain];
    let r = h.handle.views().query(&qd).unwrap();
    assert_eq!(r.by_dimension.iter().map(|d| (d.dims[0].to_string(), d.clicks)).collect::<Vec<_>>(), vec![("(direct)".into(), 1)]);
    // 4. same payload, new id: counted
    h.feed.push(0, e(0xc19_0002, BROWSER_UA, None), false);
    h.sync();
    assert_eq!(totals(h.handle.views()).0, 2);
    // Past the horizon: the watermark moves beyond ts + 48 h; a copy is now too late and
    // dead-lettered, never counted again (the state forgot the id by then).
    h.feed.push(0, event(0xf200, "filler", t + 50 * HOUR, 1, BROWSER_UA, None, None), false);
    h.feed.push(0, e(0xc19_0001, BROWSER_UA, None), false);
    h.sync();
    assert_eq!(totals(h.handle.views()).0, 2);
    assert_eq!(h.handle.dead_letters().get(DeadLetterReason::TooLate), 1);
    assert_eq!(h.handle.stats().duplicates, 2 + 6 + 1);
    h.handle.shutdown();
    let handle = h.handle;
    handle.join().expect("clean shutdown");
    monotone_changes(&batches.lock().unwrap());
    assert!(!batches.lock().unwrap().is_empty());
}

#[test]
fn c19_restart_replays_the_log_to_the_same_views() {
    // 1,000 distinct events plus E three times and F: a pipeline stops halfway; a fresh one
    // replays the whole log (the embedded log's restart path) and must count 1,002.
    let t = ms("2024-07-01T12:00:00Z");
    let mut log = Vec::new();
    for i in 0..1_000u128 {
        log.push(event(i + 1, "L", t + i as i64 * 1000, i as u64, BROWSER_UA, None, None));
        if i == 10 || i == 20 || i == 30 {
            log.push(event(0xc19_0001, "L", t, 7, BROWSER_UA, None, None));
        }
    }
    log.push(event(0xc19_0002, "L", t, 7, BROWSER_UA, None, None));
    let range = q("L", "2024-07-01T00:00:00Z", "2024-07-02T00:00:00Z", Bucket::Hour, Tz::UTC);
    let first = single("2024-07-03T00:00:00Z");
    for e in &log[..500] {
        first.feed.push(0, e.clone(), false);
    }
    first.sync();
    let partial = first.handle.views().query(&range).unwrap().totals.clicks;
    assert!(partial > 0 && partial < 1_002);
    drop(first);
    let second = single("2024-07-03T00:00:00Z");
    for e in &log {
        second.feed.push(0, e.clone(), false);
    }
    second.sync();
    let replayed = second.handle.views().query(&range).unwrap();
    assert_eq!(replayed.totals.clicks, 1_002);
    // and equals an uninterrupted run with another worker count
    let third = Harness::start(config(2), 1, ms("2024-07-03T00:00:00Z"), None, PipelineOutputs::default());
    for e in &log {
        third.feed.push(0, e.clone(), false);
    }
    third.sync();
    let mut a = replayed;
    let mut b = third.handle.views().query(&range).unwrap();
    a.as_of.epoch = 0;
    b.as_of.epoch = 0;
    assert_eq!(a, b);
}

#[test]
fn c21_idle_partitions_do_not_stall_the_watermark_and_the_last_window_closes() {
    let s0 = ms("2024-09-01T00:00:00Z");
    let partitions = 4;
    let h = Harness::start(config(2), partitions, s0, None, PipelineOutputs::default());
    let part = |code: &str| (route_str(code) % u64::from(partitions)) as u32;
    let f = Duration::from_secs(20); // real-time bound for this test; the documented F is 90 s
    let minute_rows =
        |code: &str, from: i64, to: i64| -> Vec<(i64, u64)> { rows(&h.handle.views().query(&StatsQuery::new(code, from, to, Bucket::Minute)).unwrap()) };
    // 1. five minutes of one click every 10 s to A only
    for k in 0..30i64 {
        let now = s0 + k * 10_000;
        h.clock.set(now);
        h.feed.push(part("A"), event(k as u128 + 1, "A", now, k as u64, BROWSER_UA, None, None), false);
        h.sync();
        if k > 0 && k % 6 == 0 {
            // 2. minute M just ended: its row is complete and final (W ≥ M_end)
            let m_end = now;
            wait_until("the watermark to pass the minute", f, || h.handle.views().as_of().watermark_ms >= m_end);
            assert_eq!(minute_rows("A", m_end - MIN, m_end), vec![(m_end - MIN, 6)]);
        }
    }
    // 3. all traffic stops at S (last click at S − 5 s): the last minute becomes final
    let s = s0 + 295_000;
    let last_minute_end = s0 + 300_000;
    let mut now = s;
    while now < last_minute_end + 1_000 {
        now += 5_000;
        h.clock.set(now);
    }
    assert!(now <= s + 90_000);
    wait_until("the last window to close", f, || h.handle.views().as_of().watermark_ms >= last_minute_end);
    let before = minute_rows("A", s0, s0 + 10 * MIN);
    assert_eq!(before.last(), Some(&(s0 + 4 * MIN, 6)));
    assert_eq!(before.iter().map(|r| r.1).sum::<u64>(), 30);
    // 4. ten minutes of silence, then one click to B: visible, A unchanged
    let t_b = s + 10 * 60_000;
    h.clock.set(t_b);
    h.feed.push(part("B"), event(1_000, "B", t_b, 99, BROWSER_UA, None, None), false);
    h.sync();
    let m_b = t_b.div_euclid(MIN) * MIN;
    assert_eq!(minute_rows("B", m_b - MIN, m_b + 2 * MIN), vec![(m_b, 1)]);
    assert_eq!(minute_rows("A", s0, s0 + 10 * MIN), before);
}
