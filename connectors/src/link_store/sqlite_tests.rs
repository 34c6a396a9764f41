//! SQLite-only behaviour the shared store suite cannot reach: a full database, a file that
//! can only be read.

use chrono::Utc;
use sluice_schemas::{Link, RedirectType};

use super::{MIN_FREE_BYTES, SqliteLinkStore};
use crate::test_fs::SmallFileSystem;
use crate::{Error, LinkStore};

/// A link `code` with a 4,000-byte target (fills pages fast), created now.
pub(in crate::link_store) fn link(code: &str) -> Link {
    let now = Utc::now();
    Link {
        code: code.into(),
        long_url: format!("https://full.example/{}", "x".repeat(4_000)),
        domain: None,
        expires_at: None,
        enabled: true,
        tags: vec!["t".into()],
        redirect_type: RedirectType::Found,
        org: None,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

/// A database that cannot grow (a full disk; here `PRAGMA max_page_count` on the writer
/// connection, which SQLite reports the same way: `SQLITE_FULL`) is a retryable, external
/// store error — the API answers 503 `store_unavailable`, not 500 `internal`.
#[tokio::test]
async fn a_full_database_is_a_retryable_store_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteLinkStore::open_dir(dir.path()).await.expect("open");
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&store.writer_pool()).await.expect("page_count");
    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {}", pages + 2))).execute(&store.writer_pool()).await.expect("max_page_count");
    let mut stored = 0;
    let err = loop {
        match store.insert(&link(&format!("c{stored}"))).await {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100, "two spare pages never filled up");
    };
    let Error::Database(sqlx::Error::Database(db)) = &err else { panic!("expected a database error, got {err:?}") };
    assert_eq!(db.code().as_deref(), Some("13"), "SQLITE_FULL: {db}");
    assert!(err.retryable(), "{err}");
    assert_eq!(err.kind(), "external");
    // The links stored before it are intact and readable.
    assert!(stored > 0);
    for i in 0..stored {
        assert!(store.get(&format!("c{i}")).await.expect("get").is_some());
    }
}

/// A file SQLite can open only for reading (here `read_only` connection options; in the field
/// a read-only mount, another owner or `chattr +i`) is refused at open with
/// [`Error::StoreReadOnly`] naming the file, instead of a store that answers every read and
/// fails every create with 500s.
#[tokio::test]
async fn a_read_only_file_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteLinkStore::open_dir(dir.path()).await.expect("open");
    store.insert(&link("kept")).await.expect("insert");
    let path = dir.path().join(super::SQLITE_FILE_NAME);
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).read_only(true);
    let err = SqliteLinkStore::open_with_options(opts).await.expect_err("a read-only open is refused");
    let Error::StoreReadOnly { path: p, detail } = &err else { panic!("expected StoreReadOnly, got {err:?}") };
    assert_eq!(p, &path.display().to_string());
    assert_eq!(detail, "attempt to write a readonly database");
    assert!(err.to_string().contains("can be read but not written"), "{err}");
    assert_eq!(err.kind(), "external");
    // The writable store is untouched by the probe.
    assert!(store.get("kept").await.expect("get").is_some());
}

/// Finding: a `links.db` that is a FIFO (or a file SQLite cannot open) failed the open with
/// "database error: error returned from database: (code: 10) disk I/O error: (code: 10) disk
/// I/O error" (the cause twice, no path). It is [`Error::StoreOpen`] now: the file, what it
/// is, SQLite's error once, and no source to repeat it; not opened as a database, nothing
/// created beside it.
#[tokio::test]
async fn a_fifo_as_the_database_file_is_named_with_its_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(super::SQLITE_FILE_NAME);
    assert!(std::process::Command::new("mkfifo").arg(&path).status().expect("run mkfifo").success());
    let err = SqliteLinkStore::open_dir(dir.path()).await.expect_err("a FIFO is no database");
    let Error::StoreOpen { path: p, what, error } = &err else { panic!("expected StoreOpen, got {err:?}") };
    assert_eq!((p.as_str(), what.as_str()), (path.to_str().expect("utf-8"), " (a FIFO (named pipe), not a regular file)"));
    let sqlx::Error::Database(db) = error else { panic!("expected SQLite's error, got {error:?}") };
    let code = db.code().expect("a result code");
    assert_eq!((db.message(), code.parse::<i64>().expect("numeric") & 0xff), ("disk I/O error", 10), "SQLITE_IOERR");
    assert_eq!(
        err.to_string(),
        format!("SQLite could not open \"{}\" (a FIFO (named pipe), not a regular file): disk I/O error (SQLite code {code})", path.display())
    );
    assert!(std::error::Error::source(&err).is_none(), "the cause is said once, in the message (a chain of sources would repeat it)");
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1, "nothing created beside it");
}

