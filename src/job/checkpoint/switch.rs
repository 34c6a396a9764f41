//! A start that switched inputs (embedded click log ⇄ Kafka): the checkpoint it restores is
//! older than a checkpoint of another input in the same directory, so the Redis and
//! ClickHouse sinks were last written from that other input, and hold its values. The
//! restored views differ from them, but a restored row is written to the sinks only when it
//! changes: without a resend the sinks would keep the other input's values until then
//! (README, "Kafka" and "Redis and ClickHouse").
//!
//! [`load_for_start`](super::load_for_start) notes such a newer checkpoint
//! ([`InputSwitch`]) while it walks the directory; [`resend_after_switch`] has the views emit
//! every retained row again ([`Views::resend_all_to_sinks`]: every granularity, since
//! ClickHouse keeps quarter and hour rows too) once the restore is done.

use std::path::{Path, PathBuf};

use sluice_dataflows::views::Views;

use super::SourceIdentity;

/// The newest checkpoint of another input, newer than the checkpoint a start restores: the
/// sinks were last written from that input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSwitch {
    /// That checkpoint's file.
    pub newer: PathBuf,
    /// Its input.
    pub input: SourceIdentity,
}

/// Has `views` (just restored from `restored`) resend every retained row to the sinks when
/// the start switched inputs (`switch`), with an info log saying why. Returns the blocks
/// marked (0 without a switch, or without a sink: the views track no changes then).
pub fn resend_after_switch(views: &Views, restored: &Path, switch: Option<&InputSwitch>) -> usize {
    let Some(s) = switch else { return 0 };
    let blocks = views.resend_all_to_sinks();
    if blocks > 0 {
        tracing::info!(
            restored = %restored.display(),
            newer = %s.newer.display(),
            newer_input = ?s.input,
            blocks,
            "the restored checkpoint is older than a checkpoint of another input: the sinks were last written from that input, so every \
             retained row (minutes, quarters, hours, days) is resent to them"
        );
    }
    blocks
}
