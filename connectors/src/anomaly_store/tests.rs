//! The anomaly store against a plain in-memory reference.

use sluice_schemas::anomaly::anomaly_id;
use sluice_schemas::{Anomaly, AnomalyKind, AnomalyStatus, Evidence, Severity};

use super::webhooks::{DeliveryAttempt, DeliveryState, WebhookRecord};
use super::*;

pub(crate) fn anomaly(kind: AnomalyKind, key: &str, window_start: i64, revision: u32, severity: Severity) -> Anomaly {
    let status = match revision {
        0 => AnomalyStatus::Open,
        9 => AnomalyStatus::Closed,
        _ => AnomalyStatus::Updated,
    };
    Anomaly {
        anomaly_id: anomaly_id(kind, key, window_start),
        revision,
        status,
        kind,
        key: key.to_string(),
        severity,
        code: key.strip_prefix("link:").map(str::to_string),
        org: None,
        window_start,
        window_end: window_start + 60_000 * (i64::from(revision) + 1),
        observed: 10.0 + f64::from(revision),
        expected: 1.0,
        score: 5.0,
        summary: format!("{} on {key}", kind.as_str()),
        evidence: Evidence { window_ms: 60_000, clicks: 10, ..Evidence::default() },
        detected_at: window_start + 1,
    }
}

#[test]
fn append_is_idempotent_and_sequenced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnomalyStore::open(dir.path()).expect("open");
    assert_eq!(store.head(), 0);
    let a0 = anomaly(AnomalyKind::ClickBurst, "link:a", 1_000, 0, Severity::Warning);
    let a1 = anomaly(AnomalyKind::ClickBurst, "link:a", 1_000, 1, Severity::Critical);
    let b0 = anomaly(AnomalyKind::BotShare, "link:b", 2_000, 0, Severity::Info);
    assert_eq!(store.append(&[a0.clone(), b0.clone()]).expect("append"), vec![1, 2]);
    // A replay of the same events adds nothing; a new revision gets the next id.
    assert_eq!(store.append(&[a0.clone(), b0.clone(), a1.clone(), a0.clone()]).expect("append"), vec![3]);
    assert_eq!(store.append(std::slice::from_ref(&a1)).expect("append"), Vec::<u64>::new());
    assert_eq!(store.head(), 3);
    let all = store.events_after(0, 100).expect("read");
    assert_eq!(all.iter().map(|e| (e.event_id, e.anomaly.clone())).collect::<Vec<_>>(), vec![(1, a0.clone()), (2, b0.clone()), (3, a1.clone())]);
    assert_eq!(store.events_after(2, 100).expect("read").len(), 1);
    assert_eq!(store.events_after(1, 1).expect("read")[0].event_id, 2);
    assert!(store.events_after(3, 100).expect("read").is_empty());
    assert!(store.events_after(u64::MAX, 100).expect("read").is_empty());
    // Latest state is the highest revision, even when an older one arrives late.
    assert_eq!(
        store.get(a0.anomaly_id.as_bytes()).expect("get"),
        Some(LatestAnomaly { anomaly: a1.clone(), event_id: 3, peak: Some(Severity::Critical), actions: Vec::new() })
    );
    drop(store);
    // Reopened: head, ids and dedup survive.
    let store = AnomalyStore::open(dir.path()).expect("reopen");
    assert_eq!(store.head(), 3);
    assert_eq!(store.append(&[a0, a1, b0]).expect("append"), Vec::<u64>::new());
    let rx = store.subscribe();
    store.append(&[anomaly(AnomalyKind::GeoShift, "link:c", 0, 0, Severity::Info)]).expect("append");
    assert_eq!(*rx.borrow(), 4);
}