/// Opening a store while another connection writes the same file (`--role redirect` and
/// `--role api` on one data dir: one of them migrating or creating links) waits for the
/// write lock instead of failing with "database is locked": the open's writability probe
/// takes the write lock first (`BEGIN IMMEDIATE`), so the busy timeout applies. With a
/// read-then-write probe, a commit by the other writer in between failed the open at once
/// (SQLITE_BUSY_SNAPSHOT), as a CI run of the split-roles test did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_wait_for_a_busy_writer_instead_of_failing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(SqliteLinkStore::open_dir(dir.path()).await.expect("open"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.insert(&link(&format!("w{n}"))).await.expect("insert while others open");
                n += 1;
            }
            n
        }
    });
    // Fresh stores opened concurrently, in rounds, while the writer commits link after link.
    for round in 0..10 {
        let opens = (0..4).map(|_| SqliteLinkStore::open_dir(dir.path()));
        for (i, opened) in futures::future::join_all(opens).await.into_iter().enumerate() {
            let opened = opened.unwrap_or_else(|e| panic!("open {i} of round {round} failed: {e}"));
            opened.close().await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.expect("writer task");
    assert!(written > 0, "the writer committed nothing while the stores opened");
    // Every link the writer committed is there.
    for i in 0..written {
        assert!(store.get(&format!("w{i}")).await.expect("get").is_some(), "w{i}");
    }
}

/// Opens racing on a *new* database (the two processes of `--role redirect` and `--role api`
/// starting together on a fresh data dir) all succeed: each open switches the file to WAL
/// on connect, and concurrent `PRAGMA journal_mode = WAL` fails at once with "database is
/// locked" without consulting the busy timeout (a CI run of the split-roles test did). The
/// directory lock held across the whole open serializes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_of_a_new_database_all_succeed() {
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("tempdir");
        let opens = (0..4).map(|_| SqliteLinkStore::open_dir(dir.path()));
        let opened: Vec<_> = futures::future::join_all(opens).await;
        for (i, store) in opened.into_iter().enumerate() {
            let store = store.unwrap_or_else(|e| panic!("open {i} of round {round} failed: {e}"));
            store.insert(&link(&format!("r{round}o{i}"))).await.expect("insert");
            store.close().await;
        }
        let store = SqliteLinkStore::open_dir(dir.path()).await.expect("reopen");
        for i in 0..4 {
            assert!(store.get(&format!("r{round}o{i}")).await.expect("get").is_some(), "r{round}o{i}");
        }
        store.close().await;
    }
}

/// Takes write access to a file away while alive: `chattr +i` as root (permission bits do not
/// stop root; an immutable file stops everyone, as a read-only remount does), `chmod 0444`
/// otherwise. Dropping it gives the access back (and lets the temporary directory go).
struct Unwritable {
    path: std::path::PathBuf,
    immutable: bool,
}

