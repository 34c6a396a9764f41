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
//! A round ([`take`]) asks the pipeline for a snapshot, then waits until every external view
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
//! that is not above every name already in the directory (the clock was stepped back), one
//! more than the highest: names sort in write order whatever the clock did, so "newest" is
//! always the one written last. A round removes stale `*.tmp` files (a write that failed,
//! e.g. on a full disk), writes `<name>.tmp`, fsyncs
//! it, renames it into place, fsyncs the directory, then deletes all but the newest
//! [`KEEP`] intact files (checksum verified) of the same input (another input's files stay: switching from the embedded
//! log to Kafka and back must find the log's checkpoints). At start the newest file that reads back whole (magic, version, length,
//! checksum, decode, same source) wins; a corrupt or partial one is skipped with a warning.
//!
//! ## Which offsets win (Kafka mode)
//! With a checkpoint, the sources start at the **checkpoint's** offsets, whatever the
//! consumer group committed. The restored state is exactly "everything below these offsets",
//! so starting anywhere else would double-count (earlier) or lose (later) clicks. The group's
//! commits (every second, after the sinks applied) are normally ahead of the checkpoint;
//! they serve lag monitoring and the sinks' effectively-once bookkeeping. Without a
//! checkpoint the sources replay the topic from its earliest offset, since the in-memory
//! state is empty.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_dataflows::checkpoint::{CheckpointHandle, CheckpointStatus, DataflowSnapshot, DataflowSnapshotV1, SNAPSHOT_VERSION};
use tokio::sync::watch;

use super::kafka_source::SinkAcks;

/// Magic bytes at the start of every checkpoint file.
pub const MAGIC: &[u8; 8] = b"SLUICECK";
/// Version of the file framing (bump on any change of the header).
pub const FILE_VERSION: u32 = 1;
/// Checkpoint files kept (the newest ones).
pub const KEEP: usize = 2;
const HEADER: usize = 8 + 4 + 8 + 32;
/// How long a round may wait for every worker's part.
const ROUND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a round may wait for the external sinks to apply the cut.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

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

/// How a checkpoint's input relates to the current one ([`load_latest`]).
#[derive(Debug, PartialEq, Eq)]
enum Relation {
    /// The same input (or an id-less checkpoint of the same log partition).
    Same,
    /// Another input (another topic or partition): skipped.
    Other,
    /// The same partition of another click log file (a replaced `clicks.redb`): refused.
    OtherLog { checkpoint: u64, current: u64 },
}

fn relation(checkpoint: &SourceIdentity, current: &SourceIdentity) -> Relation {
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
struct CheckpointFileV1 {
    snapshot_version: u32,
    created_ms: i64,
    source: SourceIdentity,
    snapshot: DataflowSnapshotV1,
}

/// Encodes `file` in the framed format (module docs).
///
/// Errors: serialization failure (not expected for these types).
pub fn encode(file: &CheckpointFile) -> anyhow::Result<Vec<u8>> {
    let payload = bincode::serialize(file).context("could not serialize the checkpoint")?;
    Ok(frame(&payload))
}

/// The header (module docs) followed by `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
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

/// The checkpoint directory of a data dir.
pub fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoints")
}

/// The checkpoint files in `dir`, oldest first (none when `dir` does not exist).
///
/// Errors: `dir` exists but cannot be listed.
pub fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    checkpoint_files(dir)
}

/// Removes every checkpoint file in `dir` (so that the next start replays its input from the
/// first record); returns how many were removed.
///
/// Errors: `dir` cannot be listed, a file cannot be removed (those before it are gone).
pub fn remove_all(dir: &Path) -> anyhow::Result<usize> {
    let files = checkpoint_files(dir).with_context(|| format!("could not list {}", dir.display()))?;
    for f in &files {
        std::fs::remove_file(f).with_context(|| format!("could not remove {}", f.display()))?;
    }
    if !files.is_empty() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("could not fsync {}", dir.display()))?;
    }
    Ok(files.len())
}

fn checkpoint_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    files.retain(|p| p.file_name().and_then(|n| n.to_str()).and_then(checkpoint_number).is_some());
    files.sort();
    Ok(files)
}