#[test]
fn list_pages_match_a_naive_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnomalyStore::open(dir.path()).expect("open");
    let mut latest: std::collections::BTreeMap<[u8; 16], Anomaly> = Default::default();
    let mut batch = Vec::new();
    for i in 0..60i64 {
        let kind = AnomalyKind::ALL[(i % 6) as usize];
        let sev = Severity::ALL[(i % 3) as usize];
        let ws = (i % 17) * 60_000 - 120_000; // duplicate and negative starts
        let a = anomaly(kind, &format!("link:c{}", i % 7), ws, 0, sev);
        batch.push(a.clone());
        latest.insert(*a.anomaly_id.as_bytes(), a.clone());
        if i % 4 == 0 {
            let up = anomaly(kind, &format!("link:c{}", i % 7), ws, 1, Severity::Critical);
            batch.push(up.clone());
            latest.insert(*a.anomaly_id.as_bytes(), up);
        }
    }
    store.append(&batch).expect("append");
    let keep = |a: &Anomaly| a.severity != Severity::Info;
    let mut want: Vec<&Anomaly> = latest.values().filter(|a| keep(a)).collect();
    want.sort_by(|x, y| (y.window_start, y.anomaly_id.as_bytes()).cmp(&(x.window_start, x.anomaly_id.as_bytes())));
    let mut got = Vec::new();
    let mut after = None;
    loop {
        let (page, more) = store.list(after, None, 7, &keep).expect("list");
        got.extend(page.iter().map(|l| l.anomaly.clone()));
        if !more {
            break;
        }
        let last = page.last().expect("non-empty page");
        after = Some((last.anomaly.window_start, *last.anomaly.anomaly_id.as_bytes()));
    }
    assert_eq!(got.iter().collect::<Vec<_>>(), want);
    // start_before bounds the scan.
    let (page, _) = store.list(None, Some(0), 1000, &|_| true).expect("list");
    let want_before: Vec<&Anomaly> = {
        let mut v: Vec<&Anomaly> = latest.values().filter(|a| a.window_start < 0).collect();
        v.sort_by(|x, y| (y.window_start, y.anomaly_id.as_bytes()).cmp(&(x.window_start, x.anomaly_id.as_bytes())));
        v
    };
    assert_eq!(page.iter().map(|l| &l.anomaly).collect::<Vec<_>>(), want_before);
}

#[test]
fn webhook_deliveries_are_enqueued_once_and_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnomalyStore::open(dir.path()).expect("open");
    store.append(&[anomaly(AnomalyKind::ClickBurst, "link:a", 0, 0, Severity::Warning)]).expect("append");
    let hook = super::recovery_tests::webhook("0190-hook");
    let stored = store.create_webhook(hook.clone(), 100).expect("create").expect("under the cap");
    assert_eq!(stored.cursor, 1, "a new webhook starts at the head");
    store.append(&[anomaly(AnomalyKind::ClickBurst, "link:b", 0, 0, Severity::Warning)]).expect("append");
    let ds = store.enqueue_deliveries(&hook.id, &[(2, "{}".to_owned())], 2, 100).expect("enqueue").expect("some");
    assert_eq!(ds.len(), 1);
    assert_eq!((ds[0].delivery_id, ds[0].event_id, ds[0].state), (1, 2, DeliveryState::Pending));
    // A second enqueue for the same range is refused (cursor already there).
    assert_eq!(store.enqueue_deliveries(&hook.id, &[(2, "{}".to_owned())], 2, 100).expect("enqueue"), None);
    assert_eq!(store.webhook(&hook.id).expect("get").expect("exists").cursor, 2);
    assert_eq!(store.pending_deliveries().expect("pending"), ds);
    let mut d = ds[0].clone();
    d.attempts.push(DeliveryAttempt { attempt: 1, at_ms: 101, duration_ms: 3, status_code: Some(500), error: None });
    store.update_delivery(&d).expect("update");
    assert_eq!(store.pending_deliveries().expect("pending"), vec![d.clone()]);
    d.state = DeliveryState::Succeeded;
    store.update_delivery(&d).expect("update");
    assert!(store.pending_deliveries().expect("pending").is_empty());
    assert_eq!(store.deliveries(&hook.id, None, 10).expect("list"), (vec![d.clone()], false));
    // Another webhook's prefix does not leak into this one's list.
    assert_eq!(store.deliveries("0190-hoo", None, 10).expect("list"), (vec![], false));
    assert!(store.delete_webhook(&hook.id).expect("delete"));
    assert!(!store.delete_webhook(&hook.id).expect("delete"));
    assert_eq!(store.enqueue_deliveries(&hook.id, &[(3, "{}".to_owned())], 3, 100).expect("enqueue"), None);
}

