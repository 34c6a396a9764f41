//! The checkpoint directory (module docs of [`super`], "File format"): names that sort in
//! write order, atomic writes (temporary file, fsync, rename, fsync of the directory),
//! pruning to the newest [`KEEP`] intact files of an input, listing and removal.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sluice_dataflows::checkpoint::SNAPSHOT_VERSION;

use super::format::{CheckpointFile, FILE_VERSION, HEADER, MAGIC, Relation, SourceIdentity, encode, relation};

/// Checkpoint files kept (the newest ones).
pub const KEEP: usize = 2;

/// The checkpoint directory of a data dir.
pub fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoints")
}

/// The checkpoint files in `dir` that read back whole ([`is_intact`]: a start could restore
/// them), oldest first (none when `dir` does not exist). Every other file named like a
/// checkpoint (`ckpt-<20 digits>.bin`) is skipped with a warning naming it and what is wrong
/// with it (not a checkpoint file, cut short, corrupt, of a version this build does not
/// read, unreadable), and counted in `sluice_checkpoints_skipped_total`.
///
/// Errors: `dir` exists but cannot be listed.
pub fn list_intact(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = checkpoint_files_warn(dir)?;
    files.retain(|path| intact_or_warn(path));
    Ok(files)
}

/// Whether the file at `path` reads back whole ([`check_intact`]); when not, a warning names
/// it and what is wrong with it, counted in `sluice_checkpoints_skipped_total` ([`list_intact`]).
fn intact_or_warn(path: &Path) -> bool {
    match check_intact(path) {
        Ok(()) => true,
        Err(why) => {
            metrics::counter!("sluice_checkpoints_skipped_total").increment(1);
            tracing::warn!(path = %path.display(), why = %why, "skipping a file that is not a valid checkpoint");
            false
        }
    }
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

/// The `ckpt-<20 digits>.bin` files in `dir` whose number is a u64, oldest first (none when
/// `dir` does not exist). Files named so with a larger number are left out silently (see
/// [`checkpoint_files_warn`] for the listings of a start).
///
/// Errors: `dir` exists but cannot be listed.
pub(super) fn checkpoint_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(list_named(dir)?.0)
}

/// [`checkpoint_files`] for the listings a start (or `sluice log reset`) reads checkpoints
/// from: each file named `ckpt-<20 digits>.bin` whose number is beyond u64
/// (`ckpt-99999999999999999999.bin`) is skipped with a warning naming it
/// (`skipping a file that is not a valid checkpoint`, counted in
/// `sluice_checkpoints_skipped_total`), once per listing. The periodic writes and their
/// pruning list with [`checkpoint_files`], so the warning is not repeated every round.
///
/// Errors: `dir` exists but cannot be listed.
pub(super) fn checkpoint_files_warn(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (files, beyond) = list_named(dir)?;
    for path in beyond {
        metrics::counter!("sluice_checkpoints_skipped_total").increment(1);
        tracing::warn!(path = %path.display(), why = %BEYOND_U64, "skipping a file that is not a valid checkpoint");
    }
    Ok(files)
}

/// Why [`checkpoint_files_warn`] skips a `ckpt-<20 digits>.bin` file beyond u64.
pub(super) const BEYOND_U64: &str = "the number in its name is larger than 18446744073709551615 (u64), so no checkpoint is named so";

/// The checkpoint files in `dir` ([`checkpoint_files`], oldest first) and the files named
/// `ckpt-<20 digits>.bin` whose number is beyond u64 (sorted).
fn list_named(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    files.sort();
    let name = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).map(str::to_owned).unwrap_or_default();
    let beyond: Vec<PathBuf> = files.iter().filter(|p| twenty_digits(&name(p)).is_some() && checkpoint_number(&name(p)).is_none()).cloned().collect();
    files.retain(|p| checkpoint_number(&name(p)).is_some());
    Ok((files, beyond))
}

/// The digits of a name `ckpt-<20 decimal digits>.bin`; `None` for any other name.
fn twenty_digits(name: &str) -> Option<&str> {
    let digits = name.strip_prefix("ckpt-")?.strip_suffix(".bin")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// The number in a checkpoint file name `ckpt-<20 decimal digits>.bin` (a u64); `None` for
/// any other name. Only such files are checkpoints (listed, loaded, pruned): with exactly 20
/// digits the text order of the names is their numeric order, so a stray
/// `ckpt-99999999999999999999.bin` (beyond u64: the listings of a start warn about it,
/// [`checkpoint_files_warn`]) or `ckpt-foo.bin` can neither sort as the newest nor be missed
/// by [`next_name`].
fn checkpoint_number(name: &str) -> Option<u64> {
    twenty_digits(name)?.parse().ok()
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
    create_checkpoint_dir(dir)?;
    remove_stale_temp_files(dir);
    let bytes = encode(file)?;
    let existing = checkpoint_files(dir).with_context(|| format!("could not list {}", dir.display()))?;
    let name = free_name(&existing, file.snapshot.cut_epoch)?;
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    put_via_temp_file(&tmp, &path, &bytes)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).context("could not fsync the checkpoint directory")?;
    prune(dir, &file.source, &path)?;
    Ok((path, bytes.len()))
}

