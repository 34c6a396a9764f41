//! Noticing a lost link store at start-up, and retiring the codes of its links.
//!
//! The click log keeps clicks by link code, and the views count them by code; a link store
//! that is lost (`links.db` deleted, or another database configured) while the click log
//! survives would hand out the codes of its links again, and a new link would inherit their
//! clicks. So `sluice serve` records the link store's id
//! ([`LinkStore::store_id`], created once with the store) in the click log
//! ([`ClickLog::set_link_store_id`]) the first time it runs with that store; at a later
//! start, a log that records another id was written next to a store that is gone: every
//! code with clicks in the log or in the newest checkpoint of its partition (after `sluice
//! log reset`, the only copy of the clicks counted before it) is retired in the new store
//! ([`LinkStore::retire_codes`]: generated codes skip them, custom aliases get 409
//! `alias_conflict`), then the new id is recorded. `sluice log reset` records the link
//! store's id in the new log it starts (`crate::log_reset`), so a store lost after a reset
//! is noticed too; when it could not read one (`links.db` missing or damaged then), a
//! start that finds `links.db` missing next to such a reset log retires the codes of the
//! newest checkpoint (a `sluice serve` took it, so a store served those clicks). Any other
//! log that records no id (only `sluice import` wrote it, or a sluice before store ids)
//! retires nothing: importing before the first `serve` is legitimate.
//!
//! A store restored from a backup keeps its id, but not the links created after the backup,
//! whose codes a new link could take again, inheriting their clicks. So the process serving
//! clicks also records in the log the store's change mark ([`StoreSeqMark`]: the number of the
//! last link change, which never goes down in a store in use) and a random epoch it writes into
//! the store once per run ([`LinkStore::new_epoch`]; `sluice log reset` records the store's mark
//! and [`sluice_connectors::click_log::UNCHECKED_EPOCH`], so the next start checks whichever copy it finds); a start that finds the store's own mark lower, or another epoch (a copy taken before
//! a later run), retires the codes with clicks that the store does not know
//! ([`StoreCheck::Restored`]) and then follows the store's mark. The mark is read every
//! second: a link created and clicked within the second before a kill is not covered; nor are
//! links created by an `api` process alone (no process recording the mark) and clicked only
//! through `sluice import`.
//!
//! The check reads at once ([`check_link_store`]) but writes ([`StoreCheck::apply`]) only
//! after every other start-up check passed (e.g. a checkpoint that does not fit the click
//! log): a start that is refused leaves the link store and the log as they were.
//!
//! Role `api` holds no click log, yet it creates links ([`ApiLog`]): on a data dir with a
//! click log that no other process holds, it opens the log for its start, runs the same check
//! and closes it again (roles `all` and `redirect` wait up to 30 s for a log an `api` process
//! holds meanwhile: `crate::log_open::open_waiting`). A log held by another process is that
//! process's to check: the `api` process writes a request in the store
//! ([`LinkStore::request_log_check`]) and serves only once the holder answered it
//! ([`LinkStore::answer_log_checks`], every second once its own start-up check was applied:
//! [`StoreSeqMark`]) — refusing to start without an answer within 30 s, as it refuses a log it
//! cannot open (damaged, read-only) or a data dir whose log is gone but whose checkpoints
//! remain: it would otherwise hand out the codes of a lost store. A request, not a mark
//! written once: a store restored from a backup holds the answers of before the backup.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_connectors::LinkStore;
use sluice_connectors::click_log::{CLICK_LOG_FILE_NAME, ClickLog};
use sluice_connectors::link_store::SQLITE_FILE_NAME;
use sluice_connectors::redb_open::OpenFailure;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::job::checkpoint;

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

