//! The dataflow's change stream in the sinks' vocabulary: `ChangeBatch` → [`RollupBatch`],
//! and [`SketchUnion`] over the dataflow's `VisitorSketch` (connectors cannot depend on the
//! dataflow crate, so the binary supplies both).

use sluice_connectors::clickhouse::AnomalyRecord;
use sluice_connectors::redis::SketchUnion;
use sluice_dataflows::changes::{ChangeBatch, ChangedRow};
use sluice_dataflows::model::{Dimension, Granularity, View};
use sluice_dataflows::sketch::VisitorSketch;
use sluice_schemas::Anomaly;
use sluice_schemas::rollup::{RollupBatch, RollupGranularity, RollupRow, RollupView};

/// The sink-facing granularity.
pub fn granularity(g: Granularity) -> RollupGranularity {
    match g {
        Granularity::Minute => RollupGranularity::Minute,
        Granularity::Quarter => RollupGranularity::Quarter,
        Granularity::Hour => RollupGranularity::Hour,
        Granularity::Day => RollupGranularity::Day,
    }
}

/// The dataflow granularity of a sink-facing one.
pub fn dataflow_granularity(g: RollupGranularity) -> Granularity {
    match g {
        RollupGranularity::Minute => Granularity::Minute,
        RollupGranularity::Quarter => Granularity::Quarter,
        RollupGranularity::Hour => Granularity::Hour,
        RollupGranularity::Day => Granularity::Day,
    }
}

/// The sink-facing view.
pub fn view(v: View) -> RollupView {
    match v {
        View::Total => RollupView::Total,
        View::Single(Dimension::Country) => RollupView::Country,
        View::Single(Dimension::Device) => RollupView::Device,
        View::Single(Dimension::Browser) => RollupView::Browser,
        View::Single(Dimension::Os) => RollupView::Os,
        View::Single(Dimension::ReferrerDomain) => RollupView::ReferrerDomain,
        View::Single(Dimension::ReferrerMedium) => RollupView::ReferrerMedium,
        View::CountryDevice => RollupView::CountryDevice,
    }
}

/// One changed row as a [`RollupRow`] (absolute values, sketch bytes as they are).
pub fn row(r: ChangedRow) -> RollupRow {
    RollupRow {
        code: r.code.to_string(),
        granularity: granularity(r.granularity),
        bucket_start_ms: r.bucket_start_ms,
        view: view(r.view),
        is_bot: r.is_bot,
        dims: r.dims.iter().map(|d| d.to_string()).collect(),
        clicks: r.clicks,
        uniques: r.uniques,
        sketch: r.sketch,
    }
}

/// A change batch for the sinks. Offsets stay with the caller (commit points).
pub fn batch(b: ChangeBatch) -> RollupBatch {
    RollupBatch { epoch_upper: b.epoch_upper, watermark_ms: b.watermark_ms, rows: b.rows.into_iter().map(row).collect() }
}

/// One anomaly event as a row of `anomalies`: `code` is the link concerned (the key, e.g.
/// `network:203.0.113.0/24`, when no link is known); `details` is the whole event as JSON
/// (id, revision, status, key, severity, summary, evidence); `version` orders the events of
/// one anomaly: `detected_at × 1024 + revision` (revisions above 1023 saturate), so the
/// latest event of each anomaly id wins under `FINAL`, also after a replay.
pub fn anomaly(a: &Anomaly) -> AnomalyRecord {
    AnomalyRecord {
        anomaly_id: a.anomaly_id.hyphenated().to_string(),
        revision: a.revision,
        status: a.status.as_str().to_string(),
        key: a.key.clone(),
        severity: a.severity.as_str().to_string(),
        code: a.code.clone().unwrap_or_else(|| a.key.clone()),
        kind: a.kind.as_str().to_string(),
        window_start: a.window_start,
        window_end: a.window_end,
        detected_at: a.detected_at,
        score: a.score,
        observed: a.observed,
        expected: a.expected,
        details: serde_json::to_string(a).unwrap_or_default(),
        version: u64::try_from(a.detected_at).unwrap_or(0).saturating_mul(1024) + u64::from(a.revision.min(1023)),
    }
}

