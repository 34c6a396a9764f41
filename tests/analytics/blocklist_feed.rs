//! The dataflow's blocklist follows the store's run-time blocklist in canonical form: an entry
//! an earlier version stored as an IPv6 spelling of an IPv4 address (`::ffff:10.0.0.1`)
//! reaches the dataflow as `10.0.0.1` and stays there (the periodic sync compares canonical
//! forms, so it does not remove and re-add it at every pass).

use std::time::{Duration, Instant};

use crate::harness::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_stored_in_an_old_spelling_feeds_the_dataflow_in_canonical_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start_in(dir.path(), |c| c.dataflow.meta_poll_interval = Duration::from_millis(100)).await;
    crate::old_blocklist::store_old_spelling(s.system.store().admin().expect("admin store"), None).await;
    let feed = s.system.job().and_then(sluice::job::DataflowJob::blocklist).expect("the dataflow's blocklist");
    let t0 = Instant::now();
    while feed.entries() != ["10.0.0.1"] {
        assert!(t0.elapsed() < Duration::from_secs(10), "the entry reaches the dataflow: {:?}", feed.entries());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Ten sync passes later it is still there, every time we look.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        assert_eq!(feed.entries(), ["10.0.0.1"]);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s.stop().await;
}
