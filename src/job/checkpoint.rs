//! Checkpoint files of the click dataflow: `<data-dir>/checkpoints/`, taken every
//! `[dataflow] checkpoint-interval` and at graceful shutdown, loaded at start so a restart
//! resumes from the snapshot instead of replaying the whole click topic (or log).
//!
//! ## What a checkpoint holds
//! [`sluice_dataflows::checkpoint::DataflowSnapshot`] at one consistent cut: every rollup row
//! (clicks + serialized visitor sketch), the dedup state (event ids within the horizon),
//! the flood cap's per-visitor counts (snapshot version 2; a version-1 file restores with
//! none, with a warning), the partition and global watermarks, and the next offset of every source partition such
//! that every record below it — and none at or above it — is reflected in that state.
//!
//! ## When it is written
//! A round ([`take`]) first holds the sources until the abuse detectors have evaluated every
//! click read (at most [`SETTLE_TIMEOUT`]; their windows are not in the snapshot, so a cut
//! holding a click they have not seen would lose its detection after a crash:
//! [`sluice_dataflows::checkpoint::CheckpointHandle::quiesce`]), asks the pipeline for a
//! snapshot, lets the sources read on, then waits until every external view
//! sink (Redis, ClickHouse) has durably applied the change stream up to the cut before the
//! file is written: a restored process re-emits changes only for records after the cut, so
//! the sinks must already hold everything before it.
//!
//! ## File format (version [`FILE_VERSION`])
//! ```text
//! bytes 0..8    magic "SLUICECK"
//! bytes 8..12   file format version, u32 little-endian
//! bytes 12..20  payload length n, u64 little-endian
//! bytes 20..52  SHA-256 of the payload
//! bytes 52..    payload: bincode 1 of CheckpointFile (snapshot layout version inside)
//! ```
//! Files are named `ckpt-<n, 20 digits>.bin` with n the cut epoch (wall-clock ms) or, when
//! that is not above every intact checkpoint's name (the clock was stepped back), one more
//! than the highest (stepping over a number another file holds): names sort in write order
//! whatever the clock did, so the newest intact file is always the one written last. A file
//! named like a checkpoint that is none (garbage, cut short, not a regular file) names
//! nothing: it is skipped with a warning and never written over; one whose input cannot be
//! read (garbage) is never pruned either (it may be the user's: remove it by hand). A round removes stale `*.tmp` files (a write that failed,
//! e.g. on a full disk), writes `<name>.tmp`, fsyncs
//! it, renames it into place, fsyncs the directory, then deletes all but the newest
//! [`KEEP`] intact files (checksum verified) of the same input (another input's files stay: switching from the embedded
//! log to Kafka and back must find the log's checkpoints). At start the newest file that reads back whole (magic, version, length,
//! checksum, decode, same source) wins; a corrupt or partial one is skipped with a warning.
//! When a checkpoint of another input is newer than the one restored (the input was
//! switched), the views resend every retained row to the sinks once restored ([`switch`]).
//!
//! ## Which offsets win (Kafka mode)
//! With a checkpoint, the sources start at the **checkpoint's** offsets, whatever the
//! consumer group committed. The restored state is exactly "everything below these offsets",
//! so starting anywhere else would double-count (earlier) or lose (later) clicks. The group's
//! commits (every second, after the sinks applied) are normally ahead of the checkpoint;
//! they serve lag monitoring and the sinks' effectively-once bookkeeping. Without a
//! checkpoint the sources replay the topic from its earliest offset, since the in-memory
//! state is empty.

mod files;
mod format;
mod load;
mod round;
mod switch;

pub use files::{KEEP, dir_of, list_intact, next_name, remove_all, write};
pub use format::{CheckpointFile, FILE_VERSION, MAGIC, SourceIdentity, decode, encode};
pub use load::{NewestOfPartition, StartCheckpoint, load_for_start, load_latest, load_latest_for_log, newest_of_partition, refuse_without_log, side_file_hint};
pub use round::{ACK_TIMEOUT, Checkpointer, SETTLE_TIMEOUT, kafka_offsets, run, take};
pub use switch::{InputSwitch, resend_after_switch};

#[cfg(test)]
mod tests;
