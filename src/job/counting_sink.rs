//! The redirect's click sink of a [`super::system::System`] that writes a click log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_ingest::ClickSender;
use sluice_redirect::ClickSink;
use sluice_schemas::ClickEvent;

/// The redirect's click sink, counting the clicks it handed to the channel (so
/// [`super::system::System::flush_clicks`] knows when all of them are in the log).
pub(super) struct CountingSink {
    /// The click channel to the log writer.
    pub(super) inner: ClickSender,
    /// Clicks handed to `inner`.
    pub(super) accepted: Arc<AtomicU64>,
}

impl ClickSink for CountingSink {
    fn try_send(&self, event: ClickEvent) -> bool {
        let ok = self.inner.try_send(event);
        if ok {
            self.accepted.fetch_add(1, Ordering::Release);
        }
        ok
    }
}
