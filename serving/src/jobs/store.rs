//! The persistent job table: one redb file (`jobs.redb`) in the exports directory, one
//! key per job id holding the job as JSON, and the `Idempotency-Key`s of `POST
//! /v1/reports/export` (table `idempotency_keys`: key → [`KeyRecord`] as JSON). Every change
//! is one ACID write transaction (fsync'd when it returns), so a crash leaves each job either
//! before or after a change, never in between; a job created for a request with a key is
//! stored in the same transaction as its key ([`JobStore::put_keyed`]), so a retry after a
//! failure or a crash finds either both (and answers that job) or neither (and creates it):
//! never a second job.
//!
//! An I/O error (a full disk) poisons a redb `Database`: every later transaction fails with
//! "Previous I/O error occurred". The store then drops the handle and answers 503
//! `jobs_store_unavailable` for that call; the next call opens the file again (redb repairs
//! it from the last good commit), so export jobs work again once the disk has room, without
//! a restart.
//!
//! Deleted or replaced while open (e.g. the whole `exports/` directory removed while `sluice
//! serve` runs): redb would go on writing to the unlinked file, and every job stored from then
//! on would be gone at the next start. So every call first checks that the file at the path is
//! still the one the store opened (device and inode, one `stat`: [`JobStore::file_failure`])
//! and answers 503 `jobs_store_unavailable` while it is not; nothing is recreated, because the
//! operator decides which table to keep (the message says how), and a restart opens the file
//! then at the path (or creates an empty one).

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sluice_connectors::file_id::file_id;

use super::JobState;
use crate::error::ApiError;
use crate::export::ExportFormat;

/// File name of the job table inside the exports directory.
pub const JOBS_FILE_NAME: &str = "jobs.redb";

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// `Idempotency-Key` → [`KeyRecord`] as JSON.
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency_keys");

/// An `Idempotency-Key` of `POST /v1/reports/export` with the job its request created,
/// stored with the job in one transaction ([`JobStore::put_keyed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// BLAKE3 (hex) of the request's canonical JSON body.
    pub request_hash: String,
    /// The job the request created.
    pub job_id: String,
    /// When the key was stored (the job's creation), ms since epoch UTC.
    pub created_at_ms: i64,
}

/// What [`JobStore::put_keyed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyedPut {
    /// The job and its key were stored.
    Stored,
    /// The key was already stored (within its time to live) for this record's job: nothing
    /// was written.
    KeyTaken(KeyRecord),
}

/// What a job exports (resolved when the job is created, so a re-run after a restart
/// exports the same range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Codes to export, sorted and without duplicates; `None` = every link in the store when
    /// the job runs.
    pub codes: Option<Vec<String>>,
    /// Range start, ms since epoch UTC (whole minute).
    pub from_ms: i64,
    /// Range end (exclusive), ms since epoch UTC (whole minute).
    pub to_ms: i64,
    /// `minute|hour|day`.
    pub bucket: String,
    /// IANA zone name.
    pub tz: String,
    /// Canonical breakdown (`""`, `"country"`, `"country,device"`, …).
    pub dimensions: String,
    /// Include bot clicks.
    pub include_bots: bool,
    /// Output format.
    pub format: ExportFormat,
    /// CSV formula escaping ([`crate::export::ExportPlan::escaping_formulas`]); absent in
    /// specs stored before it existed, which read as false.
    #[serde(default)]
    pub escape_formulas: bool,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// Stable snake_case code (`range_not_retained`, `job_interrupted`, `export_write_failed`, …).
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

/// One job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// UUIDv7, hyphenated lowercase.
    pub job_id: String,
    /// Current state.
    pub status: JobState,
    /// Creation, ms since epoch UTC.
    pub created_at_ms: i64,
    /// Start of the latest attempt, ms since epoch UTC.
    pub started_at_ms: Option<i64>,
    /// End of the job (succeeded or failed), ms since epoch UTC.
    pub finished_at_ms: Option<i64>,
    /// Rows written (final once succeeded).
    pub rows: u64,
    /// Size of the finished file in bytes.
    pub bytes: u64,
    /// Attempts started (a restart during a run re-queues the job and counts again).
    pub attempts: u32,
    /// Set when failed.
    pub error: Option<JobFailure>,
    /// What to export.
    pub spec: JobSpec,
}

impl JobRecord {
    /// A job just accepted: `Queued`, no attempt yet, nothing written.
    pub fn queued(job_id: String, created_at_ms: i64, spec: JobSpec) -> JobRecord {
        JobRecord {
            job_id,
            status: JobState::Queued,
            created_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            rows: 0,
            bytes: 0,
            attempts: 0,
            error: None,
            spec,
        }
    }
}

/// Handle to the job table.
#[derive(Debug)]
pub struct JobStore {
    path: PathBuf,
    /// `None` after an I/O error, until the next call opens the file again.
    db: parking_lot::Mutex<Option<Database>>,
    /// Device and inode of the file opened (`None`: could not be read, nothing is checked).
    file_id: Option<(u64, u64)>,
}