/// The number in a checkpoint file name `ckpt-<20 decimal digits>.bin` (a u64); `None` for
/// any other name. Only such files are checkpoints (listed, loaded, pruned): with exactly 20
/// digits the text order of the names is their numeric order, so a stray
/// `ckpt-99999999999999999999.bin` (beyond u64) or `ckpt-foo.bin` can neither sort as the
/// newest nor be missed by [`next_name`].
fn checkpoint_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("ckpt-")?.strip_suffix(".bin")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Writes `file` atomically into `dir` (temp file, fsync, rename, fsync of the directory)
/// and keeps the newest [`KEEP`] intact files of its input ([`prune`]); returns the path and size
/// in bytes. The file name is [`next_name`]'s: it sorts after every checkpoint already in `dir`. Stale
/// `ckpt-*.tmp` files (left by a write that failed) are removed first, and a write that
/// fails removes its own. Writes in one process are serialized (the periodic round and the
/// shutdown round may overlap); one `sluice serve` holds a data dir at a time.
///
/// Errors: I/O failures (the previous checkpoints stay intact).
pub fn write(dir: &Path, file: &CheckpointFile) -> anyhow::Result<(PathBuf, usize)> {
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = WRITING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    remove_stale_temp_files(dir);
    let bytes = encode(file)?;
    let existing = checkpoint_files(dir).with_context(|| format!("could not list {}", dir.display()))?;
    let name = next_name(&existing, file.snapshot.cut_epoch);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    put_via_temp_file(&tmp, &path, &bytes)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).context("could not fsync the checkpoint directory")?;
    prune(dir, &file.source, &path)?;
    Ok((path, bytes.len()))
}

/// Writes `bytes` to `tmp`, fsyncs it and renames it to `path`; when any step fails, `tmp`
/// is removed (a full disk must not keep a partial copy taking space).
///
/// Errors: the failing step's I/O error.
fn put_via_temp_file(tmp: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let put = || -> anyhow::Result<()> {
        let mut f = std::fs::File::create(tmp).with_context(|| format!("could not create {}", tmp.display()))?;
        f.write_all(bytes).context("could not write the checkpoint")?;
        f.sync_all().context("could not fsync the checkpoint")?;
        std::fs::rename(tmp, path).context("could not rename the checkpoint into place")
    };
    let r = put();
    if r.is_err()
        && let Err(rm) = std::fs::remove_file(tmp)
        && rm.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %tmp.display(), error = %rm, "could not remove the temporary file of a failed checkpoint write");
    }
    r
}

/// Name of the next checkpoint file among `existing` (paths of `ckpt-*.bin` files):
/// `ckpt-<n, 20 digits>.bin` with n = `cut_epoch` (wall-clock ms), or one more than the
/// highest number among `existing` when that is not below it. Names then sort in write
/// order even after the clock was stepped back (a checkpoint named by its earlier cut would
/// sort as the oldest, be pruned at once, and a restart would restore a stale one).
pub fn next_name(existing: &[PathBuf], cut_epoch: u64) -> String {
    let highest = existing.iter().filter_map(|p| checkpoint_number(p.file_name()?.to_str()?)).max();
    let n = match highest {
        Some(h) if h >= cut_epoch => h.saturating_add(1),
        _ => cut_epoch,
    };
    format!("ckpt-{n:020}.bin")
}

/// Removes `ckpt-*.tmp` files in `dir` (failures are logged): what a write that failed or
/// was killed left behind.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let stale = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ckpt-") && n.ends_with(".tmp"));
        if stale {
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed the temporary file of an earlier checkpoint write that did not finish"),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not remove a stale checkpoint temporary file"),
            }
        }
    }
}

/// Deletes the checkpoints of `source` in `dir` older than its newest [`KEEP`] **intact**
/// ones ([`is_intact`]; `written`, the file this round just wrote and fsynced, counts without
/// being read back). A damaged file never counts toward the kept ones: with one corrupt file
/// among the newest two, the two intact files before it stay, so a start always has a
/// fallback. Damaged files newer than the oldest kept one stay until that one goes (they
/// cost disk, not state); older ones go with the rest. Checkpoints of another input (the
/// embedded log's, while Kafka mode runs on the same data dir, or another topic's) and files
/// whose input cannot be read are left alone: they are the only state of that input, and
/// switching back must find them (its clicks would otherwise count from the start of what
/// the input still holds, which after `sluice log reset` is nothing).
fn prune(dir: &Path, source: &SourceIdentity, written: &Path) -> anyhow::Result<()> {
    let files = checkpoint_files(dir)?;
    let same: Vec<&PathBuf> = files.iter().filter(|p| source_of(p).is_some_and(|s| relation(&s, source) == Relation::Same)).collect();
    let mut intact = 0usize;
    for path in same.into_iter().rev() {
        if intact >= KEEP {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "could not delete an old checkpoint");
            }
        } else if path.as_path() == written || is_intact(path) {
            intact += 1;
        } else {
            tracing::warn!(path = %path.display(), "damaged checkpoint: not counted among the kept ones");
        }
    }
    Ok(())
}

