//! The message of a click log that a command (`sluice log tail`, `sluice import
//! --data-dir`, `sluice log reset`) could not open: it names the real cause, and asks
//! whether `sluice serve` is running on the data dir only when another process holds the
//! file (redb's lock), not for a read-only file system or a refused permission.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice_connectors::click_log::ClickLog;
use sluice_connectors::redb_open::OpenFailure;

/// How long `sluice serve` (roles `all` and `redirect`) waits for a click log another process
/// holds: a process with role `api` holds it for a moment at its start (to check the link
/// store against it, `crate::job::lost_store`), so a pair started together does not fail.
pub const HELD_WAIT: Duration = Duration::from_secs(30);

/// Opens the click log in `dir` for writing ([`ClickLog::open`]), retrying every 50 ms while
/// another process holds it, for up to `wait` (saying so once, at warn level). Blocking.
///
/// Errors: as [`ClickLog::open`]; a log still held after `wait` is its
/// [`OpenFailure::HeldByAnotherProcess`] error.
pub fn open_waiting(dir: &Path, wait: Duration) -> sluice_connectors::Result<ClickLog> {
    let deadline = Instant::now() + wait;
    let mut said = false;
    loop {
        match ClickLog::open(dir) {
            Err(e) if e.open_failure() == OpenFailure::HeldByAnotherProcess && Instant::now() < deadline => {
                if !said {
                    said = true;
                    tracing::warn!(
                        data_dir = %dir.display(),
                        "the click log is held by another process; waiting up to {} s for it: a process with role api holds it for a moment at its start, another `sluice serve` on this data dir holds it until it stops (then stop that one, or give this process another --data-dir)",
                        wait.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

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

    /// Only the held lock asks about `sluice serve`; every other cause is named as it is:
    /// our classification ([`OpenFailure`]) picks the message, which names the data dir and
    /// the cause, then the click log's own error follows (its source is redb's message, in
    /// redb's words, so it is not spelled out here: a redb upgrade may reword it).
    #[test]
    fn each_cause_gets_its_own_message() {
        let dir = Path::new("ro/d");
        fn redb(source: fn() -> redb::Error) -> impl Fn() -> sluice_connectors::Error {
            move || sluice_connectors::Error::ClickLog { op: "open", source: Box::new(source()) }
        }
        fn os(code: i32) -> impl Fn() -> sluice_connectors::Error {
            move || sluice_connectors::Error::ClickLog { op: "open", source: Box::new(redb::Error::Io(std::io::Error::from_raw_os_error(code))) }
        }
        /// Makes the error of one case (an error is not `Clone`).
        type Make = Box<dyn Fn() -> sluice_connectors::Error>;
        let cases: [(Make, OpenFailure, &str); 5] = [
            (
                Box::new(redb(|| redb::Error::DatabaseAlreadyOpen)),
                OpenFailure::HeldByAnotherProcess,
                "could not open the click log in \"ro/d\": another process has it open (is `sluice serve` running on it? stop it first)",
            ),
            (Box::new(os(30)), OpenFailure::ReadOnlyFileSystem, "could not open the click log in \"ro/d\" for writing: the file system is read-only"),
            (
                Box::new(os(13)),
                OpenFailure::PermissionDenied,
                "could not open the click log in \"ro/d\": permission denied (check the owner and mode of the directory and of the log \
                 file, and that neither is immutable: `lsattr`)",
            ),
            (
                Box::new(redb(|| redb::Error::RepairAborted)),
                OpenFailure::NeedsRepair,
                "could not open the click log in \"ro/d\" read-only: it was not closed cleanly (sluice stopped without a graceful \
                 shutdown) and must be repaired first, which needs write access",
            ),
            (Box::new(|| io(std::io::ErrorKind::StorageFull)), OpenFailure::Other, "could not open the click log in \"ro/d\""),
        ];
        for (error, failure, context) in cases {
            assert_eq!(error().open_failure(), failure, "{}", error());
            let cause = crate::health::error_chain(&error());
            assert!(cause.starts_with("click log could not open: "), "the click log's own error: {cause}");
            assert_eq!(format!("{:#}", open_error(dir, error(), "stop it first")), format!("{context}: {cause}"));
        }
    }
}
