-- Link store schema, SQLite flavour. Keep in step with ../postgres/0001_link_store.sql:
-- both backends must behave identically (one behavioural test suite runs against both).
-- Timestamps are INTEGER microseconds since the Unix epoch, UTC (PostgreSQL timestamptz
-- resolution), so values round-trip identically in both stores.

-- Single-row counter. Every write (insert, update, delete) increments it inside its
-- transaction; the increment is the change sequence number of that write, so change numbers
-- are gapless and ordered by commit (the counter row serializes writers).
CREATE TABLE change_counter (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
INSERT INTO change_counter (id, last) VALUES (1, 0);

-- One row per code. A deleted link keeps its row (deleted_at_us set) as the tombstone that
-- blocks reuse of the code for 30 days; the unique index on code therefore decides
-- atomically between live links, recent tombstones and concurrent inserts.
CREATE TABLE links (
    seq            INTEGER PRIMARY KEY,  -- change number of the creating insert; keyset for listing
    code           TEXT    NOT NULL UNIQUE,
    long_url       TEXT    NOT NULL,
    domain         TEXT,
    expires_at_us  INTEGER,
    enabled        INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    tags           TEXT    NOT NULL,     -- JSON array of strings, order preserved
    redirect_type  INTEGER NOT NULL CHECK (redirect_type IN (301, 302)),
    org            TEXT,
    created_at_us  INTEGER NOT NULL,
    updated_at_us  INTEGER NOT NULL,
    version        INTEGER NOT NULL,
    deleted_at_us  INTEGER
);

-- Exact tag membership for the list filter (one row per distinct tag of a link).
CREATE TABLE link_tags (
    tag      TEXT    NOT NULL,
    link_seq INTEGER NOT NULL REFERENCES links (seq) ON DELETE CASCADE,
    PRIMARY KEY (tag, link_seq)
) WITHOUT ROWID;
CREATE INDEX link_tags_by_link ON link_tags (link_seq);

-- The change feed: the link's state after the change (JSON of sluice_schemas::Link), or
-- NULL for a delete.
CREATE TABLE link_changes (
    change_seq INTEGER PRIMARY KEY,
    code       TEXT NOT NULL,
    link       TEXT
);

CREATE TABLE idempotency (
    key           TEXT    PRIMARY KEY,
    request_hash  TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    created_at_us INTEGER NOT NULL
);
CREATE INDEX idempotency_by_created ON idempotency (created_at_us);