/// What [`check_link_store`] found: applied by [`StoreCheck::apply`] once every other
/// start-up check passed, so a start that is refused later changes nothing.
#[derive(Debug)]
#[must_use = "nothing is retired or recorded until `apply`"]
pub(super) enum StoreCheck {
    /// Nothing to do (the log records this store, whose change mark is not behind the log's;
    /// or the store has no id).
    Nothing,
    /// Retire `codes` (the lost store's, `previous` its id; `None`: no id was recorded, the
    /// log was reset) unless empty, then record `id`.
    Record {
        /// The store's id, to record in the log.
        id: u64,
        /// The store's change mark and epoch at the check, to record in the log in place of
        /// any other.
        mark: StoreMark,
        /// The id the log recorded before (`None`: none was).
        previous: Option<u64>,
        /// The codes to retire.
        codes: Vec<String>,
    },
    /// The store is the log's, restored from a backup ([`check_restored`]): retire `codes`
    /// (clicked, unknown to the store), then record the store's mark `store_seq` in the log
    /// in place of `log_seq`.
    Restored {
        /// The store's change mark.
        store_seq: u64,
        /// The store's epoch ([`LinkStore::epoch`]), to record in the log.
        store_epoch: Option<u64>,
        /// The higher mark the log recorded.
        log_seq: u64,
        /// The codes to retire.
        codes: Vec<String>,
    },
}

/// Compares the store's id with the one `log` records (module docs) and finds the codes to
/// retire when they differ (those of the log and of the newest checkpoint of `cfg`'s log
/// partition), writing nothing: [`StoreCheck::apply`] retires them and records the store's
/// id. Stores without an id (test doubles) are not checked.
///
/// Errors: the store, the log or the checkpoint directory cannot be read.
pub(super) async fn check_link_store(cfg: &Config, store: &Arc<dyn LinkStore>, log: &ClickLog, before: BeforeOpen) -> anyhow::Result<StoreCheck> {
    let Some(id) = store.store_id().await.context("could not read the link store's id")? else {
        return Ok(StoreCheck::Nothing);
    };
    let l = log.clone();
    let recorded = tokio::task::spawn_blocking(move || l.link_store_id()).await.context("click log task failed")?.context("could not read the click log")?;
    match recorded {
        Some(r) if r == id => check_restored(cfg, store, log).await,
        Some(previous) => {
            // Only the codes this store does not know: a store put back after another one ran
            // keeps its own links' codes (and its deleted links' 30-day tombstones).
            let codes = unknown(store, clicked_codes(cfg, log).await?).await?;
            Ok(StoreCheck::Record { id, mark: StoreMark::read(store).await?, previous: Some(previous), codes })
        }
        None if log.low() > 0 => {
            // A log that starts above 0 was started by `sluice log reset`, which records the
            // store's id when it can read one: it could not (links.db missing or damaged
            // then). Its checkpoint was taken by a `sluice serve`, so a store served those
            // clicks: the checkpoint's codes this store does not know are retired (all of
            // them when links.db is new).
            let (dir, partition) = (checkpoint::dir_of(&cfg.server.data_dir), cfg.dataflow.partition());
            let codes = tokio::task::spawn_blocking(move || checkpoint_codes(&dir, partition)).await.context("checkpoint task failed")??;
            let codes = unknown(store, codes.into_iter().collect()).await?;
            Ok(StoreCheck::Record { id, mark: StoreMark::read(store).await?, previous: None, codes })
        }
        None => {
            if before.embedded_store_missing && log.head() > log.low() {
                tracing::warn!(
                    click_log = %log.path().display(),
                    "the link store was missing from a data dir that holds a click log no link store was recorded in (written by `sluice import`, or by a sluice before link store ids): no codes were retired; if links were lost, links created now may reuse their codes and inherit their clicks (restore links.db from a backup, or move clicks.redb and checkpoints/ aside to start afresh)"
                );
            }
            Ok(StoreCheck::Record { id, mark: StoreMark::read(store).await?, previous: None, codes: Vec::new() })
        }
    }
}

