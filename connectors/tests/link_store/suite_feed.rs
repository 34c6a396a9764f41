//! Change feed, idempotency records and migrations.

use std::sync::Arc;

use chrono::TimeDelta;
use sluice_connectors::{AdminStore, Error, HOLD_ADMIN, IdempotencyRecord, LinkChange, LinkHold, LinkPatch, as_inserted, migrate};

use crate::harness::{Ctx, link, micros, stored, t0};

pub async fn change_feed_numbers_every_write_in_commit_order(ctx: Ctx) {
    let store = ctx.open().await;
    assert_eq!(store.changes_since(0, 100).await.expect("empty feed"), vec![]);
    let a = store.insert(&link("a", t0())).await.expect("insert a");
    let b = store.insert(&link("b", t0())).await.expect("insert b");
    // Failed writes leave no trace and no gap.
    assert!(store.insert(&link("a", t0())).await.is_err());
    let patch = LinkPatch { enabled: Some(false), ..LinkPatch::default() };
    assert!(store.update("a", &patch, Some(7), t0()).await.is_err());
    assert!(store.update("zz", &patch, None, t0()).await.is_err());
    assert!(store.delete("zz", None, t0()).await.is_err());
    let a2 = store.update("a", &patch, Some(1), t0() + TimeDelta::seconds(1)).await.expect("update a").link;
    store.delete("b", None, t0() + TimeDelta::seconds(2)).await.expect("delete b");
    let c = store.insert(&link("c", t0())).await.expect("insert c");

    let feed = store.changes_since(0, 100).await.expect("feed");
    let numbers: Vec<i64> = feed.iter().map(|(n, _)| *n).collect();
    let first = numbers[0];
    assert_eq!(numbers, (first..first + 5).collect::<Vec<_>>(), "gapless, increasing");
    let changes: Vec<LinkChange> = feed.into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        changes,
        vec![
            LinkChange::Upserted(a.clone()),
            LinkChange::Upserted(b),
            LinkChange::Upserted(a2),
            LinkChange::Deleted("b".into()),
            LinkChange::Upserted(c.clone()),
        ]
    );
    // Resuming after a number returns exactly the rest.
    let rest = store.changes_since(first + 2, 100).await.expect("rest");
    assert_eq!(rest.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![first + 3, first + 4]);
    assert_eq!(store.changes_since(first + 4, 100).await.expect("tail"), vec![]);

    // The list keyset of a link is the number of its creating change.
    let listed = store.list(&sluice_connectors::ListQuery { limit: 10, ..Default::default() }).await.expect("list");
    assert_eq!(listed.iter().map(|(s, l)| (*s, l.code.as_str())).collect::<Vec<_>>(), vec![(first, "a"), (first + 4, "c")]);
}

/// An update that changes nothing the link shows (an empty patch, fields set to their
/// current values, the owner's `enabled` recorded under a hold) takes no change number: the
/// next real change gets exactly the next number after the last one, no gap.
pub async fn a_no_op_update_takes_no_change_number(ctx: Ctx) {
    let store = ctx.open().await;
    let admin: &dyn AdminStore = store.admin().expect("both stores have the admin store");
    store.insert(&link("n", t0())).await.expect("insert n");
    store.insert(&link("h", t0())).await.expect("insert h");
    let hold = LinkHold { source: HOLD_ADMIN.into(), reason: None, actor: "admin-token".into(), created_at: t0() };
    assert!(admin.hold_link("h", &hold, t0(), None).await.expect("hold h").changed);
    let feed = store.changes_since(0, 100).await.expect("feed");
    let numbers: Vec<i64> = feed.iter().map(|(n, _)| *n).collect();
    let first = numbers[0];
    assert_eq!(numbers, vec![first, first + 1, first + 2], "insert n, insert h, hold h");
    let at = |s: i64| t0() + TimeDelta::seconds(s);

    let same = LinkPatch { long_url: Some(link("n", t0()).long_url), enabled: Some(true), ..LinkPatch::default() };
    let owner_on = LinkPatch { enabled: Some(true), ..LinkPatch::default() };
    for (what, code, patch) in [("empty patch", "n", LinkPatch::default()), ("same values", "n", same), ("owner's enabled under a hold", "h", owner_on)] {
        let out = store.update(code, &patch, None, at(1)).await.expect(what);
        assert!(!out.written, "{what}: {out:?}");
    }
    assert_eq!(store.changes_since(first + 2, 100).await.expect("feed"), vec![], "no entry for a no-op");

    // The next real changes: exactly first + 3 and first + 4.
    let off = LinkPatch { enabled: Some(false), ..LinkPatch::default() };
    let n2 = store.update("n", &off, Some(1), at(2)).await.expect("disable n");
    assert!(n2.written);
    store.delete("n", None, at(3)).await.expect("delete n");
    let rest = store.changes_since(first + 2, 100).await.expect("feed");
    assert_eq!(rest, vec![(first + 3, LinkChange::Upserted(n2.link)), (first + 4, LinkChange::Deleted("n".into()))]);
    // And the next link's list sequence number (its creating change) is first + 5.
    store.insert(&link("m", t0())).await.expect("insert m");
    let listed = store.list(&sluice_connectors::ListQuery { limit: 10, ..Default::default() }).await.expect("list");
    assert_eq!(listed.iter().map(|(s, l)| (*s, l.code.as_str())).collect::<Vec<_>>(), vec![(first + 1, "h"), (first + 5, "m")]);
}

