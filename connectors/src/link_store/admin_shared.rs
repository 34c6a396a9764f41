//! The one implementation of [`super::AdminStore`] that both backends expand, so the hold,
//! blocklist and audit rules are written once and only the SQL dialect differs.
//!
//! `admin_store!(Store)` is invoked inside `admin_sqlite` and `admin_postgres`; the expansion
//! refers to these items of the invoking module (its dialect):
//! - `Tx` (a write or read transaction) and `DbRow` (a result row);
//! - `async fn begin_write(&Store) -> Result<Tx>`: a transaction serialized with every other
//!   writer; `async fn begin_read(&Store) -> Result<Tx>` and `fn read_pool(&Store) -> Pool`;
//! - `fn enc_time(DateTime<Utc>) -> _` (the bound form of an instant) and
//!   `fn get_time(&DbRow, column) -> Result<DateTime<Utc>>`, with the instant columns' names
//!   `CREATED_AT_COL` (holds, blocklist) and `AT_COL` (audit log);
//! - the SQL statements `HOLDS_OF`, `SET_ENABLED`, `INSERT_HOLD`, `DELETE_HOLD`,
//!   `SET_OWNER_ENABLED`, `HELD_BY`, `INSERT_AUDIT`, `INSERT_BLOCKLIST`, `SCAN_BLOCKLIST`,
//!   `DELETE_BLOCKLIST`, `DELETE_HOLDS_OF_SOURCE`, `LIST_BLOCKLIST`, `LIST_AUDIT`, with the
//!   parameters in the order the expansion binds them;
//! - the link store's `link_from_row`, `live_link`, `next_change` and `record_change`.

