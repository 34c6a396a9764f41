-- Store identity and retired codes, PostgreSQL flavour. Keep in step with
-- ../sqlite/0003_store_meta.sql (the comments there describe every table).

CREATE TABLE store_meta (
    key   TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
-- 64 random bits of a version-4 UUID (its first 16 hex digits).
INSERT INTO store_meta (key, value) VALUES ('store_id', ('x' || translate(left(gen_random_uuid()::text, 18), '-', ''))::bit(64)::bigint);

CREATE TABLE retired_codes (
    code TEXT PRIMARY KEY
);