impl Unwritable {
    fn new(path: &std::path::Path) -> Unwritable {
        use std::os::unix::fs::PermissionsExt;
        let immutable = rustix::process::geteuid().is_root();
        if immutable {
            let out = std::process::Command::new("chattr").arg("+i").arg(path).output().expect("run chattr (e2fsprogs)");
            assert!(out.status.success(), "chattr +i {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        } else {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).expect("chmod 0444");
        }
        Unwritable { path: path.to_path_buf(), immutable }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            let _ = std::process::Command::new("chattr").arg("-i").arg(&self.path).status();
        } else {
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o644));
        }
    }
}

/// A `links.db` (or its `-wal` file) that stops being writable while the store has it open
/// fails [`SqliteLinkStore::check_file`] — so `/readyz` answers 503 — and every write, with
/// the retryable [`Error::LinkStoreNotWritable`] (503 `store_unavailable`, not 500), while
/// reads go on; once write access is back, both work again.
#[tokio::test]
async fn a_file_that_stops_being_writable_fails_the_file_check_and_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteLinkStore::open_dir(dir.path()).await.expect("open");
    store.insert(&link("before")).await.expect("insert");
    store.check_file().expect("writable at first");
    let path = dir.path().join(super::SQLITE_FILE_NAME);
    let wal = dir.path().join(format!("{}-wal", super::SQLITE_FILE_NAME));
    assert!(wal.exists(), "WAL mode keeps a -wal file while open");
    for (file, what) in [(&path, "the file"), (&wal, "its -wal file")] {
        let guard = Unwritable::new(file);
        let err = store.check_file().expect_err("not writable");
        let Error::LinkStoreNotWritable { path: p, detail } = &err else { panic!("expected LinkStoreNotWritable, got {err:?}") };
        assert_eq!(p, &path.display().to_string());
        assert!(detail.starts_with(&format!("{what}: ")), "{detail}");
        assert!(err.to_string().contains("can no longer be written"), "{err}");
        assert!(err.retryable(), "{err}");
        assert_eq!(err.kind(), "external");
        let err = store.insert(&link(&format!("during-{}", what.len()))).await.expect_err("writes are refused");
        assert!(matches!(err, Error::LinkStoreNotWritable { .. }), "{err:?}");
        assert!(store.get("before").await.expect("reads go on").is_some());
        drop(guard);
        store.check_file().expect("writable again");
    }
    store.insert(&link("after")).await.expect("insert once writable again");
    assert!(store.get("after").await.expect("get").is_some());
}

/// A file system with less than [`MIN_FREE_BYTES`] free fails [`SqliteLinkStore::check_file`]
/// (so `/readyz` answers 503) with the retryable [`Error::LinkStoreLowOnSpace`] naming the
/// free bytes, while writes that still fit go on; freeing space makes it pass again. On a
/// real 1.5 MiB tmpfs as root; the threshold logic alone otherwise.
#[tokio::test]
async fn a_file_system_low_on_space_fails_the_file_check_but_not_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteLinkStore::open_dir(dir.path()).await.expect("open");
    store.check_free_space(0).expect("any space is at least 0 bytes");
    let Err(Error::LinkStoreLowOnSpace { free_bytes, min_bytes, .. }) = store.check_free_space(u64::MAX) else { panic!("below u64::MAX") };
    assert_eq!(min_bytes, u64::MAX);
    assert!(free_bytes > 0 && free_bytes < u64::MAX, "{free_bytes}");
    store.close().await;
    if !rustix::process::geteuid().is_root() {
        return;
    }

    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).expect("mkdir");
    let _fs = SmallFileSystem::mount(&mnt, 1536 * 1024);
    let store = SqliteLinkStore::open_dir(&mnt).await.expect("open on tmpfs");
    store.insert(&link("before")).await.expect("insert");
    store.check_file().expect("about 1.4 MiB free");
    // Fill the file system to 512 KiB free (tmpfs counts 4 KiB pages).
    let st = rustix::fs::statvfs(&mnt).expect("statvfs");
    let fill = (st.f_bfree * st.f_frsize).saturating_sub(512 * 1024);
    std::fs::write(mnt.join("filler"), vec![7u8; usize::try_from(fill).expect("fits")]).expect("fill");
    let err = store.check_file().expect_err("low on space");
    let Error::LinkStoreLowOnSpace { free_bytes, min_bytes, ref path } = err else { panic!("{err:?}") };
    let st = rustix::fs::statvfs(&mnt).expect("statvfs");
    assert_eq!((free_bytes, min_bytes), (st.f_bfree * st.f_frsize, MIN_FREE_BYTES));
    assert!(free_bytes <= 512 * 1024, "{free_bytes}");
    assert_eq!(path, &mnt.join("links.db").display().to_string());
    assert!(err.retryable(), "{err}");
    assert_eq!(err.kind(), "external");
    store.insert(&link("while-low")).await.expect("a write that fits is not refused");
    std::fs::remove_file(mnt.join("filler")).expect("free space");
    store.check_file().expect("space freed");
    assert!(store.get("while-low").await.expect("get").is_some());
    store.close().await;
}

