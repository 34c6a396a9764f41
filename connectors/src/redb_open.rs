//! Opening an embedded redb file (`clicks.redb`, `anomalies.redb`, `jobs.redb`) with redb's
//! integrity check on, so that a damaged file is found at start-up, not on the first read of
//! a damaged page long after.
//!
//! [`open_checked`] turns on [`redb::Builder::set_check_integrity_on_open`]: the checksum of
//! every page of the committed trees is verified, which reads the whole file once. A file
//! that fails the check and that redb repairs (e.g. a torn last commit) opens, with a warning
//! naming the file; one redb cannot repair (truncated, overwritten) is reported as damaged,
//! and so is a panic inside redb while opening (redb may panic on some garbage).
//!
//! [`check_read_only`] runs the same check for read-only openers, on an in-memory copy of
//! what the check writes ([`CopyOnWrite`]), so the file is never written;
//! [`recover_read_only`] keeps that database open, to read a file left by a killed writer
//! as the writer's next open would recover it, without writing to it.
//!
//! [`Error::open_failure`] tells why an open failed ([`OpenFailure`]), for messages that
//! must name the real cause (a file held by another process, a read-only file system).

use std::path::Path;

use redb::Database;

use crate::Error;

/// Opens (or creates) the redb file at `path` with the integrity check on (module docs). A
/// zero-length file is damage ([`EMPTY_FILE`]), left as it is.
/// `what` names the file in the repair warning (`"click log"`, `"anomaly store"`);
/// `cache_bytes` bounds redb's page cache (`None` = redb's default).
///
/// Errors: `damaged(detail)` when the file fails the check and cannot be repaired (`detail`
/// is redb's description), `other(e)` for every other failure (I/O, another process holds
/// the file).
pub fn open_checked<E>(
    path: &Path,
    what: &'static str,
    cache_bytes: Option<usize>,
    damaged: impl FnOnce(String) -> E,
    other: impl FnOnce(redb::DatabaseError) -> E,
) -> Result<Database, E> {
    open_checked_gated(path, what, cache_bytes, |_| true, damaged, other, redb::backends::FileBackend::new)
}

/// The warnings [`open_checked`] logs about a file redb repairs as it opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairWarning {
    /// The file was not closed cleanly: recovered from its last commit.
    NotClosedCleanly,
    /// Its newest commit is damaged: redb falls back to the commit before.
    FellBack,
}

