//! The checkpoint file format (module docs of [`super`], "File format"): the payload
//! ([`CheckpointFile`], with the input it was taken of, [`SourceIdentity`]), its framing
//! (magic, version, length, SHA-256) and decoding, snapshot version 1 included.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_dataflows::checkpoint::{DataflowSnapshot, DataflowSnapshotV1, SNAPSHOT_VERSION};

/// Magic bytes at the start of every checkpoint file.
pub const MAGIC: &[u8; 8] = b"SLUICECK";
/// Version of the file framing (bump on any change of the header).
pub const FILE_VERSION: u32 = 1;
/// Bytes of the header before the payload (module docs of [`super`]).
pub(super) const HEADER: usize = 8 + 4 + 8 + 32;

/// Which input a checkpoint's offsets belong to; a checkpoint of another input is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceIdentity {
    /// Kafka mode: the click topic.
    Kafka {
        /// Topic name.
        topic: String,
    },
    /// The embedded click log of this data dir, read as `partition` (checkpoints written
    /// before the log had an id; read only, and taken to be of the current log).
    Log {
        /// Partition (process id).
        partition: u32,
    },
    /// The embedded click log with id `log_id` ([`sluice_connectors::ClickLog::log_id`]),
    /// read as `partition`. (A variant of its own, appended, so files with [`Self::Log`]
    /// still decode.)
    LogFile {
        /// Partition (process id).
        partition: u32,
        /// The log file's id.
        log_id: u64,
    },
}

/// How a checkpoint's input relates to the current one ([`super::load_latest`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Relation {
    /// The same input (or an id-less checkpoint of the same log partition).
    Same,
    /// Another input (another topic or partition): skipped.
    Other,
    /// The same partition of another click log file (a replaced `clicks.redb`): refused.
    OtherLog { checkpoint: u64, current: u64 },
}

/// How `checkpoint` (the input of a checkpoint file) relates to `current`.
pub(super) fn relation(checkpoint: &SourceIdentity, current: &SourceIdentity) -> Relation {
    use SourceIdentity::{Log, LogFile};
    match (checkpoint, current) {
        (a, b) if a == b => Relation::Same,
        (Log { partition: a }, LogFile { partition: b, .. }) if a == b => Relation::Same,
        (LogFile { partition: a, log_id: x }, LogFile { partition: b, log_id: y }) if a == b => Relation::OtherLog { checkpoint: *x, current: *y },
        _ => Relation::Other,
    }
}

/// The payload of a checkpoint file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointFile {
    /// [`SNAPSHOT_VERSION`] of the writer.
    pub snapshot_version: u32,
    /// Wall-clock time of writing, ms since epoch UTC.
    pub created_ms: i64,
    /// The input the offsets refer to.
    pub source: SourceIdentity,
    /// The state.
    pub snapshot: DataflowSnapshot,
}

/// [`CheckpointFile`] as written with snapshot version 1 (no flood-cap counts).
#[derive(Serialize, Deserialize)]
pub(super) struct CheckpointFileV1 {
    pub(super) snapshot_version: u32,
    pub(super) created_ms: i64,
    pub(super) source: SourceIdentity,
    pub(super) snapshot: DataflowSnapshotV1,
}

/// Encodes `file` in the framed format (module docs).
///
/// Errors: serialization failure (not expected for these types).
pub fn encode(file: &CheckpointFile) -> anyhow::Result<Vec<u8>> {
    let payload = bincode::serialize(file).context("could not serialize the checkpoint")?;
    Ok(frame(&payload))
}

/// The header (module docs) followed by `payload`.
pub(super) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

/// Decodes a framed checkpoint.
///
/// A file of snapshot version 1 (written before the flood-cap counts were checkpointed)
/// reads with empty flood-cap counts, and says so in a warning: after the restore, the flood
/// cap counts each visitor's clicks from zero for the minutes the checkpoint covered.
///
/// Errors (each names the problem): wrong magic, unknown file or snapshot version, length
/// mismatch (a partial write), checksum mismatch (corruption), undecodable payload.
pub fn decode(bytes: &[u8]) -> anyhow::Result<CheckpointFile> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        bail!("not a checkpoint file (bad magic or shorter than the header)");
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().context("header")?);
    if version != FILE_VERSION {
        bail!("unknown checkpoint file version {version} (this build reads {FILE_VERSION})");
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().context("header")?);
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        bail!("payload is {} bytes, the header says {len} (partial write)", payload.len());
    }
    if Sha256::digest(payload).as_slice() != &bytes[20..52] {
        bail!("checksum mismatch (corrupt file)");
    }
    // `snapshot_version` is the payload's first field (a u32 in bincode 1's fixed-width form).
    let snapshot_version = payload.get(..4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()));
    if snapshot_version == Some(1) {
        let v1: CheckpointFileV1 = bincode::deserialize(payload).context("undecodable payload (snapshot version 1)")?;
        tracing::warn!(
            cut_epoch = v1.snapshot.cut_epoch,
            "checkpoint of snapshot version 1 has no flood-cap counts: restoring with none (the flood cap counts clicks from zero again for the minutes it covered)"
        );
        return Ok(CheckpointFile { snapshot_version: SNAPSHOT_VERSION, created_ms: v1.created_ms, source: v1.source, snapshot: v1.snapshot.into() });
    }
    let file: CheckpointFile = bincode::deserialize(payload).context("undecodable payload")?;
    if file.snapshot_version != SNAPSHOT_VERSION {
        bail!("unknown snapshot version {} (this build reads {SNAPSHOT_VERSION})", file.snapshot_version);
    }
    Ok(file)
}