/// The check of a store that is the one the log records: when the store's change mark
/// ([`LinkStore::change_high_water`]) is below the one the log recorded
/// ([`ClickLog::link_store_seq`]), or its epoch ([`LinkStore::epoch`]) is not the one the
/// log recorded ([`ClickLog::link_store_epoch`]: another run wrote a newer one since this
/// copy was taken), the store is a backup put back, and the codes with clicks (log and newest checkpoint) that it does not know
/// ([`LinkStore::unknown_codes`]: no link, live or deleted, and not retired) are those of
/// links created after the backup: [`StoreCheck::Restored`] retires them.
///
/// Errors: the store, the log or the checkpoint directory cannot be read.
async fn check_restored(cfg: &Config, store: &Arc<dyn LinkStore>, log: &ClickLog) -> anyhow::Result<StoreCheck> {
    let Some(store_seq) = store_seq(store).await? else {
        return Ok(StoreCheck::Nothing);
    };
    let store_epoch = store.epoch().await.context("could not read the link store's epoch")?;
    let l = log.clone();
    let (log_seq, log_epoch) = tokio::task::spawn_blocking(move || -> sluice_connectors::Result<_> { Ok((l.link_store_seq()?, l.link_store_epoch()?)) })
        .await
        .context("click log task failed")?
        .context("could not read the click log")?;
    let behind = log_seq.is_some_and(|m| m > store_seq);
    let other_copy = log_epoch.is_some() && log_epoch != store_epoch;
    if !behind && !other_copy {
        return Ok(StoreCheck::Nothing);
    }
    let codes = unknown(store, clicked_codes(cfg, log).await?).await?;
    Ok(StoreCheck::Restored { store_seq, store_epoch, log_seq: log_seq.unwrap_or(0), codes })
}

/// The codes among `codes` that `store` does not know ([`LinkStore::unknown_codes`]).
///
/// Errors: the store cannot be read.
async fn unknown(store: &Arc<dyn LinkStore>, codes: Vec<String>) -> anyhow::Result<Vec<String>> {
    store.unknown_codes(&codes).await.context("could not look the clicked codes up in the link store")
}

/// A store's change mark and epoch, as read at the start-up check.
#[derive(Debug, Clone, Copy)]
pub(super) struct StoreMark {
    /// [`LinkStore::change_high_water`] (`None`: a test double).
    seq: Option<u64>,
    /// [`LinkStore::epoch`] (`None`: never written, or a test double).
    epoch: Option<u64>,
}

impl StoreMark {
    /// Reads both. Errors: the store cannot be read.
    async fn read(store: &Arc<dyn LinkStore>) -> anyhow::Result<StoreMark> {
        Ok(StoreMark { seq: store_seq(store).await?, epoch: store.epoch().await.context("could not read the link store's epoch")? })
    }
}

/// The store's change mark ([`LinkStore::change_high_water`]; `None` for test doubles).
///
/// Errors: the store cannot be read.
async fn store_seq(store: &Arc<dyn LinkStore>) -> anyhow::Result<Option<u64>> {
    let seq = store.change_high_water().await.context("could not read the link store's change mark")?;
    Ok(seq.map(|s| u64::try_from(s).unwrap_or(0)))
}

/// The distinct codes of `log` and of the newest checkpoint of `cfg`'s log partition, sorted.
///
/// Errors: the log or the checkpoint directory cannot be read.
async fn clicked_codes(cfg: &Config, log: &ClickLog) -> anyhow::Result<Vec<String>> {
    let l = log.clone();
    let (dir, partition) = (checkpoint::dir_of(&cfg.server.data_dir), cfg.dataflow.partition());
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let mut codes: BTreeSet<String> = l.distinct_codes().context("could not read the click log's codes")?.into_iter().collect();
        codes.extend(checkpoint_codes(&dir, partition)?);
        Ok(codes.into_iter().collect())
    })
    .await
    .context("click log task failed")?
}

/// How long a process with role `api` waits for the process holding the click log to have
/// checked the link store against it ([`ApiLog::check`]).
pub(super) const API_CHECK_WAIT: Duration = Duration::from_secs(30);

/// The click log as a process with role `api` found it at its start, before the link store
/// is opened (module docs).
#[derive(Debug)]
pub(super) enum ApiLog {
    /// No click log in the data dir (and no checkpoint of one): nothing to check against.
    Absent,
    /// Opened by this process, for its start only (dropping it closes it).
    Open(ClickLog),
    /// Held by another process.
    Held,
}

