//! The embedded anomaly store: one redb file (`anomalies.redb`) in the data directory holding
//! every anomaly event the dataflow emitted (an append-only sequence numbered by a
//! monotonic `u64` event id, starting at 1), the latest state of each anomaly, and the webhook
//! subscriptions with their delivery records ([`webhooks`]).
//!
//! Consumers: the binary's anomaly writer (appends what the dataflow's `AnomalySink` emits),
//! `GET /v1/anomalies` (latest states, newest first), `GET /v1/anomalies/stream` and the
//! webhook dispatcher (events after a sequence number, woken by [`AnomalyStore::subscribe`]),
//! the admin auto-actions.
//!
//! Guarantees:
//! - [`AnomalyStore::append`] is one ACID write transaction, durable when it returns.
//! - Idempotent: an event whose `(anomaly_id, revision)` is already stored is dropped (a
//!   start that replays the click log from its first offset emits the same events again, and
//!   so does the retry of a commit that reached the disk although it reported a failure), so
//!   the event sequence holds each lifecycle event once and event ids never change.
//! - After an I/O error (a full disk) the file is closed and reopened by the next operation,
//!   and a file deleted while open is written back to its path from the open file
//!   (`recovery.rs`: [`AnomalyStore::check_file`], [`AnomalyStore::probe_write`]).
//! - Event ids are assigned in commit order, without gaps; a reader that has seen every
//!   event up to `n` and then reads [`AnomalyStore::events_after`]`(n)` misses nothing.
//! - The latest state of an anomaly is the event with the highest `revision` seen.
//! - Closed is final: an event with a revision above a stored `closed` one is dropped (a
//!   replay after a restored run may derive an anomaly that run closed a little differently).
//!   [`AnomalyStore::open_anomalies`] lists those not closed, for restored detectors, and
//!   [`AnomalyStore::closed_ending_after`] the closed ones a replay of the click log can still
//!   meet (both range reads of `by_end`).
//!
//! Tables: `events` (event id → anomaly JSON), `event_keys` (anomaly id ‖ revision → event
//! id), `latest` (anomaly id → [`LatestAnomaly`] JSON), `by_start` (sortable `window_start` ‖
//! anomaly id → ()), `by_end` (sortable closing `window_end`, or the end of time while open,
//! ‖ anomaly id → (); `replay_index.rs`), plus the webhook tables of [`webhooks`] and the action and cursor tables
//! of [`actions`].

pub mod actions;
mod recovery;
mod replay_index;
pub mod webhooks;

#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

pub use recovery::{FileCheck, REOPEN_BACKOFF_INITIAL, REOPEN_BACKOFF_MAX};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sluice_schemas::{Anomaly, AnomalyStatus, Severity};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// File name of the store inside the data directory.
pub const ANOMALY_STORE_FILE_NAME: &str = "anomalies.redb";

/// What starting without a damaged `anomalies.redb` loses ([`Error::StoreDamaged`]).
const ANOMALY_STORE_LOSES: &str = "the anomaly history, webhook subscriptions, pending deliveries and recorded actions in it are lost";

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const EVENT_KEYS: TableDefinition<&[u8], u64> = TableDefinition::new("event_keys");
const LATEST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("latest");
const BY_START: TableDefinition<&[u8], ()> = TableDefinition::new("by_start");

/// One stored event: its sequence number and the anomaly event as the dataflow emitted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Event id: position in the store's sequence, from 1, monotonic, without gaps.
    pub event_id: u64,
    /// The event.
    pub anomaly: Anomaly,
    /// The actions recorded for the anomaly as of the read ([`actions`]), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<actions::AnomalyAction>,
}

/// The latest state of one anomaly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestAnomaly {
    /// Its event with the highest revision.
    pub anomaly: Anomaly,
    /// Event id of that event.
    pub event_id: u64,
    /// Highest severity of any stored event of the anomaly (`None` in records written
    /// before it was kept: [`LatestAnomaly::peak_severity`] then falls back to the latest
    /// event's). Webhooks deliver the `closed` event to every subscriber the peak reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<Severity>,
    /// The actions recorded for the anomaly as of the read ([`actions`]), oldest first.
    /// Kept in their own table (never in the stored JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<actions::AnomalyAction>,
}

