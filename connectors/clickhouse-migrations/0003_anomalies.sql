-- Anomalies detected by the abuse detector, one row per (code, kind, window_start); a
-- re-detection of the same window after a restart replaces the row (newest version).
CREATE TABLE IF NOT EXISTS anomalies (
    code String,
    kind LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    detected_at DateTime64(3, 'UTC'),
    score Float64,
    observed Float64,
    expected Float64,
    details String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY (code, kind, window_start);
