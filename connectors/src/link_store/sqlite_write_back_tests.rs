//! `links.db` deleted while the store has it open: written back from the open file with every
//! link, and the store goes on in the written-back file.

use super::super::{SQLITE_FILE_NAME, SqliteLinkStore};
use crate::link_store::sqlite::tests::link;
use crate::{Error, LinkStore};

/// The long URLs of `codes` in `store`, in order (`None` for a code it does not serve).
async fn targets(store: &SqliteLinkStore, codes: &[&str]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for code in codes {
        out.push(store.get(code).await.expect("get").map(|l| l.long_url));
    }
    out
}

/// `links.db` deleted alone (its `-wal` and `-shm` left beside it): the file check fails and
/// writes are refused until [`SqliteLinkStore::write_back_file`] writes it back with every
/// link (those only in the WAL too); then writes work again, land in the written-back file,
/// and a reopen finds every link.
#[tokio::test]
async fn a_deleted_file_is_written_back_with_every_link_and_changes_work_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(SQLITE_FILE_NAME);
    let store = SqliteLinkStore::open_dir(dir.path()).await.expect("open");
    for code in ["a", "b", "c"] {
        store.insert(&link(code)).await.expect("insert");
    }
    let url = link("x").long_url;
    std::fs::remove_file(&path).expect("delete links.db");
    let err = store.check_file().expect_err("deleted");
    assert!(matches!(&err, Error::LinkStoreFileMoved { what: "deleted or moved away", .. }), "{err:?}");
    let err = store.insert(&link("refused")).await.expect_err("writes are refused while deleted");
    assert!(matches!(err, Error::LinkStoreFileMoved { .. }), "{err:?}");

    assert_eq!(store.write_back_file().await.expect("write back"), Some(path.display().to_string()));
    store.check_file().expect("the file is back and is the store's");
    assert_eq!(store.write_back_file().await.expect("nothing to do"), None);
    let names: Vec<String> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "no temporary file left: {names:?}");
    store.insert(&link("d")).await.expect("a create after the write-back");
    let want = vec![Some(url.clone()), Some(url.clone()), Some(url.clone()), Some(url.clone()), None];
    assert_eq!(targets(&store, &["a", "b", "c", "d", "refused"]).await, want);
    store.close().await;

    let reopened = SqliteLinkStore::open_dir(dir.path()).await.expect("reopen");
    assert_eq!(targets(&reopened, &["a", "b", "c", "d", "refused"]).await, want, "every link, the new one too, is in the file");
    reopened.close().await;
}

/// `rm -rf` of the directory: nothing is written back (the directory is not created again)
/// until it exists; then every link is. Another file put at the path is left alone.
#[tokio::test]
async fn a_file_removed_with_its_directory_is_written_back_once_the_directory_exists() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let path = dir.join(SQLITE_FILE_NAME);
    let store = SqliteLinkStore::open_dir(&dir).await.expect("open");
    store.insert(&link("kept")).await.expect("insert");
    std::fs::remove_dir_all(&dir).expect("rm -rf");
    assert_eq!(store.write_back_file().await.expect("directory missing"), None);
    assert!(!dir.exists(), "the directory is not created again");
    std::fs::create_dir_all(&dir).expect("mkdir -p");
    assert_eq!(store.write_back_file().await.expect("write back"), Some(path.display().to_string()));
    store.check_file().expect("back");
    store.insert(&link("new")).await.expect("insert after");

    std::fs::remove_file(&path).expect("delete again");
    std::fs::create_dir(&path).expect("a directory at the path");
    assert_eq!(store.write_back_file().await.expect("path taken"), None);
    assert!(path.is_dir(), "left alone");
    let err = store.check_file().expect_err("replaced");
    assert!(matches!(&err, Error::LinkStoreFileMoved { what: "replaced by another file", .. }), "{err:?}");
    std::fs::remove_dir(&path).expect("rmdir");
    assert_eq!(store.write_back_file().await.expect("write back"), Some(path.display().to_string()));
    store.close().await;
    let reopened = SqliteLinkStore::open_dir(&dir).await.expect("reopen");
    let url = link("x").long_url;
    assert_eq!(targets(&reopened, &["kept", "new"]).await, vec![Some(url.clone()), Some(url)]);
    reopened.close().await;
}
