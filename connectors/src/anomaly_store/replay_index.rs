//! Table `by_end`: the latest state of every anomaly keyed by where a replay of the click log
//! can still meet it, so that the dataflow's start reads only the anomalies it may reconcile
//! (README, "Anomalies open across a restart") with range reads instead of a scan of every
//! anomaly ever stored.
//!
//! Key: sortable `end` ‖ anomaly id (24 bytes, the layout of `by_start`), where `end` is the
//! closed anomaly's `window_end` (ms UTC) and [`OPEN_END`] for one still open (`open` or
//! `updated`). So:
//! * [`AnomalyStore::open_anomalies`] is the range from [`OPEN_END`];
//! * [`AnomalyStore::closed_ending_after`]`(t)` is the range `(t, OPEN_END)`.
//!
//! Kept in the transaction of every append. The store's meta table records the event id the
//! index is up to date with (`by_end_head`); an open that finds another value (a file of a
//! sluice that did not keep the index, or one written by it since) rebuilds the index from
//! `latest` in the open's transaction, once.

use redb::{ReadableTable, Table, WriteTransaction};
use sluice_schemas::{Anomaly, AnomalyStatus};

use super::{LATEST, LatestAnomaly, decode, recovery::META, start_key, store_err};
use crate::error::Result;

/// The `by_end` table.
pub(super) const BY_END: redb::TableDefinition<&[u8], ()> = redb::TableDefinition::new("by_end");

/// `end` of an anomaly still open: after every closed one's `window_end` (event times end in
/// year 9999).
pub(super) const OPEN_END: i64 = i64::MAX;

/// Meta key: the event id `by_end` is up to date with.
const INDEX_HEAD: &str = "by_end_head";

/// The `by_end` key of latest state `a`.
pub(super) fn key(a: &Anomaly) -> [u8; 24] {
    let end = if a.status == AnomalyStatus::Closed { a.window_end } else { OPEN_END };
    start_key(end, a.anomaly_id.as_bytes())
}

/// Moves the anomaly's entry from latest state `prev` (if any) to `new`.
pub(super) fn replace(table: &mut Table<'_, &'static [u8], ()>, prev: Option<&Anomaly>, new: &Anomaly) -> Result<()> {
    if let Some(p) = prev {
        table.remove(key(p).as_slice()).map_err(|e| store_err("append anomalies", e))?;
    }
    table.insert(key(new).as_slice(), ()).map_err(|e| store_err("append anomalies", e))?;
    Ok(())
}

/// Records, in `txn`, that the index is up to date with event id `head` (`op`: what the
/// transaction does, for errors).
pub(super) fn mark(txn: &WriteTransaction, head: u64, op: &'static str) -> Result<()> {
    let mut meta = txn.open_table(META).map_err(|e| store_err(op, e))?;
    meta.insert(INDEX_HEAD, head).map_err(|e| store_err(op, e))?;
    Ok(())
}

/// At open (in its write transaction `txn`, with `head` the last event id): rebuilds the
/// index from `latest` unless it is marked up to date with `head`. Returns whether it did.
pub(super) fn ensure(txn: &WriteTransaction, head: u64) -> Result<bool> {
    let marked = {
        let meta = txn.open_table(META).map_err(|e| store_err("open", e))?;
        meta.get(INDEX_HEAD).map_err(|e| store_err("open", e))?.map(|v| v.value())
    };
    if marked == Some(head) {
        return Ok(false);
    }
    let latest = txn.open_table(LATEST).map_err(|e| store_err("open", e))?;
    let mut by_end = txn.open_table(BY_END).map_err(|e| store_err("open", e))?;
    by_end.retain(|_, _| false).map_err(|e| store_err("open", e))?;
    for entry in latest.iter().map_err(|e| store_err("open", e))? {
        let (_, v) = entry.map_err(|e| store_err("open", e))?;
        let rec: LatestAnomaly = decode("anomaly", v.value())?;
        by_end.insert(key(&rec.anomaly).as_slice(), ()).map_err(|e| store_err("open", e))?;
    }
    drop((latest, by_end));
    mark(txn, head, "open")?;
    Ok(true)
}
