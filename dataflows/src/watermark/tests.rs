use uuid::Uuid;

use super::*;

const H: i64 = 3_600_000;
/// A processing clock past the event times of the idleness tests (an accepted event stamped
/// after the clock would count as stamped at the clock).
const C: i64 = 1_000_000;

fn ev(id: u128, code: &str, ts: i64) -> ClickEvent {
    ClickEvent {
        event_id: Uuid::from_u128(id),
        code: code.to_string(),
        ts,
        ip_trunc: None,
        visitor_id: 1,
        user_agent: String::new(),
        referrer: None,
        accept_language: None,
        edge_region: None,
    }
}

fn rec(p: u32, off: u64, e: ClickEvent, backfill: bool) -> SourceRecord {
    SourceRecord { partition: p, offset: off, event: e, backfill, arrival_ms: None }
}

fn gate() -> SourceGate {
    SourceGate::new(&SemanticsConfig::default(), &[0, 1], 0)
}

#[test]
fn lateness_is_per_partition_and_inclusive_at_the_limit() {
    let now = 1_000 * H;
    let mut g = gate();
    g.admit(rec(0, 0, ev(1, "a", 500 * H), false), now).expect("first");
    // exactly 48 h behind: applied; one ms more: too late
    g.admit(rec(0, 1, ev(2, "a", 452 * H), false), now).expect("at limit");
    let d = g.admit(rec(0, 2, ev(3, "a", 452 * H - 1), false), now).unwrap_err();
    assert_eq!(d.reason, DeadLetterReason::TooLate);
    // partition 1 has its own watermark
    g.admit(rec(1, 0, ev(4, "a", 100 * H), false), now).expect("other partition");
    assert_eq!(g.partition_watermark(0), Some(500 * H));
    assert_eq!(g.partition_watermark(1), Some(100 * H));
}

#[test]
fn future_and_invalid_never_move_the_watermark() {
    let now = 1_000 * H;
    let mut g = gate();
    let d = g.admit(rec(0, 0, ev(1, "a", now + 5 * 60_000 + 1), false), now).unwrap_err();
    assert_eq!(d.reason, DeadLetterReason::Future);
    g.admit(rec(0, 1, ev(2, "a", now + 5 * 60_000), false), now).expect("within skew");
    for bad in [ev(0, "a", 1), ev(3, "", 1), ev(4, "a b", 1), ev(5, "a", -1), ev(6, &"x".repeat(65), 1)] {
        let d = g.admit(rec(1, 0, bad, false), now).unwrap_err();
        assert_eq!(d.reason, DeadLetterReason::Invalid, "{}", d.detail);
    }
    assert_eq!(g.partition_watermark(1), Some(i64::MIN));
    assert_eq!(g.partition_watermark(0), Some(now), "an accepted future event counts as stamped now");
}

/// Finding (newcomer, session 17): one event stamped 4 min ahead kept the watermark 4 min
/// ahead of the wall clock for good (idle extrapolation started from it). Its bucket still
/// gets the click; the watermark moves only to the clock, then follows the clock.
#[test]
fn a_future_skewed_event_moves_the_watermark_only_to_the_clock() {
    let now = 1_000 * H;
    let mut g = gate();
    let mut reports = Vec::new();
    let ok = g.admit(rec(0, 0, ev(1, "a", now + 4 * 60_000), false), now).expect("within skew");
    assert_eq!(ok.event.ts, now + 4 * 60_000, "the event keeps its own time");
    g.tick(now, &mut reports);
    assert!(reports.contains(&WatermarkReport { partition: 0, watermark_ms: now, idle: false, first_ms: now + 4 * 60_000 }), "{reports:?}");
    reports.clear();
    // idle 5 s later: W_p = now + 5 s (from the capped base), not now + 4 min + 5 s
    g.tick(now + 5_000, &mut reports);
    assert!(reports.contains(&WatermarkReport { partition: 0, watermark_ms: now + 5_000, idle: true, first_ms: now + 4 * 60_000 }), "{reports:?}");
    // an event 48 h behind the clock (not behind the skewed stamp) is still in time
    g.admit(rec(0, 1, ev(2, "a", now + 5_000 - 48 * H), false), now + 5_000).expect("at the limit of the clock-capped watermark");
    // a later event stamped behind the clock raises W_p to its own time only
    g.admit(rec(0, 2, ev(3, "a", now + 9_000), false), now + 10_000).unwrap();
    assert_eq!(g.partition_watermark(0), Some(now + 9_000));
}