/// Expands the shared admin functions and `impl AdminStore for $store` (module docs).
macro_rules! admin_store {
    ($store:ty) => {
        async fn holds_of(tx: &mut Tx, seq: i64) -> Result<Vec<(LinkHold, bool)>> {
            let rows = sqlx::query(HOLDS_OF).bind(seq).fetch_all(&mut **tx).await?;
            rows.iter()
                .map(|r| {
                    let hold = LinkHold {
                        source: r.try_get("source")?,
                        reason: r.try_get("reason")?,
                        actor: r.try_get("actor")?,
                        created_at: get_time(r, CREATED_AT_COL)?,
                    };
                    Ok((hold, r.try_get::<bool, _>("was_enabled")?))
                })
                .collect()
        }

        async fn hold_list(tx: &mut Tx, seq: i64) -> Result<Vec<LinkHold>> {
            Ok(holds_of(tx, seq).await?.into_iter().map(|(h, _)| h).collect())
        }

        /// Writes `enabled` through the normal update path (version + 1, a change-feed entry).
        async fn set_enabled(tx: &mut Tx, seq: i64, current: &Link, enabled: bool, now: DateTime<Utc>) -> Result<Link> {
            let next = apply_patch(current, &LinkPatch { enabled: Some(enabled), ..LinkPatch::default() }, now);
            let change = next_change(tx).await?;
            sqlx::query(SET_ENABLED).bind(next.enabled).bind(enc_time(next.updated_at)).bind(next.version).bind(seq).execute(&mut **tx).await?;
            record_change(tx, change, &next.code, Some(&next)).await?;
            Ok(next)
        }

        async fn add_hold(tx: &mut Tx, seq: i64, current: &Link, hold: &LinkHold, now: DateTime<Utc>) -> Result<HoldOutcome> {
            let existing = holds_of(tx, seq).await?;
            let was_enabled = existing.first().map_or(current.enabled, |(_, w)| *w);
            sqlx::query(INSERT_HOLD)
                .bind(seq)
                .bind(&hold.source)
                .bind(&hold.reason)
                .bind(&hold.actor)
                .bind(was_enabled)
                .bind(enc_time(trunc_us(hold.created_at)))
                .execute(&mut **tx)
                .await?;
            let (link, changed) = if current.enabled { (set_enabled(tx, seq, current, false, now).await?, true) } else { (current.clone(), false) };
            let holds = hold_list(tx, seq).await?;
            Ok(HoldOutcome { link, changed, holds })
        }

        async fn remove_hold(tx: &mut Tx, seq: i64, current: &Link, source: &str, now: DateTime<Utc>) -> Result<HoldOutcome> {
            let was: Option<bool> = sqlx::query_scalar(DELETE_HOLD).bind(seq).bind(source).fetch_optional(&mut **tx).await?;
            let holds = hold_list(tx, seq).await?;
            match was {
                Some(owner) if holds.is_empty() && owner != current.enabled => {
                    Ok(HoldOutcome { link: set_enabled(tx, seq, current, owner, now).await?, changed: true, holds })
                }
                _ => Ok(HoldOutcome { link: current.clone(), changed: false, holds }),
            }
        }

        /// Records the owner's `enabled` on the holds of link `seq`; whether it has any.
        pub(super) async fn record_owner_enabled(tx: &mut Tx, seq: i64, owner: bool) -> Result<bool> {
            let n = sqlx::query(SET_OWNER_ENABLED).bind(owner).bind(seq).execute(&mut **tx).await?.rows_affected();
            Ok(n > 0)
        }

        async fn held_by(tx: &mut Tx, source: &str) -> Result<Vec<(i64, Link)>> {
            let rows = sqlx::query(HELD_BY).bind(source).fetch_all(&mut **tx).await?;
            rows.iter().map(link_from_row).collect()
        }

        async fn append(tx: &mut Tx, r: &AuditRecord) -> Result<AuditRecord> {
            check_audit(r)?;
            let at = trunc_us(r.at);
            let details = serde_json::to_string(&r.details).map_err(|e| Error::Corrupt(e.to_string()))?;
            let seq: i64 = sqlx::query_scalar(INSERT_AUDIT)
                .bind(enc_time(at))
                .bind(&r.actor)
                .bind(&r.action)
                .bind(&r.target)
                .bind(&r.reason)
                .bind(&r.origin_ip)
                .bind(details)
                .fetch_one(&mut **tx)
                .await?;
            Ok(AuditRecord { seq, at, ..r.clone() })
        }

        /// Appends `audit` with the codes of `outcomes` as its `"affected"` details.
        async fn append_affected(tx: &mut Tx, audit: &AuditRecord, outcomes: &[HoldOutcome]) -> Result<AuditRecord> {
            let codes: Vec<String> = outcomes.iter().map(|o| o.link.code.clone()).collect();
            append(tx, &AuditRecord { details: with_affected(&audit.details, &codes), ..audit.clone() }).await
        }

        fn audit_from_row(r: &DbRow) -> Result<AuditRecord> {
            let details: String = r.try_get("details")?;
            Ok(AuditRecord {
                seq: r.try_get("seq")?,
                at: get_time(r, AT_COL)?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                reason: r.try_get("reason")?,
                origin_ip: r.try_get("origin_ip")?,
                details: serde_json::from_str(&details).map_err(|e| Error::Corrupt(format!("audit details: {e}")))?,
            })
        }

        /// What [`hold_change`] does to the live link.
        enum HoldChange<'a> {
            Add(&'a LinkHold),
            Remove(&'a str),
        }

        /// Places or releases a hold on the live link `code` and appends `audit` if given,
        /// in one serialized write transaction (arguments already checked).
        async fn hold_change(store: &$store, code: &str, change: HoldChange<'_>, now: DateTime<Utc>, audit: Option<&AuditRecord>) -> Result<HoldOutcome> {
            let mut tx = begin_write(store).await?;
            let Some((seq, current)) = live_link(&mut tx, code).await? else {
                tx.rollback().await?;
                return Err(Error::NotFound(code.to_string()));
            };
            let out = match change {
                HoldChange::Add(hold) => add_hold(&mut tx, seq, &current, hold, now).await?,
                HoldChange::Remove(source) => remove_hold(&mut tx, seq, &current, source, now).await?,
            };
            if let Some(a) = audit {
                append(&mut tx, a).await?;
            }
            tx.commit().await?;
            Ok(out)
        }

        #[async_trait]
        impl AdminStore for $store {
            async fn blocklist_add(&self, entry: &BlocklistEntry, matches: LinkFilter<'_>, audit: &AuditRecord) -> Result<BlocklistAdded> {
                check_text("pattern", &entry.pattern)?;
                let source = blocklist_source(&entry.pattern);
                let hold = LinkHold { source, reason: entry.reason.clone(), actor: entry.actor.clone(), created_at: entry.created_at };
                check_hold(&hold, entry.created_at)?;
                check_audit(audit)?;
                let mut tx = begin_write(self).await?;
                let added = sqlx::query(INSERT_BLOCKLIST)
                    .bind(&entry.pattern)
                    .bind(&entry.reason)
                    .bind(&entry.actor)
                    .bind(enc_time(trunc_us(entry.created_at)))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                let mut links = Vec::new();
                if !added {
                    for (seq, link) in held_by(&mut tx, &hold.source).await? {
                        let holds = hold_list(&mut tx, seq).await?;
                        links.push(HoldOutcome { link, changed: false, holds });
                    }
                    tx.commit().await?;
                    return Ok(BlocklistAdded { added, links });
                }
                let rows = sqlx::query(SCAN_BLOCKLIST).bind(&entry.pattern).fetch_all(&mut *tx).await?;
                let candidates: Vec<(i64, Link)> = rows.iter().map(link_from_row).collect::<Result<_>>()?;
                for (seq, link) in candidates.into_iter().filter(|(_, l)| matches(l)) {
                    links.push(add_hold(&mut tx, seq, &link, &hold, entry.created_at).await?);
                }
                append_affected(&mut tx, audit, &links).await?;
                tx.commit().await?;
                Ok(BlocklistAdded { added, links })
            }

            async fn blocklist_remove(&self, pattern: &str, now: DateTime<Utc>, audit: &AuditRecord) -> Result<Option<Vec<HoldOutcome>>> {
                check_text("pattern", pattern)?;
                check_time("now", now)?;
                check_audit(audit)?;
                let mut tx = begin_write(self).await?;
                let removed = sqlx::query(DELETE_BLOCKLIST).bind(pattern).execute(&mut *tx).await?.rows_affected();
                if removed == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let source = blocklist_source(pattern);
                let mut out = Vec::new();
                for (seq, link) in held_by(&mut tx, &source).await? {
                    out.push(remove_hold(&mut tx, seq, &link, &source, now).await?);
                }
                // Holds of links deleted meanwhile go too.
                sqlx::query(DELETE_HOLDS_OF_SOURCE).bind(&source).execute(&mut *tx).await?;
                append_affected(&mut tx, audit, &out).await?;
                tx.commit().await?;
                Ok(Some(out))
            }

            async fn blocklist_list(&self) -> Result<Vec<BlocklistEntry>> {
                let rows = sqlx::query(LIST_BLOCKLIST).fetch_all(&read_pool(self)).await?;
                rows.iter()
                    .map(|r| {
                        Ok(BlocklistEntry {
                            pattern: r.try_get("pattern")?,
                            reason: r.try_get("reason")?,
                            actor: r.try_get("actor")?,
                            created_at: get_time(r, CREATED_AT_COL)?,
                        })
                    })
                    .collect()
            }

            async fn hold_link(&self, code: &str, hold: &LinkHold, now: DateTime<Utc>, audit: Option<&AuditRecord>) -> Result<HoldOutcome> {
                if code.contains('\0') {
                    return Err(Error::NotFound(code.to_string()));
                }
                check_hold(hold, now)?;
                audit.map(check_audit).transpose()?;
                hold_change(self, code, HoldChange::Add(hold), now, audit).await
            }

            async fn release_link(&self, code: &str, source: &str, now: DateTime<Utc>, audit: Option<&AuditRecord>) -> Result<HoldOutcome> {
                if code.contains('\0') {
                    return Err(Error::NotFound(code.to_string()));
                }
                check_text("source", source)?;
                check_time("now", now)?;
                audit.map(check_audit).transpose()?;
                hold_change(self, code, HoldChange::Remove(source), now, audit).await
            }

            async fn link_holds(&self, code: &str) -> Result<Vec<LinkHold>> {
                if code.contains('\0') {
                    return Err(Error::NotFound(code.to_string()));
                }
                let mut tx = begin_read(self).await?;
                let Some((seq, _)) = live_link(&mut tx, code).await? else {
                    return Err(Error::NotFound(code.to_string()));
                };
                let holds = hold_list(&mut tx, seq).await?;
                tx.commit().await?;
                Ok(holds)
            }

            async fn audit_append(&self, record: &AuditRecord) -> Result<AuditRecord> {
                let mut tx = begin_write(self).await?;
                let out = append(&mut tx, record).await?;
                tx.commit().await?;
                Ok(out)
            }

            async fn audit_list(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>> {
                check_audit_limit(q.limit)?;
                for (field, v) in [("actor", &q.actor), ("action", &q.action)] {
                    if let Some(s) = v {
                        check_text(field, s)?;
                    }
                }
                let rows = sqlx::query(LIST_AUDIT)
                    .bind(q.before_seq)
                    .bind(q.from.map(enc_time))
                    .bind(q.to.map(enc_time))
                    .bind(&q.actor)
                    .bind(&q.action)
                    .bind(i64::from(q.limit))
                    .fetch_all(&read_pool(self))
                    .await?;
                rows.iter().map(audit_from_row).collect()
            }
        }
    };
}

pub(super) use admin_store;