impl LatestAnomaly {
    /// The highest severity the anomaly reached (see [`LatestAnomaly::peak`]).
    pub fn peak_severity(&self) -> Severity {
        self.peak.unwrap_or(self.anomaly.severity).max(self.anomaly.severity)
    }
}

/// Position of an anomaly in the newest-first order of [`AnomalyStore::list`]:
/// `(window_start ms UTC, anomaly id bytes)`, compared in that order.
pub type ListPosition = (i64, [u8; 16]);

/// Handle to the store; share it with `Arc`.
#[derive(Debug)]
pub struct AnomalyStore {
    /// `<dir>/anomalies.redb`.
    path: PathBuf,
    /// The open file (`None` while closed after an I/O error and not reopened yet).
    db: RwLock<Option<Database>>,
    /// Reopen and file-identity state (`recovery.rs`).
    recovery: Mutex<recovery::Recovery>,
    /// Set when an I/O error closed the file; the next operation reopens it.
    needs_reopen: AtomicBool,
    /// The I/O error that closed the file, or the latest failure to reopen it.
    failure: Mutex<String>,
    /// Set while the latest reopen found the file deleted ([`Error::AnomalyStoreLost`]: the
    /// store reports that instead of "closed, reopened by the next operation").
    lost: AtomicBool,
    /// What the current I/O-error episode logged (`recovery.rs`).
    episode: Arc<crate::io_episode::Episode>,
    head: watch::Sender<u64>,
}

pub(crate) fn store_err(op: &'static str, e: impl Into<redb::Error>) -> Error {
    Error::AnomalyStore { op, source: Box::new(e.into()) }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("undecodable {what} in the anomaly store: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Corrupt(format!("could not encode for the anomaly store: {e}")))
}

/// `window_start` as 8 bytes whose byte order is the numeric order (sign bit flipped,
/// big-endian), then the 16 id bytes.
fn start_key(window_start: i64, id: &[u8; 16]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&((window_start as u64) ^ (1 << 63)).to_be_bytes());
    k[8..].copy_from_slice(id);
    k
}

fn event_key(id: &[u8; 16], revision: u32) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..16].copy_from_slice(id);
    k[16..].copy_from_slice(&revision.to_be_bytes());
    k
}

impl AnomalyStore {
    /// Opens (creating if missing) `dir/anomalies.redb`, with redb's integrity check
    /// ([`crate::redb_open`]): a file redb repairs opens with a warning.
    ///
    /// Errors: [`Error::StoreDamaged`] when the file fails the integrity check and cannot be
    /// repaired; [`Error::AnomalyStore`] when the directory or file cannot be created or
    /// opened otherwise (e.g. another process holds it).
    pub fn open(dir: &Path) -> Result<AnomalyStore> {
        std::fs::create_dir_all(dir).map_err(|e| store_err("create its directory", redb::Error::Io(e)))?;
        let path = dir.join(ANOMALY_STORE_FILE_NAME);
        let (db, head) = open_file(&path, |_| true)?;
        let file_id = crate::file_id::file_id(&path).ok();
        Ok(AnomalyStore {
            path,
            db: RwLock::new(Some(db)),
            recovery: Mutex::new(recovery::Recovery::new(file_id)),
            needs_reopen: AtomicBool::new(false),
            failure: Mutex::new(String::new()),
            lost: AtomicBool::new(false),
            episode: Arc::default(),
            head: watch::channel(head).0,
        })
    }

    /// Refuses a damaged `dir/anomalies.redb` as [`Self::open`] would, without writing to it
    /// or creating anything ([`crate::redb_open::check_before_open`]): for a start that must
    /// refuse the file before it opens the click log. A missing file, one another process
    /// holds and one that cannot be read pass (the open reports those).
    ///
    /// Errors: [`Error::StoreDamaged`], as [`Self::open`].
    pub fn check_existing(dir: &Path) -> Result<()> {
        let path = dir.join(ANOMALY_STORE_FILE_NAME);
        crate::redb_open::check_before_open(
            &path,
            |detail| Some(Error::StoreDamaged { store: "anomaly store", path: path.display().to_string(), detail, loses: ANOMALY_STORE_LOSES }),
            |_| None,
        )
        .or_else(|damaged| damaged.map_or(Ok(()), Err))
    }