fn store_error(op: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, op, "export job table failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "jobs_store_failed", format!("could not {op} the export job table"))
}

impl JobStore {
    /// Opens (creating if missing) `dir/jobs.redb`, with redb's integrity check
    /// ([`sluice_connectors::redb_open`]: a file redb repairs opens with a warning).
    ///
    /// Errors: `jobs_store_damaged` when the file fails the check and cannot be repaired
    /// (the message names the file and what to do; `sluice serve` then serves without export
    /// jobs, [`crate::ReportsState::start`]); `jobs_store_failed` otherwise (the
    /// cause is logged; e.g. another process holds the file).
    pub fn open(dir: &Path) -> Result<JobStore, ApiError> {
        std::fs::create_dir_all(dir).map_err(|e| store_error("create the directory of", e))?;
        let path = dir.join(JOBS_FILE_NAME);
        let damaged = |detail: String| {
            let shown = path.display();
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "jobs_store_damaged",
                format!(
                    "export job table \"{shown}\" is damaged and could not be repaired ({detail}); export jobs are off until it is fixed. \
                     Stop every process using this data dir, move the file aside (e.g. to {shown}.damaged) and restore it from a backup, \
                     or start without it: the export jobs in it and their downloads are forgotten"
                ),
            )
        };
        let db = sluice_connectors::redb_open::open_checked(&path, "export job table", None, damaged, |e| store_error("open", e))?;
        // The file redb just opened (or created) is at the path now.
        let file_id = file_id(&path).ok();
        let store = JobStore { path, db: parking_lot::Mutex::new(Some(db)), file_id };
        store.with_db("open", |db| {
            let txn = db.begin_write()?;
            txn.open_table(JOBS)?;
            txn.open_table(KEYS)?;
            Ok(txn.commit()?)
        })?;
        Ok(store)
    }

    /// Runs `f` on the open database, opening it again first when an earlier I/O error closed
    /// it. Errors: 503 `jobs_store_unavailable` for an I/O error (the handle is dropped, so
    /// the next call reopens the file) or a failed reopen; 500 `jobs_store_failed` otherwise.
    ///
    /// Before anything, 503 `jobs_store_unavailable` while the file at the path is not the one
    /// the store opened (module docs; [`Self::file_failure`] says what to do).
    fn with_db<T>(&self, op: &str, f: impl FnOnce(&Database) -> Result<T, redb::Error>) -> Result<T, ApiError> {
        if let Some(what) = self.moved() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "jobs_store_unavailable",
                format!(
                    "export jobs are unavailable: the export job table was {what} while the server runs \
                     (/readyz and the server log name the file and what to do); other endpoints work"
                ),
            ));
        }
        let mut slot = self.db.lock();
        if slot.is_none() {
            let reopened = sluice_connectors::redb_open::open_checked(
                &self.path,
                "export job table",
                None,
                |detail| redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)),
                |e| e,
            )
            .map_err(|e| unavailable(op, &e))?;
            tracing::info!(path = %self.path.display(), "export job table opened again after an I/O error");
            *slot = Some(reopened);
        }
        let db = slot.as_ref().expect("opened above");
        match f(db) {
            Ok(v) => Ok(v),
            Err(e @ (redb::Error::Io(_) | redb::Error::PreviousIo)) => {
                *slot = None;
                Err(unavailable(op, &e))
            }
            Err(e) => Err(store_error(op, e)),
        }
    }

    /// Path of the table's file (`<exports dir>/jobs.redb`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the file at [`Self::path`] differs from the one the store opened: `"deleted or moved away"` or
    /// `"replaced by another file"`; `None` while it is that file. One `stat`.
    fn moved(&self) -> Option<&'static str> {
        let opened = self.file_id?;
        match file_id(&self.path) {
            Ok(id) if id == opened => None,
            Ok(_) => Some("replaced by another file"),
            // A path that cannot be looked at (its directory removed or renamed, ...): the
            // path cannot tell a deletion from a move.
            Err(_) => Some("deleted or moved away"),
        }
    }

    /// Why the table is unusable although it opened: its file was deleted or replaced while
    /// open (module docs). The text names the file and what to do; `None` while the file at
    /// the path is the one opened. One `stat`.
    pub fn file_failure(&self) -> Option<String> {
        let what = self.moved()?;
        Some(format!(
            "export job table \"{}\" was {what} while sluice has it open: export jobs are off \
             (503 jobs_store_unavailable; a job stored now would only reach the file sluice opened, which is lost when it stops); \
             restart sluice to use the file at that path: put the old one back there first (e.g. from a backup) to keep its jobs \
             and downloads, or an empty job table is created there",
            self.path.display()
        ))
    }

    /// Inserts or replaces `rec` (durable when it returns).
    pub fn put(&self, rec: &JobRecord) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(rec).map_err(|e| store_error("encode a job for", e))?;
        self.with_db("write", |db| {
            let txn = db.begin_write()?;
            {
                let mut t = txn.open_table(JOBS)?;
                t.insert(rec.job_id.as_str(), bytes.as_slice())?;
            }
            Ok(txn.commit()?)
        })
    }

    /// Stores the new job `rec` and `key` → it ([`KeyRecord`], created at the job's creation)
    /// in one transaction: both or neither. When `key` is already stored and younger than
    /// `ttl_ms` at `rec.created_at_ms`, nothing is written and its record is returned (an
    /// older one is replaced).
    ///
    /// Errors: as [`Self::put`].
    pub fn put_keyed(&self, rec: &JobRecord, key: &str, request_hash: &str, ttl_ms: i64) -> Result<KeyedPut, ApiError> {
        let bytes = serde_json::to_vec(rec).map_err(|e| store_error("encode a job for", e))?;
        let record = KeyRecord { request_hash: request_hash.to_owned(), job_id: rec.job_id.clone(), created_at_ms: rec.created_at_ms };
        let key_bytes = serde_json::to_vec(&record).map_err(|e| store_error("encode an idempotency key for", e))?;
        let taken = self.with_db("write", |db| {
            let txn = db.begin_write()?;
            let taken = {
                let mut keys = txn.open_table(KEYS)?;
                let taken = keys.get(key)?.and_then(|v| live_key(key, v.value(), rec.created_at_ms, ttl_ms));
                if taken.is_none() {
                    keys.insert(key, key_bytes.as_slice())?;
                    txn.open_table(JOBS)?.insert(rec.job_id.as_str(), bytes.as_slice())?;
                }
                taken
            };
            if taken.is_some() {
                txn.abort()?;
            } else {
                txn.commit()?;
            }
            Ok(taken)
        })?;
        Ok(taken.map_or(KeyedPut::Stored, KeyedPut::KeyTaken))
    }

    /// The record of `key`, if stored and younger than `ttl_ms` at `now_ms`.
    ///
    /// Errors: as [`Self::get`].
    pub fn key(&self, key: &str, now_ms: i64, ttl_ms: i64) -> Result<Option<KeyRecord>, ApiError> {
        self.with_db("read", |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(KEYS)?;
            Ok(t.get(key)?.and_then(|v| live_key(key, v.value(), now_ms, ttl_ms)))
        })
    }

    /// Deletes the keys stored at or before `cutoff_ms` (their time to live is over).
    ///
    /// Errors: as [`Self::put`].
    pub fn expire_keys(&self, cutoff_ms: i64) -> Result<(), ApiError> {
        self.with_db("write", |db| {
            let txn = db.begin_write()?;
            txn.open_table(KEYS)?.retain(|key, v| live_key(key, v, cutoff_ms, 0).is_some())?;
            Ok(txn.commit()?)
        })
    }

    /// The job `id`, if stored.
    pub fn get(&self, id: &str) -> Result<Option<JobRecord>, ApiError> {
        let bytes = self.with_db("read", |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(JOBS)?;
            Ok(t.get(id)?.map(|v| v.value().to_vec()))
        })?;
        let Some(bytes) = bytes else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| store_error("decode a job of", e))
    }

    /// Every job, by id (UUIDv7 ids sort by creation time). Undecodable entries are logged
    /// and skipped.
    pub fn all(&self) -> Result<Vec<JobRecord>, ApiError> {
        let entries = self.with_db("read", |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(JOBS)?;
            let mut out = Vec::new();
            for entry in t.iter()? {
                let (k, v) = entry?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })?;
        let mut out = Vec::new();
        for (id, bytes) in entries {
            match serde_json::from_slice::<JobRecord>(&bytes) {
                Ok(rec) => out.push(rec),
                Err(e) => tracing::warn!(error = %e, job_id = id, "skipping undecodable export job"),
            }
        }
        Ok(out)
    }

    /// Removes the job `id` (no-op when absent).
    pub fn delete(&self, id: &str) -> Result<(), ApiError> {
        self.with_db("write", |db| {
            let txn = db.begin_write()?;
            {
                let mut t = txn.open_table(JOBS)?;
                t.remove(id)?;
            }
            Ok(txn.commit()?)
        })
    }
}

/// The stored key record `bytes` of `key` if it is younger than `ttl_ms` at `now_ms`; an
/// undecodable one is logged and counts as absent.
fn live_key(key: &str, bytes: &[u8], now_ms: i64, ttl_ms: i64) -> Option<KeyRecord> {
    match serde_json::from_slice::<KeyRecord>(bytes) {
        Ok(r) if r.created_at_ms > now_ms.saturating_sub(ttl_ms) => Some(r),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, key, "skipping an undecodable idempotency key of the export job table");
            None
        }
    }
}

/// 503 `jobs_store_unavailable` for an I/O failure of the job table (e.g. a full disk).
fn unavailable(op: &str, e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, op, "export job table I/O failed; it is opened again at the next call");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "jobs_store_unavailable",
        format!("could not {op} the export job table (I/O error, e.g. a full disk); retry later"),
    )
}
