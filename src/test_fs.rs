//! Test helpers shared by the unit tests of this crate: make a file fail like a failing
//! disk, and wait for a background task's effect.

use std::path::Path;
use std::time::Duration;

/// Sets or clears the immutable attribute of `path` (`chattr`): even root cannot open or
/// write it while set, the condition of a failing disk that permissions cannot make for
/// root. `false` when the attribute cannot be changed here (no `CAP_LINUX_IMMUTABLE`, a
/// file system without it).
pub(crate) fn set_immutable(path: &Path, on: bool) -> bool {
    std::process::Command::new("chattr").arg(if on { "+i" } else { "-i" }).arg(path).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Clears the immutable attribute when the test ends, also on a panic (so that the
/// temporary directory can be removed).
pub(crate) struct Mutable<'a>(pub(crate) &'a Path);

impl Drop for Mutable<'_> {
    fn drop(&mut self) {
        set_immutable(self.0, false);
    }
}

/// Polls `done` every 5 ms; panics naming `what` after 20 s.
pub(crate) async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what} in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
