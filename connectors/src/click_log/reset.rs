//! Continuing an empty click log at a given offset (`sluice log reset`): a new log that
//! replaces a lost or damaged one starts where the checkpoint taken of the old one ends, so
//! the checkpoint's views and dedup state are the new log's baseline.

use std::sync::atomic::Ordering;

use super::{ClickLog, META, META_HEAD, META_LOW};
use crate::{Error, Result};

impl ClickLog {
    /// Makes this log, which must store no events, continue at `offset`: its `head` and
    /// `low` become `offset` (durably), so the next append gets offset `offset` and readers
    /// see nothing below it. A log already at `offset` is left as it is.
    ///
    /// Errors: [`Error::Config`] when the log stores events (`low < head`) or its head is
    /// already past `offset` (offsets are never reused); [`Error::ClickLog`] on I/O failure.
    pub fn continue_empty_at(&self, offset: u64) -> Result<()> {
        fn err(e: impl Into<redb::Error>) -> Error {
            Error::click_log("move the head", e)
        }
        let mut w = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        self.reopen_if_needed(&mut w)?;
        let (low, head) = (self.low(), w.head);
        let path = self.inner.path.display();
        if low < head {
            return Err(Error::Config(format!("click log \"{path}\" stores {} clicks (offsets {low}..{head}); it is not empty", head - low)));
        }
        if head > offset {
            return Err(Error::Config(format!("click log \"{path}\" is empty but its next offset {head} is past {offset}")));
        }
        if head == offset && low == offset {
            return Ok(());
        }
        self.with_db(|db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut meta = txn.open_table(META).map_err(err)?;
                meta.insert(META_HEAD, offset).map_err(err)?;
                meta.insert(META_LOW, offset).map_err(err)?;
            }
            txn.commit().map_err(err)
        })?;
        self.inner.watch.note_commit();
        w.head = offset;
        self.inner.head.store(offset, Ordering::Release);
        self.inner.low.store(offset, Ordering::Release);
        self.inner.head_tx.send_replace(offset);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::recovery_tests::{event, events};
    use super::*;

    #[test]
    fn an_empty_log_continues_at_the_offset_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ClickLog::open(dir.path()).expect("open");
        log.continue_empty_at(400).expect("continue");
        assert_eq!((log.low(), log.head()), (400, 400));
        assert_eq!(log.append(&events(0..2)).expect("append"), 400..402);
        drop(log);
        let log = ClickLog::open(dir.path()).expect("reopen");
        assert_eq!((log.low(), log.head()), (400, 402));
        assert_eq!(log.read(0, 10).expect("read"), vec![(400, event(0)), (401, event(1))]);
        let e = log.continue_empty_at(500).expect_err("stores events");
        assert_eq!(e.to_string(), format!("invalid configuration: click log \"{}\" stores 2 clicks (offsets 400..402); it is not empty", log.path().display()));
        log.truncate_before(402).expect("truncate");
        let e = log.continue_empty_at(401).expect_err("head past");
        assert_eq!(e.to_string(), format!("invalid configuration: click log \"{}\" is empty but its next offset 402 is past 401", log.path().display()));
        log.continue_empty_at(402).expect("already there");
    }
}