/// Writes that fail on a full disk leave the store working once space is freed: every write
/// that answered `Ok` is stored (read back through the other connections, and after a
/// reopen), and none answers `Ok` without being stored. A real full tmpfs (root only): a
/// failed write used to leave the writer connection inside a transaction that sqlx no longer
/// tracked, so later "committed" writes only released a savepoint — 201s for links that
/// were never stored, the write lock held until the process ended.
#[tokio::test]
async fn writes_after_a_full_disk_are_stored_once_space_is_freed() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).expect("mkdir");
    let _fs = SmallFileSystem::mount(&mnt, 2 * 1024 * 1024);
    let store = SqliteLinkStore::open_dir(&mnt).await.expect("open on tmpfs");
    store.insert(&link("pre")).await.expect("insert");
    // Fill the file system completely (tmpfs: to the last page).
    {
        use std::io::Write;
        let mut f = std::fs::File::create(mnt.join("filler")).expect("filler");
        let chunk = vec![7u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }
    let mut stored = vec!["pre".to_owned()];
    let mut failed = 0;
    for i in 0..200 {
        let code = format!("full{i}");
        match store.insert(&link(&code)).await {
            Ok(_) => stored.push(code),
            Err(e) => {
                assert!(e.retryable(), "{e}");
                failed += 1;
            }
        }
    }
    assert!(failed > 0, "the full disk never failed a write");
    std::fs::remove_file(mnt.join("filler")).expect("free space");
    for i in 0..5 {
        let code = format!("after{i}");
        store.insert(&link(&code)).await.unwrap_or_else(|e| panic!("insert {code} after space was freed: {e}"));
        stored.push(code);
    }
    for code in &stored {
        assert!(store.get(code).await.expect("get").is_some(), "{code} answered Ok but is not stored");
    }
    store.close().await;
    let store = SqliteLinkStore::open_dir(&mnt).await.expect("reopen");
    for code in &stored {
        assert!(store.get(code).await.expect("get").is_some(), "{code} lost at reopen");
    }
    store.close().await;
}

/// Finding (attack, session 45): `serve` on a data dir whose file system is full said only
/// `SQLite could not open "…/links.db": disk I/O error (SQLite code 4874)`. The message now
/// says how few bytes are free. A real full tmpfs (root only).
#[tokio::test]
async fn opening_on_a_full_disk_says_the_disk_is_full() {
    let Some(fs) = SmallFileSystem::temporary(1024 * 1024) else { return };
    {
        use std::io::Write;
        let mut f = std::fs::File::create(fs.path().join("filler")).expect("filler");
        let chunk = vec![7u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }
    let data = fs.path();
    let err = SqliteLinkStore::open_dir(data).await.expect_err("a full file system cannot hold a new store");
    let free = rustix::fs::statvfs(data).expect("statvfs");
    let note = format!(" (its file system has only {} bytes free: is the disk full?)", free.f_bfree * free.f_frsize);
    assert!(matches!(err, Error::StoreOpen { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("SQLite could not open \"{}\"{note}: ", data.join("links.db").display())), "{err}");
}