/// [`open_checked`], with each repair warning logged at warn level only when `warn(which)`
/// says so, at debug level otherwise: for an opener that opens the same file again and again,
/// e.g. the click log's reopen after each I/O error of a full disk, which finds the file not
/// closed cleanly and its newest commit torn at every reopen (logged once per episode,
/// `click_log/recovery.rs`).
///
/// The file (opened for reading and writing, created when missing, as redb's own `create`
/// opens it) goes through the storage backend `backend` makes of it: redb's
/// [`redb::backends::FileBackend::new`], or one that wraps it to watch what redb does to the
/// file (the click log's length guard).
///
/// Errors: as [`open_checked`]; `backend`'s error goes to `other`.
pub fn open_checked_gated<E, B: redb::StorageBackend>(
    path: &Path,
    what: &'static str,
    cache_bytes: Option<usize>,
    warn: impl Fn(RepairWarning) -> bool + std::panic::UnwindSafe + 'static,
    damaged: impl FnOnce(String) -> E,
    other: impl FnOnce(redb::DatabaseError) -> E,
    backend: impl FnOnce(std::fs::File) -> Result<B, redb::DatabaseError> + std::panic::UnwindSafe,
) -> Result<Database, E> {
    if is_empty_file(path) {
        return Err(damaged(EMPTY_FILE.into()));
    }
    let shown = path.display().to_string();
    // A file another process holds open has the bit set too (redb sets it for as long as a
    // writer has the file): that open fails on the lock below, and nothing is recovered.
    if was_not_closed_cleanly(path) && !is_held(path) {
        // Nothing is damaged (a killed process tears no write): redb recovers the file from
        // its last commit. Still a warning: the process that wrote it did not shut down (for
        // the click log, clicks not yet committed then are gone); a torn newest commit is the
        // fallback stage below.
        const NOT_CLOSED: &str = "was not closed cleanly (its process was killed or crashed): recovering it from its last commit";
        if warn(RepairWarning::NotClosedCleanly) {
            tracing::warn!(path = %shown, "{what} {NOT_CLOSED}");
        } else {
            tracing::debug!(path = %shown, "{what} {NOT_CLOSED}");
        }
    }
    let opened = std::panic::catch_unwind(|| {
        let mut builder = Database::builder();
        if let Some(bytes) = cache_bytes {
            builder.set_cache_size(bytes);
        }
        // With the check on, redb runs its repair procedure on every open of a committed file
        // and calls the callback at each stage (progress 0.0, 0.6, ...) whether or not anything
        // is wrong. Only the stage at progress 0.3 means damage: the newest commit failed its
        // checksums and redb falls back to the one before (redb 4.6 `Database::do_repair`).
        builder.set_check_integrity_on_open(true).set_repair_callback(move |session| {
            if is_fallback_stage(session.progress()) {
                const FELL_BACK: &str =
                    "failed its integrity check at open: its newest commit is damaged; redb is repairing it by falling back to the commit before";
                if warn(RepairWarning::FellBack) {
                    tracing::warn!(path = %shown, "{what} {FELL_BACK}");
                } else {
                    tracing::debug!(path = %shown, "{what} {FELL_BACK}");
                }
            }
        });
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io_error)?;
        builder.create_with_backend(backend(file)?)
    });
    match classify(opened, "opening") {
        Ok(db) => Ok(db),
        Err(Failure::Damaged(detail)) => Err(damaged(detail)),
        Err(Failure::Other(e)) => Err(other(e)),
    }
}

/// Why a zero-length file is damage (the `detail` of [`open_checked`]'s `damaged`): the file
/// cut to nothing (`truncate -s 0`, or a crash right after it was created), like a file cut
/// inside redb's header — not a new database, which redb would write into it (and a start
/// refused later would leave behind).
pub const EMPTY_FILE: &str = "the file is empty (0 bytes): it holds no database, not even redb's header";

/// Whether `path` is an existing, zero-length file ([`EMPTY_FILE`]).
pub fn is_empty_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0)
}

/// redb's magic number, the first 9 bytes of every redb file (redb 4.6
/// `tree_store/page_store/header.rs`, `MAGICNUMBER`).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// The *recovery required* bit of redb's god byte, the byte after the magic number (redb
/// 4.6 `header.rs`, `RECOVERY_REQUIRED`; redb's `docs/design.md`, "Database header"): set
/// while a writer has the file open, cleared when it closes it.
const RECOVERY_REQUIRED: u8 = 2;

/// Whether the redb file at `path` was left by a writer that never closed it (killed,
/// crashed, power lost): its header's *recovery required* bit is set, so the next writer's
/// open recovers it from its last commit (and a read-only open refuses it,
/// [`OpenFailure::NeedsRepair`]). `false` for a missing or unreadable file, one shorter than
/// the header's first 10 bytes, or one that is not a redb file.
pub fn was_not_closed_cleanly(path: &Path) -> bool {
    use std::io::Read as _;
    let mut head = [0u8; 10];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok() && head[..9] == REDB_MAGIC && head[9] & RECOVERY_REQUIRED != 0
}

/// Whether a process (this one included, through another handle) holds a lock on the redb
/// file at `path`: a writer's exclusive lock, or the shared one of `sluice log tail`. Probed
/// with a non-blocking exclusive `flock` that is released at once. `false` when the file
/// cannot be opened (then the open that follows reports why). A file that is held also
/// reads as [`was_not_closed_cleanly`]: redb sets that bit while a writer has the file open.
pub fn is_held(path: &Path) -> bool {
    std::fs::File::open(path).is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// Whether an I/O error from opening a redb file means the file is damaged rather than
/// unreadable: `InvalidData` (redb's own header checks) or `UnexpectedEof` (a file cut
/// inside redb's header, a few hundred bytes long). Used by read-only openers too.
pub fn is_damage_io(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof)
}

