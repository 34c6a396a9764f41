//! `bot_share`: the share of bot clicks on a link in the window beyond a threshold.
//!
//! `observed` = bot clicks / all clicks in the window (both after the per-visitor cap);
//! `expected` = the link's baseline bot share; `score` = `observed / min-share`. The shape
//! holds when `observed ≥ min-share` and `observed − expected ≥ min-increase` (a link whose
//! traffic always was mostly bots, e.g. a feed, does not alarm); critical needs
//! `critical-min-share`. Volume: all counted clicks. Needs no warm-up.

use super::anomaly_lifecycle::{Assessment, severity_of};
use super::link_window::{DimKey, LinkWindow};
use crate::config::BotShareConfig;

/// The verdict for a link (module docs).
pub(crate) fn assess<K: DimKey>(w: &LinkWindow<K>, cfg: &BotShareConfig) -> Option<Assessment> {
    let total = w.sums.human + w.sums.bots;
    if !cfg.enabled || total == 0 {
        return None;
    }
    let observed = w.sums.bots as f64 / total as f64;
    let expected = w.base.bot_share();
    if observed < cfg.min_share || observed - expected < cfg.min_increase {
        return None;
    }
    severity_of(total, &cfg.levels(), observed >= cfg.critical_min_share).map(|severity| Assessment {
        severity,
        observed,
        expected,
        score: observed / cfg.min_share,
    })
}

/// One-line description.
pub(crate) fn summary(code: &str, a: &Assessment, bots: u64, total: u64, window_ms: i64) -> String {
    format!(
        "{} bot share on link \"{code}\": {bots} of {total} clicks in {} s are bots ({:.0} %, baseline {:.0} %)",
        a.severity.as_str(),
        window_ms / 1000,
        a.observed * 100.0,
        a.expected * 100.0
    )
}