/// [`SketchUnion`] with the dataflow's sketches: decode both, merge, re-encode canonically.
#[derive(Debug, Clone, Copy, Default)]
pub struct DataflowSketches;

impl SketchUnion for DataflowSketches {
    fn union(&self, a: &[u8], b: &[u8]) -> Result<(Vec<u8>, u64), String> {
        let mut s = VisitorSketch::from_bytes(a).map_err(|e| e.to_string())?;
        let o = VisitorSketch::from_bytes(b).map_err(|e| e.to_string())?;
        s.merge(&o);
        Ok((s.to_bytes(), s.uniques()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn sketch(ids: impl IntoIterator<Item = u64>) -> VisitorSketch {
        let mut s = VisitorSketch::new();
        for i in ids {
            s.insert(i);
        }
        s
    }

    #[test]
    fn union_equals_inserting_both_id_sets_exact_and_hll() {
        for (a, b) in [(0..10u64, 5..30u64), (0..5_000, 2_500..9_000)] {
            let (bytes, est) = DataflowSketches.union(&sketch(a.clone()).to_bytes(), &sketch(b.clone()).to_bytes()).expect("union");
            let mut want = sketch(a.chain(b));
            assert_eq!(bytes, want.to_bytes());
            assert_eq!(est, want.uniques());
        }
        assert!(DataflowSketches.union(&[9, 9], &[1, 0, 0]).is_err());
    }

    #[test]
    fn anomalies_become_rows_whose_versions_order_their_events() {
        use sluice_schemas::{AnomalyKind, AnomalyStatus, Evidence, Severity};
        let mut a = Anomaly {
            anomaly_id: uuid::Uuid::from_u128(9),
            revision: 0,
            status: AnomalyStatus::Open,
            kind: AnomalyKind::VisitorFlood,
            key: "network:203.0.113.0/24".into(),
            severity: Severity::ALL[0],
            code: None,
            org: None,
            window_start: 60_000,
            window_end: 120_000,
            observed: 500.0,
            expected: 100.0,
            score: 5.0,
            summary: "flood".into(),
            evidence: Evidence::default(),
            detected_at: 1_000,
        };
        let open = anomaly(&a);
        assert_eq!((open.code.as_str(), open.kind.as_str()), ("network:203.0.113.0/24", "visitor_flood"));
        assert_eq!((open.window_start, open.window_end, open.detected_at, open.version), (60_000, 120_000, 1_000, 1_024_000));
        let details: serde_json::Value = serde_json::from_str(&open.details).expect("json details");
        assert_eq!(details["summary"], "flood");
        a.revision = 1;
        a.status = AnomalyStatus::Updated;
        a.code = Some("abc".into());
        let updated = anomaly(&a);
        assert_eq!(updated.code, "abc");
        assert!(updated.version > open.version, "a later revision at the same instant wins");
        a.revision = 0;
        a.detected_at = 1_001;
        assert!(anomaly(&a).version > updated.version, "a later detection wins");
    }

    #[test]
    fn rows_convert_field_by_field() {
        let changed = ChangedRow {
            code: Arc::from("abc"),
            granularity: Granularity::Quarter,
            bucket_start_ms: 900_000,
            view: View::CountryDevice,
            is_bot: true,
            dims: vec![Arc::from("DE"), Arc::from("mobile")],
            meta: None,
            clicks: 7,
            uniques: 3,
            sketch: sketch([1, 2, 3]).to_bytes(),
        };
        let r = row(changed.clone());
        assert_eq!(r.code, "abc");
        assert_eq!((r.granularity, r.view, r.is_bot), (RollupGranularity::Quarter, RollupView::CountryDevice, true));
        assert_eq!(r.dims, vec!["DE".to_string(), "mobile".to_string()]);
        assert_eq!((r.bucket_start_ms, r.clicks, r.uniques), (900_000, 7, 3));
        assert_eq!(r.sketch, changed.sketch);
        for v in View::ALL {
            assert_eq!(view(v).as_str(), v.as_str(), "names agree");
        }
        for g in Granularity::ALL {
            assert_eq!(granularity(g).len_ms(), g.len_ms());
            assert_eq!(dataflow_granularity(granularity(g)), g);
        }
    }
}