/// Whether the file at `path` reads back whole: magic, file version, payload length and
/// SHA-256 as [`decode`] checks them, and a snapshot version this build restores (1 or
/// [`SNAPSHOT_VERSION`]). Reads the file in 1 MiB pieces (never the whole payload in memory)
/// and does not decode the payload. I/O errors count as damage.
fn is_intact(path: &Path) -> bool {
    use std::io::Read;
    let check = || -> std::io::Result<bool> {
        let mut f = std::fs::File::open(path)?;
        let size = f.metadata()?.len();
        let mut head = [0u8; HEADER];
        f.read_exact(&mut head)?;
        let len = u64::from_le_bytes(head[12..20].try_into().unwrap_or_default());
        if &head[..8] != MAGIC || head[8..12] != FILE_VERSION.to_le_bytes() || size.checked_sub(HEADER as u64) != Some(len) {
            return Ok(false);
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut first = None;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if first.is_none() && n >= 4 {
                first = Some(u32::from_le_bytes(buf[..4].try_into().unwrap_or_default()));
            }
            hasher.update(&buf[..n]);
        }
        let version_ok = first.is_some_and(|v| v == 1 || v == SNAPSHOT_VERSION);
        Ok(version_ok && hasher.finalize().as_slice() == &head[20..52])
    };
    check().unwrap_or(false)
}

/// Bytes [`source_of`] reads: the header and the payload's first fields (a Kafka topic name
/// is at most 249 bytes).
const HEAD_BYTES: u64 = 64 * 1024;

/// The payload's leading fields, shared by every snapshot version ([`CheckpointFile`],
/// [`CheckpointFileV1`]); bincode 1 reads them and ignores the rest.
#[derive(Deserialize)]
struct PayloadHead {
    _snapshot_version: u32,
    _created_ms: i64,
    source: SourceIdentity,
}

/// The input the checkpoint at `path` was taken of, from its first [`HEAD_BYTES`] (the
/// checksum is not checked: this only decides which files pruning may delete). `None`: the
/// file cannot be read or is not a checkpoint.
fn source_of(path: &Path) -> Option<SourceIdentity> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path).ok()?.take(HEAD_BYTES).read_to_end(&mut head).ok()?;
    if head.len() < HEADER || &head[..8] != MAGIC {
        return None;
    }
    bincode::deserialize::<PayloadHead>(&head[HEADER..]).ok().map(|h| h.source)
}

/// The newest valid checkpoint of `source` in `dir` (module docs); invalid files and
/// checkpoints of another source are skipped with a warning.
///
/// Errors: as [`load_latest_for_log`] (without knowing whether the current log is empty).
pub fn load_latest(dir: &Path, source: &SourceIdentity) -> anyhow::Result<Option<(PathBuf, CheckpointFile)>> {
    load_latest_for_log(dir, source, None)
}