    /// The store's file (`<dir>/anomalies.redb`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the events of `batch` not stored yet (by `(anomaly_id, revision)`; an event
    /// past the anomaly's stored `closed` revision counts as stored), in order,
    /// and updates each anomaly's latest state; returns the event ids assigned (empty when
    /// every event was a replay). Durable when it returns; subscribers are woken after.
    ///
    /// Errors: [`Error::AnomalyStore`] (disk; an I/O error closes the store until the next
    /// operation reopens it), [`Error::AnomalyStoreClosed`] (closed and not reopenable yet),
    /// [`Error::Corrupt`] (an undecodable stored row).
    pub fn append(&self, batch: &[Anomaly]) -> Result<Vec<u64>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let assigned = self.with_db_write(|db| append_in(db, batch))?;
        if let Some(last) = assigned.last() {
            self.head.send_replace(*last);
        }
        Ok(assigned)
    }

    /// The last event id assigned (0 when empty).
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// A receiver of [`Self::head`], changed after every commit that added events.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Up to `limit` events with an id greater than `after`, oldest first.
    ///
    /// Errors: [`Error::AnomalyStore`], [`Error::Corrupt`].
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| store_err("read anomaly events", e))?;
            let events = txn.open_table(EVENTS).map_err(|e| store_err("read anomaly events", e))?;
            let done = txn.open_table(actions::ACTIONS).map_err(|e| store_err("read anomaly events", e))?;
            let mut out = Vec::new();
            let Some(from) = after.checked_add(1) else { return Ok(out) };
            for entry in events.range(from..).map_err(|e| store_err("read anomaly events", e))?.take(limit) {
                let (k, v) = entry.map_err(|e| store_err("read anomaly events", e))?;
                let anomaly: Anomaly = decode("anomaly event", v.value())?;
                let actions = actions::read_actions(&done, anomaly.anomaly_id.as_bytes())?;
                out.push(StoredEvent { event_id: k.value(), anomaly, actions });
            }
            Ok(out)
        })
    }

    /// The latest state of the anomaly with these id bytes.
    ///
    /// Errors: [`Error::AnomalyStore`], [`Error::Corrupt`].
    pub fn get(&self, anomaly_id: &[u8; 16]) -> Result<Option<LatestAnomaly>> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| store_err("read anomalies", e))?;
            let latest = txn.open_table(LATEST).map_err(|e| store_err("read anomalies", e))?;
            let done = txn.open_table(actions::ACTIONS).map_err(|e| store_err("read anomalies", e))?;
            match latest.get(anomaly_id.as_slice()).map_err(|e| store_err("read anomalies", e))? {
                Some(v) => {
                    let mut rec: LatestAnomaly = decode("anomaly", v.value())?;
                    rec.actions = actions::read_actions(&done, anomaly_id)?;
                    Ok(Some(rec))
                }
                None => Ok(None),
            }
        })
    }

    /// The latest event of every anomaly not closed (`open` or `updated`), in anomaly id
    /// order: what detectors restored from a checkpoint take over, and what any start
    /// reconciles its episodes with (the binary's job). A range read of `by_end`: its cost
    /// follows the open anomalies, not the stored ones.
    ///
    /// Errors: [`Error::AnomalyStore`], [`Error::Corrupt`].
    pub fn open_anomalies(&self) -> Result<Vec<Anomaly>> {
        let from = start_key(replay_index::OPEN_END, &[0u8; 16]);
        self.latest_in("read open anomalies", from.as_slice().., |_| true)
    }

    /// The latest event of every closed anomaly whose `window_end` (ms UTC) is after
    /// `after_ms` and that `keep` accepts, by `window_end` then anomaly id, each without its
    /// evidence and summary (`Evidence::default()`, `""`: what the dataflow reconciles with
    /// reads neither). The dataflow's abuse detectors read it once their event-time schedule
    /// starts, with `after_ms` = their first tick minus their window: no episode they open can
    /// overlap a closed anomaly that ended at or before it (README, "Anomalies open across a
    /// restart"). A range read of `by_end`: its cost follows the anomalies after `after_ms`.
    ///
    /// Errors: [`Error::AnomalyStore`], [`Error::Corrupt`].
    pub fn closed_ending_after(&self, after_ms: i64, keep: &dyn Fn(&Anomaly) -> bool) -> Result<Vec<Anomaly>> {
        let Some(from) = after_ms.checked_add(1).filter(|&f| f < replay_index::OPEN_END) else { return Ok(Vec::new()) };
        let (lo, hi) = (start_key(from, &[0u8; 16]), start_key(replay_index::OPEN_END, &[0u8; 16]));
        let mut out = self.latest_in("read closed anomalies", lo.as_slice()..hi.as_slice(), keep)?;
        for a in &mut out {
            a.evidence = sluice_schemas::Evidence::default();
            a.summary = String::new();
        }
        Ok(out)
    }

    /// The latest states of the anomalies whose `by_end` keys are in `range`, in key order,
    /// those `keep` accepts.
    fn latest_in<'k>(&self, op: &'static str, range: impl std::ops::RangeBounds<&'k [u8]> + 'k, keep: impl Fn(&Anomaly) -> bool) -> Result<Vec<Anomaly>> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| store_err(op, e))?;
            let by_end = txn.open_table(replay_index::BY_END).map_err(|e| store_err(op, e))?;
            let latest = txn.open_table(LATEST).map_err(|e| store_err(op, e))?;
            let mut out = Vec::new();
            for entry in by_end.range::<&[u8]>(range).map_err(|e| store_err(op, e))? {
                let (k, _) = entry.map_err(|e| store_err(op, e))?;
                let Some(v) = latest.get(&k.value()[8..]).map_err(|e| store_err(op, e))? else { continue };
                let a = decode::<LatestAnomaly>("anomaly", v.value())?.anomaly;
                if keep(&a) {
                    out.push(a);
                }
            }
            Ok(out)
        })
    }

    /// Latest states, newest first by `(window_start, anomaly id)` descending, starting
    /// strictly after `after` in that order (a previous page's last position) and only those
    /// with `window_start < start_before` when given; keeps those `keep` accepts, at most
    /// `limit`. Returns the page and whether more matching anomalies follow.
    ///
    /// Errors: [`Error::AnomalyStore`], [`Error::Corrupt`].
    pub fn list(
        &self,
        after: Option<ListPosition>,
        start_before: Option<i64>,
        limit: usize,
        keep: &dyn Fn(&Anomaly) -> bool,
    ) -> Result<(Vec<LatestAnomaly>, bool)> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| store_err("list anomalies", e))?;
            let by_start = txn.open_table(BY_START).map_err(|e| store_err("list anomalies", e))?;
            let latest = txn.open_table(LATEST).map_err(|e| store_err("list anomalies", e))?;
            let done = txn.open_table(actions::ACTIONS).map_err(|e| store_err("list anomalies", e))?;
            // Exclusive upper bound in key order.
            let mut upper: Option<[u8; 24]> = after.map(|(ws, id)| start_key(ws, &id));
            if let Some(ws) = start_before {
                let bound = start_key(ws, &[0u8; 16]);
                upper = Some(match upper {
                    Some(u) if u < bound => u,
                    _ => bound,
                });
            }
            let range = match &upper {
                Some(u) => by_start.range::<&[u8]>(..u.as_slice()),
                None => by_start.range::<&[u8]>(..),
            }
            .map_err(|e| store_err("list anomalies", e))?;
            let mut out = Vec::new();
            for entry in range.rev() {
                let (k, _) = entry.map_err(|e| store_err("list anomalies", e))?;
                let id = &k.value()[8..];
                let Some(v) = latest.get(id).map_err(|e| store_err("list anomalies", e))? else { continue };
                let mut rec: LatestAnomaly = decode("anomaly", v.value())?;
                if keep(&rec.anomaly) {
                    if out.len() == limit {
                        return Ok((out, true));
                    }
                    rec.actions = actions::read_actions(&done, id)?;
                    out.push(rec);
                }
            }
            Ok((out, false))
        })
    }
}

