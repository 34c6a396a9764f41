//! Store ids and retired codes (a lost store's codes that must not be given out again).

use chrono::TimeDelta;
use sluice_connectors::{Error, LinkPatch};

use crate::harness::{Ctx, link, t0};

pub async fn store_id_is_created_once(ctx: Ctx) {
    let id = ctx.open().await.store_id().await.expect("store id").expect("real stores have an id");
    sluice_connectors::migrate(&ctx.target).await.expect("migrate");
    assert_eq!(ctx.open().await.store_id().await.expect("store id"), Some(id), "reopening and migrating keep the id");
}

/// Log-check requests: numbered from 1, answered all at once, kept across a reopen and a
/// migrate; answering writes only when a request waits.
pub async fn log_check_requests_are_numbered_and_answered(ctx: Ctx) {
    let store = ctx.open().await;
    assert!(!store.answer_log_checks().await.expect("answer"), "no request: nothing written");
    let first = store.request_log_check().await.expect("request").expect("real stores number requests");
    assert_eq!(first, 1);
    assert!(!store.log_check_answered(first).await.expect("read"), "not answered yet");
    let second = store.request_log_check().await.expect("request").expect("number");
    assert_eq!(second, 2);
    assert!(store.answer_log_checks().await.expect("answer"));
    assert!(!store.answer_log_checks().await.expect("answer"), "all answered: nothing written");
    assert!(store.log_check_answered(first).await.expect("read") && store.log_check_answered(second).await.expect("read"));
    let third = ctx.open().await.request_log_check().await.expect("request").expect("number");
    assert_eq!(third, 3, "numbers go on in another connection");
    assert!(!store.log_check_answered(third).await.expect("read"));
    sluice_connectors::migrate(&ctx.target).await.expect("migrate");
    let store = ctx.open().await;
    assert!(store.log_check_answered(second).await.expect("read"), "kept across a reopen and a migrate");
    assert!(!store.log_check_answered(third).await.expect("read"));
}

/// The change mark is the number of the last change in the feed (0 for a new store; a
/// failed write moves neither), kept across a reopen; `unknown_codes` leaves out every code a
/// link has (live or deleted) or that is retired, case-sensitively, in the input's order.
pub async fn the_change_mark_follows_the_feed_and_unknown_codes_are_those_never_stored(ctx: Ctx) {
    let store = ctx.open().await;
    assert_eq!(store.change_high_water().await.expect("mark"), Some(0));
    store.insert(&link("a", t0())).await.expect("insert a");
    store.insert(&link("b", t0())).await.expect("insert b");
    assert!(store.insert(&link("a", t0())).await.is_err());
    let patch = LinkPatch { enabled: Some(false), ..LinkPatch::default() };
    store.update("a", &patch, None, t0() + TimeDelta::seconds(1)).await.expect("update a");
    store.delete("b", None, t0() + TimeDelta::seconds(2)).await.expect("delete b");
    store.retire_codes(&["r".to_string()]).await.expect("retire");
    let last_in_feed = store.changes_since(0, 100).await.expect("feed").last().map(|(n, _)| *n);
    assert_eq!(last_in_feed, Some(4), "four writes");
    assert_eq!(store.change_high_water().await.expect("mark"), last_in_feed);
    assert_eq!(ctx.open().await.change_high_water().await.expect("mark"), last_in_feed, "kept across a reopen");
    let asked: Vec<String> = ["x", "a", "b", "r", "A", "with\0nul", "x", ""].iter().map(|s| s.to_string()).collect();
    let unknown = store.unknown_codes(&asked).await.expect("unknown codes");
    assert_eq!(unknown, vec!["x".to_string(), "A".into(), "x".into(), "".into()]);
    assert_eq!(store.unknown_codes(&[]).await.expect("none asked"), Vec::<String>::new());
    // The epoch: none until written; each write a new value, kept across a reopen.
    assert_eq!(store.epoch().await.expect("epoch"), None);
    let e1 = store.new_epoch().await.expect("new epoch").expect("real stores have epochs");
    assert_eq!(store.epoch().await.expect("epoch"), Some(e1));
    let e2 = store.new_epoch().await.expect("new epoch").expect("epoch");
    assert_ne!(e1, e2);
    assert_eq!(ctx.open().await.epoch().await.expect("epoch"), Some(e2));
    assert_eq!(store.change_high_water().await.expect("mark"), last_in_feed, "an epoch is no change");
}

