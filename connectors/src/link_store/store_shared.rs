//! The one implementation of [`super::LinkStore`] that both backends expand, so the
//! transaction structure and the rules of every method are written once and only the SQL
//! dialect differs.
//!
//! `link_store!(Store, "name")` is invoked inside `sqlite` and `postgres`; the expansion
//! refers to these items of the invoking module (its dialect):
//! - `Tx` (a transaction) and `DbRow` (a result row); `StatusInt`, the integer type of the
//!   idempotency `status` column;
//! - `async fn begin_write(&Store) -> Result<Tx>` (serialized with every other writer) and
//!   `fn read_pool(&Store) -> Pool` (a handle: the SQLite store may switch pools);
//! - `fn enc_time(DateTime<Utc>) -> _`, `fn get_time(&DbRow, column) -> Result<DateTime<Utc>>`
//!   and `CREATED_AT_COL` (the idempotency record's instant column);
//! - `fn enc_tags(&[String]) -> Result<_>` (the `links.tags` value), `fn enc_redirect(RedirectType) -> _`,
//!   `async fn index_tags(&mut Tx, seq, &[String]) -> Result<()>` (keeps a tag index, if the
//!   dialect has one, equal to the live link's tags) and `fn link_from_row(&DbRow)`;
//! - the SQL statements `SELECT_LIVE`, `DELETE_TOMBSTONE`, `INSERT_LINK`, `UPDATE_LINK`,
//!   `DELETE_LINK`, `LIST_LINKS`, `CHANGES_SINCE`, `INSERT_CHANGE`, `IDEMPOTENCY_GET`,
//!   `IDEMPOTENCY_PUT`, `IDEMPOTENCY_PURGE`, `SELECT_STORE_ID`, `SELECT_RETIRED`,
//!   `RETIRE_CODE`, `SET_EPOCH`, `SELECT_CODE_KNOWN` (a row when a link, live or deleted, has the code
//!   or it is retired) and `SELECT_LIVE_CODES` (the live links' codes among a list encoded by
//!   `fn enc_codes(&[&String]) -> Result<_>`), with the parameters in the order the
//!   expansion binds them.
//!
//! Codes and keys containing NUL are answered without a query (no stored value has one).

