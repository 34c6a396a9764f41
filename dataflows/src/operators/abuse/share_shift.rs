//! The common shape of `referrer_spam` and `geo_shift`: one value of a dimension holding a
//! large share of a link's human clicks in the window while it held little of the link's
//! baseline (see [`crate::config::ShareShiftConfig`]).
//!
//! `observed` = the value's share of the window's counted human clicks; `expected` = its
//! share of the baseline; `score` = `observed / min-share`; volume = the value's clicks.
//! Only for links past the warm-up whose baseline has at least `min-baseline-rate` human
//! clicks per minute.

use super::anomaly_lifecycle::{Assessment, severity_of};
use super::link_window::{DimKey, LinkWindow};
use crate::config::ShareShiftConfig;
use crate::hash::FxHashMap;
use crate::model::DimStr;

/// The dominant value of a window and how it compares with the baseline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shift {
    /// The value (referrer domain or country).
    pub value: DimStr,
    /// Its counted human clicks in the window.
    pub count: u64,
    /// Its share of the window's counted human clicks.
    pub share: f64,
    /// Its share of the baseline.
    pub base_share: f64,
}

/// The shape without the volume condition: the dominant value (largest count, then smallest
/// value, ignoring `excluded`) if it holds `min-share` and is new to the baseline.
pub(crate) fn shape<K: DimKey>(
    w: &LinkWindow<K>,
    counts: &FxHashMap<K, u64>,
    excluded: &[&str],
    base_share: impl Fn(&str) -> f64,
    cfg: &ShareShiftConfig,
    warm: bool,
) -> Option<Shift> {
    if !cfg.enabled || !warm || w.sums.human == 0 || w.base.mean < cfg.min_baseline_rate {
        return None;
    }
    let (value, count) = counts.iter().filter(|(k, _)| !excluded.contains(&&***k)).max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))?;
    let share = *count as f64 / w.sums.human as f64;
    let base = base_share(value);
    (share >= cfg.min_share && base <= cfg.max_baseline_share).then(|| Shift { value: DimStr::new(value), count: *count, share, base_share: base })
}

/// The verdict for a shift found by [`shape`].
pub(crate) fn assess(shift: &Shift, cfg: &ShareShiftConfig) -> Option<Assessment> {
    severity_of(shift.count, &cfg.levels(), shift.share >= cfg.critical_min_share).map(|severity| Assessment {
        severity,
        observed: shift.share,
        expected: shift.base_share,
        score: shift.share / cfg.min_share,
    })
}