#[test]
fn backfill_bypasses_lateness_up_to_long_retention() {
    let now = 10_000 * H;
    let mut g = gate();
    g.admit(rec(0, 0, ev(1, "a", 9_999 * H), false), now).unwrap();
    g.admit(rec(0, 1, ev(2, "a", 9_000 * H), true), now).expect("backfill older than lateness");
    let d = g.admit(rec(0, 2, ev(3, "a", 9_999 * H - 400 * 24 * H - 1), true), now).unwrap_err();
    assert_eq!(d.reason, DeadLetterReason::TooLate);
}

#[test]
fn idle_partitions_extrapolate_and_report_on_change() {
    let mut g = SourceGate::new(&SemanticsConfig::default(), &[0, 1], C);
    let mut reports = Vec::new();
    g.tick(C, &mut reports);
    assert_eq!(reports.len(), 2, "initial reports");
    reports.clear();
    g.admit(rec(0, 0, ev(1, "a", 100_000), false), C + 10).unwrap();
    g.tick(C + 10, &mut reports);
    assert_eq!(reports, vec![WatermarkReport { partition: 0, watermark_ms: 100_000, idle: false, first_ms: 100_000 }]);
    reports.clear();
    g.tick(C + 11, &mut reports);
    assert!(reports.is_empty(), "no change, no report");
    // 5 s later both are idle; partition 0 advances with the clock, partition 1 has no data.
    g.tick(C + 5_010, &mut reports);
    assert_eq!(
        reports,
        vec![
            WatermarkReport { partition: 0, watermark_ms: 105_000, idle: true, first_ms: 100_000 },
            WatermarkReport { partition: 1, watermark_ms: i64::MIN, idle: true, first_ms: i64::MIN },
        ]
    );
}

#[test]
fn global_watermark_ignores_idle_and_never_regresses() {
    let mut w = GlobalWatermark::default();
    assert_eq!(w.recompute(), i64::MIN);
    w.apply(&WatermarkReport { partition: 0, watermark_ms: 100, idle: false, first_ms: i64::MIN });
    w.apply(&WatermarkReport { partition: 1, watermark_ms: i64::MIN, idle: false, first_ms: i64::MIN });
    assert_eq!(w.recompute(), i64::MIN, "an active empty partition holds W back");
    w.apply(&WatermarkReport { partition: 1, watermark_ms: i64::MIN, idle: true, first_ms: i64::MIN });
    assert_eq!(w.recompute(), 100, "idle partitions are ignored");
    w.apply(&WatermarkReport { partition: 0, watermark_ms: 200, idle: true, first_ms: i64::MIN });
    assert_eq!(w.recompute(), 200, "all idle: min over idle partitions with data");
    w.apply(&WatermarkReport { partition: 1, watermark_ms: 50, idle: false, first_ms: i64::MIN });
    assert_eq!(w.recompute(), 200, "a partition waking up behind W does not move it back");
}