/// QA finding (session 54): 150 concurrent creates against a cap of 100 stored 108 (the
/// count was read before, not in, the insert's transaction). Count and insert are now one
/// write transaction: exactly 100 are stored, the other 50 are refused.
#[test]
fn concurrent_webhook_creates_never_pass_the_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(AnomalyStore::open(dir.path()).expect("open"));
    let threads: Vec<_> = (0..150)
        .map(|i| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || store.create_webhook(super::recovery_tests::webhook(&format!("hook-{i:03}")), 100).expect("create").is_some())
        })
        .collect();
    let created = threads.into_iter().map(|t| t.join().expect("thread")).filter(|&ok| ok).count();
    assert_eq!((created, store.webhooks().expect("list").len()), (100, 100));
    // At the cap a create is refused; after a delete it is stored again.
    let first = store.webhooks().expect("list")[0].clone();
    let again = WebhookRecord { id: "hook-new".into(), ..first.clone() };
    assert_eq!(store.create_webhook(again.clone(), 100).expect("create"), None);
    assert!(store.delete_webhook(&first.id).expect("delete"));
    assert_eq!(store.create_webhook(again, 100).expect("create").map(|r| r.id), Some("hook-new".to_owned()));
}

#[test]
fn actions_are_recorded_once_per_name_joined_into_reads_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a0 = anomaly(AnomalyKind::ClickBurst, "link:hot", 1_000, 0, Severity::Critical);
    let b0 = anomaly(AnomalyKind::BotShare, "link:other", 2_000, 0, Severity::Critical);
    let act = |outcome: &str, at_ms: i64| actions::AnomalyAction {
        action: "disable".into(),
        outcome: outcome.into(),
        code: "hot".into(),
        actor: "auto-action".into(),
        at_ms,
        event_id: 1,
    };
    {
        let store = AnomalyStore::open(dir.path()).expect("open");
        store.append(&[a0.clone(), b0.clone()]).expect("append");
        assert_eq!(store.cursor("auto-actions").expect("cursor"), None);
        assert!(store.record_action(a0.anomaly_id.as_bytes(), &act("applied", 10)).expect("record"));
        // Same action name again: kept as first recorded.
        assert!(!store.record_action(a0.anomaly_id.as_bytes(), &act("already_disabled", 20)).expect("record"));
        store.set_cursor("auto-actions", 2).expect("set cursor");
        // A later revision of the anomaly carries the actions too.
        store.append(&[anomaly(AnomalyKind::ClickBurst, "link:hot", 1_000, 1, Severity::Critical)]).expect("append");
    }
    let store = AnomalyStore::open(dir.path()).expect("reopen");
    assert_eq!(store.cursor("auto-actions").expect("cursor"), Some(2));
    assert_eq!(store.cursor("other").expect("cursor"), None);
    let want = vec![act("applied", 10)];
    assert_eq!(store.actions(a0.anomaly_id.as_bytes()).expect("actions"), want);
    assert_eq!(store.actions(b0.anomaly_id.as_bytes()).expect("actions"), Vec::new());
    let events = store.events_after(0, 10).expect("events");
    let got: Vec<(u64, usize)> = events.iter().map(|e| (e.event_id, e.actions.len())).collect();
    assert_eq!(got, vec![(1, 1), (2, 0), (3, 1)]);
    assert_eq!(store.get(a0.anomaly_id.as_bytes()).expect("get").expect("some").actions, want);
    let (page, more) = store.list(None, None, 10, &|_| true).expect("list");
    assert!(!more);
    let listed: Vec<(String, Vec<actions::AnomalyAction>)> = page.into_iter().map(|l| (l.anomaly.key, l.actions)).collect();
    assert_eq!(listed, vec![("link:other".to_string(), Vec::new()), ("link:hot".to_string(), want)]);
}

