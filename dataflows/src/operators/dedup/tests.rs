use std::collections::HashSet;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sluice_schemas::ClickEvent;
use uuid::Uuid;

use super::*;

const H: i64 = HOUR_MS;

fn click(id: u128, ts: i64, offset: u64, backfill: bool) -> GatedClick {
    GatedClick {
        partition: 0,
        offset,
        backfill,
        event: ClickEvent {
            event_id: Uuid::from_u128(id),
            code: "c".into(),
            ts,
            ip_trunc: None,
            visitor_id: offset,
            user_agent: format!("ua{offset}"),
            referrer: None,
            accept_language: None,
            edge_region: None,
        },
    }
}

fn report(w: i64) -> WatermarkReport {
    WatermarkReport { partition: 0, watermark_ms: w, idle: false, first_ms: i64::MIN }
}

#[test]
fn first_copy_wins_and_later_payloads_are_ignored() {
    let mut s = DedupState::new(48 * H, 48 * H, 9600 * H);
    let (mut ok, mut err) = (Vec::new(), Vec::new());
    s.process([click(1, 10, 0, false), click(1, 10, 1, false), click(2, 10, 2, false), click(1, 10, 3, false)], &mut ok, &mut err);
    assert_eq!(ok.iter().map(|c| c.offset).collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(ok[0].event.user_agent, "ua0", "first payload kept");
    assert_eq!(s.duplicates(), 2);
    assert!(err.is_empty());
}

#[test]
fn state_is_compacted_and_a_late_copy_is_dead_lettered_not_counted() {
    let mut s = DedupState::new(48 * H, 48 * H, 9600 * H);
    let (mut ok, mut err) = (Vec::new(), Vec::new());
    s.process((0..100).map(|i| click(i, 10 * H, i as u64, false)), &mut ok, &mut err);
    assert_eq!(s.len(), 100);
    s.advance(&[report(58 * H)]);
    assert_eq!(s.len(), 100, "exactly 48 h behind: still remembered");
    s.advance(&[report(59 * H)]);
    assert_eq!(s.len(), 0, "the hour fell out of retention");
    ok.clear();
    s.process([click(5, 10 * H, 200, false)], &mut ok, &mut err);
    assert!(ok.is_empty());
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].reason, DeadLetterReason::TooLate);
}

#[test]
fn backfill_is_remembered_from_the_watermark_on() {
    let mut s = DedupState::new(48 * H, 48 * H, 9600 * H);
    let (mut ok, mut err) = (Vec::new(), Vec::new());
    s.advance(&[report(1000 * H)]);
    s.process([click(1, 100 * H, 0, true)], &mut ok, &mut err);
    s.advance(&[report(1040 * H)]);
    s.process([click(1, 100 * H, 1, true)], &mut ok, &mut err);
    assert_eq!(ok.len(), 1, "re-import within the horizon is a duplicate");
    assert!(err.is_empty());
}

/// Attack of session 46: a history file imported twice into a server that had seen no click
/// (no watermark yet) counted its older events twice, and as many as the batches split it
/// (the first batch's ids kept their own old event time as basis and were compacted as soon
/// as the first watermark came). Both files' orders, batch sizes 1 and all: every re-import
/// within the window is a duplicate, whatever came first; a reference (a plain set of every
/// id) says what counts.
#[test]
fn a_history_imported_twice_before_any_watermark_counts_once_whatever_the_batches() {
    let now = 10_000 * H;
    // 10 days of history, one event per 6 hours, plus the newest an hour ago.
    let mut file: Vec<(u128, i64)> = (0..40).map(|i| (i as u128 + 1, now - 240 * H + i * 6 * H)).collect();
    file.push((99, now - H));
    for descending in [false, true] {
        for batch in [1usize, 7, 1000] {
            let mut lines = file.clone();
            if descending {
                lines.reverse();
            }
            let mut s = DedupState::new(48 * H, 48 * H, 9600 * H);
            let (mut ok, mut err) = (Vec::new(), Vec::new());
            let mut offset = 0u64;
            for round in 0..2 {
                for chunk in lines.chunks(batch) {
                    let clicks: Vec<GatedClick> = chunk
                        .iter()
                        .map(|&(id, ts)| {
                            offset += 1;
                            click(id, ts, offset, true)
                        })
                        .collect();
                    s.process(clicks, &mut ok, &mut err);
                    // The gate's watermark follows the newest event time it saw.
                    s.advance(&[report(now - H + round)]);
                }
            }
            let distinct: HashSet<u128> = lines.iter().map(|&(id, _)| id).collect();
            assert_eq!(ok.len(), distinct.len(), "descending {descending}, batch {batch}: each id once");
            assert!(err.is_empty());
        }
    }
}

