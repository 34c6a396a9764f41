//! The link-metadata feed: the binary forwards link-store changes into the graph through
//! a [`LinkMetaSender`]; global worker 0 reads the [`LinkMetaFeed`].

use std::sync::mpsc::{self, Receiver, Sender};

use sluice_schemas::LinkMeta;

use crate::wake::WakeSlot;

/// A link-metadata change: `diff = +1` announces a value, `-1` retracts it (an update is
/// `-old, +new`; see [`LinkMetaSender::update`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMetaChange {
    /// The value.
    pub meta: LinkMeta,
    /// `+1` or `-1`.
    pub diff: isize,
}

/// Sending half of the link-metadata feed (the binary forwards link-store changes here).
#[derive(Debug, Clone)]
pub struct LinkMetaSender(Sender<LinkMetaChange>, WakeSlot);

/// Receiving half, handed to [`super::start`]; read by global worker 0.
#[derive(Debug)]
pub struct LinkMetaFeed(pub(super) Receiver<LinkMetaChange>, pub(super) WakeSlot);

/// A new link-metadata feed. Dropping every sender closes the feed.
pub fn link_meta_channel() -> (LinkMetaSender, LinkMetaFeed) {
    let (tx, rx) = mpsc::channel();
    let wake = WakeSlot::new();
    (LinkMetaSender(tx, wake.clone()), LinkMetaFeed(rx, wake))
}

impl LinkMetaSender {
    fn send(&self, change: LinkMetaChange) -> bool {
        let ok = self.0.send(change).is_ok();
        self.1.wake();
        ok
    }
    /// Announces a link (created, or loaded at start). Returns `false` if the pipeline is gone.
    pub fn insert(&self, meta: LinkMeta) -> bool {
        self.send(LinkMetaChange { meta, diff: 1 })
    }
    /// Retracts a previously announced value (link deleted).
    pub fn retract(&self, meta: LinkMeta) -> bool {
        self.send(LinkMetaChange { meta, diff: -1 })
    }
    /// Replaces `old` by `new` (both sent in order, applied in one epoch or two consecutive).
    pub fn update(&self, old: LinkMeta, new: LinkMeta) -> bool {
        self.retract(old) && self.insert(new)
    }
}