#[test]
fn open_anomalies_are_the_latest_events_not_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnomalyStore::open(dir.path()).expect("open");
    assert_eq!(store.open_anomalies().expect("read"), Vec::<Anomaly>::new());
    let a0 = anomaly(AnomalyKind::VisitorFlood, "visitor:00000000000000aa", 1_000, 0, Severity::Critical);
    let a1 = anomaly(AnomalyKind::VisitorFlood, "visitor:00000000000000aa", 1_000, 1, Severity::Warning);
    let b0 = anomaly(AnomalyKind::ClickBurst, "link:b", 2_000, 0, Severity::Info);
    let b9 = anomaly(AnomalyKind::ClickBurst, "link:b", 2_000, 9, Severity::Info);
    let c0 = anomaly(AnomalyKind::BotShare, "link:c", 3_000, 0, Severity::Warning);
    store.append(&[a0, a1.clone(), b0, b9, c0.clone()]).expect("append");
    let mut got = store.open_anomalies().expect("read");
    got.sort_by_key(|a| a.window_start);
    assert_eq!(got, vec![a1, c0]);
}

/// What a dataflow start reads: every open anomaly, and the closed ones ending after its
/// bound (exclusive), without evidence, by `window_end` — range reads of `by_end` that follow
/// each anomaly's latest state.
#[test]
fn closed_ending_after_is_the_closed_ones_past_the_bound_without_evidence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnomalyStore::open(dir.path()).expect("open");
    assert_eq!(store.closed_ending_after(i64::MIN, &|_| true).expect("read"), Vec::<Anomaly>::new());
    // Closed (revision 9): window_end = window_start + 600 000.
    let old = anomaly(AnomalyKind::ClickBurst, "link:old", 1_000, 9, Severity::Info);
    let edge = anomaly(AnomalyKind::ClickBurst, "link:edge", 2_000, 9, Severity::Info);
    let late = anomaly(AnomalyKind::VisitorFlood, "visitor:00000000000000aa", 3_000, 9, Severity::Critical);
    let open0 = anomaly(AnomalyKind::BotShare, "link:open", 500, 0, Severity::Warning);
    let open1 = anomaly(AnomalyKind::BotShare, "link:open", 500, 1, Severity::Warning);
    store.append(&[old.clone(), edge.clone(), open0.clone(), late.clone()]).expect("append");
    let bare = |a: &Anomaly| Anomaly { evidence: Evidence::default(), summary: String::new(), ..a.clone() };
    let ids = |v: Vec<Anomaly>| v.into_iter().map(|a| a.key).collect::<Vec<_>>();
    assert_eq!(store.closed_ending_after(601_999, &|_| true).expect("read"), vec![bare(&edge), bare(&late)]);
    assert_eq!(ids(store.closed_ending_after(602_000, &|_| true).expect("read")), vec!["visitor:00000000000000aa"], "window_end 602 000 is not after 602 000");
    assert_eq!(ids(store.closed_ending_after(i64::MIN, &|a| a.kind == AnomalyKind::ClickBurst).expect("read")), vec!["link:old", "link:edge"]);
    assert_eq!(store.closed_ending_after(i64::MAX, &|_| true).expect("read"), Vec::<Anomaly>::new());
    assert_eq!(store.open_anomalies().expect("read"), vec![open0.clone()]);
    // The open one updated, then closed: it moves from the open range to its window_end.
    store.append(std::slice::from_ref(&open1)).expect("append");
    assert_eq!(store.open_anomalies().expect("read"), vec![open1]);
    let mut closed = anomaly(AnomalyKind::BotShare, "link:open", 500, 2, Severity::Warning);
    closed.status = AnomalyStatus::Closed;
    store.append(std::slice::from_ref(&closed)).expect("append");
    assert_eq!(store.open_anomalies().expect("read"), Vec::<Anomaly>::new());
    assert_eq!(
        ids(store.closed_ending_after(0, &|_| true).expect("read")),
        vec!["link:open", "link:old", "link:edge", "visitor:00000000000000aa"],
        "window_end 180 500 first"
    );
}

/// A file whose index is not up to date with its events (written by a sluice that did not
/// keep `by_end`: simulated by removing the index and its mark) gets it rebuilt at open.
#[test]
fn an_open_rebuilds_an_index_that_is_not_up_to_date() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnomalyStore::open(dir.path()).expect("open");
    let closed = anomaly(AnomalyKind::ClickBurst, "link:c", 1_000, 9, Severity::Info);
    let open = anomaly(AnomalyKind::GeoShift, "link:o", 2_000, 0, Severity::Info);
    store.append(&[closed.clone(), open.clone()]).expect("append");
    drop(store);
    {
        let db = redb::Database::create(dir.path().join(ANOMALY_STORE_FILE_NAME)).expect("redb");
        let txn = db.begin_write().expect("txn");
        txn.delete_table(replay_index::BY_END).expect("drop the index");
        txn.open_table(recovery::META).expect("meta").remove("by_end_head").expect("unmark");
        txn.commit().expect("commit");
    }
    let store = AnomalyStore::open(dir.path()).expect("reopen");
    assert_eq!(store.open_anomalies().expect("read"), vec![open]);
    assert_eq!(store.closed_ending_after(0, &|_| true).expect("read").into_iter().map(|a| a.anomaly_id).collect::<Vec<_>>(), vec![closed.anomaly_id]);
}

