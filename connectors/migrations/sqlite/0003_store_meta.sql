-- Store identity and retired codes, SQLite flavour. Keep in step with ../postgres/0003_store_meta.sql.

-- Facts about this store. `store_id`: a random 64-bit id created once, with the store (or
-- when an older store is migrated). `sluice serve` records it in the click log; a click log
-- recording another id was written next to a store that has since been lost.
CREATE TABLE store_meta (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO store_meta (key, value) VALUES ('store_id', random());

-- Codes that must never be given to a new link: the codes of a lost store's links, whose
-- clicks are still in the click log (a new link with one of them would inherit them).
CREATE TABLE retired_codes (
    code TEXT PRIMARY KEY
);
