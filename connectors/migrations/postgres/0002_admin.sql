-- Admin controls, PostgreSQL flavour. Keep in step with ../sqlite/0002_admin.sql (the
-- comments there describe every table).

CREATE TABLE blocklist (
    pattern    TEXT        PRIMARY KEY,
    reason     TEXT,
    actor      TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE link_holds (
    link_seq    BIGINT      NOT NULL,
    source      TEXT        NOT NULL,
    reason      TEXT,
    actor       TEXT        NOT NULL,
    was_enabled BOOLEAN     NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (link_seq, source)
);
CREATE INDEX link_holds_by_source ON link_holds (source);

-- Append-only. Writers hold the change_counter row lock while appending, so `seq` order is
-- commit order and a reader paging by `seq` never skips a row that commits late.
CREATE TABLE admin_audit (
    seq       BIGSERIAL   PRIMARY KEY,
    at        TIMESTAMPTZ NOT NULL,
    actor     TEXT        NOT NULL,
    action    TEXT        NOT NULL,
    target    TEXT        NOT NULL,
    reason    TEXT,
    origin_ip TEXT,
    details   TEXT        NOT NULL  -- JSON object
);
CREATE INDEX admin_audit_by_at ON admin_audit (at);

CREATE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit is append-only';
END
$$;
CREATE TRIGGER admin_audit_append_only BEFORE UPDATE OR DELETE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only();
