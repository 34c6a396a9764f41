//! The dataflow's visitor-flood cap (case C25, `sluice_dataflows::operators::CapVisitorFloods`)
//! applied to clicks read back from ClickHouse `events_enriched`, which its sink writes
//! from the click log before the dataflow flags anything: of one visitor's non-bot clicks
//! on one link within one UTC minute only the first `cap` stay human, the rest count as bot
//! clicks. The count per (code, visitor, minute) is the dataflow's exactly (`max(0, n −
//! cap)` flagged); *which* clicks are flagged follows `(ts, event_id)` order here and
//! arrival order there, and since one visitor's clicks share country, device, browser and
//! OS, only per-referrer breakdowns can differ (as between two runs of the dataflow).

use std::collections::HashMap;

use sluice_dataflows::model::Granularity;
use sluice_schemas::EnrichedClick;

/// Marks `is_bot` on every non-bot click beyond the first `cap` of its (code, visitor, UTC
/// minute), in `(ts, event_id)` order; `None` leaves the clicks as they are. Sorts `events`
/// by `(ts, event_id)`. The minutes must be whole in `events` for exact counts.
pub fn flag(events: &mut [EnrichedClick], cap: Option<u32>) {
    let Some(cap) = cap else { return };
    events.sort_unstable_by_key(|e| (e.ts, e.event_id));
    let mut seen: HashMap<(&str, u64, i64), u32> = HashMap::new();
    let mut flagged = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if e.is_bot {
            continue;
        }
        let n = seen.entry((e.code.as_str(), e.visitor_id, Granularity::Minute.bucket_start(e.ts))).or_default();
        *n += 1;
        if *n > cap {
            flagged.push(i);
        }
    }
    for i in flagged {
        events[i].is_bot = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(n: u128, visitor: u64, ts: i64, is_bot: bool) -> EnrichedClick {
        EnrichedClick {
            event_id: uuid::Uuid::from_u128(n),
            code: "a1".into(),
            ts,
            visitor_id: visitor,
            country: "DE".into(),
            device: "desktop".into(),
            browser: "Chrome".into(),
            os: "Windows".into(),
            referrer_domain: "(direct)".into(),
            referrer_medium: "unknown".into(),
            is_bot,
            org: None,
        }
    }

    /// Naive reference: per (visitor, minute), humans beyond `cap` in time order are bots.
    fn expected_bots(events: &[EnrichedClick], cap: u32) -> (usize, usize) {
        let mut humans = 0;
        let mut bots = 0;
        let mut keys: Vec<(u64, i64)> = events.iter().map(|e| (e.visitor_id, e.ts / 60_000)).collect();
        keys.sort_unstable();
        keys.dedup();
        for (v, m) in keys {
            let group: Vec<&EnrichedClick> = events.iter().filter(|e| e.visitor_id == v && e.ts / 60_000 == m).collect();
            let human = group.iter().filter(|e| !e.is_bot).count();
            bots += group.len() - human + human.saturating_sub(cap as usize);
            humans += human.min(cap as usize);
        }
        (humans, bots)
    }

    #[test]
    fn only_the_first_cap_clicks_of_a_visitor_minute_stay_human() {
        // 70 clicks of visitor 7 in minute 0 (shuffled order), 5 of them real bots; 40 of
        // visitor 8 over two minutes; 3 of visitor 9.
        let mut events = Vec::new();
        for i in 0..70u128 {
            let ts = ((i * 37) % 60_000) as i64;
            events.push(click(i, 7, ts, i % 14 == 0));
        }
        for i in 0..40u128 {
            events.push(click(100 + i, 8, 30_000 + i as i64 * 1_000, false));
        }
        for i in 0..3u128 {
            events.push(click(200 + i, 9, 1_000 + i as i64, false));
        }
        events.reverse();
        let (humans, bots) = expected_bots(&events, 30);
        flag(&mut events, Some(30));
        assert_eq!(events.iter().filter(|e| !e.is_bot).count(), humans);
        assert_eq!(events.iter().filter(|e| e.is_bot).count(), bots);
        // visitor 7: 65 human → 30 human, 40 bot; visitor 8: 30 in minute 0 and 10 in minute 1
        // → all human; visitor 9: 3 human.
        assert_eq!((humans, bots), (30 + 40 + 3, 40));
        let v7_human: Vec<i64> = events.iter().filter(|e| e.visitor_id == 7 && !e.is_bot).map(|e| e.ts).collect();
        assert_eq!(v7_human.len(), 30);
        assert!(v7_human.windows(2).all(|w| w[0] <= w[1]), "sorted by time");
        // Off: nothing changes.
        let before: Vec<bool> = events.iter().map(|e| e.is_bot).collect();
        let mut again = events.clone();
        for e in &mut again {
            e.is_bot = false;
        }
        flag(&mut again, None);
        assert!(again.iter().all(|e| !e.is_bot));
        assert_eq!(before.iter().filter(|b| **b).count(), 40);
    }
}