/// The message of a caught panic (`""` when it carries none).
pub(crate) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string())).unwrap_or_default()
}

/// How an open (or check) with the integrity check failed.
enum Failure {
    /// The file fails the check, or redb panicked on it: redb's description.
    Damaged(String),
    /// Anything else (I/O, a lock held by another process).
    Other(redb::DatabaseError),
}

/// Sorts the outcome of an open with the integrity check on (`verb`: "opening", "checking"
/// for the panic message) into damage and other failures.
fn classify<T>(outcome: std::thread::Result<Result<T, redb::DatabaseError>>, verb: &str) -> Result<T, Failure> {
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)))) => Err(Failure::Damaged(detail)),
        Ok(Err(redb::DatabaseError::RepairAborted)) => Err(Failure::Damaged("the repair was aborted".into())),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))) if is_damage_io(&e) => Err(Failure::Damaged(e.to_string())),
        Ok(Err(e)) => Err(Failure::Other(e)),
        Err(panic) => Err(Failure::Damaged(format!("redb panicked while {verb} it: {}", panic_text(&panic)))),
    }
}

/// Runs redb's integrity check ([`open_checked`]'s) on the committed file at `path` without
/// writing to it, for read-only openers that must not trust a file a plain read-only open
/// would (redb verifies page checksums only in that check; a read-only open of an altered
/// file returns altered data or panics on a later read).
///
/// How: the file is opened through [`CopyOnWrite`], a storage backend that reads the file
/// and keeps whatever the check writes (the repaired allocator state, the commit header) in
/// memory pages of its own, dropped afterwards; the file is never opened for writing. It
/// reads the whole file once.
///
/// Errors: `damaged(detail)` when the check fails, when redb panics, and also when the
/// newest commit is damaged and redb would fall back to the one before (a read-only open
/// would read the damaged one); `other(e)` when the file cannot be read.
pub fn check_read_only<E>(path: &Path, damaged: impl FnOnce(String) -> E, other: impl FnOnce(redb::DatabaseError) -> E) -> Result<(), E> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Err(other(io_error(e))),
    };
    checked_in_memory(file, true, damaged, other).map(drop)
}

/// [`check_read_only`] for a file that was not closed cleanly ([`was_not_closed_cleanly`]),
/// keeping the result: the file as a writer's open would recover it, every write of the
/// recovery held in memory ([`CopyOnWrite`]), so that a reader can read it without writing to
/// it (on a read-only file system too). The returned `File` holds a shared `flock` on the
/// file until dropped; a redb writer's open takes that lock exclusively (redb 4.6
/// `FileBackend`, its lock for redb before 4.3), so no writer opens the file meanwhile.
///
/// Errors: as [`check_read_only`]; `other(DatabaseAlreadyOpen)` when a process holds the
/// file (its lock).
pub fn recover_read_only<E>(
    path: &Path,
    damaged: impl FnOnce(String) -> E,
    other: impl FnOnce(redb::DatabaseError) -> E,
) -> Result<(Database, std::fs::File), E> {
    let lock = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Err(other(io_error(e))),
    };
    match lock.try_lock_shared() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(other(redb::DatabaseError::DatabaseAlreadyOpen)),
        Err(std::fs::TryLockError::Error(e)) => return Err(other(io_error(e))),
    }
    let file = match lock.try_clone() {
        Ok(f) => f,
        Err(e) => return Err(other(io_error(e))),
    };
    let db = checked_in_memory(file, true, damaged, other)?;
    Ok((db, lock))
}