/// Creates `dir` (the data dir's `checkpoints/`) when missing, but never its parent: a data
/// dir removed while sluice runs (`rm -rf`) must not come back holding only a checkpoint of
/// clicks that are no longer in any log (the next start would take it as a new data dir with a
/// checkpoint and no click log).
///
/// Errors: the parent is gone ("removed while sluice was running"), or any other I/O failure.
fn create_checkpoint_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.parent().unwrap_or(dir);
            anyhow::bail!("no checkpoint written: the data dir {} no longer exists (removed while sluice was running?)", parent.display())
        }
        Err(e) => Err(e).with_context(|| format!("could not create {}", dir.display())),
    }
}

/// Writes `bytes` to `tmp`, fsyncs it and renames it to `path`; when any step fails, `tmp`
/// is removed (a full disk must not keep a partial copy taking space).
///
/// Errors: the failing step's I/O error.
pub(super) fn put_via_temp_file(tmp: &Path, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let put = || -> anyhow::Result<()> {
        let mut f = std::fs::File::create(tmp).with_context(|| format!("could not create {}", tmp.display()))?;
        f.write_all(bytes).context("could not write the checkpoint")?;
        f.sync_all().context("could not fsync the checkpoint")?;
        std::fs::rename(tmp, path).with_context(|| format!("could not rename the checkpoint into place at {}", path.display()))
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

/// Name of the next checkpoint file after the checkpoints `existing` (paths of `ckpt-*.bin`
/// files): `ckpt-<n, 20 digits>.bin` with n = `cut_epoch` (wall-clock ms), or one more than the
/// highest number among `existing` when that is not below it. Names then sort in write
/// order even after the clock was stepped back (a checkpoint named by its earlier cut would
/// sort as the oldest, be pruned at once, and a restart would restore a stale one).
/// [`write`] passes the newest intact checkpoint only ([`free_name`]).
pub fn next_name(existing: &[PathBuf], cut_epoch: u64) -> String {
    let highest = existing.iter().filter_map(|p| checkpoint_number(p.file_name()?.to_str()?)).max();
    let n = match highest {
        Some(h) if h >= cut_epoch => h.saturating_add(1),
        _ => cut_epoch,
    };
    format!("ckpt-{n:020}.bin")
}

/// The name [`write`] gives the checkpoint of `cut_epoch` among the checkpoint-named files
/// `existing` (oldest first): [`next_name`] after the newest one with a checkpoint header
/// matching its length ([`has_checkpoint_header`]: read without the payload, so a write
/// does not hash the last checkpoint again), then the first number above it that no file
/// holds.
///
/// Only checkpoint files name the next one: a file named like a checkpoint that is none
/// (garbage, cut short, a directory or FIFO; skipped with [`list_intact`]'s warning when
/// checkpoints are listed) neither pushes every later name past its number (up to
/// `u64::MAX`, where names stop increasing) nor is written over. Garbage (naming no input)
/// is not pruned either ([`prune`] deletes only files of the input written): it may be the
/// user's, and stays (with its warning at every listing) until removed by hand. Names still
/// increase across a step back of the clock, after every intact checkpoint.
///
/// Errors: every number from the chosen one to `u64::MAX` is taken.
fn free_name(existing: &[PathBuf], cut_epoch: u64) -> anyhow::Result<String> {
    let newest_intact: Vec<PathBuf> = existing.iter().rev().find(|p| has_checkpoint_header(p)).cloned().into_iter().collect();
    let taken: std::collections::BTreeSet<u64> = existing.iter().filter_map(|p| checkpoint_number(p.file_name()?.to_str()?)).collect();
    let name = next_name(&newest_intact, cut_epoch);
    let mut n = checkpoint_number(&name).unwrap_or(cut_epoch);
    while taken.contains(&n) {
        n = n.checked_add(1).with_context(|| format!("no free checkpoint name after ckpt-{n:020}.bin: every number above it is taken"))?;
    }
    Ok(format!("ckpt-{n:020}.bin"))
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

/// Whether the file at `path` reads back whole ([`check_intact`]). I/O errors count as damage.
pub(super) fn is_intact(path: &Path) -> bool {
    check_intact(path).is_ok()
}

/// Checks that the file at `path` reads back whole: magic, file version, payload length and
/// SHA-256 as [`super::decode`] checks them, and a snapshot version this build restores (1 or
/// [`SNAPSHOT_VERSION`]). Reads the file in 1 MiB pieces (never the whole payload in memory)
/// and does not decode the payload.
///
/// Errors: what is wrong, in [`super::decode`]'s words (`not a checkpoint file (bad magic or
/// shorter than the header)`, `payload is 3 bytes, the header says 9 (partial write)`,
/// `checksum mismatch (corrupt file)`, …), or `could not read it: <I/O error>`.
pub(super) fn check_intact(path: &Path) -> Result<(), String> {
    check_file(path, true)
}

/// Whether the file at `path` has a checkpoint header that matches its length (magic, file
/// version, payload length): [`check_intact`] without reading the payload (no checksum, no
/// snapshot version), and without a warning.
fn has_checkpoint_header(path: &Path) -> bool {
    check_file(path, false).is_ok()
}

/// [`check_intact`], reading the payload (checksum, snapshot version) only with `payload`.
fn check_file(path: &Path, payload: bool) -> Result<(), String> {
    use std::io::Read;
    let check = || -> std::io::Result<Result<(), String>> {
        // Looked at before it is opened: opening a FIFO would wait for a writer.
        if !std::fs::metadata(path)?.is_file() {
            return Ok(Err("not a checkpoint file (not a regular file)".to_owned()));
        }
        let mut f = std::fs::File::open(path)?;
        let size = f.metadata()?.len();
        let mut head = [0u8; HEADER];
        if size < HEADER as u64 {
            return Ok(Err("not a checkpoint file (bad magic or shorter than the header)".to_owned()));
        }
        f.read_exact(&mut head)?;
        if &head[..8] != MAGIC {
            return Ok(Err("not a checkpoint file (bad magic or shorter than the header)".to_owned()));
        }
        let version = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
        if version != FILE_VERSION {
            return Ok(Err(format!("unknown checkpoint file version {version} (this build reads {FILE_VERSION})")));
        }
        let len = u64::from_le_bytes(head[12..20].try_into().unwrap_or_default());
        let payload_len = size - HEADER as u64;
        if payload_len != len {
            return Ok(Err(format!("payload is {payload_len} bytes, the header says {len} (partial write)")));
        }
        if !payload {
            return Ok(Ok(()));
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
        if hasher.finalize().as_slice() != &head[20..52] {
            return Ok(Err("checksum mismatch (corrupt file)".to_owned()));
        }
        match first {
            Some(v) if v == 1 || v == SNAPSHOT_VERSION => Ok(Ok(())),
            Some(v) => Ok(Err(format!("unknown snapshot version {v} (this build reads {SNAPSHOT_VERSION})"))),
            None => Ok(Err("payload is shorter than its snapshot version".to_owned())),
        }
    };
    check().unwrap_or_else(|e| Err(format!("could not read it: {e}")))
}

/// The bytes of the checkpoint file at `path`, which must be a regular file (looked at
/// before it is opened: opening a FIFO named like a checkpoint would wait for a writer, and
/// hang the start, `sluice log reset` or the stop's pruning).
///
/// Errors: not a regular file (`not a checkpoint file (not a regular file)`, as
/// [`check_intact`] says it), or the read's I/O error.
pub(super) fn read_regular(path: &Path) -> anyhow::Result<Vec<u8>> {
    if !std::fs::metadata(path)?.is_file() {
        anyhow::bail!("not a checkpoint file (not a regular file)");
    }
    Ok(std::fs::read(path)?)
}

/// Bytes [`source_of`] reads: the header and the payload's first fields (a Kafka topic name
/// is at most 249 bytes).
const HEAD_BYTES: u64 = 64 * 1024;

/// The payload's leading fields, shared by every snapshot version ([`CheckpointFile`],
/// `CheckpointFileV1`); bincode 1 reads them and ignores the rest.
#[derive(Deserialize)]
struct PayloadHead {
    _snapshot_version: u32,
    _created_ms: i64,
    source: SourceIdentity,
}

/// The input the checkpoint at `path` was taken of, from its first [`HEAD_BYTES`] (the
/// checksum is not checked: this only decides which files pruning may delete). `None`: the
/// file cannot be read or is not a checkpoint.
pub(super) fn source_of(path: &Path) -> Option<SourceIdentity> {
    use std::io::Read;
    let mut head = Vec::new();
    // Looked at before it is opened: opening a FIFO would wait for a writer.
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    std::fs::File::open(path).ok()?.take(HEAD_BYTES).read_to_end(&mut head).ok()?;
    if head.len() < HEADER || &head[..8] != MAGIC {
        return None;
    }
    bincode::deserialize::<PayloadHead>(&head[HEADER..]).ok().map(|h| h.source)
}
