//! What was done about an anomaly (the admin auto-actions), and the consumers' cursors, in
//! the anomaly store's file.
//!
//! - **Actions** ([`AnomalyAction`]): recorded per anomaly id, at most one per action name
//!   ([`AnomalyStore::record_action`] is idempotent), and joined into every read of the
//!   anomaly ([`super::StoredEvent::actions`], [`super::LatestAnomaly::actions`]) — the
//!   dataflow's events themselves never change.
//! - **Cursors**: the last event id a named consumer has processed
//!   ([`AnomalyStore::cursor`], [`AnomalyStore::set_cursor`]), so a restarted consumer
//!   resumes where it stopped instead of re-reading the store.
//!
//! Tables: `anomaly_actions` (anomaly id bytes → JSON list of [`AnomalyAction`], oldest
//! first), `consumer_cursors` (consumer name → event id).

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{AnomalyStore, decode, encode, store_err};
use crate::error::Result;

pub(super) const ACTIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("anomaly_actions");
pub(super) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("consumer_cursors");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(ACTIONS).map_err(|e| store_err("open", e))?;
    txn.open_table(CURSORS).map_err(|e| store_err("open", e))?;
    Ok(())
}

/// One action taken because of an anomaly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyAction {
    /// What: `"disable"`.
    pub action: String,
    /// How it went: `"applied"` (the link was disabled by this action) or
    /// `"already_disabled"` (an admin hold was already there; nothing changed).
    pub outcome: String,
    /// The link acted on.
    pub code: String,
    /// Who: `"auto-action"`.
    pub actor: String,
    /// When, ms since the epoch UTC.
    pub at_ms: i64,
    /// The anomaly event that triggered it.
    pub event_id: u64,
}

/// The actions stored for `id` in `table`, oldest first.
pub(super) fn read_actions(table: &impl ReadableTable<&'static [u8], &'static [u8]>, id: &[u8]) -> Result<Vec<AnomalyAction>> {
    match table.get(id).map_err(|e| store_err("read anomaly actions", e))? {
        Some(v) => decode("anomaly actions", v.value()),
        None => Ok(Vec::new()),
    }
}

impl AnomalyStore {
    /// Records `action` for the anomaly with these id bytes unless one with the same
    /// `action` name is already recorded for it; returns whether it was added. Durable when
    /// it returns.
    ///
    /// Errors: [`crate::Error::AnomalyStore`] (disk), [`crate::Error::Corrupt`].
    pub fn record_action(&self, anomaly_id: &[u8; 16], action: &AnomalyAction) -> Result<bool> {
        self.with_db_write(|db| {
            let txn = db.begin_write().map_err(|e| store_err("record anomaly action", e))?;
            let added = {
                let mut table = txn.open_table(ACTIONS).map_err(|e| store_err("record anomaly action", e))?;
                let mut list = read_actions(&table, anomaly_id)?;
                if list.iter().any(|a| a.action == action.action) {
                    false
                } else {
                    list.push(action.clone());
                    table.insert(anomaly_id.as_slice(), encode(&list)?.as_slice()).map_err(|e| store_err("record anomaly action", e))?;
                    true
                }
            };
            txn.commit().map_err(|e| store_err("record anomaly action", e))?;
            Ok(added)
        })
    }

    /// The actions recorded for the anomaly with these id bytes, oldest first.
    ///
    /// Errors: [`crate::Error::AnomalyStore`], [`crate::Error::Corrupt`].
    pub fn actions(&self, anomaly_id: &[u8; 16]) -> Result<Vec<AnomalyAction>> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| store_err("read anomaly actions", e))?;
            let table = txn.open_table(ACTIONS).map_err(|e| store_err("read anomaly actions", e))?;
            read_actions(&table, anomaly_id)
        })
    }

    /// The last event id consumer `name` processed (`None` before its first
    /// [`Self::set_cursor`]).
    ///
    /// Errors: [`crate::Error::AnomalyStore`].
    pub fn cursor(&self, name: &str) -> Result<Option<u64>> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| store_err("read a consumer cursor", e))?;
            let table = txn.open_table(CURSORS).map_err(|e| store_err("read a consumer cursor", e))?;
            Ok(table.get(name).map_err(|e| store_err("read a consumer cursor", e))?.map(|v| v.value()))
        })
    }

    /// Sets consumer `name`'s cursor to `event_id` (durable when it returns).
    ///
    /// Errors: [`crate::Error::AnomalyStore`].
    pub fn set_cursor(&self, name: &str, event_id: u64) -> Result<()> {
        self.with_db_write(|db| {
            let txn = db.begin_write().map_err(|e| store_err("write a consumer cursor", e))?;
            {
                let mut table = txn.open_table(CURSORS).map_err(|e| store_err("write a consumer cursor", e))?;
                table.insert(name, event_id).map_err(|e| store_err("write a consumer cursor", e))?;
            }
            txn.commit().map_err(|e| store_err("write a consumer cursor", e))?;
            Ok(())
        })
    }
}
