//! A first `sluice serve` refused because the disk is full leaves no data dir behind (attack
//! of session 52: the click log's failed open left a `clicks.redb` of zeros, which every
//! later start then refused as a damaged log, naming `sluice log reset`). The full disk is a
//! small tmpfs, mounted for the test; that needs root, which the test command runs as.

use std::process::Command;

use crate::cli_messages::{run, utf8};

/// Unmounts the tmpfs at its path when dropped.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_first_start_on_a_full_disk_leaves_no_data_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("tfs");
    std::fs::create_dir(&mnt).expect("mkdir");
    let status = Command::new("mount").args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"]).arg(&mnt).status().expect("run mount");
    assert!(status.success(), "mounting a tmpfs needs root (the test command runs as root or through sudo)");
    let _mounted = Mounted(mnt.clone());
    // Fill it: the last write fails with ENOSPC.
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![7u8; 64 * 1024];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let data = mnt.join("new").join("sub");
    let listen = format!("127.0.0.1:{}", crate::child::free_port());
    let out = run(&["serve", "--listen", &listen, "--data-dir", utf8(&data)], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!mnt.join("new").exists(), "the refused start removed the data dir it created");
    // With room again, the next start is a first start like any other.
    std::fs::remove_file(&filler).expect("free the space");
    let out = run(&["log", "tail", "--data-dir", utf8(&data)], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("damaged"), "{err}");
}
