//! The job table's storage failures: a damaged `jobs.redb` refused at open, a full disk
//! answered 503 and recovered without a restart, export write errors naming the file.

use axum::http::StatusCode;

use super::JobState;
use super::store::JobStore;
use super::tests::{NOW, record};
use crate::reports::test_harness::ms;

/// A `jobs.redb` cut short is refused at open with `jobs_store_damaged`, naming the file and
/// what to do (the server then runs without export jobs), never trusted or a panic.
#[test]
fn a_damaged_job_table_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let table = JobStore::open(dir.path()).expect("open table");
        for i in 0..200 {
            table.put(&record(&format!("0190a6e0-0000-7000-8000-{i:012}"), JobState::Succeeded, 1, Some(1_717_200_000_000))).expect("put");
        }
    }
    let path = dir.path().join(super::store::JOBS_FILE_NAME);
    let len = std::fs::metadata(&path).expect("file").len();
    std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(len / 2)).expect("truncate");
    let Err(e) = JobStore::open(dir.path()) else { panic!("a damaged table opened") };
    assert_eq!(e.code, "jobs_store_damaged", "{e}");
    assert!(e.message.contains(&format!("\"{}\" is damaged", path.display())) && e.message.contains("move the file aside"), "{e}");
}

/// A tmpfs of `size` mounted on a fresh temp dir, unmounted on drop; `None` when this process
/// may not mount (not root).
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// A full disk poisons redb's handle ("Previous I/O error occurred"): the store answers 503
/// `jobs_store_unavailable` (not 500), and once there is room again the next call opens the
/// file again and works — no restart. Needs root for the tmpfs (the test command runs as
/// root); without it the test says so and checks nothing.
#[test]
fn a_full_disk_is_503_and_the_job_table_works_again_when_there_is_room() {
    let Some(disk) = SmallDisk::mount("4m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (not root)");
        return;
    };
    let store = JobStore::open(disk.0.path()).expect("open");
    store.put(&record("before", JobState::Succeeded, 1, Some(ms(NOW)))).expect("put before the disk fills");
    // Fill the disk.
    let filler = disk.0.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).and_then(|_| f.sync_all()).is_ok() {}
    }
    let mut big = record("x", JobState::Queued, 0, None);
    big.spec.codes = Some((0..20_000).map(|i| format!("code{i}")).collect());
    let err = (0..50)
        .find_map(|i| {
            big.job_id = format!("full-{i}");
            store.put(&big).err()
        })
        .expect("a write on a full disk fails");
    assert_eq!((err.status, err.code), (StatusCode::SERVICE_UNAVAILABLE, "jobs_store_unavailable"), "{}", err.message);
    // Room again: the next calls reopen the file and work; what was committed is there.
    std::fs::remove_file(&filler).expect("remove filler");
    store.put(&record("after", JobState::Queued, 0, None)).expect("put after the disk has room");
    let ids: Vec<String> = store.all().expect("all").into_iter().map(|r| r.job_id).collect();
    assert!(ids.contains(&"before".to_string()) && ids.contains(&"after".to_string()), "{ids:?}");
    assert_eq!(store.get("after").expect("get").map(|r| r.status), Some(JobState::Queued));
}

#[test]
fn export_write_errors_name_the_file_and_the_os_error() {
    let dir = tempfile::tempdir().expect("tmp");
    // A regular file where the exports directory should be: creating a file under it fails.
    let blocker = dir.path().join("exports");
    std::fs::write(&blocker, b"not a directory").expect("write");
    let part = blocker.join("job-1.csv.part");
    let io = std::fs::File::create(&part).expect_err("parent is a file");
    let e = super::runner::write_error("create", &part, &io);
    assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(e.code, "export_write_failed");
    assert_eq!(e.message, format!("could not create the export file \"exports/job-1.csv.part\": {io}"));
    assert!(io.to_string().contains("os error 20"), "{io}");
}
