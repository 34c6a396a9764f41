//! `referrer_spam`: a referrer domain new to a link suddenly dominating its human clicks
//! (the [`super::share_shift`] shape over referrer domains; `(direct)` and `(invalid)` are
//! not domains and never dominate).

use super::anomaly_lifecycle::Assessment;
use super::link_window::{DimKey, LinkWindow};
use super::share_shift::{self, Shift};
use crate::config::ShareShiftConfig;

/// Pseudo-domains that cannot be spam referrers.
pub(crate) const NOT_A_DOMAIN: [&str; 2] = ["(direct)", "(invalid)"];

/// The dominant new referrer, if the shape holds (volume not checked).
pub(crate) fn shape<K: DimKey>(w: &LinkWindow<K>, cfg: &ShareShiftConfig, warm: bool) -> Option<Shift> {
    share_shift::shape(w, &w.sums.referrers, &NOT_A_DOMAIN, |r| w.base.referrer_share(r), cfg, warm)
}

/// The verdict (module docs).
pub(crate) fn assess(shift: Option<&Shift>, cfg: &ShareShiftConfig) -> Option<Assessment> {
    share_shift::assess(shift?, cfg)
}

/// One-line description.
pub(crate) fn summary(code: &str, a: &Assessment, s: &Shift, window_ms: i64) -> String {
    format!(
        "{} referrer spam on link \"{code}\": {} sent {} of its human clicks in {} s ({:.0} %, baseline {:.0} %)",
        a.severity.as_str(),
        s.value,
        s.count,
        window_ms / 1000,
        s.share * 100.0,
        s.base_share * 100.0
    )
}
