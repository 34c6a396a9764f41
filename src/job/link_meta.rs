//! Link metadata for the dataflow: every version of every link's metadata in the link
//! store, fed into the pipeline's metadata collection (`LinkMetaSender`).
//!
//! Two paths feed one [`MetaFeeder`]:
//! * the API's [`LinkChangeHook`], synchronously after every create/update/delete of this
//!   process, before the API answers — so a link created here is in the dataflow before
//!   its first click can be logged (read-after-write);
//! * [`follow_changes`], which replays the store's change feed from the start at boot
//!   (before the dataflow reads any click) and then polls it every `meta-poll-interval`, so
//!   changes made by other API processes arrive too.
//!
//! Both may deliver the same change, in any order. The feeder orders the states of a code
//! by (creation instant, version) — both only grow over a link's life, and a code re-created
//! after its 30-day tombstone has a later creation instant — and ignores anything not newer
//! than what it has sent, so the dataflow sees each state once and never goes back.
//!
//! **What the feeder keeps.** Per code, its latest state (creation instant, version,
//! metadata); a delete replaces it with a tombstone (the creation instant), so that the
//! feed's older states of the deleted link, which the feed delivers after the hook's delete,
//! are ignored. The tombstone goes — the code is forgotten — once the change feed delivers
//! the delete: the feed delivers changes in commit order, so every older state of that link
//! has come through it by then, and what it delivers later for the code is newer (a
//! re-creation). Codes created and deleted over the process's life thus cost nothing once
//! the poll has passed their delete (at boot, the replay of the feed leaves none). The one
//! exception is a hook call for an older state of the link delayed (a stalled thread) past
//! both the delete and the next poll: it is then sent again — a version the dataflow already
//! has, the same metadata from the same instant, so no click is attributed differently — and
//! its code kept as live until it is deleted again.
//!
//! **Versions, not replacements.** A state whose metadata differs from the code's previous
//! one ([`LinkMeta::same_content`]) is *added* as a new version, valid from its `updated_at`
//! ([`LinkMeta::valid_from_ms`]); older versions are never retracted, and a delete retracts
//! nothing. The dataflow joins each click with the version valid at the click's event time
//! (`LookupLinkMeta`), so a start that replays the click log (no checkpoint) attributes every
//! click to the organisation and tags it was counted under live, deleted links included;
//! which links are live is the link store's business (the stats API asks it).
//!
//! The dataflow keeps every version of a deleted link (`LookupLinkMeta`'s index, which a
//! delete never reaches): clicks of a deleted link still arrive after the delete — logged
//! before it and processed after, imported or backfilled, replayed at a start — and must be
//! attributed as they were live.
//!
//! Limitation: a delete delivered only by the poll after the code was re-created here (a
//! poll more than 30 days late) forgets the re-created link's state: the poll's own delivery
//! of the re-creation then sends its metadata again (a version the dataflow already has).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sluice_connectors::{LinkChange, LinkStore};
use sluice_dataflows::pipeline::LinkMetaSender;
use sluice_schemas::LinkMeta;
use sluice_serving::LinkChangeHook;
use tokio::sync::watch;

/// Changes read from the store per request.
const PAGE: u32 = 1000;

/// What the feeder knows of a code (module docs, "What the feeder keeps"): its latest state,
/// or a tombstone while a delete seen from the hook is not yet delivered by the change feed.
enum Known {
    Live { created_us: i64, version: i64, meta: LinkMeta },
    Deleted { created_us: i64 },
}

/// Which path delivered a change (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// The API's [`LinkChangeHook`], changes of this process.
    Hook,
    /// The store's change feed ([`catch_up`]), every change in commit order.
    Feed,
}

/// Where the feeder sends metadata changes: the pipeline's [`LinkMetaSender`] (or a
/// recorder in tests).
pub trait MetaOut: Send + Sync + 'static {
    /// Adds a metadata version.
    fn add_version(&self, meta: LinkMeta);
}

impl MetaOut for LinkMetaSender {
    fn add_version(&self, meta: LinkMeta) {
        // `false` only once the pipeline is gone (shutdown): nothing left to feed.
        let _ = self.insert(meta);
    }
}

/// Deduplicating, ordering front of the pipeline's metadata feed (module docs).
pub struct MetaFeeder {
    known: Mutex<HashMap<String, Known>>,
    sender: Box<dyn MetaOut>,
}

impl std::fmt::Debug for MetaFeeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaFeeder").field("codes", &self.known.lock().len()).finish()
    }
}

