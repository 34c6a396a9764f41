-- Link store schema, PostgreSQL flavour. Keep in step with ../sqlite/0001_link_store.sql:
-- both backends must behave identically (one behavioural test suite runs against both).
-- Timestamps are timestamptz (microsecond resolution); the store truncates to microseconds
-- before writing, so values round-trip exactly.

-- Single-row counter. Every write (insert, update, delete) increments it inside its
-- transaction; the row lock serializes writers, so change numbers are gapless and ordered by
-- commit, and a reader paging by number never skips a row that commits later.
CREATE TABLE change_counter (
    id   SMALLINT PRIMARY KEY CHECK (id = 1),
    last BIGINT   NOT NULL
);
INSERT INTO change_counter (id, last) VALUES (1, 0);

-- One row per code. A deleted link keeps its row (deleted_at set) as the tombstone that
-- blocks reuse of the code for 30 days; the unique index on code therefore decides
-- atomically between live links, recent tombstones and concurrent inserts.
CREATE TABLE links (
    seq           BIGINT      PRIMARY KEY,  -- change number of the creating insert; keyset for listing
    code          TEXT        NOT NULL UNIQUE,
    long_url      TEXT        NOT NULL,
    domain        TEXT,
    expires_at    TIMESTAMPTZ,
    enabled       BOOLEAN     NOT NULL,
    tags          TEXT[]      NOT NULL,     -- order preserved; exact membership via @>
    redirect_type SMALLINT    NOT NULL CHECK (redirect_type IN (301, 302)),
    org           TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    version       BIGINT      NOT NULL,
    deleted_at    TIMESTAMPTZ
);
CREATE INDEX links_tags ON links USING GIN (tags);

-- The change feed: the link's state after the change (JSON of sluice_schemas::Link), or
-- NULL for a delete.
CREATE TABLE link_changes (
    change_seq BIGINT PRIMARY KEY,
    code       TEXT   NOT NULL,
    link       TEXT
);

CREATE TABLE idempotency (
    key          TEXT        PRIMARY KEY,
    request_hash TEXT        NOT NULL,
    status       INTEGER     NOT NULL,
    body         TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX idempotency_by_created ON idempotency (created_at);