/// [`load_latest`], where `log_clicks` is the number of clicks the current click log stores
/// (`None`: unknown), so that a refusal names the one next step that fits.
///
/// Errors: the directory exists but cannot be listed; the newest checkpoint of this log
/// partition was taken of another click log file (its log id differs: `clicks.redb` was
/// moved away or replaced, and resuming would mix the two logs' clicks or skip clicks): with
/// an empty current log the message says to run `sluice log reset` (which keeps the
/// checkpoint's clicks), otherwise to put the checkpoint's log back.
pub fn load_latest_for_log(dir: &Path, source: &SourceIdentity, log_clicks: Option<u64>) -> anyhow::Result<Option<(PathBuf, CheckpointFile)>> {
    let files = checkpoint_files(dir).with_context(|| format!("could not list {}", dir.display()))?;
    for path in files.iter().rev() {
        let read = std::fs::read(path).map_err(anyhow::Error::from).and_then(|b| decode(&b));
        match read {
            Ok(f) => match relation(&f.source, source) {
                Relation::Same => return Ok(Some((path.clone(), f))),
                Relation::Other => tracing::warn!(path = %path.display(), checkpoint = ?f.source, current = ?source, "skipping a checkpoint of another input"),
                Relation::OtherLog { checkpoint, current } => {
                    let data_dir = dir.parent().unwrap_or(dir).display().to_string();
                    match log_clicks {
                        Some(0) => bail!(
                            "the newest checkpoint in {} was taken of another click log (log id {checkpoint:016x}) than the clicks.redb in the \
                             data dir (log id {current:016x}, no clicks stored: a new, empty log, e.g. after clicks.redb was moved away). \
                             To continue from that checkpoint on this empty log, keeping every click it counted, stop every sluice process \
                             using the data dir and run `sluice log reset --data-dir {data_dir}`",
                            dir.display()
                        ),
                        _ => bail!(
                            "the newest checkpoint in {} was taken of another click log (log id {checkpoint:016x}; the clicks.redb in the \
                             data dir has log id {current:016x}{}): was clicks.redb replaced? Resuming would mix the two logs' clicks. Put \
                             the click log the checkpoint was taken of back at {data_dir}/clicks.redb{}",
                            dir.display(),
                            log_clicks.map(|n| format!(" and holds {n} clicks")).unwrap_or_default(),
                            side_file_hint(dir.parent().unwrap_or(dir))
                        ),
                    }
                }
            },
            Err(e) => {
                metrics::counter!("sluice_checkpoints_skipped_total").increment(1);
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "skipping an unreadable checkpoint");
            }
        }
    }
    Ok(None)
}

/// Where to find a click log to put back, for refusals that ask for it: the side files
/// `clicks.redb.recovered-<time>` in `data_dir` by name (where a running sluice saved the
/// log it had open when another file took its path), or, when there are none, a backup. It
/// names only files that exist.
pub fn side_file_hint(data_dir: &Path) -> String {
    let files = sluice_connectors::click_log::side_files(data_dir);
    if files.is_empty() {
        return " (e.g. from a backup; sluice saved no copy of a click log in the data dir)".to_owned();
    }
    let names: Vec<String> = files.iter().map(|f| format!("\"{}\"", f.display())).collect();
    format!(" (sluice saved the log it had open while serving, when another file took its path, to {})", names.join(", "))
}

/// Refuses a start on a data dir without `clicks.redb` whose newest checkpoint of log
/// partition `partition` (in `dir`, the checkpoint directory) was taken of a click log: a
/// start would create a new, empty log with another log id, and be refused after creating
/// it. Checked before anything is created (`System::start`); the message names the way
/// back (`sluice log reset`, or the log put back).
///
/// Errors: that refusal; `dir` exists but cannot be listed.
pub fn refuse_without_log(dir: &Path, partition: u32) -> anyhow::Result<()> {
    let Some(((path, f), _)) = newest_of_partition(dir, partition)? else {
        return Ok(());
    };
    let offset = f.snapshot.offsets.get(&partition).copied().unwrap_or(0);
    let id = match f.source {
        SourceIdentity::LogFile { log_id, .. } => format!("log id {log_id:016x}"),
        _ if offset > 0 => "a click log without an id".to_owned(),
        _ => return Ok(()),
    };
    let data_dir = dir.parent().unwrap_or(dir);
    bail!(
        "the newest checkpoint \"{}\" was taken of a click log ({id}, read up to offset {offset}) that is not in the data dir: there is no \
         {}/clicks.redb (moved away or deleted). To continue from that checkpoint on a new, empty log, keeping every click it \
         counted, stop every sluice process using the data dir and run `sluice log reset --data-dir {}`; or put the click log the \
         checkpoint was taken of back at {}/clicks.redb{}",
        path.display(),
        data_dir.display(),
        data_dir.display(),
        data_dir.display(),
        side_file_hint(data_dir)
    )
}

/// The newest readable checkpoint of a partition (path and file) and every other
/// checkpoint file of that partition.
pub type NewestOfPartition = ((PathBuf, CheckpointFile), Vec<PathBuf>);

