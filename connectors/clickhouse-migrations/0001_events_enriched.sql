-- Every deduplicated, enriched click (one row per event_id).
-- ReplacingMergeTree keyed by (code, ts, event_id): a replay after a crash re-inserts events
-- that were already written; merges (and FINAL) keep one row per event. Partitioned by UTC day.
CREATE TABLE IF NOT EXISTS events_enriched (
    event_id UUID,
    code String,
    ts DateTime64(3, 'UTC'),
    visitor_id UInt64,
    country LowCardinality(String),
    device LowCardinality(String),
    browser LowCardinality(String),
    os LowCardinality(String),
    referrer_domain String,
    referrer_medium LowCardinality(String),
    is_bot Bool,
    org Nullable(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (code, ts, event_id);
