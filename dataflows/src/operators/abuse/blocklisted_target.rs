//! `blocklisted_target`: clicks on a link whose target host is on the admin blocklist.
//!
//! The blocklist is a differential collection of normalized entries (set semantics, see
//! [`crate::anomaly::BlocklistSender`]), an entry matching its domain and every subdomain.
//! [`blocked_codes`] joins it with the link metadata collection — each link's latest
//! version only (greatest `valid_from_ms`, a differential `reduce`: the collection holds
//! every version a link ever had, see [`crate::operators::LookupLinkMeta`]): every link's target host
//! is expanded into its domain suffixes (`a.evil.example` → `a.evil.example`,
//! `evil.example`, `example`), arranged by suffix, and joined with the arranged entries,
//! giving `(code, (entry, host))` with `+1/−1` diffs — removing an entry, or changing a
//! link's target, retracts the match. The link detector operator folds these changes per
//! code (exchanged by code) and raises the anomaly while a blocked link receives clicks.
//!
//! `observed` = all clicks on the link in the window (uncapped, bots included); `expected`
//! = 0; `score` = `observed / warning-min-clicks`. Needs no warm-up.

use differential_dataflow::VecCollection;
use sluice_schemas::LinkMeta;
use timely::dataflow::StreamVec;

use super::anomaly_lifecycle::{Assessment, severity_of};
use crate::anomaly::host_suffixes;
use crate::config::BlocklistedTargetConfig;

/// A change of the blocked-link collection: `((code, (entry, target host)), epoch, diff)`.
pub type BlockedChange = ((String, (String, String)), u64, isize);

/// The blocked links (module docs), as a stream of differential updates.
pub fn blocked_codes<'scope>(
    meta: VecCollection<'scope, u64, (String, LinkMeta), isize>,
    entries: VecCollection<'scope, u64, String, isize>,
) -> StreamVec<'scope, u64, BlockedChange> {
    let latest = meta.reduce_named("LatestLinkMetaVersion", |_code: &String, versions: &[(&LinkMeta, isize)], out: &mut Vec<(LinkMeta, isize)>| {
        if let Some((m, _)) = versions.iter().filter(|(_, d)| *d > 0).max_by_key(|(m, _)| (m.valid_from_ms, *m)) {
            out.push(((*m).clone(), 1));
        }
    });
    let suffixes = latest
        .flat_map(|(code, m)| {
            let host = m.target_host.unwrap_or_default();
            host_suffixes(&host).into_iter().map(move |s| (s, (code.clone(), host.clone()))).collect::<Vec<_>>()
        })
        .arrange_by_key_named("ArrangeTargetHostSuffixes");
    let entries = entries.arrange_by_self_named("ArrangeBlocklistEntries");
    suffixes.join_core(entries, |suffix: &String, (code, host): &(String, String), _: &()| Some((code.clone(), (suffix.clone(), host.clone())))).inner
}

/// The verdict for a link with `clicks` in the window and `blocked` (any active entry).
pub(crate) fn assess(clicks: u64, blocked: bool, cfg: &BlocklistedTargetConfig) -> Option<Assessment> {
    if !cfg.enabled || !blocked {
        return None;
    }
    severity_of(clicks, &cfg.levels(), true).map(|severity| Assessment {
        severity,
        observed: clicks as f64,
        expected: 0.0,
        score: clicks as f64 / cfg.warning_min_clicks.max(1) as f64,
    })
}

/// One-line description.
pub(crate) fn summary(code: &str, a: &Assessment, host: &str, entries: &[String], window_ms: i64) -> String {
    format!(
        "{} blocklisted target: link \"{code}\" to {host} (blocklisted by {}) received {:.0} clicks in {} s",
        a.severity.as_str(),
        entries.join(", "),
        a.observed,
        window_ms / 1000
    )
}
