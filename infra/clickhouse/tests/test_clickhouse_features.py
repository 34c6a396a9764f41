"""The ClickHouse features Sluice's tables need, exercised through the HTTP interface."""

from __future__ import annotations

from helpers import rb_string, u64


def q(server, db, sql, **params):
    return server.ok(sql, params={"database": db, **params})


def test_replacing_merge_tree_with_version_and_final(server, db):
    q(server, db, "CREATE TABLE r (code String, bucket DateTime64(3), clicks UInt64, version UInt64) "
                  "ENGINE = ReplacingMergeTree(version) ORDER BY (code, bucket)")
    for version in (1, 3, 2):  # out of order: the highest version wins, not the last insert
        q(server, db, f"INSERT INTO r VALUES ('a', '2024-01-01 00:00:00.000', {version * 10}, {version}), "
                      f"('b', '2024-01-01 00:00:00.000', {version}, {version})")
    assert q(server, db, "SELECT count() FROM r") == b"6\n"  # three parts, not merged yet
    assert q(server, db, "SELECT code, clicks, version FROM r FINAL ORDER BY code") == b"a\t30\t3\nb\t3\t3\n"
    q(server, db, "OPTIMIZE TABLE r FINAL")
    assert q(server, db, "SELECT code, clicks FROM r ORDER BY code") == b"a\t30\nb\t3\n"


def test_aggregate_function_uniq_combined_states(server, db):
    q(server, db, "CREATE TABLE u (code String, users AggregateFunction(uniqCombined, UInt64)) "
                  "ENGINE = AggregatingMergeTree ORDER BY code")
    # two overlapping batches: ids 0..59 and 40..99 -> 100 distinct for 'x'
    q(server, db, "INSERT INTO u SELECT 'x', uniqCombinedState(number) FROM numbers(60)")
    q(server, db, "INSERT INTO u SELECT 'x', uniqCombinedState(number + 40) FROM numbers(60)")
    assert q(server, db, "SELECT uniqCombinedMerge(users) FROM u WHERE code = 'x'") == b"100\n"
    # states travel as String (hex) and are rebuilt with CAST, for sinks that store sketches as bytes
    hex_state = q(server, db, "SELECT hex(toString(uniqCombinedState(number))) FROM numbers(25)").strip().decode()
    q(server, db, "CREATE TABLE s (code String, sketch String) ENGINE = MergeTree ORDER BY code")
    q(server, db, f"INSERT INTO s VALUES ('y', unhex('{hex_state}'))")
    assert q(server, db, "SELECT finalizeAggregation(CAST(sketch, 'AggregateFunction(uniqCombined, UInt64)')) "
                         "FROM s") == b"25\n"


def test_low_cardinality_and_datetime64_round_trip(server, db):
    q(server, db, "CREATE TABLE l (country LowCardinality(String), ts DateTime64(3)) ENGINE = MergeTree ORDER BY ts")
    rows = [("US", 1_700_000_000_123), ("", 0), ("DE", -1), ("ünï", 4_102_444_800_000)]
    data = b"".join(rb_string(c) + ts.to_bytes(8, "little", signed=True) for c, ts in rows)
    server.ok(data, params={"database": db, "query": "INSERT INTO l FORMAT RowBinary"})
    got = q(server, db, "SELECT country, ts FROM l ORDER BY ts", default_format="RowBinary")
    assert got == b"".join(rb_string(c) + ts.to_bytes(8, "little", signed=True) for c, ts in sorted(rows, key=lambda r: r[1]))
    assert q(server, db, "SELECT toTypeName(country), toTypeName(ts) FROM l LIMIT 1") == \
        b"LowCardinality(String)\tDateTime64(3)\n"
    assert q(server, db, "SELECT toString(ts) FROM l WHERE country = 'US'") == b"2023-11-14 22:13:20.123\n"


def test_insert_deduplication(server, db):
    window = "SETTINGS non_replicated_deduplication_window = 100"
    q(server, db, f"CREATE TABLE d (k UInt64) ENGINE = MergeTree ORDER BY k {window}")
    q(server, db, "CREATE TABLE nd (k UInt64) ENGINE = MergeTree ORDER BY k")
    insert = lambda table, data, **settings: server.ok(  # noqa: E731
        data, params={"database": db, "query": f"INSERT INTO {table} FORMAT RowBinary", **settings})
    for table in ("d", "nd"):
        # same token, different data: the second is a replay of the first
        insert(table, u64(1), insert_deduplication_token="batch-1")
        insert(table, u64(2), insert_deduplication_token="batch-1")
        # no token, identical blocks: deduplicated by content hash
        insert(table, u64(3) + u64(4))
        insert(table, u64(3) + u64(4))
    assert q(server, db, "SELECT groupArray(k) FROM (SELECT k FROM d ORDER BY k)") == b"[1,3,4]\n"
    assert q(server, db, "SELECT groupArray(k) FROM (SELECT k FROM nd ORDER BY k)") == b"[1,2,3,3,4,4]\n"
    # since 26.2 `deduplicate_insert` (default 'enable') supersedes insert_deduplicate = 0
    insert("d", u64(1), insert_deduplication_token="batch-1", insert_deduplicate="0")
    assert q(server, db, "SELECT count() FROM d WHERE k = 1") == b"1\n"
    insert("d", u64(1), insert_deduplication_token="batch-1", deduplicate_insert="disable")
    assert q(server, db, "SELECT count() FROM d WHERE k = 1") == b"2\n"


def test_aggregate_function_in_rowbinary_is_raw_state(server, db):
    # RowBinary carries AggregateFunction values as the raw state, without a length prefix:
    # a client must read them as the known state size or cast them to String in SQL.
    raw = q(server, db, "SELECT uniqCombinedState(toUInt64(7))", default_format="RowBinary")
    as_string = q(server, db, "SELECT toString(uniqCombinedState(toUInt64(7)))", default_format="RowBinary")
    assert as_string == bytes([len(raw)]) + raw
