//! Logging each message about an I/O error and its recovery once per I/O-error episode, for
//! the embedded stores that reopen their redb file after an I/O error: the click log
//! (`click_log/recovery.rs`) and the anomaly store (`anomaly_store/recovery.rs`).
//!
//! A full disk retried for minutes would log the same lines at every retry: the I/O error,
//! the failed close, redb's recovery of the file not closed cleanly and its fallback from the
//! commit the error tore (at each reopen), the failed or successful reopen. A store keeps one
//! [`Episode`] and logs each [`Said`] through [`once_per_episode!`]: at its level the first
//! time in the episode, at debug level after that. The episode lasts from an I/O error until a
//! write commits again; [`Episode::end`] then gives its counts, for the one line the store
//! logs about its end, and the next episode logs each message at its level again.

use std::sync::atomic::{AtomicU64, Ordering};

/// Logs at `$level` the first time `$what` (a [`Said`]) happens in `$episode` (an
/// [`Episode`]), at debug level after that. The rest are the arguments of the `tracing`
/// macro; the event's target is the module of the caller, as for a `tracing` macro written
/// there.
macro_rules! once_per_episode {
    ($episode:expr, $what:expr, $level:ident, $($arg:tt)+) => {
        if $episode.first($what) {
            tracing::$level!($($arg)+)
        } else {
            tracing::debug!($($arg)+)
        }
    };
}
pub(crate) use once_per_episode;

/// What a store says about an I/O error and its recovery, each once per [`Episode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Said {
    /// An operation failed with an I/O error: the file is closed and reopened.
    IoError,
    /// Closing the file after the error failed (redb repeats the error it latched).
    CloseFailed,
    /// The file was not closed cleanly (the close failed): redb recovers it at a reopen.
    NotClosedCleanly,
    /// The file is no longer at its path: reopened through the store's own descriptor (the
    /// click log only).
    ViaDescriptor,
    /// redb fell back from the newest commit (the one the I/O error tore) at a reopen.
    Fallback,
    /// A reopen failed.
    ReopenFailed,
    /// The file was reopened.
    Reopened,
}

impl Said {
    /// How many there are (the variants are indexed from 0).
    const COUNT: usize = Said::Reopened as usize + 1;
}

impl From<crate::redb_open::RepairWarning> for Said {
    fn from(which: crate::redb_open::RepairWarning) -> Said {
        match which {
            crate::redb_open::RepairWarning::NotClosedCleanly => Said::NotClosedCleanly,
            crate::redb_open::RepairWarning::FellBack => Said::Fallback,
        }
    }
}

/// How often each [`Said`] happened in a store's current I/O-error episode: from an I/O
/// error until a write commits again (module docs).
#[derive(Debug, Default)]
pub(crate) struct Episode {
    /// Occurrences, indexed by [`Said`].
    counts: [AtomicU64; Said::COUNT],
}

impl Episode {
    /// Counts one `what`; `true` when it is the first of the episode (log it at its level).
    pub(crate) fn first(&self, what: Said) -> bool {
        self.counts[what as usize].fetch_add(1, Ordering::AcqRel) == 0
    }

    /// Ends the episode (a write committed): each message is logged at its level again the
    /// next time. Returns the episode's I/O errors and reopens; `None` when nothing happened.
    pub(crate) fn end(&self) -> Option<(u64, u64)> {
        if self.counts.iter().all(|c| c.load(Ordering::Acquire) == 0) {
            return None;
        }
        let counts = self.counts.each_ref().map(|c| c.swap(0, Ordering::AcqRel));
        Some((counts[Said::IoError as usize], counts[Said::Reopened as usize]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each message of an I/O-error episode is said at its level the first time only; a
    /// write that commits ends the episode with its counts, and the next episode says each
    /// again.
    #[test]
    fn each_message_is_said_once_per_io_error_episode() {
        let e = Episode::default();
        assert_eq!(e.end(), None, "no episode: nothing to end");
        let said: Vec<bool> = (0..3).flat_map(|_| [Said::IoError, Said::Fallback, Said::Reopened]).map(|what| e.first(what)).collect();
        assert_eq!(said, [true, true, true, false, false, false, false, false, false]);
        assert!(e.first(Said::CloseFailed), "each message is counted on its own");
        assert_eq!(e.end(), Some((3, 3)));
        assert_eq!(e.end(), None, "ended");
        assert!(e.first(Said::Fallback), "a new episode says it again");
        assert!(!e.first(Said::Fallback));
    }

    /// Every message has a counter of its own, the last one included.
    #[test]
    fn each_said_has_its_own_counter() {
        let all = [Said::IoError, Said::CloseFailed, Said::NotClosedCleanly, Said::ViaDescriptor, Said::Fallback, Said::ReopenFailed, Said::Reopened];
        assert_eq!(all.len(), Said::COUNT);
        let e = Episode::default();
        assert!(all.iter().all(|&what| e.first(what)), "each is the first of its kind");
        assert!(all.iter().all(|&what| !e.first(what)), "each is counted");
        assert_eq!(e.end(), Some((2, 2)));
    }
}