/// The newest valid checkpoint in `dir` of click-log partition `partition`, whichever click
/// log file it was taken of (for `sluice log reset`); unreadable files are skipped with a
/// warning. Returns it with every other checkpoint file of that partition.
///
/// Errors: the directory exists but cannot be listed.
pub fn newest_of_partition(dir: &Path, partition: u32) -> anyhow::Result<Option<NewestOfPartition>> {
    let files = checkpoint_files(dir).with_context(|| format!("could not list {}", dir.display()))?;
    let mut newest = None;
    let mut others = Vec::new();
    for path in files.iter().rev() {
        match std::fs::read(path).map_err(anyhow::Error::from).and_then(|b| decode(&b)) {
            Ok(f) => match f.source {
                SourceIdentity::Log { partition: p } | SourceIdentity::LogFile { partition: p, .. } if p == partition => {
                    if newest.is_none() {
                        newest = Some((path.clone(), f));
                    } else {
                        others.push(path.clone());
                    }
                }
                _ => {}
            },
            Err(e) => tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "skipping an unreadable checkpoint"),
        }
    }
    Ok(newest.map(|n| (n, others)))
}

/// Kafka start offsets from a snapshot (partition → next offset).
pub fn kafka_offsets(snapshot: &DataflowSnapshot) -> BTreeMap<i32, i64> {
    snapshot.offsets.iter().filter_map(|(&p, &o)| Some((i32::try_from(p).ok()?, i64::try_from(o).ok()?))).collect()
}

/// Everything a round needs.
#[derive(Clone)]
pub struct Checkpointer {
    /// The pipeline's checkpoint handle.
    pub handle: CheckpointHandle,
    /// What the external sinks applied (`None`: no external sink).
    pub acks: Option<SinkAcks>,
    /// `<data-dir>/checkpoints`.
    pub dir: PathBuf,
    /// The input.
    pub source: SourceIdentity,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").field("dir", &self.dir).field("source", &self.source).finish_non_exhaustive()
    }
}

/// Takes one checkpoint (module docs): snapshot, wait for the sinks, write. Returns the
/// file written. Metrics: `sluice_checkpoints_total{outcome}`,
/// `sluice_checkpoint_duration_seconds`, `sluice_checkpoint_bytes`.
///
/// Errors: no snapshot within the round timeout (e.g. the workers stopped), the sinks not
/// applying the cut within their timeout, I/O errors writing the file.
pub async fn take(c: &Checkpointer) -> anyhow::Result<PathBuf> {
    let t0 = Instant::now();
    let r = take_inner(c).await;
    let outcome = if r.is_ok() { "written" } else { "failed" };
    metrics::counter!("sluice_checkpoints_total", "outcome" => outcome).increment(1);
    if r.is_ok() {
        metrics::histogram!("sluice_checkpoint_duration_seconds").record(t0.elapsed().as_secs_f64());
    }
    r
}

async fn take_inner(c: &Checkpointer) -> anyhow::Result<PathBuf> {
    let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
    c.handle.begin();
    let snapshot = loop {
        match c.handle.poll() {
            CheckpointStatus::Done(s) => break *s,
            CheckpointStatus::Failed(why) => {
                tracing::debug!(%why, "checkpoint round failed; starting another");
                c.handle.begin();
            }
            CheckpointStatus::Pending => {}
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no consistent snapshot within {ROUND_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    if let Some(acks) = &c.acks {
        let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        while acks() < snapshot.cut_epoch {
            if tokio::time::Instant::now() >= deadline {
                bail!("the view sinks did not apply the checkpoint's cut within {ACK_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let file = CheckpointFile { snapshot_version: SNAPSHOT_VERSION, created_ms: super::now_ms(), source: c.source.clone(), snapshot };
    let dir = c.dir.clone();
    let (rows, ids, offsets) = (file.snapshot.views.rows.len(), file.snapshot.dedup.ids.len(), file.snapshot.offsets.clone());
    let (path, bytes) = tokio::task::spawn_blocking(move || write(&dir, &file)).await.context("checkpoint write task failed")??;
    metrics::gauge!("sluice_checkpoint_bytes").set(bytes as f64);
    tracing::info!(path = %path.display(), bytes, rows, dedup_ids = ids, ?offsets, "checkpoint written");
    Ok(path)
}

/// Takes a checkpoint every `interval` until `stop` turns true (failures are logged and
/// retried at the next interval).
pub async fn run(c: Checkpointer, interval: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        if let Err(e) = take(&c).await {
            tracing::warn!(error = %format!("{e:#}"), "checkpoint failed; retrying at the next interval");
        }
    }
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