impl ApiLog {
    /// Opens the click log in `data_dir` for a process with role `api`, before the link
    /// store is opened (so a refusal creates nothing).
    ///
    /// Errors: a log that exists but cannot be opened for another reason than another
    /// process holding it (damaged, read-only, refused permission), and a data dir without a
    /// log whose newest checkpoint was taken of one: role api cannot check the link store
    /// then, and would hand out the codes of a lost store; the process that serves clicks
    /// refuses such a data dir too, and says what to do.
    pub(super) async fn open(cfg: &Config, data_dir: &Path, had_click_log: bool) -> anyhow::Result<ApiLog> {
        if !had_click_log {
            if !cfg.kafka.enabled() && cfg.dataflow.processes == 1 {
                let (dir, partition) = (checkpoint::dir_of(data_dir), cfg.dataflow.partition());
                tokio::task::spawn_blocking(move || checkpoint::refuse_without_log(&dir, partition)).await.context("checkpoint check task failed")??;
            }
            return Ok(ApiLog::Absent);
        }
        let dir = data_dir.to_path_buf();
        match tokio::task::spawn_blocking(move || ClickLog::open(&dir)).await.context("click log open task failed")? {
            Ok(log) => Ok(ApiLog::Open(log)),
            Err(e) if e.open_failure() == OpenFailure::HeldByAnotherProcess => Ok(ApiLog::Held),
            Err(e) => Err(crate::log_open::open_error(data_dir, e, "stop it first").context(
                "role api checks the link store against the data dir's click log before it creates links (a lost link store's codes \
                 must not be handed out again), and could not open it: start the redirect or all role on this data dir first, \
                 which repairs the log or says how",
            )),
        }
    }