/// The documented window (docs/events-import-loadgen.md, "Duplicates"): a backfill copy of
/// a live event is a duplicate while the live copy is remembered (`max(horizon, lateness)`
/// of the watermark), and counts again once the id was compacted away.
#[test]
fn a_backfill_copy_of_a_live_event_is_a_duplicate_only_within_the_window() {
    let mut s = DedupState::new(48 * H, 48 * H, 9600 * H);
    let (mut ok, mut err) = (Vec::new(), Vec::new());
    s.advance(&[report(10 * H)]);
    s.process([click(1, 10 * H, 0, false)], &mut ok, &mut err);
    s.advance(&[report(58 * H)]);
    s.process([click(1, 10 * H, 1, true)], &mut ok, &mut err);
    assert_eq!(ok.iter().map(|c| c.offset).collect::<Vec<_>>(), vec![0], "48 h behind: still a duplicate");
    s.advance(&[report(59 * H)]);
    assert_eq!(s.len(), 1, "the backfill copy moved the id's basis to the watermark (58 h)");
    s.advance(&[report(106 * H)]);
    assert_eq!(s.len(), 1, "58 h + 48 h: still remembered");
    s.advance(&[report(200 * H)]);
    assert_eq!(s.len(), 0);
    s.process([click(1, 10 * H, 2, true)], &mut ok, &mut err);
    assert_eq!(ok.iter().map(|c| c.offset).collect::<Vec<_>>(), vec![0, 2], "after the window a backfill copy counts again");
    assert!(err.is_empty());
}

/// Oracle: the compacting state equals a reference that remembers every id forever, on
/// random streams with duplicates, out-of-order and late events and an advancing watermark.
#[test]
fn oracle_matches_a_reference_that_never_forgets() {
    for seed in 0..20u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut s = DedupState::new(30 * H, 24 * H, 9600 * H);
        // The same stream through `process_in_place` gives the same decisions.
        let mut in_place = DedupState::new(30 * H, 24 * H, 9600 * H);
        let mut reference: HashSet<u128> = HashSet::new();
        let mut w = i64::MIN;
        let mut emitted: Vec<(u128, i64)> = Vec::new();
        let mut history: Vec<(u128, i64)> = Vec::new();
        let mut offset = 0u64;
        for _round in 0..60 {
            let mut batch = Vec::new();
            let base = if w == i64::MIN { 100 * H } else { w };
            for _ in 0..rng.random_range(1..40) {
                let (id, ts) = if !history.is_empty() && rng.random_bool(0.3) {
                    history[rng.random_range(0..history.len())]
                } else {
                    let id = rng.random::<u64>() as u128;
                    let ts = base + rng.random_range(-26 * H..2 * H);
                    history.push((id, ts));
                    (id, ts)
                };
                batch.push(click(id, ts, offset, false));
                offset += 1;
            }
            // reference decision for this batch, with the watermark before the batch
            let mut expect = Vec::new();
            for c in &batch {
                let id = c.event.event_id.as_u128();
                let late = w != i64::MIN && c.event.ts < w - 24 * H;
                if !late && reference.insert(id) {
                    expect.push((id, c.event.ts));
                }
            }
            let (mut ok, mut err) = (Vec::new(), Vec::new());
            let (mut kept, mut err2) = (batch.clone(), Vec::new());
            s.process(batch, &mut ok, &mut err);
            in_place.process_in_place(&mut kept, &mut err2);
            let got: Vec<(u128, i64)> = ok.iter().map(|c| (c.event.event_id.as_u128(), c.event.ts)).collect();
            assert_eq!(got, expect, "seed {seed}");
            let offsets = |v: &[GatedClick]| v.iter().map(|c| c.offset).collect::<Vec<_>>();
            assert_eq!(offsets(&kept), offsets(&ok), "in place: same first copies (seed {seed})");
            let dead = |v: &[DeadLetter]| v.iter().map(|d| (d.offset, d.detail.clone())).collect::<Vec<_>>();
            assert_eq!(dead(&err2), dead(&err), "in place: same dead letters (seed {seed})");
            emitted.extend(got);
            let next = base + rng.random_range(0..3 * H);
            w = w.max(next);
            s.advance(&[report(w)]);
            in_place.advance(&[report(w)]);
        }
        let unique: HashSet<u128> = emitted.iter().map(|(id, _)| *id).collect();
        assert_eq!(unique.len(), emitted.len(), "no id emitted twice (seed {seed})");
        assert!(s.len() < reference.len(), "state was compacted (seed {seed})");
    }
}