/// Expands the change-feed helpers (`next_change`, `record_change`, `live_link`, used by the
/// admin store too) and `impl LinkStore for $store` (module docs).
macro_rules! link_store {
    ($store:ty, $backend:literal) => {
        /// Takes the next change number; the `change_counter` row is locked until commit, so
        /// writers are serialized and change numbers follow commit order.
        pub(super) async fn next_change(tx: &mut Tx) -> Result<i64> {
            Ok(sqlx::query_scalar("UPDATE change_counter SET last = last + 1 WHERE id = 1 RETURNING last").fetch_one(&mut **tx).await?)
        }

        /// Serializes `tx` with every other writer without taking a change number: locks the
        /// `change_counter` row until commit (PostgreSQL; SQLite: takes the write lock at once)
        /// by writing its value back unchanged. A write that may turn out to change nothing
        /// (a no-op update) starts with this and takes its number only once it writes, so the
        /// feed has no gap for it.
        pub(super) async fn lock_changes(tx: &mut Tx) -> Result<()> {
            sqlx::query("UPDATE change_counter SET last = last WHERE id = 1").execute(&mut **tx).await?;
            Ok(())
        }

        /// Appends change `seq` to the feed: the link's new state, or `None` for a delete.
        pub(super) async fn record_change(tx: &mut Tx, seq: i64, code: &str, link: Option<&Link>) -> Result<()> {
            let json = link.map(link_json).transpose()?;
            sqlx::query(INSERT_CHANGE).bind(seq).bind(code).bind(json).execute(&mut **tx).await?;
            Ok(())
        }

        /// The live link `code` with its sequence number, if any.
        pub(super) async fn live_link(tx: &mut Tx, code: &str) -> Result<Option<(i64, Link)>> {
            let row = sqlx::query(SELECT_LIVE).bind(code).fetch_optional(&mut **tx).await?;
            row.as_ref().map(link_from_row).transpose()
        }

        /// Inserts the prepared `link` ([`prepare_insert`]) as change `seq` in `tx`, with its
        /// tag index and change feed entry; `false` (nothing written) when its code is taken
        /// or retired ([`LinkStore::insert`]). The caller rolls back on `false`.
        async fn insert_in(tx: &mut Tx, seq: i64, link: &Link) -> Result<bool> {
            let tags = enc_tags(&link.tags)?;
            // A tombstone at least TOMBSTONE_PERIOD old no longer blocks the code: remove
            // it so the unique index admits the new link.
            sqlx::query(DELETE_TOMBSTONE).bind(&link.code).bind(enc_time(link.created_at - TOMBSTONE_PERIOD)).execute(&mut **tx).await?;
            if sqlx::query(SELECT_RETIRED).bind(&link.code).fetch_optional(&mut **tx).await?.is_some() {
                return Ok(false);
            }
            let inserted = sqlx::query(INSERT_LINK)
                .bind(seq)
                .bind(&link.code)
                .bind(&link.long_url)
                .bind(&link.domain)
                .bind(link.expires_at.map(enc_time))
                .bind(link.enabled)
                .bind(tags)
                .bind(enc_redirect(link.redirect_type))
                .bind(&link.org)
                .bind(enc_time(link.created_at))
                .bind(enc_time(link.updated_at))
                .bind(link.version)
                .execute(&mut **tx)
                .await?;
            if inserted.rows_affected() == 0 {
                return Ok(false);
            }
            index_tags(tx, seq, &link.tags).await?;
            record_change(tx, seq, &link.code, Some(link)).await?;
            Ok(true)
        }

        /// Stores `record` (checked by [`check_record`]) in `tx` unless an unexpired record has
        /// its key (`false`, nothing written), and purges expired records.
        async fn idempotency_put_in(tx: &mut Tx, record: &IdempotencyRecord) -> Result<bool> {
            let created = trunc_us(record.created_at);
            let cutoff = created - IDEMPOTENCY_TTL;
            let done = sqlx::query(IDEMPOTENCY_PUT)
                .bind(&record.key)
                .bind(&record.request_hash)
                .bind(StatusInt::from(record.status))
                .bind(&record.body)
                .bind(enc_time(created))
                .bind(enc_time(cutoff))
                .execute(&mut **tx)
                .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            // Purge expired records (indexed range delete; usually a handful of rows).
            sqlx::query(IDEMPOTENCY_PURGE).bind(enc_time(cutoff)).execute(&mut **tx).await?;
            Ok(true)
        }

        /// Rejects a record either backend could not store ([`check_text`], [`check_time`]).
        fn check_record(record: &IdempotencyRecord) -> Result<()> {
            check_text("key", &record.key)?;
            check_text("request_hash", &record.request_hash)?;
            check_text("body", &record.body)?;
            check_time("created_at", record.created_at)
        }

        /// A write transaction serialized with every other writer ([`lock_changes`]; it takes
        /// no change number: the caller takes one with [`next_change`] when it writes) and the
        /// live link `code` (`(tx, seq, link)`); [`Error::NotFound`] (rolled back) when there
        /// is none.
        async fn begin_link_change(store: &$store, code: &str) -> Result<(Tx, i64, Link)> {
            if code.contains('\0') {
                return Err(Error::NotFound(code.to_string()));
            }
            let mut tx = begin_write(store).await?;
            lock_changes(&mut tx).await?;
            let Some((seq, current)) = live_link(&mut tx, code).await? else {
                tx.rollback().await?;
                return Err(Error::NotFound(code.to_string()));
            };
            Ok((tx, seq, current))
        }

        #[async_trait]
        impl LinkStore for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn close(&self) {
                <$store>::close(self).await
            }

            fn check_file(&self) -> Result<()> {
                <$store>::check_file(self)
            }

            async fn write_back_file(&self) -> Result<Option<String>> {
                <$store>::write_back_file(self).await
            }

            fn admin(&self) -> Option<&dyn super::AdminStore> {
                Some(self)
            }

            async fn store_id(&self) -> Result<Option<u64>> {
                let id: i64 = sqlx::query_scalar(SELECT_STORE_ID).fetch_one(&read_pool(self)).await?;
                // The 64 bits as stored (a signed column).
                Ok(Some(u64::from_ne_bytes(id.to_ne_bytes())))
            }

            async fn request_log_check(&self) -> Result<Option<i64>> {
                let mut tx = begin_write(self).await?;
                let n: i64 = sqlx::query_scalar(
                    "INSERT INTO store_meta (key, value) VALUES ('log_check_request', 1) \
                     ON CONFLICT (key) DO UPDATE SET value = store_meta.value + 1 RETURNING value",
                )
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(n))
            }

            async fn log_check_answered(&self, request: i64) -> Result<bool> {
                let answer: Option<i64> =
                    sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'log_check_answer'").fetch_optional(&read_pool(self)).await?;
                Ok(answer.is_some_and(|a| a >= request))
            }

            async fn answer_log_checks(&self) -> Result<bool> {
                // Read first: a write transaction only when a request waits.
                let (request, answer): (Option<i64>, Option<i64>) = sqlx::query_as(
                    "SELECT (SELECT value FROM store_meta WHERE key = 'log_check_request'), \
                     (SELECT value FROM store_meta WHERE key = 'log_check_answer')",
                )
                .fetch_one(&read_pool(self))
                .await?;
                if request.unwrap_or(0) <= answer.unwrap_or(0) {
                    return Ok(false);
                }
                let mut tx = begin_write(self).await?;
                sqlx::query(
                    "INSERT INTO store_meta (key, value) SELECT 'log_check_answer', value FROM store_meta WHERE key = 'log_check_request' \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn retire_codes(&self, codes: &[String]) -> Result<()> {
                let mut tx = begin_write(self).await?;
                for code in codes.iter().filter(|c| !c.contains('\0')) {
                    sqlx::query(RETIRE_CODE).bind(code).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn new_epoch(&self) -> Result<Option<u64>> {
                // Never `UNCHECKED_EPOCH` (0).
                let epoch = uuid::Uuid::new_v4().as_u64_pair().0.max(1);
                let mut tx = begin_write(self).await?;
                // The 64 bits as stored (a signed column), like the store id.
                sqlx::query(SET_EPOCH).bind(i64::from_ne_bytes(epoch.to_ne_bytes())).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(Some(epoch))
            }

            async fn epoch(&self) -> Result<Option<u64>> {
                let v: Option<i64> = sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'epoch'").fetch_optional(&read_pool(self)).await?;
                Ok(v.map(|v| u64::from_ne_bytes(v.to_ne_bytes())))
            }

            async fn change_high_water(&self) -> Result<Option<i64>> {
                Ok(Some(sqlx::query_scalar("SELECT last FROM change_counter WHERE id = 1").fetch_one(&read_pool(self)).await?))
            }

            async fn unknown_codes(&self, codes: &[String]) -> Result<Vec<String>> {
                // One read connection for the whole list (a restored store's check only).
                let mut conn = read_pool(self).acquire().await?;
                let mut unknown = Vec::new();
                for code in codes.iter().filter(|c| !c.contains('\0')) {
                    if sqlx::query(SELECT_CODE_KNOWN).bind(code).fetch_optional(&mut *conn).await?.is_none() {
                        unknown.push(code.clone());
                    }
                }
                Ok(unknown)
            }

            async fn live_codes(&self, codes: &[String]) -> Result<Vec<String>> {
                let codes: Vec<&String> = codes.iter().filter(|c| !c.contains('\0')).collect();
                let mut live = Vec::new();
                for chunk in codes.chunks(super::LIVE_CODES_CHUNK) {
                    let found: Vec<String> = sqlx::query_scalar(SELECT_LIVE_CODES).bind(enc_codes(chunk)?).fetch_all(&read_pool(self)).await?;
                    live.extend(found);
                }
                Ok(live)
            }

            async fn is_retired(&self, code: &str) -> Result<bool> {
                if code.contains('\0') {
                    return Ok(false);
                }
                Ok(sqlx::query(SELECT_RETIRED).bind(code).fetch_optional(&read_pool(self)).await?.is_some())
            }

            async fn insert(&self, link: &Link) -> Result<Link> {
                let link = prepare_insert(link)?;
                let mut tx = begin_write(self).await?;
                let seq = next_change(&mut tx).await?;
                if !insert_in(&mut tx, seq, &link).await? {
                    tx.rollback().await?;
                    return Err(Error::CodeTaken(link.code));
                }
                tx.commit().await?;
                Ok(link)
            }

            async fn insert_idempotent(&self, link: &Link, record: &IdempotencyRecord) -> Result<Link> {
                check_record(record)?;
                let link = prepare_insert(link)?;
                let mut tx = begin_write(self).await?;
                // The change number first: it serializes writers (SQLite: the one writer;
                // PostgreSQL: the `change_counter` row lock), so a request that finds the key
                // taken finds it committed, link and all.
                let seq = next_change(&mut tx).await?;
                if !idempotency_put_in(&mut tx, record).await? {
                    tx.rollback().await?;
                    return Err(Error::IdempotencyKeyExists);
                }
                if !insert_in(&mut tx, seq, &link).await? {
                    tx.rollback().await?;
                    return Err(Error::CodeTaken(link.code));
                }
                tx.commit().await?;
                Ok(link)
            }

            async fn get(&self, code: &str) -> Result<Option<Link>> {
                if code.contains('\0') {
                    return Ok(None); // cannot be stored, so no link has it
                }
                let row = sqlx::query(SELECT_LIVE).bind(code).fetch_optional(&read_pool(self)).await?;
                Ok(row.as_ref().map(link_from_row).transpose()?.map(|(_, l)| l))
            }

            async fn update(&self, code: &str, patch: &LinkPatch, expected_version: Option<i64>, now: DateTime<Utc>) -> Result<UpdateOutcome> {
                check_patch(patch, now)?;
                let (mut tx, seq, current) = begin_link_change(self, code).await?;
                if let Some(expected) = expected_version.filter(|&v| v != current.version) {
                    tx.rollback().await?;
                    return Err(Error::VersionMismatch { code: code.to_string(), expected, actual: current.version });
                }
                let mut next = apply_patch(&current, patch, now);
                // A held link stays disabled whatever its owner sets; the owner's value is kept
                // for when the last hold goes (see `admin`).
                if let Some(owner) = patch.enabled
                    && record_owner_enabled(&mut tx, seq, owner).await?
                {
                    next.enabled = false;
                }
                if same_content(&current, &next) {
                    // Nothing the link shows changes (e.g. `expires_at: null` on a link without
                    // expiry): no new revision, no change-feed entry and no change number (the
                    // feed stays gapless), the ETag stays. The commit keeps an owner's `enabled`
                    // recorded under a hold.
                    tx.commit().await?;
                    return Ok(UpdateOutcome { link: current, written: false });
                }
                let change = next_change(&mut tx).await?;
                sqlx::query(UPDATE_LINK)
                    .bind(&next.long_url)
                    .bind(next.expires_at.map(enc_time))
                    .bind(next.enabled)
                    .bind(enc_tags(&next.tags)?)
                    .bind(enc_redirect(next.redirect_type))
                    .bind(enc_time(next.updated_at))
                    .bind(next.version)
                    .bind(seq)
                    .bind(&next.org)
                    .execute(&mut *tx)
                    .await?;
                if patch.tags.is_some() {
                    index_tags(&mut tx, seq, &next.tags).await?;
                }
                record_change(&mut tx, change, code, Some(&next)).await?;
                tx.commit().await?;
                Ok(UpdateOutcome { link: next, written: true })
            }

            async fn delete(&self, code: &str, expected_version: Option<i64>, now: DateTime<Utc>) -> Result<Link> {
                check_time("now", now)?;
                let (mut tx, seq, current) = begin_link_change(self, code).await?;
                if let Some(expected) = expected_version.filter(|&v| v != current.version) {
                    tx.rollback().await?;
                    return Err(Error::VersionMismatch { code: code.to_string(), expected, actual: current.version });
                }
                let change = next_change(&mut tx).await?;
                sqlx::query(DELETE_LINK).bind(enc_time(trunc_us(now))).bind(seq).execute(&mut *tx).await?;
                index_tags(&mut tx, seq, &[]).await?;
                record_change(&mut tx, change, code, None).await?;
                tx.commit().await?;
                Ok(current)
            }

            async fn list(&self, query: &ListQuery) -> Result<Vec<(i64, Link)>> {
                check_limit(query.limit)?;
                if let Some(t) = &query.tag {
                    check_text("tag", t)?;
                }
                if let Some(o) = &query.org {
                    check_text("org", o)?;
                }
                let rows = sqlx::query(LIST_LINKS)
                    .bind(query.after_seq.unwrap_or(0))
                    .bind(query.enabled)
                    .bind(&query.tag)
                    .bind(i64::from(query.limit))
                    .bind(&query.org)
                    .fetch_all(&read_pool(self))
                    .await?;
                rows.iter().map(link_from_row).collect()
            }

            async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<(i64, LinkChange)>> {
                let rows = sqlx::query(CHANGES_SINCE).bind(after).bind(i64::from(limit)).fetch_all(&read_pool(self)).await?;
                rows.iter()
                    .map(|row| {
                        let seq: i64 = row.try_get("change_seq")?;
                        let link: Option<String> = row.try_get("link")?;
                        let change = match link {
                            Some(json) => LinkChange::Upserted(link_from_json(&json)?),
                            None => LinkChange::Deleted(row.try_get("code")?),
                        };
                        Ok((seq, change))
                    })
                    .collect()
            }

            async fn idempotency_get(&self, key: &str, now: DateTime<Utc>) -> Result<Option<IdempotencyRecord>> {
                check_time("now", now)?;
                if key.contains('\0') {
                    return Ok(None);
                }
                let row = sqlx::query(IDEMPOTENCY_GET).bind(key).bind(enc_time(now - IDEMPOTENCY_TTL)).fetch_optional(&read_pool(self)).await?;
                let Some(row) = row else { return Ok(None) };
                let status: StatusInt = row.try_get("status")?;
                Ok(Some(IdempotencyRecord {
                    key: row.try_get("key")?,
                    request_hash: row.try_get("request_hash")?,
                    status: u16::try_from(status).map_err(|_| Error::Corrupt(format!("idempotency status {status}")))?,
                    body: row.try_get("body")?,
                    created_at: get_time(&row, CREATED_AT_COL)?,
                }))
            }

            async fn idempotency_put(&self, record: &IdempotencyRecord) -> Result<()> {
                check_record(record)?;
                let mut tx = begin_write(self).await?;
                if !idempotency_put_in(&mut tx, record).await? {
                    tx.rollback().await?;
                    return Err(Error::IdempotencyKeyExists);
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(super) use link_store;
