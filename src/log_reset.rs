//! `sluice log reset`: the way back after `clicks.redb` was damaged or lost, keeping the
//! clicks the newest checkpoint counted.
//!
//! What it does (every `sluice serve` on the data dir must be stopped):
//! 1. `clicks.redb`: a damaged file (one `sluice serve` refuses, a zero-length one too) is moved aside to
//!    `clicks.redb.damaged-<UTC time>`; a missing one is created; an empty one (no clicks
//!    stored, e.g. the new log a refused start created after the old one was moved away) is
//!    kept. A log that opens and stores clicks is refused: resetting it would drop them.
//! 2. The new, empty log continues at the offset where the newest checkpoint of this log
//!    partition ends (`ClickLog::continue_empty_at`), so the checkpoint's views and dedup
//!    state are the baseline and the new log's clicks are counted on top of them.
//! 3. That checkpoint is rewritten as a checkpoint of the new log (its log id, under the
//!    next checkpoint name; the original is removed), and older
//!    checkpoints of the partition are renamed `<name>.old-log` (never loaded again: they
//!    end before the new log starts).
//!
//! Kept: every view row (clicks, uniques, bot clicks) and the dedup and flood-cap state the
//! checkpoint holds (README, "Checkpoints"). Lost: clicks the old log stored after the
//! checkpoint's cut (none after a graceful stop, which writes a checkpoint; after a `kill -9`,
//! up to one `[dataflow] checkpoint-interval`), and the old log's event history itself: a
//! later rebuild without checkpoints cannot recount the clicks before the reset, and
//! `sluice log tail` shows none of them.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sluice_connectors::click_log::{CLICK_LOG_FILE_NAME, ClickLog, UNCHECKED_EPOCH};
use sluice_connectors::link_store::SQLITE_FILE_NAME;

use crate::config::Config;
use crate::job::checkpoint::{self, SourceIdentity};
use crate::log_open::open_error;

/// Runs `sluice log reset` on the data dir of `cfg`; returns the report printed on stdout
/// (one line per step).
///
/// Errors: a data dir that is a file (a usage error, exit 2:
/// [`crate::config::refuse_non_directory`]); no data dir; Kafka mode; a log that stores clicks; a log held by a running
/// `sluice serve` (or unreadable for another reason); I/O errors moving or writing files.
pub fn run(cfg: &Config) -> anyhow::Result<String> {
    let data_dir = &cfg.server.data_dir;
    crate::config::existing_data_dir(data_dir, "reset")?;
    if cfg.kafka.enabled() {
        bail!("[kafka] brokers is set: the dataflow reads the click topic, not clicks.redb, and its checkpoints are of the topic; nothing to reset");
    }
    let partition = cfg.dataflow.partition();
    let checkpoint_dir = checkpoint::dir_of(data_dir);
    let newest = checkpoint::newest_of_partition(&checkpoint_dir, partition)?;
    let offset = newest.as_ref().map_or(0, |((_, f), _)| f.snapshot.offsets.get(&partition).copied().unwrap_or(0));
    let mut report = String::new();
    let path = data_dir.join(CLICK_LOG_FILE_NAME);
    let log = open_or_move_aside(data_dir, &path, &mut report)?;
    if log.head() > log.low() && newest.is_none() {
        bail!(
            "click log \"{}\" opens and stores {} clicks, and there is no checkpoint: nothing to reset (`sluice serve` starts on it and counts them)",
            path.display(),
            log.head() - log.low()
        );
    }
    if log.head() > log.low() {
        let same = newest.as_ref().is_some_and(|((_, f), _)| match f.source {
            SourceIdentity::LogFile { log_id, .. } => log_id == log.log_id(),
            _ => true,
        });
        if same {
            bail!(
                "click log \"{}\" opens and stores {} clicks, and the newest checkpoint was taken of it: nothing to reset (`sluice serve` starts on it)",
                path.display(),
                log.head() - log.low()
            );
        }
        bail!(
            "click log \"{}\" opens and stores {} clicks of another log than the newest checkpoint's; resetting would drop them. Put the \
             click log the checkpoint was taken of back at that path{}",
            path.display(),
            log.head() - log.low(),
            checkpoint::side_file_hint(data_dir)
        );
    }
    log.continue_empty_at(offset).with_context(|| format!("could not start the new click log \"{}\" at offset {offset}", path.display()))?;
    report.push_str(&format!("click log \"{}\" (log id {:016x}) is empty and continues at offset {offset}\n", path.display(), log.log_id()));
    record_link_store_id(cfg, &log, &mut report)?;
    let Some(((ckpt_path, mut file), older)) = newest else {
        report.push_str(&format!("no checkpoint in \"{}\": the views start empty\n", checkpoint_dir.display()));
        return Ok(report);
    };
    file.source = SourceIdentity::LogFile { partition, log_id: log.log_id() };
    drop(log);
    // Older checkpoints first: the rewrite prunes the partition's files when the log kept
    // its id (an empty log the checkpoints were taken of), and a renamed file is out of the
    // way of that.
    for old in older {
        let to = PathBuf::from(format!("{}.old-log", old.display()));
        std::fs::rename(&old, &to).with_context(|| format!("could not rename the older checkpoint \"{}\"", old.display()))?;
        report.push_str(&format!("older checkpoint \"{}\" renamed to \"{}\" (it ends before the new log starts)\n", old.display(), to.display()));
    }
    let (written, _) = checkpoint::write(&checkpoint_dir, &file).with_context(|| format!("could not rewrite the checkpoint \"{}\"", ckpt_path.display()))?;
    // The rewritten file sorts after every intact one (`checkpoint::next_name`), so it has
    // another name than the original: removed, so that only the new log's copy remains (a
    // second reset finds that one as the newest).
    if written != ckpt_path
        && let Err(e) = std::fs::remove_file(&ckpt_path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(e).with_context(|| format!("could not remove the original checkpoint \"{}\"", ckpt_path.display()));
    }
    report.push_str(&format!(
        "checkpoint \"{}\" (rewritten from \"{}\") now belongs to the new log: `sluice serve` restores its {} view rows and {} dedup ids and \
         counts new clicks on top\n",
        written.display(),
        ckpt_path.display(),
        file.snapshot.views.rows.len(),
        file.snapshot.dedup.ids.len()
    ));
    Ok(report)
}