    /// Checks `store` against the log: an opened log as the process serving clicks does
    /// ([`check_link_store`], returning the check and the log to apply it to before the HTTP
    /// server starts); a held one by asking the process holding it to confirm its check
    /// ([`LinkStore::request_log_check`]) and waiting, up to [`API_CHECK_WAIT`], for the
    /// answer ([`LinkStore::log_check_answered`]) — or for the log to be free, trying every
    /// second: then it is checked here, as an opened one.
    ///
    /// Errors: the store, the log or the checkpoint directory cannot be read; the store is
    /// still unchecked after the wait (the holder is a `sluice serve` that opened another
    /// store — `links.db` lost while it ran — or `sluice import --data-dir` / `sluice log
    /// tail`): refused, saying so.
    pub(super) async fn check(self, cfg: &Config, store: &Arc<dyn LinkStore>, before: BeforeOpen) -> anyhow::Result<Option<(StoreCheck, ClickLog)>> {
        match self {
            ApiLog::Absent => Ok(None),
            ApiLog::Open(log) => Ok(Some((check_link_store(cfg, store, &log, before).await?, log))),
            ApiLog::Held => {
                let Some(request) = store.request_log_check().await.context("could not write to the link store")? else {
                    return Ok(None);
                };
                let t0 = std::time::Instant::now();
                let mut next_try = t0 + Duration::from_secs(1);
                while !store.log_check_answered(request).await.context("could not read the link store")? {
                    // The holder may be gone meanwhile (an import or a `log tail` done): then
                    // this process takes the log and checks the store itself.
                    if std::time::Instant::now() >= next_try {
                        next_try += Duration::from_secs(1);
                        if let Some(log) = try_open_existing(&cfg.server.data_dir).await {
                            return Ok(Some((check_link_store(cfg, store, &log, before).await?, log)));
                        }
                    }
                    if t0.elapsed() >= API_CHECK_WAIT {
                        anyhow::bail!(
                            "role api: the click log in \"{}\" is held by another process, which has not confirmed within {} s that \
                             it checked this link store against it, so links created here could take the codes of a lost link store \
                             and inherit their clicks. If links.db was lost or replaced while `sluice serve` ran, restart that \
                             process (it checks the store at its start), then this one; if `sluice import --data-dir` or `sluice log \
                             tail` holds the log, start this process once it is done",
                            cfg.server.data_dir.display(),
                            API_CHECK_WAIT.as_secs()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(None)
            }
        }
    }
}

/// The click log in `data_dir` if it exists and this process can open it now (`None`: held
/// by another process, gone, or not openable).
async fn try_open_existing(data_dir: &Path) -> Option<ClickLog> {
    let dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || dir.join(CLICK_LOG_FILE_NAME).exists().then(|| ClickLog::open(&dir).ok()).flatten()).await.ok().flatten()
}

/// The codes of the view rows in the newest checkpoint of click-log `partition` in `dir`
/// (whichever log it was taken of; none without checkpoints). Unreadable checkpoint files
/// are skipped with a warning ([`checkpoint::newest_of_partition`]).
///
/// Errors: the checkpoint directory exists but cannot be listed.
fn checkpoint_codes(dir: &Path, partition: u32) -> anyhow::Result<BTreeSet<String>> {
    let newest = checkpoint::newest_of_partition(dir, partition)?;
    Ok(newest.map(|((_, f), _)| f.snapshot.views.rows.iter().map(|r| r.code.to_string()).collect()).unwrap_or_default())
}

impl StoreCheck {
    /// Retires the lost store's codes in `store`, then records the store's id and change mark
    /// in `log` (the holder of the log answers `api` processes' requests from then on:
    /// [`StoreSeqMark`]). Call it after
    /// every check that may refuse the start, before anything can create a link. Returns the
    /// number of codes retired.
    ///
    /// Errors: the store or the log cannot be written (nothing is recorded in the log before
    /// the codes are retired, so a failed start retries the whole step).
    pub(super) async fn apply(self, store: &Arc<dyn LinkStore>, log: &ClickLog) -> anyhow::Result<usize> {
        let (id, mark, previous, codes) = match self {
            StoreCheck::Nothing => return Ok(0),
            StoreCheck::Restored { store_seq, store_epoch, log_seq, codes } => {
                if codes.is_empty() {
                    // E.g. the first start after a `sluice log reset`: checked, nothing to do.
                    tracing::info!(click_log = %log.path().display(), store_change = store_seq, log_change = log_seq, "the link store was checked against the click log: it knows every code with clicks");
                } else {
                    store.retire_codes(&codes).await.context("could not retire the codes of the links missing from the restored link store")?;
                    tracing::warn!(
                        click_log = %log.path().display(),
                        store_change = store_seq,
                        log_change = log_seq,
                        retired = codes.len(),
                        "the link store is not the copy this click log last ran with (restored from a backup, or a log reset): links created after the backup are missing from it; the codes with clicks that it does not know were retired, so no new link gets one and inherits its clicks"
                    );
                }
                let l = log.clone();
                tokio::task::spawn_blocking(move || -> sluice_connectors::Result<()> {
                    l.set_link_store_seq(store_seq)?;
                    l.set_link_store_epoch(store_epoch)
                })
                .await
                .context("click log task failed")?
                .context("could not record the link store's change mark in the click log")?;
                return Ok(codes.len());
            }
            StoreCheck::Record { id, mark, previous, codes } => (id, mark, previous, codes),
        };
        if previous.is_none() && !codes.is_empty() {
            store.retire_codes(&codes).await.context("could not retire the codes of the lost link store")?;
            tracing::warn!(
                click_log = %log.path().display(),
                store_id = id,
                retired = codes.len(),
                "the link store does not know codes with clicks in the newest checkpoint of a data dir whose click log was reset (`sluice log reset`, which could not read the link store's id then): the links were lost (or the store is an older copy); those codes were retired, so no new link gets one and inherits its clicks (restore the link store from a backup to get its links back)"
            );
        }
        if let Some(previous) = previous {
            store.retire_codes(&codes).await.context("could not retire the codes of the lost link store")?;
            tracing::warn!(
                click_log = %log.path().display(),
                previous_store_id = previous,
                store_id = id,
                retired = codes.len(),
                "the link store is not the one this click log was served with (it was lost or replaced, or an earlier one was put back): the codes with clicks in the log or its newest checkpoint that it does not know were retired, so no new link gets one and inherits its clicks; if links are missing, restore the link store they were in from a backup"
            );
        }
        // The mark of the log's former store means nothing for this one.
        let l = log.clone();
        tokio::task::spawn_blocking(move || -> sluice_connectors::Result<()> {
            l.set_link_store_id(id)?;
            l.set_link_store_epoch(mark.epoch)?;
            match mark.seq {
                Some(seq) => l.set_link_store_seq(seq),
                None => Ok(()),
            }
        })
        .await
        .context("click log task failed")?
        .context("could not record the link store's id in the click log")?;
        Ok(codes.len())
    }
}

/// How often [`StoreSeqMark`] reads the link store's change mark.
const SEQ_MARK_INTERVAL: Duration = Duration::from_secs(1);

/// How long [`StoreSeqMark::stop`] waits for the last round.
const SEQ_MARK_STOP_WAIT: Duration = Duration::from_secs(2);

/// Keeps the click log's record of the link store's change mark up to date
/// ([`ClickLog::raise_link_store_seq`] with [`LinkStore::change_high_water`], every
/// [`SEQ_MARK_INTERVAL`] and once more at the stop), for the process serving clicks into the
/// log: what [`check_restored`] compares a store with at the next start. A link created and
/// clicked less than a second before the process is killed (not stopped) may be missing from
/// the mark. At its first tick it writes a new epoch into the store and records it in the log
/// ([`LinkStore::new_epoch`]: a copy of the store taken before this run has another one). On
/// each tick it answers the check requests of `api` processes
/// ([`LinkStore::answer_log_checks`]): it starts once the start-up check was applied. Dropping
/// it stops the task at once.
pub(super) struct StoreSeqMark {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl StoreSeqMark {
    /// Starts the task for `store` and `log` (after the start-up check was applied).
    pub(super) fn start(store: Arc<dyn LinkStore>, log: ClickLog) -> StoreSeqMark {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut last = None;
            let mut warned = false;
            let mut epoch_recorded = false;
            loop {
                let done = *stopped.borrow();
                if !epoch_recorded && !done {
                    match record_epoch(&store, &log).await {
                        Ok(()) => epoch_recorded = true,
                        Err(e) if !warned => {
                            warned = true;
                            tracing::warn!(error = %e, "could not record a new link store epoch in the store and the click log; retrying every second");
                        }
                        Err(_) => {}
                    }
                }
                let answered = store.answer_log_checks().await.map_err(anyhow::Error::from);
                if let Err(e) = record_seq(&store, &log, &mut last).await.and(answered)
                    && !warned
                {
                    warned = true;
                    tracing::warn!(error = %e, "could not record the link store's change mark in the click log, or answer an api process's check request in the link store; retrying every second");
                }
                if done {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(SEQ_MARK_INTERVAL) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        StoreSeqMark { stop, task: Some(task) }
    }

    /// [`Self::stop`] for a mark that may not have been started (`None`: nothing to do).
    pub(super) async fn stop_if_started(mark: Option<StoreSeqMark>) {
        if let Some(m) = mark {
            m.stop().await;
        }
    }

    /// Records the mark once more (for at most [`SEQ_MARK_STOP_WAIT`]: a store gone does not
    /// hold the stop) and stops the task.
    pub(super) async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SEQ_MARK_STOP_WAIT, &mut task).await.is_err()
        {
            task.abort();
            tracing::warn!("the link store's change mark was not recorded in the click log at the stop (the store did not answer)");
        }
    }
}

impl Drop for StoreSeqMark {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Writes a new epoch into the store ([`LinkStore::new_epoch`]), then records it in the log.
async fn record_epoch(store: &Arc<dyn LinkStore>, log: &ClickLog) -> anyhow::Result<()> {
    let Some(epoch) = store.new_epoch().await? else { return Ok(()) };
    let l = log.clone();
    tokio::task::spawn_blocking(move || l.set_link_store_epoch(Some(epoch))).await??;
    Ok(())
}

/// Raises the log's mark to the store's when it moved since `last` (the last value seen).
async fn record_seq(store: &Arc<dyn LinkStore>, log: &ClickLog, last: &mut Option<u64>) -> anyhow::Result<()> {
    let Some(seq) = store_seq(store).await? else { return Ok(()) };
    if *last == Some(seq) {
        return Ok(());
    }
    let l = log.clone();
    tokio::task::spawn_blocking(move || l.raise_link_store_seq(seq)).await??;
    *last = Some(seq);
    Ok(())
}