/// One append transaction (see [`AnomalyStore::append`]).
fn append_in(db: &Database, batch: &[Anomaly]) -> Result<Vec<u64>> {
    let txn = db.begin_write().map_err(|e| store_err("append anomalies", e))?;

    let mut assigned = Vec::new();
    {
        let mut events = txn.open_table(EVENTS).map_err(|e| store_err("append anomalies", e))?;
        let mut keys = txn.open_table(EVENT_KEYS).map_err(|e| store_err("append anomalies", e))?;
        let mut latest = txn.open_table(LATEST).map_err(|e| store_err("append anomalies", e))?;
        let mut by_start = txn.open_table(BY_START).map_err(|e| store_err("append anomalies", e))?;
        let mut by_end = txn.open_table(replay_index::BY_END).map_err(|e| store_err("append anomalies", e))?;
        let mut next = events.last().map_err(|e| store_err("append anomalies", e))?.map_or(0, |(k, _)| k.value()) + 1;
        for a in batch {
            let id = *a.anomaly_id.as_bytes();
            let ek = event_key(&id, a.revision);
            if keys.get(ek.as_slice()).map_err(|e| store_err("append anomalies", e))?.is_some() {
                continue;
            }
            let prev: Option<LatestAnomaly> = match latest.get(id.as_slice()).map_err(|e| store_err("append anomalies", e))? {
                Some(v) => Some(decode("anomaly", v.value())?),
                None => None,
            };
            if prev.as_ref().is_some_and(|p| p.anomaly.status == AnomalyStatus::Closed && a.revision > p.anomaly.revision) {
                // Closed is final: a replay that derives the anomaly differently (it was
                // closed by a restored run that had lost the windows) does not extend it.
                continue;
            }
            let seq = next;
            next += 1;
            events.insert(seq, encode(a)?.as_slice()).map_err(|e| store_err("append anomalies", e))?;
            keys.insert(ek.as_slice(), seq).map_err(|e| store_err("append anomalies", e))?;
            let newer = prev.as_ref().is_none_or(|p| a.revision > p.anomaly.revision);
            let peak = prev.as_ref().map_or(a.severity, |p| p.peak_severity().max(a.severity));
            if newer {
                if let Some(p) = &prev {
                    let old = start_key(p.anomaly.window_start, &id);
                    by_start.remove(old.as_slice()).map_err(|e| store_err("append anomalies", e))?;
                }
                replay_index::replace(&mut by_end, prev.as_ref().map(|p| &p.anomaly), a)?;
                let rec = LatestAnomaly { anomaly: a.clone(), event_id: seq, peak: Some(peak), actions: Vec::new() };
                latest.insert(id.as_slice(), encode(&rec)?.as_slice()).map_err(|e| store_err("append anomalies", e))?;
                by_start.insert(start_key(a.window_start, &id).as_slice(), ()).map_err(|e| store_err("append anomalies", e))?;
            } else if let Some(mut p) = prev
                && p.peak != Some(peak)
            {
                // An older revision arriving late may still raise the peak.
                p.peak = Some(peak);
                latest.insert(id.as_slice(), encode(&p)?.as_slice()).map_err(|e| store_err("append anomalies", e))?;
            }
            assigned.push(seq);
        }
    }
    if let Some(&head) = assigned.last() {
        replay_index::mark(&txn, head, "append anomalies")?;
    }
    txn.commit().map_err(|e| store_err("append anomalies", e))?;
    Ok(assigned)
}

