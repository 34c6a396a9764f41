//! `click_burst`: a link's human clicks in the window far above its own baseline.
//!
//! `observed` = human clicks in the window after the per-visitor cap; `expected` = the
//! baseline's mean human clicks per minute scaled to the window (`× window / 60 s`);
//! `score` = z = `(observed − expected) / sqrt(max(variance × window / 60 s, expected, 1))`
//! — the EWMA variance, floored by the Poisson variance of the expected count and by 1 so
//! a link without history needs real volume. The shape holds when `observed ≥ min-ratio ×
//! expected` and `z ≥ min-z`; critical needs the critical ratio and z as well. Silent during
//! the warm-up (no history yet means no baseline). A burst that one new referrer or one
//! country explains is left to `referrer_spam` / `geo_shift` (the operator checks).

use super::anomaly_lifecycle::{Assessment, severity_of};
use super::link_window::{DimKey, LinkWindow};
use crate::config::ClickBurstConfig;

/// The verdict for a link (module docs). `window_ms`: the link window; `warm`: the warm-up
/// is over.
pub(crate) fn assess<K: DimKey>(w: &LinkWindow<K>, cfg: &ClickBurstConfig, window_ms: i64, warm: bool) -> Option<Assessment> {
    if !cfg.enabled || !warm || w.sums.human == 0 {
        return None;
    }
    let f = window_ms as f64 / 60_000.0;
    let observed = w.sums.human as f64;
    let expected = w.base.mean * f;
    let sd = (w.base.var * f).max(expected).max(1.0).sqrt();
    let z = (observed - expected) / sd;
    if observed < cfg.min_ratio * expected || z < cfg.min_z {
        return None;
    }
    let critical = observed >= cfg.critical_min_ratio * expected && z >= cfg.critical_min_z;
    severity_of(w.sums.human, &cfg.levels(), critical).map(|severity| Assessment { severity, observed, expected, score: z })
}

/// One-line description.
pub(crate) fn summary(code: &str, a: &Assessment, window_ms: i64) -> String {
    format!(
        "{} click burst on link \"{code}\": {:.0} human clicks in {} s, baseline {:.1} (z {:.1})",
        a.severity.as_str(),
        a.observed,
        window_ms / 1000,
        a.expected,
        a.score
    )
}
