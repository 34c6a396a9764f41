//! `geo_shift`: a link's human clicks suddenly concentrated in one country unlike its
//! baseline (the [`super::share_shift`] shape over countries; the unknown country `ZZ`
//! never dominates).

use super::anomaly_lifecycle::Assessment;
use super::link_window::{DimKey, LinkWindow};
use super::share_shift::{self, Shift};
use crate::config::ShareShiftConfig;

/// The dominant new country, if the shape holds (volume not checked).
pub(crate) fn shape<K: DimKey>(w: &LinkWindow<K>, cfg: &ShareShiftConfig, warm: bool) -> Option<Shift> {
    share_shift::shape(w, &w.sums.countries, &["ZZ"], |c| w.base.country_share(c), cfg, warm)
}

/// The verdict (module docs).
pub(crate) fn assess(shift: Option<&Shift>, cfg: &ShareShiftConfig) -> Option<Assessment> {
    share_shift::assess(shift?, cfg)
}

/// One-line description.
pub(crate) fn summary(code: &str, a: &Assessment, s: &Shift, window_ms: i64) -> String {
    format!(
        "{} geo shift on link \"{code}\": {} human clicks in {} s from {} ({:.0} %, baseline {:.0} %)",
        a.severity.as_str(),
        s.count,
        window_ms / 1000,
        s.value,
        s.share * 100.0,
        s.base_share * 100.0
    )
}
