-- Admin controls, SQLite flavour. Keep in step with ../postgres/0002_admin.sql.
-- Timestamps are INTEGER microseconds since the Unix epoch, UTC.

-- Destination domains the abuse team blocked at run time (the static `[links] blocklist` of
-- the configuration is separate). `pattern` is normalized: lowercase ASCII (punycode), no
-- trailing dot, no port; it covers the domain and all its subdomains.
CREATE TABLE blocklist (
    pattern       TEXT    PRIMARY KEY,
    reason        TEXT,
    actor         TEXT    NOT NULL,
    created_at_us INTEGER NOT NULL
);

-- Why a link is administratively disabled: one row per (link, source), source "admin" (an
-- explicit disable) or "blocklist:<pattern>". While a link has a hold its `enabled` is 0;
-- `was_enabled` is the owner's own value before the first hold (every hold of a link carries
-- the same value), restored when the last hold goes. Keyed by the link's `seq`, so a code
-- reused after its tombstone period starts clean.
CREATE TABLE link_holds (
    link_seq      INTEGER NOT NULL,
    source        TEXT    NOT NULL,
    reason        TEXT,
    actor         TEXT    NOT NULL,
    was_enabled   INTEGER NOT NULL CHECK (was_enabled IN (0, 1)),
    created_at_us INTEGER NOT NULL,
    PRIMARY KEY (link_seq, source)
);
CREATE INDEX link_holds_by_source ON link_holds (source);

-- The audit log: append-only (the triggers refuse UPDATE and DELETE).
CREATE TABLE admin_audit (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us     INTEGER NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    target    TEXT    NOT NULL,
    reason    TEXT,
    origin_ip TEXT,
    details   TEXT    NOT NULL  -- JSON object
);
CREATE INDEX admin_audit_by_at ON admin_audit (at_us);
CREATE TRIGGER admin_audit_no_update BEFORE UPDATE ON admin_audit
BEGIN
    SELECT RAISE(ABORT, 'admin_audit is append-only');
END;
CREATE TRIGGER admin_audit_no_delete BEFORE DELETE ON admin_audit
BEGIN
    SELECT RAISE(ABORT, 'admin_audit is append-only');
END;
