//! Keeps the dataflow's blocklist input equal to the store's run-time blocklist, whichever
//! process changed it (the admin API of this process also feeds changes directly).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sluice_connectors::LinkStore;
use sluice_dataflows::anomaly::BlocklistSender;

/// Brings `feed` to the store's current entries: inserts missing ones, removes ones no
/// longer stored. Returns `(inserted, removed)`. Stores without admin state leave it as is.
pub async fn sync_once(store: &dyn LinkStore, feed: &BlocklistSender) -> sluice_connectors::Result<(usize, usize)> {
    let Some(admin) = store.admin() else { return Ok((0, 0)) };
    // Canonical forms: an entry an earlier version stored as `::ffff:10.0.0.1` is `10.0.0.1`
    // in the feed (which normalizes what it is given), so it must be compared as such.
    let stored: BTreeSet<String> = super::policy::blocklist_entries(admin).await?.into_iter().map(|e| e.pattern).collect();
    let current: BTreeSet<String> = feed.entries().into_iter().collect();
    let (mut inserted, mut removed) = (0, 0);
    for p in stored.difference(&current) {
        if feed.insert(p).is_ok() {
            inserted += 1;
        }
    }
    for p in current.difference(&stored) {
        if feed.remove(p).is_ok() {
            removed += 1;
        }
    }
    Ok((inserted, removed))
}

/// Spawns a task that runs [`sync_once`] now and then every `interval` until the runtime
/// stops (store errors are logged and retried at the next tick).
pub fn sync_blocklist(store: Arc<dyn LinkStore>, feed: BlocklistSender, interval: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sync_once(store.as_ref(), &feed).await {
                Ok((0, 0)) => {}
                Ok((inserted, removed)) => tracing::debug!(inserted, removed, "dataflow blocklist synced from the store"),
                Err(e) => tracing::warn!(error = %e, "could not read the blocklist for the dataflow"),
            }
        }
    })
}
