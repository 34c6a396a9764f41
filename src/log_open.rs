//! The message of a click log that a command (`sluice log tail`, `sluice import
//! --data-dir`, `sluice log reset`) could not open: it names the real cause, and asks
//! whether `sluice serve` is running on the data dir only when another process holds the
//! file (redb's lock), not for a read-only file system or a refused permission.

use std::path::Path;

use sluice_connectors::redb_open::OpenFailure;

/// `e`, a failed open of the click log in `data_dir`, with a context naming its cause
/// (module docs). `if_held` is what to do when `sluice serve` holds the log (e.g. `"stop it
/// first"`).
pub fn open_error(data_dir: &Path, e: sluice_connectors::Error, if_held: &str) -> anyhow::Error {
    let dir = data_dir.display();
    let context = match e.open_failure() {
        OpenFailure::HeldByAnotherProcess => {
            format!("could not open the click log in \"{dir}\": another process has it open (is `sluice serve` running on it? {if_held})")
        }
        OpenFailure::ReadOnlyFileSystem => format!("could not open the click log in \"{dir}\" for writing: the file system is read-only"),
        OpenFailure::PermissionDenied => format!(
            "could not open the click log in \"{dir}\": permission denied (check the owner and mode of the directory and of the log file, \
             and that neither is immutable: `lsattr`)"
        ),
        OpenFailure::NeedsRepair => format!(
            "could not open the click log in \"{dir}\" read-only: it was not closed cleanly (sluice stopped without a graceful \
             shutdown) and must be repaired first, which needs write access"
        ),
        OpenFailure::Other => format!("could not open the click log in \"{dir}\""),
    };
    anyhow::Error::new(e).context(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> sluice_connectors::Error {
        sluice_connectors::Error::ClickLog { op: "open", source: Box::new(redb::Error::Io(std::io::Error::from(kind))) }
    }

    /// Only the held lock asks about `sluice serve`; every other cause is named as it is.
    #[test]
    fn each_cause_gets_its_own_message() {
        let dir = Path::new("ro/d");
        let held = sluice_connectors::Error::ClickLog { op: "open", source: Box::new(redb::Error::DatabaseAlreadyOpen) };
        let cases = [
            (
                held,
                "could not open the click log in \"ro/d\": another process has it open (is `sluice serve` running on it? stop it first): \
                 click log could not open: Database already open. Cannot acquire lock.",
            ),
            (
                sluice_connectors::Error::ClickLog { op: "open", source: Box::new(redb::Error::Io(std::io::Error::from_raw_os_error(30))) },
                "could not open the click log in \"ro/d\" for writing: the file system is read-only: click log could not open: \
                 I/O error: Read-only file system (os error 30)",
            ),
            (
                sluice_connectors::Error::ClickLog { op: "open", source: Box::new(redb::Error::Io(std::io::Error::from_raw_os_error(13))) },
                "could not open the click log in \"ro/d\": permission denied (check the owner and mode of the directory and of the log \
                 file, and that neither is immutable: `lsattr`): click log could not open: I/O error: Permission denied (os error 13)",
            ),
            (
                sluice_connectors::Error::ClickLog { op: "open", source: Box::new(redb::Error::RepairAborted) },
                "could not open the click log in \"ro/d\" read-only: it was not closed cleanly (sluice stopped without a graceful \
                 shutdown) and must be repaired first, which needs write access: click log could not open: Database repair aborted.",
            ),
            (io(std::io::ErrorKind::StorageFull), "could not open the click log in \"ro/d\": click log could not open: I/O error: no storage space"),
        ];
        for (e, want) in cases {
            assert_eq!(format!("{:#}", open_error(dir, e, "stop it first")), want);
        }
    }
}