/// Opens (or creates) the file at `path` with the integrity check and its tables; returns it
/// with the last event id stored. redb's repair warnings are logged at warn level when
/// `warn(which)` says so, at debug level otherwise (a reopen after an I/O error logs them
/// once per episode, `recovery.rs`).
fn open_file(path: &Path, warn: impl Fn(crate::redb_open::RepairWarning) -> bool + std::panic::UnwindSafe + 'static) -> Result<(Database, u64)> {
    let db = crate::redb_open::open_checked_gated(
        path,
        "anomaly store",
        None,
        warn,
        |detail| Error::StoreDamaged { store: "anomaly store", path: path.display().to_string(), detail, loses: ANOMALY_STORE_LOSES },
        |e| store_err("open", e),
        redb::backends::FileBackend::new,
    )?;
    let txn = db.begin_write().map_err(|e| store_err("open", e))?;
    let head = {
        let events = txn.open_table(EVENTS).map_err(|e| store_err("open", e))?;
        txn.open_table(EVENT_KEYS).map_err(|e| store_err("open", e))?;
        txn.open_table(LATEST).map_err(|e| store_err("open", e))?;
        txn.open_table(BY_START).map_err(|e| store_err("open", e))?;
        txn.open_table(recovery::META).map_err(|e| store_err("open", e))?;
        webhooks::create_tables(&txn)?;
        actions::create_tables(&txn)?;
        events.last().map_err(|e| store_err("open", e))?.map_or(0, |(k, _)| k.value())
    };
    if replay_index::ensure(&txn, head)? {
        tracing::debug!(path = %path.display(), head, "anomaly store: index by_end built");
    }
    txn.commit().map_err(|e| store_err("open", e))?;
    Ok((db, head))
}