#[test]
fn a_closed_anomaly_takes_no_later_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnomalyStore::open(dir.path()).expect("open");
    let a0 = anomaly(AnomalyKind::VisitorFlood, "visitor:00000000000000aa", 1_000, 0, Severity::Critical);
    let mut closed = anomaly(AnomalyKind::VisitorFlood, "visitor:00000000000000aa", 1_000, 1, Severity::Critical);
    closed.status = AnomalyStatus::Closed;
    let a1 = anomaly(AnomalyKind::VisitorFlood, "visitor:00000000000000aa", 1_000, 1, Severity::Warning);
    let a2 = anomaly(AnomalyKind::VisitorFlood, "visitor:00000000000000aa", 1_000, 2, Severity::Warning);
    let mut closed3 = a2.clone();
    (closed3.revision, closed3.status) = (3, AnomalyStatus::Closed);
    assert_eq!(store.append(&[a0.clone(), closed.clone()]).expect("append"), vec![1, 2]);
    // A replay deriving it further (an update at the closed revision, later revisions, a
    // second close): nothing stored, in one batch or several.
    assert_eq!(store.append(&[a1, a2.clone(), closed3.clone()]).expect("append"), Vec::<u64>::new());
    assert_eq!(store.append(std::slice::from_ref(&closed3)).expect("append"), Vec::<u64>::new());
    assert_eq!(store.head(), 2);
    assert_eq!(store.get(a0.anomaly_id.as_bytes()).expect("get").map(|l| (l.anomaly, l.event_id)), Some((closed.clone(), 2)));
    // Within one batch too: events after the close in the same append are dropped.
    let b0 = anomaly(AnomalyKind::ClickBurst, "link:b", 2_000, 0, Severity::Info);
    let mut b1 = anomaly(AnomalyKind::ClickBurst, "link:b", 2_000, 1, Severity::Info);
    b1.status = AnomalyStatus::Closed;
    let b2 = anomaly(AnomalyKind::ClickBurst, "link:b", 2_000, 2, Severity::Info);
    assert_eq!(store.append(&[b0, b1.clone(), b2]).expect("append"), vec![3, 4]);
    assert_eq!(store.get(b1.anomaly_id.as_bytes()).expect("get").map(|l| l.anomaly), Some(b1));
}

/// The peak severity is the highest of every stored event of the anomaly, whatever the
/// order the revisions arrive in (webhooks deliver `closed` by it).
#[test]
fn the_peak_severity_is_the_highest_of_every_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AnomalyStore::open(dir.path()).expect("open");
    let r0 = anomaly(AnomalyKind::VisitorFlood, "visitor:1", 1_000, 0, Severity::Info);
    let r1 = anomaly(AnomalyKind::VisitorFlood, "visitor:1", 1_000, 1, Severity::Warning);
    let mut r2 = anomaly(AnomalyKind::VisitorFlood, "visitor:1", 1_000, 2, Severity::Info);
    r2.status = AnomalyStatus::Closed;
    let id = *r0.anomaly_id.as_bytes();
    let peak = |store: &AnomalyStore| store.get(&id).expect("get").map(|l| (l.anomaly.revision, l.peak_severity()));
    store.append(std::slice::from_ref(&r0)).expect("append");
    assert_eq!(peak(&store), Some((0, Severity::Info)));
    store.append(std::slice::from_ref(&r2)).expect("append");
    assert_eq!(peak(&store), Some((2, Severity::Info)));
    // revision 1 arrives after the close: not the latest, but it raises the peak
    store.append(std::slice::from_ref(&r1)).expect("append");
    assert_eq!(peak(&store), Some((2, Severity::Warning)));
}