pub async fn change_feed_pages_by_limit(ctx: Ctx) {
    let store = ctx.open().await;
    for i in 0..25 {
        store.insert(&link(&format!("f{i:02}"), t0())).await.expect("insert");
    }
    let mut after = 0;
    let mut codes = Vec::new();
    loop {
        let page = store.changes_since(after, 10).await.expect("page");
        assert!(page.len() <= 10);
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, c) in page {
            match c {
                LinkChange::Upserted(l) => codes.push(l.code),
                LinkChange::Deleted(c) => panic!("unexpected delete of {c}"),
            }
        }
    }
    assert_eq!(codes, (0..25).map(|i| format!("f{i:02}")).collect::<Vec<_>>());
}

fn record(key: &str, body: &str, at: chrono::DateTime<chrono::Utc>) -> IdempotencyRecord {
    IdempotencyRecord { key: key.to_string(), request_hash: format!("hash-of-{body}"), status: 201, body: body.to_string(), created_at: at }
}

pub async fn idempotency_records_expire_after_24_hours(ctx: Ctx) {
    let store = ctx.open().await;
    let rec = record("links:k1", r#"{"code":"x"}"#, t0());
    store.idempotency_put(&rec).await.expect("put");
    let expected = IdempotencyRecord { created_at: micros(t0()), ..rec.clone() };
    let at = |d: TimeDelta| micros(t0()) + d;
    assert_eq!(store.idempotency_get("links:k1", at(TimeDelta::hours(1))).await.expect("get"), Some(expected.clone()));
    assert_eq!(store.idempotency_get("links:k1", at(TimeDelta::hours(24) - TimeDelta::microseconds(1))).await.expect("get"), Some(expected.clone()));
    assert_eq!(store.idempotency_get("links:k1", at(TimeDelta::hours(24))).await.expect("get"), None);
    assert_eq!(store.idempotency_get("links:other", at(TimeDelta::hours(1))).await.expect("get"), None);

    // Inside the window the key is taken, whatever the body.
    let again = record("links:k1", "different", at(TimeDelta::hours(23)));
    assert!(matches!(store.idempotency_put(&again).await, Err(Error::IdempotencyKeyExists)));
    assert_eq!(store.idempotency_get("links:k1", at(TimeDelta::hours(23))).await.expect("get"), Some(expected));

    // Another key is independent.
    store.idempotency_put(&record("links:k2", "b2", at(TimeDelta::hours(23)))).await.expect("put k2");

    // Once expired the key can be recorded again, with a new body.
    let renewed = record("links:k1", "renewed", at(TimeDelta::hours(24)));
    store.idempotency_put(&renewed).await.expect("put after expiry");
    assert_eq!(store.idempotency_get("links:k1", at(TimeDelta::hours(25))).await.expect("get"), Some(renewed));
    assert_eq!(store.idempotency_get("links:k2", at(TimeDelta::hours(25))).await.expect("get").map(|r| r.body), Some("b2".to_string()));
}

pub async fn concurrent_idempotency_puts_yield_one_winner(ctx: Ctx) {
    let store = ctx.open().await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { (i, store.idempotency_put(&record("links:race", &format!("body{i}"), t0())).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.expect("join") {
            (i, Ok(())) => winners.push(i),
            (_, Err(Error::IdempotencyKeyExists)) => {}
            (_, Err(e)) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let got = store.idempotency_get("links:race", t0()).await.expect("get").expect("recorded");
    assert_eq!(got.body, format!("body{}", winners[0]));
}

/// `insert_idempotent` is one transaction: a taken key stores no link, a taken code stores
/// no record; on success both are stored, the link exactly as `as_inserted` says.
pub async fn insert_idempotent_stores_the_link_and_its_record_or_neither(ctx: Ctx) {
    let store = ctx.open().await;
    let mut l = link("idem-a", t0());
    l.tags = vec!["x".into(), "x".into(), "y".into()];
    let want = stored(&l);
    assert_eq!(as_inserted(&l).expect("storable"), want);
    let rec = record("links:ka", r#"{"code":"idem-a"}"#, t0());
    assert_eq!(store.insert_idempotent(&l, &rec).await.expect("insert"), want);
    assert_eq!(store.get("idem-a").await.expect("get"), Some(want.clone()));
    let stored_rec = IdempotencyRecord { created_at: micros(t0()), ..rec.clone() };
    assert_eq!(store.idempotency_get("links:ka", t0()).await.expect("get"), Some(stored_rec.clone()));
    let feed_len = store.changes_since(0, 100).await.expect("feed").len();

    // The key is taken: nothing is stored, the record is unchanged (whatever the code).
    let other = record("links:ka", "other body", t0() + TimeDelta::hours(1));
    assert!(matches!(store.insert_idempotent(&link("idem-b", t0()), &other).await, Err(Error::IdempotencyKeyExists)));
    assert!(matches!(store.insert_idempotent(&link("idem-a", t0()), &other).await, Err(Error::IdempotencyKeyExists)), "the key is checked first");
    assert_eq!(store.get("idem-b").await.expect("get"), None);
    assert_eq!(store.idempotency_get("links:ka", t0()).await.expect("get"), Some(stored_rec));

    // The code is taken: no record is stored for the new key, no link changes.
    let fresh = record("links:kb", "body b", t0());
    assert!(matches!(store.insert_idempotent(&link("idem-a", t0()), &fresh).await, Err(Error::CodeTaken(c)) if c == "idem-a"));
    assert_eq!(store.idempotency_get("links:kb", t0()).await.expect("get"), None);
    assert_eq!(store.get("idem-a").await.expect("get"), Some(want));
    assert_eq!(store.changes_since(0, 100).await.expect("feed").len(), feed_len, "failed calls leave no change");

    // An unstorable record stores no link either.
    let bad = IdempotencyRecord { body: "nul\0".into(), ..record("links:kc", "", t0()) };
    assert!(matches!(store.insert_idempotent(&link("idem-c", t0()), &bad).await, Err(Error::InvalidValue { field: "body", .. })));
    assert_eq!(store.get("idem-c").await.expect("get"), None);
}

/// Two stores on one database (two processes): concurrent `insert_idempotent` calls with
/// one key and one code store exactly one link and one record; every loser is told the
/// key is taken (never that the code is), so it can replay the record.
pub async fn concurrent_insert_idempotent_across_two_stores_yields_one_link(ctx: Ctx) {
    let stores = [ctx.open().await, ctx.open().await];
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            tokio::spawn(async move { (i, store.insert_idempotent(&link("race-alias", t0()), &record("links:race", &format!("body{i}"), t0())).await) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.expect("join") {
            (i, Ok(l)) => winners.push((i, l)),
            (_, Err(Error::IdempotencyKeyExists)) => {}
            (_, Err(e)) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "one winner");
    let (i, won) = &winners[0];
    assert_eq!(won, &stored(&link("race-alias", t0())));
    for store in &stores {
        assert_eq!(store.get("race-alias").await.expect("get").as_ref(), Some(won));
        let rec = store.idempotency_get("links:race", t0()).await.expect("get").expect("recorded");
        assert_eq!(rec.body, format!("body{i}"));
    }
}

pub async fn migrate_reports_applied_versions(ctx: Ctx) {
    let first = migrate(&ctx.target).await.expect("migrate");
    assert_eq!(first.before, Vec::<i64>::new());
    assert_eq!(first.after, vec![1, 2, 3]);
    assert_eq!(first.newly_applied(), vec![1, 2, 3]);
    let second = migrate(&ctx.target).await.expect("migrate again");
    assert_eq!((second.before.clone(), second.after.clone()), (vec![1, 2, 3], vec![1, 2, 3]));
    assert!(second.newly_applied().is_empty());
    // The migrated store opens and works.
    let store = ctx.open().await;
    store.insert(&link("m", t0())).await.expect("insert");
}