/// The integrity check a writer's open ([`open_checked`]) runs, run beforehand on the file at
/// `path` without writing to it (through [`CopyOnWrite`], as [`check_read_only`]): for a
/// process that must refuse a damaged file before it writes anything else (`sluice serve`
/// checks `anomalies.redb` before it opens `clicks.redb`). Unlike [`check_read_only`], a
/// file whose newest commit is damaged passes: the writer's open falls back to the commit
/// before, with a warning. A missing file passes (the open creates it); a file another
/// process holds (its lock) is not looked at (it may be mid-write; the open reports the
/// lock), and a shared lock keeps writers out while the check reads. Reads the whole file once.
///
/// Errors: `damaged(detail)` when the writer's open would refuse the file as damaged (an
/// empty file too, [`EMPTY_FILE`]); `other(e)` when the file cannot be read.
pub fn check_before_open<E>(path: &Path, damaged: impl FnOnce(String) -> E, other: impl FnOnce(redb::DatabaseError) -> E) -> Result<(), E> {
    let lock = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(other(io_error(e))),
    };
    if is_empty_file(path) {
        return Err(damaged(EMPTY_FILE.into()));
    }
    match lock.try_lock_shared() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(()),
        Err(std::fs::TryLockError::Error(e)) => return Err(other(io_error(e))),
    }
    let file = match lock.try_clone() {
        Ok(f) => f,
        Err(e) => return Err(other(io_error(e))),
    };
    checked_in_memory(file, false, damaged, other).map(drop)
}

fn io_error(e: std::io::Error) -> redb::DatabaseError {
    redb::DatabaseError::Storage(redb::StorageError::Io(e))
}

