-- One row per anomaly (issue 6 leftover). 0003 keyed `anomalies` by (code, kind,
-- window_start), so distinct anomalies of one link and window (two visitors flooding the same
-- link in the same window; networks and visitors without a link) collapsed into one row
-- under FINAL. The new table keys by the anomaly's id; the newest event of an anomaly
-- (highest `version` = detected_at × 1024 + revision) wins under FINAL. kind and
-- window_start lead the key: both are fixed per anomaly (the id is derived from kind, key
-- and window start), so rows of one anomaly always share the whole key.
-- Rows of the old table are copied (id, key, severity, status and revision read from the
-- event JSON in `details`), then the tables are swapped and the old one dropped.
CREATE TABLE IF NOT EXISTS anomalies_v4 (
    anomaly_id String,
    revision UInt32,
    status LowCardinality(String),
    kind LowCardinality(String),
    key String,
    severity LowCardinality(String),
    code String,
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
ORDER BY (kind, window_start, anomaly_id);

INSERT INTO anomalies_v4
SELECT
    if(JSONExtractString(details, 'anomaly_id') = '', concat('legacy:', code, ':', kind, ':', toString(toUnixTimestamp64Milli(window_start))), JSONExtractString(details, 'anomaly_id')),
    toUInt32(JSONExtractUInt(details, 'revision')),
    JSONExtractString(details, 'status'),
    kind,
    JSONExtractString(details, 'key'),
    JSONExtractString(details, 'severity'),
    code, window_start, window_end, detected_at, score, observed, expected, details, version
FROM anomalies FINAL;

EXCHANGE TABLES anomalies AND anomalies_v4;

DROP TABLE anomalies_v4;