impl MetaFeeder {
    /// A feeder sending to `sender`.
    pub fn new(sender: impl MetaOut) -> MetaFeeder {
        MetaFeeder { known: Mutex::new(HashMap::new()), sender: Box::new(sender) }
    }

    /// Applies one change delivered by the API's hook; returns whether a new metadata version
    /// was sent.
    pub fn apply(&self, change: &LinkChange) -> bool {
        self.apply_via(change, Via::Hook)
    }

    /// Applies one change read from the store's change feed, in feed order; returns whether a
    /// new metadata version was sent. A delete from the feed forgets the code (module docs).
    pub fn apply_from_feed(&self, change: &LinkChange) -> bool {
        self.apply_via(change, Via::Feed)
    }

    fn apply_via(&self, change: &LinkChange, via: Via) -> bool {
        let mut known = self.known.lock();
        match change {
            LinkChange::Upserted(link) => {
                let created_us = link.created_at.timestamp_micros();
                let meta = link.meta();
                match known.get(&link.code) {
                    Some(Known::Live { created_us: c, version: v, .. }) if (*c, *v) >= (created_us, link.version) => false,
                    Some(Known::Deleted { created_us: c }) if *c >= created_us => false,
                    prev => {
                        // A new version only when the metadata itself changed (a PATCH of
                        // `enabled` or `expires_at` bumps the link's version, not its metadata).
                        let (meta, changed) = match prev {
                            Some(Known::Live { meta: old, .. }) if old.same_content(&meta) => (old.clone(), false),
                            _ => {
                                self.sender.add_version(meta.clone());
                                (meta, true)
                            }
                        };
                        known.insert(link.code.clone(), Known::Live { created_us, version: link.version, meta });
                        changed
                    }
                }
            }
            // Nothing to send for a delete: the link's versions stay in the dataflow, so that
            // its clicks keep their attribution (module docs).
            LinkChange::Deleted(code) => {
                match (via, known.get(code)) {
                    // Every older state of the link came through the feed before its delete:
                    // nothing is left to ignore.
                    (Via::Feed, _) => {
                        known.remove(code);
                    }
                    // The feed may still deliver older states: a tombstone ignores them.
                    (Via::Hook, Some(Known::Live { created_us, .. })) => {
                        let created_us = *created_us;
                        known.insert(code.clone(), Known::Deleted { created_us });
                    }
                    (Via::Hook, _) => {}
                }
                false
            }
        }
    }

    /// Codes with live metadata.
    pub fn live_links(&self) -> usize {
        self.known.lock().values().filter(|k| matches!(k, Known::Live { .. })).count()
    }
}

impl LinkChangeHook for MetaFeeder {
    fn link_changed(&self, change: &LinkChange) {
        self.apply(change);
    }
}

/// Applies every change after `after` until the feed is exhausted; returns the last change
/// number applied.
///
/// Errors: the store's.
pub async fn catch_up(feeder: &MetaFeeder, store: &dyn LinkStore, mut after: i64) -> sluice_connectors::Result<i64> {
    loop {
        let page = store.changes_since(after, PAGE).await?;
        let full = page.len() == PAGE as usize;
        for (seq, change) in &page {
            feeder.apply_from_feed(change);
            after = *seq;
        }
        if !full {
            return Ok(after);
        }
    }
}

