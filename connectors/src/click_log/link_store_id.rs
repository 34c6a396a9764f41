//! Which link store the click log was written next to (`meta` key `link_store`), and the
//! codes the log holds: how `sluice serve` notices a lost link store and retires the codes
//! of its links ([`crate::link_store::LinkStore::retire_codes`]).

use std::collections::BTreeSet;

use redb::ReadableDatabase;
use sluice_schemas::avro::decode_click_event;

use super::{ClickLog, META, meta_get};
use crate::{Error, Result};

/// `meta` key: the id of the link store ([`crate::link_store::LinkStore::store_id`]) this log
/// was last served with. Absent in a log only `sluice import` has written.
pub(super) const META_LINK_STORE: &str = "link_store";

/// `meta` key: the highest change number of that link store
/// ([`crate::link_store::LinkStore::change_high_water`]) the process serving this log has
/// seen. A store whose own mark is lower was restored from a backup older than some of the
/// links whose clicks the log may hold. Absent until a `sluice serve` records it.
pub(super) const META_LINK_STORE_SEQ: &str = "link_store_seq";

/// `meta` key: the link store's epoch ([`crate::link_store::LinkStore::new_epoch`]) the
/// process serving this log wrote at its start. A store with another epoch is another copy.
pub(super) const META_LINK_STORE_EPOCH: &str = "link_store_epoch";

/// An epoch no store has ([`crate::link_store::LinkStore::new_epoch`] never returns it):
/// recorded by `sluice log reset` in the log it starts, so that the next start checks the
/// link store against the log and its checkpoint whichever copy of the store it finds.
pub const UNCHECKED_EPOCH: u64 = 0;

impl ClickLog {
    /// The link store id recorded by [`Self::set_link_store_id`], if any.
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure.
    pub fn link_store_id(&self) -> Result<Option<u64>> {
        self.read_meta(META_LINK_STORE)
    }

    /// Records `id` as the link store this log is served with (durably, replacing any other).
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure (nothing is recorded then).
    pub fn set_link_store_id(&self, id: u64) -> Result<()> {
        self.write_meta(META_LINK_STORE, Some(id))
    }

    /// Reads `meta` entry `key`.
    fn read_meta(&self, key: &str) -> Result<Option<u64>> {
        self.ensure_open()?;
        self.with_db(|db| {
            let txn = db.begin_read().map_err(|e| Error::click_log("read log metadata", e))?;
            let meta = txn.open_table(META).map_err(|e| Error::click_log("read log metadata", e))?;
            meta_get(&meta, key)
        })
    }

    /// Writes `meta` entry `key` = `value` (`None`: removes it) in one transaction.
    fn write_meta(&self, key: &str, value: Option<u64>) -> Result<()> {
        fn err(e: impl Into<redb::Error>) -> Error {
            Error::click_log("write log metadata", e)
        }
        let mut w = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        self.reopen_if_needed(&mut w)?;
        self.with_db(|db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut meta = txn.open_table(META).map_err(err)?;
                match value {
                    Some(v) => drop(meta.insert(key, v).map_err(err)?),
                    None => drop(meta.remove(key).map_err(err)?),
                }
            }
            txn.commit().map_err(err)
        })?;
        self.inner.watch.note_commit();
        Ok(())
    }

    /// The link store change mark recorded by [`Self::raise_link_store_seq`] /
    /// [`Self::set_link_store_seq`], if any.
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure.
    pub fn link_store_seq(&self) -> Result<Option<u64>> {
        self.read_meta(META_LINK_STORE_SEQ)
    }

    /// The link store epoch recorded by [`Self::set_link_store_epoch`], if any.
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure.
    pub fn link_store_epoch(&self) -> Result<Option<u64>> {
        self.read_meta(META_LINK_STORE_EPOCH)
    }

    /// Records `epoch` as the link store's (durably, replacing any other; `None` removes it:
    /// the store has none yet).
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure (nothing is recorded then).
    pub fn set_link_store_epoch(&self, epoch: Option<u64>) -> Result<()> {
        self.write_meta(META_LINK_STORE_EPOCH, epoch)
    }

    /// Records `seq` as the link store's change mark unless a higher one is recorded
    /// (durably); returns whether it wrote.
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure (nothing is recorded then).
    pub fn raise_link_store_seq(&self, seq: u64) -> Result<bool> {
        self.write_link_store_seq(seq, true)
    }

    /// Records `seq` as the link store's change mark, replacing any other (also a higher one:
    /// after the restored store's codes were dealt with, its own mark is the one to follow).
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure (nothing is recorded then).
    pub fn set_link_store_seq(&self, seq: u64) -> Result<()> {
        self.write_link_store_seq(seq, false).map(drop)
    }

    fn write_link_store_seq(&self, seq: u64, raise_only: bool) -> Result<bool> {
        fn err(e: impl Into<redb::Error>) -> Error {
            Error::click_log("write log metadata", e)
        }
        let mut w = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        self.reopen_if_needed(&mut w)?;
        let wrote = self.with_db(|db| {
            let txn = db.begin_write().map_err(err)?;
            let wrote = {
                let mut meta = txn.open_table(META).map_err(err)?;
                let now = meta_get(&meta, META_LINK_STORE_SEQ)?;
                let write = !matches!(now, Some(n) if n == seq || (raise_only && n > seq));
                if write {
                    meta.insert(META_LINK_STORE_SEQ, seq).map_err(err)?;
                }
                write
            };
            if wrote {
                txn.commit().map_err(err)?;
            } else {
                txn.abort().map_err(err)?;
            }
            Ok(wrote)
        })?;
        if wrote {
            self.inner.watch.note_commit();
        }
        Ok(wrote)
    }

    /// The distinct link codes of the stored events (offsets from [`Self::low`] up), sorted.
    /// Reads the whole log once; events that do not decode are skipped (with a warning).
    ///
    /// Errors with [`Error::ClickLog`] on I/O failure.
    pub fn distinct_codes(&self) -> Result<Vec<String>> {
        let mut codes = BTreeSet::new();
        let mut undecodable = 0u64;
        self.visit(0, usize::MAX, |_, bytes| {
            match decode_click_event(bytes) {
                Ok(event) => {
                    codes.insert(event.code);
                }
                Err(_) => undecodable += 1,
            }
            Ok(())
        })?;
        if undecodable > 0 {
            tracing::warn!(undecodable, path = %self.path().display(), "click-log events that do not decode were skipped while collecting link codes");
        }
        Ok(codes.into_iter().collect())
    }
}
