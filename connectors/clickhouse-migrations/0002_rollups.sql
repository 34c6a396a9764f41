-- Rollup rows, one table per granularity, with the dataflow's absolute values.
-- Key: (code, bucket, view, is_bot, value1, value2); `view` is the dimension set (`total`,
-- `country`, ..., `country,device`), value1/value2 its values ('' when unused).
-- `sketch` holds the row's visitor sketch in the dataflow's canonical bytes (VisitorSketch
-- format version 1), so ranges and dimension totals merge exactly as in memory.
-- ReplacingMergeTree(version) with version = the change batch's epoch (wall-clock ms,
-- increasing across restarts): a replay inserts the same or a newer version; queries read
-- FINAL (or argMax(..., version)), so no row is counted twice.

CREATE TABLE IF NOT EXISTS rollups_minute (
    code String,
    bucket DateTime64(3, 'UTC'),
    view LowCardinality(String),
    is_bot Bool,
    value1 String,
    value2 String,
    clicks UInt64,
    uniques UInt64,
    sketch String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (code, bucket, view, is_bot, value1, value2);

CREATE TABLE IF NOT EXISTS rollups_quarter (
    code String,
    bucket DateTime64(3, 'UTC'),
    view LowCardinality(String),
    is_bot Bool,
    value1 String,
    value2 String,
    clicks UInt64,
    uniques UInt64,
    sketch String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (code, bucket, view, is_bot, value1, value2);

CREATE TABLE IF NOT EXISTS rollups_hour (
    code String,
    bucket DateTime64(3, 'UTC'),
    view LowCardinality(String),
    is_bot Bool,
    value1 String,
    value2 String,
    clicks UInt64,
    uniques UInt64,
    sketch String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (code, bucket, view, is_bot, value1, value2);

CREATE TABLE IF NOT EXISTS rollups_day (
    code String,
    bucket DateTime64(3, 'UTC'),
    view LowCardinality(String),
    is_bot Bool,
    value1 String,
    value2 String,
    clicks UInt64,
    uniques UInt64,
    sketch String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYear(bucket)
ORDER BY (code, bucket, view, is_bot, value1, value2);