/// Two stores of one backend (run by `main.rs` with each harness twice, nested).
pub async fn two_stores_have_different_ids(a: &Ctx, b: &Ctx) {
    let id_a = a.open().await.store_id().await.expect("store id").expect("id");
    let id_b = b.open().await.store_id().await.expect("store id").expect("id");
    assert_ne!(id_a, id_b);
}

pub async fn retired_codes_are_refused_for_ever_and_others_are_not(ctx: Ctx) {
    let store = ctx.open().await;
    store.insert(&link("live", t0())).await.expect("insert live");
    let codes: Vec<String> = ["gone", "Gone2", "live", "gone", "with\0nul"].iter().map(|s| s.to_string()).collect();
    store.retire_codes(&codes).await.expect("retire");
    store.retire_codes(&["gone".to_string()]).await.expect("retiring again is fine");
    store.retire_codes(&[]).await.expect("retiring nothing is fine");
    // Long after any tombstone period, and after a reopen.
    let later = t0() + TimeDelta::days(3650);
    let store = ctx.open().await;
    for code in ["gone", "Gone2"] {
        match store.insert(&link(code, later)).await {
            Err(Error::CodeTaken(c)) => assert_eq!(c, code),
            other => panic!("{code}: expected CodeTaken, got {other:?}"),
        }
        assert_eq!(store.get(code).await.expect("get"), None);
        assert!(store.is_retired(code).await.expect("is_retired"), "{code}");
    }
    for code in ["gone2", "GONE", "never", "with\0nul", ""] {
        assert!(!store.is_retired(code).await.expect("is_retired"), "{code:?}");
    }
    // A retired code that has a live link keeps it.
    assert_eq!(store.get("live").await.expect("get").map(|l| l.code), Some("live".to_string()));
    // Case-sensitive, like codes: "gone2" and "GONE" were not retired.
    for code in ["gone2", "GONE"] {
        assert_eq!(store.insert(&link(code, later)).await.expect("not retired").code, code);
    }
}

/// `live_codes` answers exactly the asked codes a live link has: not deleted ones, not
/// retired ones, not other cases, not codes with NUL; across more than one chunk of the
/// query; compared with `get`, code by code.
pub async fn live_codes_are_the_asked_codes_of_live_links(ctx: Ctx) {
    let store = ctx.open().await;
    let n = sluice_connectors::LIVE_CODES_CHUNK + 7;
    // every third code is deleted; codes with characters JSON and SQL quote
    let codes: Vec<String> = (0..n).map(|i| if i % 5 == 0 { format!("q\"'\\{i}") } else { format!("c{i}") }).collect();
    for (i, c) in codes.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        store.insert(&link(c, t0())).await.expect("insert");
        if i % 3 == 0 {
            store.delete(c, None, t0() + TimeDelta::seconds(1)).await.expect("delete");
        }
    }
    store.retire_codes(&["retired".to_string()]).await.expect("retire");
    let mut asked = codes.clone();
    asked.extend(["retired", "C2", "with\0nul", ""].iter().map(|s| s.to_string()));
    let mut live = store.live_codes(&asked).await.expect("live codes");
    live.sort();
    let mut expected = Vec::new();
    for c in &asked {
        if store.get(c).await.expect("get").is_some() {
            expected.push(c.clone());
        }
    }
    expected.sort();
    let independent: usize = (0..n).filter(|i| i % 2 == 0 && i % 3 != 0).count();
    assert_eq!(expected.len(), independent, "the reference itself: even, not a multiple of 3");
    assert_eq!(live, expected);
    assert_eq!(store.live_codes(&[]).await.expect("none asked"), Vec::<String>::new());
}
