//! The L2 path of the link cache with an in-memory fake of [`LinkCacheL2`]: L1 misses ask
//! L2 before the store, L2 misses read the store and fill L2, L1 hits never touch L2, a
//! local invalidation bypasses L2 (read-your-writes), `invalidate_all` reloads everything.
//! The Redis implementation is exercised in `redis_l2.rs` (feature `integration-tests`).

mod support;
use support::{ProbeStore, link};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;
use sluice_connectors::{L2Lookup, LinkCacheL2, LinkChange};
use sluice_redirect::RedirectConfig;
use sluice_redirect::cache::LinkCache;
use sluice_redirect::metrics::RedirectMetrics;
use sluice_schemas::Link;

/// L2 fake: a map (`None` = negative entry), counting gets and fills.
#[derive(Default)]
struct FakeL2 {
    entries: Mutex<HashMap<String, Option<Link>>>,
    gets: AtomicUsize,
    fills: Mutex<Vec<(String, Option<String>)>>,
}

#[async_trait]
impl LinkCacheL2 for FakeL2 {
    async fn get(&self, code: &str) -> L2Lookup {
        self.gets.fetch_add(1, Ordering::SeqCst);
        match self.entries.lock().get(code) {
            Some(Some(l)) => L2Lookup::Hit(l.clone()),
            Some(None) => L2Lookup::Absent,
            None => L2Lookup::Miss,
        }
    }
    fn fill(&self, code: &str, link: Option<&Link>) {
        self.fills.lock().push((code.to_string(), link.map(|l| l.long_url.clone())));
        self.entries.lock().entry(code.to_string()).or_insert_with(|| link.cloned());
    }
    fn publish(&self, change: &LinkChange) {
        match change {
            LinkChange::Upserted(l) => self.entries.lock().insert(l.code.clone(), Some(l.clone())),
            LinkChange::Deleted(c) => self.entries.lock().insert(c.clone(), None),
        };
    }
    fn available(&self) -> bool {
        true
    }
}

fn setup() -> (Arc<ProbeStore>, Arc<FakeL2>, LinkCache) {
    let store = Arc::new(ProbeStore::default());
    let l2 = Arc::new(FakeL2::default());
    let cache = LinkCache::new(store.clone(), &RedirectConfig::default(), RedirectMetrics::register()).with_l2(l2.clone());
    (store, l2, cache)
}

fn target(l: &Option<Arc<sluice_redirect::cache::CachedLink>>) -> Option<String> {
    l.as_ref().map(|c| c.location.to_str().expect("ascii").to_owned())
}

#[tokio::test]
async fn l2_hits_and_negative_entries_spare_the_store_and_l1_hits_spare_l2() {
    let (store, l2, cache) = setup();
    l2.entries.lock().insert("a".into(), Some(link("a", "https://e.example/from-l2")));
    l2.entries.lock().insert("gone".into(), None);
    store.links.lock().insert("gone".into(), link("gone", "https://e.example/store"));
    for _ in 0..3 {
        assert_eq!(target(&cache.lookup("a").await.expect("lookup")), Some("https://e.example/from-l2".into()));
        assert_eq!(target(&cache.lookup("gone").await.expect("lookup")), None, "negative L2 entry");
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), 0);
    assert_eq!(l2.gets.load(Ordering::SeqCst), 2, "only the two L1 misses asked L2");
}

#[tokio::test]
async fn l2_misses_read_the_store_and_fill_l2_positively_and_negatively() {
    let (store, l2, cache) = setup();
    store.links.lock().insert("b".into(), link("b", "https://e.example/b"));
    assert_eq!(target(&cache.lookup("b").await.expect("lookup")), Some("https://e.example/b".into()));
    assert_eq!(target(&cache.lookup("none").await.expect("lookup")), None);
    assert_eq!(store.reads.load(Ordering::SeqCst), 2);
    assert_eq!(*l2.fills.lock(), vec![("b".to_string(), Some("https://e.example/b".to_string())), ("none".to_string(), None)]);
}

#[tokio::test]
async fn a_local_invalidation_reads_the_store_not_the_stale_l2_entry() {
    let (store, l2, cache) = setup();
    l2.entries.lock().insert("c".into(), Some(link("c", "https://e.example/old")));
    assert_eq!(target(&cache.lookup("c").await.expect("lookup")), Some("https://e.example/old".into()));
    // The API updated the link; its L2 publish has not landed yet.
    store.links.lock().insert("c".into(), link("c", "https://e.example/new"));
    cache.invalidate("c");
    assert_eq!(target(&cache.lookup("c").await.expect("lookup")), Some("https://e.example/new".into()));
    assert_eq!(store.reads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn invalidate_all_reloads_every_entry_through_l2() {
    let (store, l2, cache) = setup();
    for c in ["x", "y"] {
        l2.entries.lock().insert(c.into(), Some(link(c, &format!("https://e.example/{c}1"))));
        cache.lookup(c).await.expect("lookup");
    }
    for c in ["x", "y"] {
        l2.entries.lock().insert(c.into(), Some(link(c, &format!("https://e.example/{c}2"))));
    }
    assert_eq!(target(&cache.lookup("x").await.expect("lookup")), Some("https://e.example/x1".into()), "still cached");
    cache.invalidate_all();
    for c in ["x", "y"] {
        assert_eq!(target(&cache.lookup(c).await.expect("lookup")), Some(format!("https://e.example/{c}2")));
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), 0, "remote invalidations re-read L2, not the store");
}
