//! A link's organisation: set, changed and cleared by an update (a new revision with a
//! change-feed entry, like any other field), and a list filter.

use chrono::TimeDelta;
use sluice_connectors::{Error, LinkChange, LinkPatch, ListQuery};

use crate::harness::{Ctx, link, t0};

pub async fn org_is_updated_cleared_fed_and_filtered(ctx: Ctx) {
    let store = ctx.open().await;
    let mut a = link("a", t0());
    a.org = Some("acme".into());
    store.insert(&a).await.expect("insert a");
    store.insert(&link("b", t0())).await.expect("insert b");
    let mut c = link("c", t0());
    c.org = Some("acme".into());
    store.insert(&c).await.expect("insert c");
    let after_inserts = store.changes_since(0, 100).await.expect("feed").last().expect("three changes").0;

    let set = |org: Option<&str>| LinkPatch { org: Some(org.map(str::to_owned)), ..LinkPatch::default() };
    let at = t0() + TimeDelta::seconds(1);
    let b = store.update("b", &set(Some("acme")), Some(1), at).await.expect("set b's org");
    assert!(b.written);
    assert_eq!((b.link.org.as_deref(), b.link.version), (Some("acme"), 2));
    let a = store.update("a", &set(None), None, at).await.expect("clear a's org");
    assert_eq!((a.link.org, a.written), (None, true));
    // The same value again: no new revision.
    let c = store.update("c", &set(Some("acme")), None, at).await.expect("same org");
    assert_eq!((c.written, c.link.version), (false, 1));
    // Other fields leave the organisation as it is.
    let tagged = store.update("b", &LinkPatch { tags: Some(vec!["t".into()]), ..LinkPatch::default() }, None, at).await.expect("tags");
    assert_eq!(tagged.link.org.as_deref(), Some("acme"));
    assert_eq!(store.get("b").await.expect("get").expect("b").org.as_deref(), Some("acme"));

    // The change feed carries each version's organisation.
    let fed: Vec<(String, Option<String>)> = store
        .changes_since(after_inserts, 100)
        .await
        .expect("feed")
        .into_iter()
        .map(|(_, ch)| match ch {
            LinkChange::Upserted(l) => (l.code, l.org),
            LinkChange::Deleted(code) => panic!("no delete expected: {code}"),
        })
        .collect();
    assert_eq!(fed, [("b".to_owned(), Some("acme".to_owned())), ("a".to_owned(), None), ("b".to_owned(), Some("acme".to_owned()))]);

    let listed = |org: &str| {
        let q = ListQuery { limit: 100, org: Some(org.to_owned()), ..ListQuery::default() };
        let store = store.clone();
        async move { store.list(&q).await.map(|rows| rows.into_iter().map(|(_, l)| l.code).collect::<Vec<_>>()) }
    };
    assert_eq!(listed("acme").await.expect("list"), ["b", "c"]);
    assert_eq!(listed("ACME").await.expect("list"), Vec::<String>::new(), "exact match");
    let both = ListQuery { limit: 100, org: Some("acme".into()), tag: Some("t".into()), ..ListQuery::default() };
    assert_eq!(store.list(&both).await.expect("list").len(), 1);

    // Values no backend can store are refused alike.
    assert!(matches!(store.update("a", &set(Some("x\0y")), None, at).await, Err(Error::InvalidValue { field: "org", .. })));
    assert!(matches!(listed("x\0y").await, Err(Error::InvalidValue { field: "org", .. })));
}
