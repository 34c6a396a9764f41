//! Loading at start (module docs of [`super`]): the newest checkpoint of the current input
//! that reads back whole (and a newer one of another input, [`super::switch`]), the refusals
//! when the click log it was taken of is not the one in the data dir (replaced, or gone), and
//! the newest checkpoint of a log partition for `sluice log reset`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::files::{checkpoint_files_warn, read_regular};
use super::format::{CheckpointFile, Relation, SourceIdentity, decode, relation};
use super::switch::InputSwitch;

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
    Ok(load_for_start(dir, source, log_clicks)?.restored)
}

/// What a start restores ([`load_for_start`]).
#[derive(Debug)]
pub struct StartCheckpoint {
    /// The newest valid checkpoint of the current input (path and file), if any.
    pub restored: Option<(PathBuf, CheckpointFile)>,
    /// With `restored`: the newest checkpoint of another input written after it, if any
    /// (the sinks were last written from that input; [`super::switch`]).
    pub switch: Option<InputSwitch>,
}

/// [`load_latest_for_log`], noting the newest checkpoint of another input newer than the one
/// restored ([`StartCheckpoint::switch`]).
///
/// Errors: as [`load_latest_for_log`].
pub fn load_for_start(dir: &Path, source: &SourceIdentity, log_clicks: Option<u64>) -> anyhow::Result<StartCheckpoint> {
    let files = checkpoint_files_warn(dir).with_context(|| format!("could not list {}", dir.display()))?;
    let mut switch = None;
    for path in files.iter().rev() {
        let read = read_regular(path).and_then(|b| decode(&b));
        match read {
            Ok(f) => match relation(&f.source, source) {
                Relation::Same => return Ok(StartCheckpoint { restored: Some((path.clone(), f)), switch }),
                Relation::Other => {
                    tracing::warn!(path = %path.display(), checkpoint = ?f.source, current = ?source, "skipping a checkpoint of another input");
                    // Names sort in write order: the first one met is the newest.
                    switch.get_or_insert(InputSwitch { newer: path.clone(), input: f.source });
                }
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
    Ok(StartCheckpoint { restored: None, switch: None })
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
    let files = checkpoint_files_warn(dir).with_context(|| format!("could not list {}", dir.display()))?;
    let mut newest = None;
    let mut others = Vec::new();
    for path in files.iter().rev() {
        match read_regular(path).and_then(|b| decode(&b)) {
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