/// While the source knows of records still to come (a pending floor), its partitions do not
/// turn idle and their watermarks do not extrapolate; idleness counts again from the last
/// tick that saw the floor.
#[test]
fn a_pending_floor_keeps_partitions_active() {
    let mut g = SourceGate::new(&SemanticsConfig::default(), &[0, 1], C);
    let mut reports = Vec::new();
    g.admit(rec(0, 0, ev(1, "a", 100_000), false), C + 10).unwrap();
    g.tick(C + 10, &mut reports);
    reports.clear();
    g.hold(Some(100_500));
    g.tick(C + 60_000, &mut reports);
    assert!(reports.is_empty(), "a minute later nothing turned idle: {reports:?}");
    assert_eq!(g.partition_watermark(0), Some(100_000));
    reports.clear();
    g.hold(None);
    g.tick(C + 64_999, &mut reports);
    assert!(reports.is_empty(), "idleness counts from the last held tick");
    g.tick(C + 65_000, &mut reports);
    assert_eq!(
        reports,
        vec![
            WatermarkReport { partition: 0, watermark_ms: 105_000, idle: true, first_ms: 100_000 },
            WatermarkReport { partition: 1, watermark_ms: i64::MIN, idle: true, first_ms: i64::MIN },
        ]
    );
    // Idle, then a floor appears: active again at the watermark reached, not extrapolated.
    reports.clear();
    g.tick(C + 70_000, &mut reports);
    assert_eq!(g.partition_watermark(0), Some(110_000));
    reports.clear();
    g.hold(Some(110_000));
    g.tick(C + 80_000, &mut reports);
    assert_eq!(
        reports,
        vec![
            WatermarkReport { partition: 0, watermark_ms: 110_000, idle: false, first_ms: 100_000 },
            WatermarkReport { partition: 1, watermark_ms: i64::MIN, idle: false, first_ms: i64::MIN },
        ]
    );
}

/// A record with its source's arrival time.
fn arrived(p: u32, off: u64, e: ClickEvent, arrival_ms: i64) -> SourceRecord {
    SourceRecord { arrival_ms: Some(arrival_ms), ..rec(p, off, e, false) }
}

const MIN: i64 = 60_000;

/// The replay bug (attack finding): a record stamped 4 min ahead of its arrival `a`, read
/// again 10 min later (a restart replaying the log), moves `W_p` to its arrival, as the first
/// read at `a` did, not to its own stamp; so a record at the lateness edge behind `a` is
/// applied on the replay too.
#[test]
fn a_future_skewed_record_read_at_a_later_clock_caps_at_its_arrival() {
    let a = 1_000 * H;
    let edge = a - 48 * H;
    for now in [a, a + 10 * MIN] {
        let mut g = gate();
        let ok = g.admit(arrived(0, 0, ev(1, "a", a + 4 * MIN), a), now).expect("within skew of its arrival");
        assert_eq!(ok.event.ts, a + 4 * MIN, "the event keeps its own time");
        assert_eq!(g.partition_watermark(0), Some(a), "read at {now}");
        g.admit(rec(0, 1, ev(2, "a", edge), false), now).expect("at the lateness edge behind the arrival");
        let d = g.admit(rec(0, 2, ev(3, "a", edge - 1), false), now).unwrap_err();
        assert_eq!(d.reason, DeadLetterReason::TooLate, "read at {now}");
        assert_eq!(d.detail, format!("ts {} is more than {} ms behind partition watermark {a}", edge - 1, 48 * H));
    }
    // Without its arrival the replay caps at its own clock: the edge record is too late.
    let mut g = gate();
    g.admit(rec(0, 0, ev(1, "a", a + 4 * MIN), false), a + 10 * MIN).expect("within skew of the clock");
    assert_eq!(g.partition_watermark(0), Some(a + 4 * MIN));
    assert_eq!(g.admit(rec(0, 1, ev(2, "a", edge), false), a + 10 * MIN).unwrap_err().reason, DeadLetterReason::TooLate);
}

/// `future` is decided against the arrival when known: a record accepted when it arrived is
/// accepted on any later read, one refused is refused on any later read.
#[test]
fn the_future_check_uses_the_arrival() {
    let a = 1_000 * H;
    for now in [a, a + 10 * MIN, a + 100 * H] {
        let mut g = gate();
        g.admit(arrived(0, 0, ev(1, "a", a + 5 * MIN), a), now).expect("exactly the skew after its arrival");
        let d = g.admit(arrived(0, 1, ev(2, "a", a + 5 * MIN + 1), a), now).unwrap_err();
        assert_eq!(d.reason, DeadLetterReason::Future, "read at {now}");
        assert_eq!(d.detail, format!("ts {} is more than {} ms after its arrival {a}", a + 5 * MIN + 1, 5 * MIN));
        assert_eq!(g.partition_watermark(0), Some(a), "read at {now}");
    }
}

