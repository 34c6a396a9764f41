//! The behavioural test suite of the link store, run against every backend: SQLite always,
//! PostgreSQL with the `integration-tests` feature (server at `SLUICE_POSTGRES_URL`; the
//! test fails, never skips, when it is missing).

mod harness;
mod suite;
mod suite_admin;
mod suite_feed;
mod suite_org;
mod suite_retired;

/// Declares one `#[tokio::test]` per behaviour, each running `$harness(suite::$name)`.
macro_rules! store_suite {
    ($harness:path) => {
        store_suite!(@tests $harness;
            suite::insert_then_get_round_trips_exactly,
            suite::codes_are_case_sensitive_and_unique,
            suite::concurrent_inserts_of_one_code_yield_one_winner,
            suite::update_applies_the_patch_and_bumps_the_version_unless_nothing_changes,
            suite::stale_version_is_a_conflict_and_changes_nothing,
            suite::missing_links_are_not_found,
            suite::delete_with_a_stale_version_is_a_conflict_and_deletes_nothing,
            suite::delete_hides_the_link_and_returns_it,
            suite::tombstone_blocks_reuse_for_thirty_days,
            suite::list_pages_in_creation_order_with_exact_filters,
            suite::unicode_tags_match_exactly,
            suite::pagination_stays_correct_under_concurrent_creation,
            suite::list_limit_is_checked,
            suite::unstorable_values_are_rejected,
            suite::data_survives_reopen_and_migrations_are_idempotent,
            suite_feed::change_feed_numbers_every_write_in_commit_order,
            suite_feed::a_no_op_update_takes_no_change_number,
            suite_feed::change_feed_pages_by_limit,
            suite_feed::idempotency_records_expire_after_24_hours,
            suite_feed::concurrent_idempotency_puts_yield_one_winner,
            suite_feed::insert_idempotent_stores_the_link_and_its_record_or_neither,
            suite_feed::concurrent_insert_idempotent_across_two_stores_yields_one_link,
            suite_feed::migrate_reports_applied_versions,
            suite_admin::blocklist_holds_matching_links_and_release_restores_owner_state,
            suite_admin::admin_holds_need_a_live_link_and_survive_owner_updates,
            suite_admin::audit_log_pages_newest_first_with_filters_and_is_append_only,
            suite_org::org_is_updated_cleared_fed_and_filtered,
            suite_retired::store_id_is_created_once,
            suite_retired::log_check_requests_are_numbered_and_answered,
            suite_retired::the_change_mark_follows_the_feed_and_unknown_codes_are_those_never_stored,
            suite_retired::retired_codes_are_refused_for_ever_and_others_are_not,
            suite_retired::live_codes_are_the_asked_codes_of_live_links,
        );
    };
    (@tests $harness:path; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $harness(crate::$module::$name).await;
            }
        )*
    };
}

mod sqlite {
    store_suite!(crate::harness::sqlite);
}

#[cfg(feature = "integration-tests")]
mod postgres {
    store_suite!(crate::harness::postgres);
}

/// Every new store gets its own id (a lost store is noticed by its id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stores_have_different_ids() {
    harness::sqlite(|a| async move { harness::sqlite(|b| async move { suite_retired::two_stores_have_different_ids(&a, &b).await }).await }).await;
}

#[cfg(feature = "integration-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_have_different_ids() {
    harness::postgres(|a| async move { harness::postgres(|b| async move { suite_retired::two_stores_have_different_ids(&a, &b).await }).await }).await;
}

/// `LinkStore::close` (called once at a graceful stop) checkpoints SQLite's WAL: writes sit
/// in `links.db-wal` while the store is open and are in `links.db` alone after the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_close_checkpoints_the_wal_into_the_database_file() {
    harness::sqlite(|ctx| async move {
        let store = ctx.open().await;
        let l = harness::link("walcheck", harness::micros(chrono::Utc::now()));
        let inserted = store.insert(&l).await.expect("insert");
        let dir = std::path::Path::new(&ctx.target);
        let wal = dir.join("links.db-wal");
        let wal_len = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(wal_len(&wal) > 0, "an open store writes to the WAL first");
        store.close().await;
        assert_eq!(wal_len(&wal), 0, "the close checkpointed the WAL");
        drop(store);
        // The database file alone (no WAL to replay) holds the link.
        let again = ctx.open().await;
        assert_eq!(again.get("walcheck").await.expect("get"), Some(inserted));
        again.close().await;
    })
    .await;
}

/// A `links.db` damaged outside sluice (bytes overwritten in the middle; cut short; garbage
/// over its header) is refused at open with `Error::StoreDamaged` naming the file and what
/// to do — also by `sluice migrate` — instead of opening and failing reads later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_damaged_database_file_is_refused_at_open() {
    use sluice_connectors::LinkStore;
    use std::io::{Seek, SeekFrom, Write};
    for damage in ["middle", "truncated", "header"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sluice_connectors::SqliteLinkStore::open_dir(dir.path()).await.expect("open");
        let pad = "p".repeat(1500);
        for i in 0..300 {
            let mut l = harness::link(&format!("dmg{i}"), harness::micros(chrono::Utc::now()));
            l.long_url = format!("https://example.com/{i}/{pad}");
            store.insert(&l).await.expect("insert");
        }
        store.close().await;
        drop(store);
        let path = dir.path().join("links.db");
        let len = std::fs::metadata(&path).expect("file").len();
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).expect("open file");
        let mut x: u32 = 0x9e37_79b9;
        let mut garbage = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect()
        };
        match damage {
            "middle" => {
                f.seek(SeekFrom::Start(len / 2)).expect("seek");
                f.write_all(&garbage(16 << 10)).expect("write");
            }
            "truncated" => f.set_len(len / 2).expect("truncate"),
            _ => f.write_all(&garbage(100)).expect("write"),
        }
        f.sync_all().expect("sync");
        drop(f);
        let shown = path.display().to_string();
        for (what, result) in [
            ("open", sluice_connectors::SqliteLinkStore::open_dir(dir.path()).await.map(|_| ())),
            ("migrate", sluice_connectors::migrate(dir.path().to_str().expect("utf-8")).await.map(|_| ())),
        ] {
            match result {
                Err(e @ sluice_connectors::Error::StoreDamaged { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("link store \"{shown}\" is damaged")) && msg.contains("move the file aside"), "{damage} {what}: {msg}");
                }
                other => panic!("{damage} {what}: expected StoreDamaged, got {other:?}"),
            }
        }
    }
}