/// Polls the change feed after `after` every `interval` until `stop` turns true (the
/// `link-meta-feed` task). Store errors are logged and retried at the next tick.
pub async fn follow_changes(feeder: Arc<MetaFeeder>, store: Arc<dyn LinkStore>, mut after: i64, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        match catch_up(&feeder, store.as_ref(), after).await {
            Ok(seq) => {
                after = seq;
                if failing {
                    tracing::info!("link change feed readable again");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "could not read the link change feed; retrying");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use sluice_schemas::{Link, RedirectType};

    /// (tags, valid_from_ms) of every metadata version sent.
    type Sent = Arc<Mutex<Vec<(Vec<String>, i64)>>>;

    #[derive(Clone, Default)]
    struct Recorder(Sent);

    impl MetaOut for Recorder {
        fn add_version(&self, meta: LinkMeta) {
            self.0.lock().push((meta.tags, meta.valid_from_ms));
        }
    }

    fn link(code: &str, created_s: i64, updated_s: i64, version: i64, tags: &[&str]) -> Link {
        let at = |s| DateTime::<Utc>::from_timestamp(s, 0).expect("time");
        Link {
            code: code.into(),
            long_url: "https://example.com/".into(),
            domain: None,
            expires_at: None,
            enabled: true,
            tags: tags.iter().map(|s| s.to_string()).collect(),
            redirect_type: RedirectType::Found,
            org: None,
            created_at: at(created_s),
            updated_at: at(updated_s),
            version,
        }
    }

    #[test]
    fn each_version_reaches_the_dataflow_once_and_none_is_retracted() {
        let rec = Recorder::default();
        let f = MetaFeeder::new(rec.clone());
        let v1 = link("abc", 100, 100, 1, &["a"]);
        let v2 = link("abc", 100, 200, 2, &["b"]);
        let v3 = link("abc", 100, 300, 3, &["b"]); // version bump without a metadata change
        assert!(f.apply(&LinkChange::Upserted(v1.clone())));
        assert!(!f.apply(&LinkChange::Upserted(v1.clone())), "the poll repeats the hook's change");
        assert!(f.apply(&LinkChange::Upserted(v2.clone())));
        assert!(!f.apply(&LinkChange::Upserted(v1.clone())), "an older state arriving late is ignored");
        assert!(!f.apply(&LinkChange::Upserted(v3)), "same metadata: no new version");
        let v4 = link("abc", 100, 400, 4, &["a"]);
        assert!(f.apply(&LinkChange::Upserted(v4.clone())), "back to earlier tags: a version of its own");
        assert!(!f.apply(&LinkChange::Deleted("abc".into())), "a delete sends nothing");
        assert!(!f.apply(&LinkChange::Deleted("abc".into())));
        assert!(!f.apply(&LinkChange::Upserted(v2.clone())), "the deleted incarnation stays deleted");
        assert_eq!(f.live_links(), 0);
        let created = 100 + 31 * 86_400;
        let v_new = link("abc", created, created, 1, &["c"]);
        assert!(f.apply(&LinkChange::Upserted(v_new.clone())), "a re-created code is a new incarnation");
        assert!(!f.apply(&LinkChange::Deleted("zzz".into())), "unknown code");
        assert_eq!(f.live_links(), 1);
        let t = |l: &Link| (l.tags.clone(), l.updated_at.timestamp_millis());
        assert_eq!(*rec.0.lock(), vec![t(&v1), t(&v2), t(&v4), t(&v_new)]);
        assert_eq!(rec.0.lock()[1].1, 200_000, "valid from the state's updated_at, in ms");
    }

    /// Links created and deleted, here (the hook, then the poll delivering the same changes)
    /// or by another process (the poll only): once the poll has delivered a delete, nothing
    /// of the link is left in the feeder; until then its tombstone makes the poll's older
    /// states of it be ignored. Each link's metadata reached the dataflow once.
    #[test]
    fn deleted_links_are_forgotten_once_the_feed_delivered_their_delete() {
        let rec = Recorder::default();
        let f = MetaFeeder::new(rec.clone());
        for i in 0..500 {
            let (here, elsewhere) = (format!("h{i}"), format!("e{i}"));
            let created = link(&here, 100 + i, 100 + i, 1, &["a"]);
            let updated = link(&here, 100 + i, 200 + i, 2, &["b"]);
            assert!(f.apply(&LinkChange::Upserted(created.clone())));
            assert!(f.apply(&LinkChange::Upserted(updated.clone())));
            assert!(!f.apply(&LinkChange::Deleted(here.clone())));
            // The poll, behind: the same changes in commit order.
            assert!(!f.apply_from_feed(&LinkChange::Upserted(created)), "the deleted link's older state is ignored");
            assert!(!f.apply_from_feed(&LinkChange::Upserted(updated)));
            assert!(!f.apply_from_feed(&LinkChange::Deleted(here.clone())));
            assert!(!f.apply(&LinkChange::Deleted(here)), "the hook's delete after the poll's: nothing to do");
            assert!(f.apply_from_feed(&LinkChange::Upserted(link(&elsewhere, 100 + i, 100 + i, 1, &["c"]))));
            assert!(!f.apply_from_feed(&LinkChange::Deleted(elsewhere)));
        }
        assert_eq!(f.known.lock().len(), 0, "no entry kept for a deleted link");
        assert_eq!(rec.0.lock().len(), 3 * 500, "each version sent once");
        let again = link("h7", 100 + 31 * 86_400, 100 + 31 * 86_400, 1, &["d"]);
        assert!(f.apply(&LinkChange::Upserted(again.clone())), "a re-created code is a new link");
        assert!(!f.apply_from_feed(&LinkChange::Upserted(again)), "sent once");
        assert_eq!(f.live_links(), 1);
    }
}