/// An arrival after the processing clock (a clock stepped back, a producer's clock ahead)
/// counts as the clock: the watermark never runs ahead of the clock, and the future check
/// is never looser than the clock's.
#[test]
fn an_arrival_after_the_clock_counts_as_the_clock() {
    let now = 1_000 * H;
    let mut g = gate();
    g.admit(arrived(0, 0, ev(1, "a", now + 4 * MIN), now + H), now).expect("within skew of the clock");
    assert_eq!(g.partition_watermark(0), Some(now));
    let d = g.admit(arrived(0, 1, ev(2, "a", now + 5 * MIN + 1), now + H), now).unwrap_err();
    assert_eq!(d.reason, DeadLetterReason::Future);
    assert_eq!(d.detail, format!("ts {} is more than {} ms after the processing clock {now}", now + 5 * MIN + 1, 5 * MIN));
    assert_eq!(reference_time_ms(Some(now + H), now), now);
    assert_eq!(reference_time_ms(Some(now - 7), now), now - 7);
    assert_eq!(reference_time_ms(None, now), now);
}

/// A record stamped at or before its arrival (the log keeps no arrival for it) is decided
/// the same at any clock at or after its arrival.
#[test]
fn a_record_stamped_before_its_arrival_is_decided_the_same_at_any_later_clock() {
    let a = 1_000 * H;
    let mut watermarks = Vec::new();
    for now in [a, a + 10 * MIN] {
        let mut g = gate();
        g.admit(arrived(0, 0, ev(1, "a", a + 4 * MIN), a), now).expect("ahead");
        g.admit(rec(0, 1, ev(2, "a", a - MIN), false), now).expect("behind");
        watermarks.push(g.partition_watermark(0));
    }
    assert_eq!(watermarks, vec![Some(a), Some(a)]);
}

/// A checkpoint's settle (`pipeline::settle`) turns the partitions idle at once so `W_p`
/// follows the clock from the last record; its end turns them active again at the `W_p`
/// reached (never back), except one quiet for `idle_timeout` (idle anyway), and idleness
/// still counts from the last record, so `W_p` never runs ahead of the clock.
#[test]
fn an_unsettle_turns_recently_active_partitions_active_again_at_the_watermark_reached() {
    let idle = SemanticsConfig::default().idle_timeout_ms();
    let mut g = gate();
    g.admit(rec(0, 0, ev(1, "a", C - 500), false), C).expect("p0");
    g.admit(rec(1, 0, ev(2, "a", C - idle - 400), false), C - idle).expect("p1, quiet for idle_timeout at C");
    assert_eq!(g.settle(), Some(C - 500));
    let mut reports = Vec::new();
    g.tick(C + 300, &mut reports);
    assert_eq!(reports.iter().map(|r| (r.partition, r.watermark_ms, r.idle)).collect::<Vec<_>>(), vec![(0, C - 500 + 300, true), (1, C - 400 + 300, true)]);
    g.unsettle(C + 300);
    assert!(!g.settling());
    reports.clear();
    g.tick(C + 400, &mut reports);
    assert_eq!(
        reports.iter().map(|r| (r.partition, r.watermark_ms, r.idle)).collect::<Vec<_>>(),
        vec![(0, C - 500 + 300, false), (1, C - 400 + 400, true)],
        "p0 active again where the settle left it; p1 idle as before"
    );
    // p0 quiet for idle_timeout from its last record: idle, W_p = base + quiet time (the
    // settle's advance is not counted twice).
    reports.clear();
    g.tick(C + idle, &mut reports);
    assert_eq!(reports.iter().find(|r| r.partition == 0).map(|r| (r.watermark_ms, r.idle)), Some((C - 500 + idle, true)));
}
