//! Test helpers for file-system failures and the logs about them (compiled for tests only).

/// Runs `mount -t tmpfs -o size=<bytes>` on a directory while alive (root only), to fill a
/// file system for real; unmounts on drop.
pub(crate) struct SmallFileSystem(std::path::PathBuf);

impl SmallFileSystem {
    /// Mounts a tmpfs of `bytes` at `at`.
    ///
    /// # Panics
    /// When `mount` fails (e.g. not root).
    pub(crate) fn mount(at: &std::path::Path, bytes: u64) -> SmallFileSystem {
        let out =
            std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "sluice-test-tmpfs"]).arg(at).output().expect("run mount");
        assert!(out.status.success(), "mount tmpfs at {}: {}", at.display(), String::from_utf8_lossy(&out.stderr));
        SmallFileSystem(at.to_path_buf())
    }
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` to its last byte (a file `filler`; remove it to free the
/// space).
pub(crate) fn fill(dir: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let chunk = vec![7u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[7]).is_ok() {}
}

/// What a `tracing` subscriber wrote.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines this test process logged from the click log, the anomaly store and
/// `redb_open` (debug level and up, no time, no ANSI) that contain `path`. The subscriber is
/// the global one, shared by the tests of every store: a scoped one (`with_default`) misses
/// the events of a callsite another test thread registered first.
pub(crate) fn logged_about(path: &str) -> Vec<String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    let logs = LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let targets = tracing_subscriber::filter::Targets::new()
            .with_target("sluice_connectors::click_log", tracing::Level::DEBUG)
            .with_target("sluice_connectors::anomaly_store", tracing::Level::DEBUG)
            .with_target("sluice_connectors::redb_open", tracing::Level::DEBUG);
        let fmt = tracing_subscriber::fmt::layer().with_writer(move || writer.clone()).with_ansi(false).without_time().with_target(false);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(fmt).with(targets)).expect("the only global subscriber");
        captured
    });
    let text = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8");
    text.lines().filter(|l| l.contains(path)).map(str::to_owned).collect()
}
