//! Test helpers for file-system failures (compiled for tests only).

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
