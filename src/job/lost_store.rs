//! Noticing a lost link store at start-up, and retiring the codes of its links.
//!
//! The click log keeps clicks by link code, and the views count them by code; a link store
//! that is lost (`links.db` deleted, or another database configured) while the click log
//! survives would hand out the codes of its links again, and a new link would inherit their
//! clicks. So `sluice serve` records the link store's id
//! ([`LinkStore::store_id`], created once with the store) in the click log
//! ([`ClickLog::set_link_store_id`]) the first time it runs with that store; at a later
//! start, a log that records another id was written next to a store that is gone: every
//! code with clicks in the log is retired in the new store ([`LinkStore::retire_codes`]:
//! generated codes skip them, custom aliases get 409 `alias_conflict`), then the new id is
//! recorded. A log that records no id (only `sluice import` wrote it, or a sluice before
//! store ids) retires nothing: importing before the first `serve` is legitimate.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sluice_connectors::LinkStore;
use sluice_connectors::click_log::{CLICK_LOG_FILE_NAME, ClickLog};
use sluice_connectors::link_store::SQLITE_FILE_NAME;

use crate::config::Config;

/// What the data dir looked like before the link store was opened (and created if missing).
#[derive(Debug, Clone, Copy)]
pub(super) struct BeforeOpen {
    /// The embedded link store (`links.db`) was missing next to an existing click log.
    embedded_store_missing: bool,
}

impl BeforeOpen {
    /// Looks at `data_dir` for `cfg` (only the embedded store can be missing from it).
    pub(super) fn look(cfg: &Config, data_dir: &Path) -> BeforeOpen {
        let missing = cfg.store.url.trim().is_empty() && !data_dir.join(SQLITE_FILE_NAME).exists() && data_dir.join(CLICK_LOG_FILE_NAME).exists();
        BeforeOpen { embedded_store_missing: missing }
    }
}

/// Compares the store's id with the one `log` records (module docs): retires the log's
/// codes in `store` when they differ, then records the store's id. Stores without an id
/// (test doubles) are not checked. Returns the number of codes retired.
///
/// Errors: the store or the log cannot be read or written (nothing is recorded in the log
/// before the codes are retired, so a failed start retries the whole step).
pub(super) async fn check_link_store(store: &Arc<dyn LinkStore>, log: &ClickLog, before: BeforeOpen) -> anyhow::Result<usize> {
    let Some(id) = store.store_id().await.context("could not read the link store's id")? else {
        return Ok(0);
    };
    let l = log.clone();
    let recorded = tokio::task::spawn_blocking(move || l.link_store_id()).await.context("click log task failed")?.context("could not read the click log")?;
    let retired = match recorded {
        Some(r) if r == id => return Ok(0),
        Some(previous) => {
            let l = log.clone();
            let codes = tokio::task::spawn_blocking(move || l.distinct_codes())
                .await
                .context("click log task failed")?
                .context("could not read the click log's codes")?;
            store.retire_codes(&codes).await.context("could not retire the codes of the lost link store")?;
            tracing::warn!(
                click_log = %log.path().display(),
                previous_store_id = previous,
                store_id = id,
                retired = codes.len(),
                "the link store is not the one this click log was served with (it was lost or replaced): starting with its links missing; the codes with clicks in the log were retired, so no new link gets one and inherits its clicks (restore the old link store from a backup to get its links back)"
            );
            codes.len()
        }
        None => {
            if before.embedded_store_missing && log.head() > log.low() {
                tracing::warn!(
                    click_log = %log.path().display(),
                    "the link store was missing from a data dir that holds a click log no link store was recorded in (written by `sluice import`, or by a sluice before link store ids): no codes were retired; if links were lost, links created now may reuse their codes and inherit their clicks (restore links.db from a backup, or move clicks.redb and checkpoints/ aside to start afresh)"
                );
            }
            0
        }
    };
    let l = log.clone();
    tokio::task::spawn_blocking(move || l.set_link_store_id(id))
        .await
        .context("click log task failed")?
        .context("could not record the link store's id in the click log")?;
    Ok(retired)
}