/// Records the link store's id in the new log when it records none (the old log moved
/// aside or lost took it along), so that a link store lost after the reset is noticed and
/// the codes the checkpoint counted are retired (`crate::job::lost_store`). The store is
/// read only if it exists (`links.db` in the data dir, or `[store] url`); a store that
/// cannot be read is reported and the reset goes on (noted in `report`).
///
/// Errors: the new log's metadata cannot be read or written.
fn record_link_store_id(cfg: &Config, log: &ClickLog, report: &mut String) -> anyhow::Result<()> {
    if log.link_store_id().context("could not read the new click log's metadata")?.is_some() {
        return Ok(());
    }
    let embedded = cfg.store.url.trim().is_empty();
    let location = cfg.store_location();
    let shown = if embedded { format!("\"{}\"", cfg.server.data_dir.join(SQLITE_FILE_NAME).display()) } else { "the [store] url".to_owned() };
    if embedded && !cfg.server.data_dir.join(SQLITE_FILE_NAME).exists() {
        report.push_str(&format!(
            "no link store at {shown}: no link store id recorded in the new log (the first `sluice serve` records its store's; one that starts \
             without links.db retires the codes the checkpoint counted)\n"
        ));
        return Ok(());
    }
    let timeouts = cfg.store.timeouts();
    // On a thread of its own: `run` may be called from within a runtime (tests).
    let id = std::thread::scope(|s| {
        // With the id, the store's change mark: a copy of the store taken before now, put back
        // later, is noticed as for a log that was never reset.
        s.spawn(|| -> anyhow::Result<(Option<u64>, Option<i64>)> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("could not start a runtime")?;
            rt.block_on(async {
                let store = sluice_connectors::open_store_within(&location, timeouts).await?;
                let read = async { Ok::<_, sluice_connectors::Error>((store.store_id().await?, store.change_high_water().await?)) }.await;
                store.close().await;
                Ok(read?)
            })
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the link store task panicked")))
    });
    match id {
        Ok((Some(id), seq)) => {
            log.set_link_store_id(id).context("could not record the link store's id in the new click log")?;
            // Not the store's epoch: the store found here may itself be a backup put back (with
            // the log lost), so the next start checks the checkpoint's codes against whichever
            // copy it finds.
            log.set_link_store_epoch(Some(UNCHECKED_EPOCH)).context("could not record the link store's epoch in the new click log")?;
            if let Some(seq) = seq {
                log.set_link_store_seq(u64::try_from(seq).unwrap_or(0)).context("could not record the link store's change mark in the new click log")?;
            }
            report.push_str(&format!(
                "link store id {id:016x} of {shown} recorded in the new log (the next start retires the codes the checkpoint counted that the \
                 link store does not know, and a link store lost or put back from a backup later is noticed)\n"
            ));
        }
        Ok((None, ..)) => {}
        Err(e) => report.push_str(&format!(
            "could not read the link store's id at {shown} ({e:#}): none recorded in the new log (the first `sluice serve` records its store's; one \
             that starts without links.db retires the codes the checkpoint counted)\n"
        )),
    }
    Ok(())
}

/// Opens the click log at `path`, first moving a damaged file aside (noted in `report`).
fn open_or_move_aside(data_dir: &Path, path: &Path, report: &mut String) -> anyhow::Result<ClickLog> {
    match ClickLog::open(data_dir) {
        Ok(log) => Ok(log),
        Err(sluice_connectors::Error::ClickLogDamaged { detail, .. }) => {
            let aside = sluice_connectors::click_log::move_aside(path).map_err(|e| anyhow::anyhow!("could not move the damaged click log aside: {e}"))?;
            report.push_str(&format!("damaged click log \"{}\" ({detail}) moved aside to \"{}\"\n", path.display(), aside.display()));
            ClickLog::open(data_dir).map_err(|e| {
                // What this open made of the new log (e.g. a file of zeros on a full disk)
                // goes: a retry must not take it for another damaged log to move aside.
                let _ = std::fs::remove_file(path);
                open_error(data_dir, e, "stop it first")
            })
        }
        Err(e) => Err(open_error(data_dir, e, "stop it first")),
    }
}

#[cfg(test)]
#[path = "log_reset_tests.rs"]
mod tests;