/// The integrity check over `file` through [`CopyOnWrite`] (a writer's open: redb recovers
/// a file that was not closed cleanly), returning the database. A damaged newest commit
/// (redb falls back to the commit before) is damage when `refuse_fallback` says so.
fn checked_in_memory<E>(
    file: std::fs::File,
    refuse_fallback: bool,
    damaged: impl FnOnce(String) -> E,
    other: impl FnOnce(redb::DatabaseError) -> E,
) -> Result<Database, E> {
    let backend = match CopyOnWrite::new(file) {
        Ok(b) => b,
        Err(e) => return Err(other(io_error(e))),
    };
    let fell_back = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&fell_back);
    let checked = std::panic::catch_unwind(move || {
        let mut builder = Database::builder();
        builder.set_check_integrity_on_open(true).set_repair_callback(move |session| {
            if is_fallback_stage(session.progress()) {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        builder.create_with_backend(backend)
    });
    match classify(checked, "checking") {
        Ok(_) if refuse_fallback && fell_back.load(std::sync::atomic::Ordering::Relaxed) => {
            Err(damaged("its newest commit is damaged (a writer's open repairs it by falling back to the commit before)".into()))
        }
        Ok(db) => Ok(db),
        Err(Failure::Damaged(detail)) => Err(damaged(detail)),
        Err(Failure::Other(e)) => Err(other(e)),
    }
}

/// Page size of [`CopyOnWrite`]'s in-memory pages (bytes).
const OVERLAY_PAGE: u64 = 4096;

/// A redb storage backend over a file opened read-only: reads come from the file, writes go
/// to in-memory pages that later reads see ([`check_read_only`]).
#[derive(Debug)]
pub struct CopyOnWrite {
    file: std::fs::File,
    state: std::sync::Mutex<Overlay>,
}

#[derive(Debug)]
struct Overlay {
    /// Length redb sees (bytes).
    len: u64,
    /// Bytes of the file that still show through (a shrink hides the rest, as zeros).
    file_len: u64,
    /// Written pages by index (`offset / OVERLAY_PAGE`).
    pages: std::collections::BTreeMap<u64, Box<[u8]>>,
}

impl CopyOnWrite {
    /// Wraps `file` (opened for reading).
    ///
    /// Errors: the file's metadata cannot be read.
    pub fn new(file: std::fs::File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self { file, state: std::sync::Mutex::new(Overlay { len, file_len: len, pages: std::collections::BTreeMap::new() }) })
    }

    /// Fills `out` from `offset` as redb last saw it: overlay pages, else the file, else zeros.
    fn read_locked(&self, o: &Overlay, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        for (done, page, within, n) in page_spans(offset, out.len()) {
            let pos = offset + done as u64;
            let dst = &mut out[done..done + n];
            if let Some(p) = o.pages.get(&page) {
                dst.copy_from_slice(&p[within..within + n]);
            } else {
                let from_file = usize::try_from(o.file_len.saturating_sub(pos)).unwrap_or(usize::MAX).min(n);
                if from_file > 0 {
                    self.file.read_exact_at(&mut dst[..from_file], pos)?;
                }
                dst[from_file..].fill(0);
            }
        }
        Ok(())
    }
}

impl redb::StorageBackend for CopyOnWrite {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.state.lock().unwrap_or_else(|p| p.into_inner()).len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let o = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.read_locked(&o, offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut o = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if len < o.len {
            // Bytes past the new end read as zeros if the file grows again.
            o.file_len = o.file_len.min(len);
            let first_gone = len.div_ceil(OVERLAY_PAGE);
            o.pages.retain(|&p, _| p < first_gone);
            if let Some(p) = o.pages.get_mut(&(len / OVERLAY_PAGE)) {
                p[(len % OVERLAY_PAGE) as usize..].fill(0);
            }
        }
        o.len = len;
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut o = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (done, page, within, n) in page_spans(offset, data.len()) {
            if !o.pages.contains_key(&page) {
                let mut fresh = vec![0u8; OVERLAY_PAGE as usize].into_boxed_slice();
                self.read_locked(&o, page * OVERLAY_PAGE, &mut fresh)?;
                o.pages.insert(page, fresh);
            }
            if let Some(p) = o.pages.get_mut(&page) {
                p[within..within + n].copy_from_slice(&data[done..done + n]);
            }
        }
        o.len = o.len.max(offset + data.len() as u64);
        Ok(())
    }
}

/// The pieces of the byte range `offset..offset + len` within [`OVERLAY_PAGE`] pages, in
/// order: `(bytes before the piece, page index, offset in the page, piece length)`.
fn page_spans(offset: u64, len: usize) -> impl Iterator<Item = (usize, u64, usize, usize)> {
    let mut done = 0usize;
    std::iter::from_fn(move || {
        (done < len).then(|| {
            let pos = offset + done as u64;
            let within = (pos % OVERLAY_PAGE) as usize;
            let n = (OVERLAY_PAGE as usize - within).min(len - done);
            let piece = (done, pos / OVERLAY_PAGE, within, n);
            done += n;
            piece
        })
    })
}

/// Whether a repair callback at `progress` is redb's fallback from a damaged newest commit
/// (progress 0.3 in redb 4.6's `do_repair`; the routine stages are 0.0 and 0.6 onwards).
fn is_fallback_stage(progress: f64) -> bool {
    (0.25..0.35).contains(&progress)
}

/// Why opening an embedded redb store (click log, anomaly store) failed, as far as a caller
/// words its message differently ([`Error::open_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailure {
    /// Another process (or another handle in this one) has the file open: redb's lock is
    /// held (`DatabaseAlreadyOpen`, or a holder speaking another lock protocol).
    HeldByAnotherProcess,
    /// The file was not closed cleanly (the writer was killed) and redb must repair it
    /// before it can be read, which a read-only open cannot do.
    NeedsRepair,
    /// The file system is mounted read-only (`EROFS`).
    ReadOnlyFileSystem,
    /// The file or its directory may not be opened as asked (`EACCES`, `EPERM`: the owner
    /// or mode, or an immutable attribute).
    PermissionDenied,
    /// Anything else (the error's own message says what).
    Other,
}

impl Error {
    /// Classifies a failed open of the click log or the anomaly store ([`OpenFailure`]);
    /// every other error is [`OpenFailure::Other`].
    pub fn open_failure(&self) -> OpenFailure {
        let (Error::ClickLog { source, .. } | Error::AnomalyStore { source, .. }) = self else {
            return OpenFailure::Other;
        };
        match &**source {
            redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => OpenFailure::HeldByAnotherProcess,
            redb::Error::RepairAborted => OpenFailure::NeedsRepair,
            redb::Error::Io(e) => match e.kind() {
                std::io::ErrorKind::ReadOnlyFilesystem => OpenFailure::ReadOnlyFileSystem,
                std::io::ErrorKind::PermissionDenied => OpenFailure::PermissionDenied,
                _ => OpenFailure::Other,
            },
            _ => OpenFailure::Other,
        }
    }
}

#[cfg(test)]
mod tests;
