//! Test helpers for file-system failures and the logs about them: a real small file system
//! to fill, and a writer that captures what a `tracing` subscriber logs.
//!
//! Compiled for this crate's tests and, with the feature `test-support`, for the tests of
//! the crates that enable it in their dev-dependencies (`sluice-ingest`, `sluice`); never in
//! a normal build.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A tmpfs mounted (`mount -t tmpfs -o size=<bytes>`, root only) on a directory while alive,
/// to fill a file system for real; unmounted on drop.
#[derive(Debug)]
pub struct SmallFileSystem {
    /// Where it is mounted.
    at: PathBuf,
    /// The temporary directory holding the mount point, for [`SmallFileSystem::temporary`]:
    /// removed after the unmount.
    _dir: Option<tempfile::TempDir>,
}

impl SmallFileSystem {
    /// Mounts a tmpfs of `bytes` at `at`.
    ///
    /// # Panics
    /// When `mount` fails (e.g. not root).
    pub fn mount(at: &Path, bytes: u64) -> SmallFileSystem {
        mount_tmpfs(at, bytes);
        SmallFileSystem { at: at.to_path_buf(), _dir: None }
    }

    /// Mounts a tmpfs of `bytes` at a new directory `small` in a new temporary directory
    /// (removed on drop too). `None`, with a line saying that the test is skipped, when this
    /// process is not root.
    ///
    /// # Panics
    /// When the directory cannot be made or `mount` fails.
    pub fn temporary(bytes: u64) -> Option<SmallFileSystem> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let at = dir.path().join("small");
        std::fs::create_dir(&at).expect("mkdir");
        mount_tmpfs(&at, bytes);
        Some(SmallFileSystem { at, _dir: Some(dir) })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.at
    }
}

/// Runs `mount -t tmpfs -o size=<bytes>` on `at`; panics when it fails.
fn mount_tmpfs(at: &Path, bytes: u64) {
    let out =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "sluice-test-tmpfs"]).arg(at).output().expect("run mount");
    assert!(out.status.success(), "mount tmpfs at {}: {}", at.display(), String::from_utf8_lossy(&out.stderr));
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.at).status();
    }
}

/// Fills the file system of `dir` to its last byte (a file `filler`; remove it to free the
/// space).
///
/// # Panics
/// When `filler` cannot be created.
pub fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let chunk = vec![7u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[7]).is_ok() {}
}

/// What a `tracing` subscriber wrote: give it a clone as its writer
/// (`fmt::layer().with_writer(captured.clone())`), read it with [`CapturedLogs::text`].
#[derive(Clone, Debug, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Everything written so far.
    ///
    /// # Panics
    /// When what was written is not UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).expect("utf-8")
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> CapturedLogs {
        self.clone()
    }
}

/// The lines this test process logged from the click log, the anomaly store and
/// `redb_open` (debug level and up, no time, no ANSI) that contain `path`. The subscriber is
/// the global one, shared by the tests of every store: a scoped one (`with_default`) misses
/// the events of a callsite another test thread registered first.
#[cfg(test)]
pub(crate) fn logged_about(path: &str) -> Vec<String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    static LOGS: std::sync::OnceLock<CapturedLogs> = std::sync::OnceLock::new();
    let logs = LOGS.get_or_init(|| {
        let captured = CapturedLogs::default();
        let targets = tracing_subscriber::filter::Targets::new()
            .with_target("sluice_connectors::click_log", tracing::Level::DEBUG)
            .with_target("sluice_connectors::anomaly_store", tracing::Level::DEBUG)
            .with_target("sluice_connectors::redb_open", tracing::Level::DEBUG);
        let fmt = tracing_subscriber::fmt::layer().with_writer(captured.clone()).with_ansi(false).without_time().with_target(false);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(fmt).with(targets)).expect("the only global subscriber");
        captured
    });
    logs.text().lines().filter(|l| l.contains(path)).map(str::to_owned).collect()
}
