"""Unit tests of the SQL routing helpers (no server)."""

from __future__ import annotations

import pytest

from chdb_http import sql
from chdb_http.errors import ClickHouseError


@pytest.mark.parametrize(("text", "head", "settings", "fmt", "data"), [
    (b"INSERT INTO t FORMAT RowBinary\n\x00\x01", "INSERT INTO t", "", "RowBinary", b"\x00\x01"),
    # only the first newline of the whitespace run ends the SQL: data may start with whitespace
    (b"INSERT INTO t FORMAT RowBinary\n\n \x01", "INSERT INTO t", "", "RowBinary", b"\n \x01"),
    # without a newline, the whole whitespace run is skipped
    (b"INSERT INTO t FORMAT CSV   1,2", "INSERT INTO t", "", "CSV", b"1,2"),
    (b"INSERT INTO t FORMAT CSV", "INSERT INTO t", "", "CSV", b""),
    (b"/* c */ insert into `db`.`t`(`a`,`format`) settings async_insert = 0 format JSONEachRow\n{}",
     "/* c */ insert into `db`.`t`(`a`,`format`)", "settings async_insert = 0", "JSONEachRow", b"{}"),
    ("INSERT INTO t FORMAT TSV\nñ\t1".encode(), "INSERT INTO t", "", "TSV", "ñ\t1".encode()),
    (b"INSERT INTO t (s) FORMAT RowBinary\n\xff\xfe", "INSERT INTO t (s)", "", "RowBinary", b"\xff\xfe"),
])
def test_split_insert(text, head, settings, fmt, data):
    found = sql.split_insert(text)
    assert found is not None
    assert (found.head, found.settings, found.format, text[found.data_offset:]) == (head, settings, fmt, data)


@pytest.mark.parametrize("text", [
    b"SELECT 1 FORMAT RowBinary",
    b"INSERT INTO t VALUES (1, 'FORMAT x')",
    b"INSERT INTO t SELECT * FROM s",
    b"INSERT INTO t (a) VALUES",
    b"WITH 1 AS x SELECT x",
])
def test_split_insert_leaves_sql_alone(text):
    assert sql.split_insert(text) is None


def test_split_insert_errors():
    with pytest.raises(ClickHouseError) as err:
        sql.split_insert(b"INSERT INTO t FORMAT ;")
    assert err.value.code == 62


@pytest.mark.parametrize("text", [
    "SELECT 1", "SELECT 1;", "SELECT 1; ", "SELECT ';'", "SELECT 1 -- ; SELECT 2", "SELECT 1 /* ; SELECT 2 */",
    "SELECT `a;b` FROM t", "SELECT $$;$$", "SELECT 'it\\'s;'", "SELECT 'it''s;'",
])
def test_single_statements(text):
    sql.check_single_statement(text)


@pytest.mark.parametrize("text", ["SELECT 1; SELECT 2", "SELECT 1;;", "CREATE TABLE a (x UInt8) ENGINE = Memory; DROP TABLE a"])
def test_multi_statements_are_refused(text):
    with pytest.raises(ClickHouseError) as err:
        sql.check_single_statement(text)
    assert err.value.code == 62 and "Multi-statements are not allowed" in err.value.message


@pytest.mark.parametrize(("text", "fmt"), [
    ("SELECT 1", None),
    ("SELECT 1 FORMAT JSON", "JSON"),
    ("SELECT 1 FORMAT JSON;", "JSON"),
    ("SELECT 1 FORMAT JSON SETTINGS max_threads = 1", "JSON"),
    ("SELECT format FROM t", None),
    ("SELECT 'FORMAT JSON'", None),
    ("SELECT (SELECT 1 FORMAT CSV)", None),
])
def test_output_format(text, fmt):
    assert sql.output_format(text) == fmt


def test_quoting():
    assert sql.quote_string("a'b\\c") == "'a\\'b\\\\c'"
    assert sql.quote_identifier("we`ird") == "`we\\`ird`"
    assert sql.is_identifier("max_threads") and not sql.is_identifier("1x") and not sql.is_identifier("a-b")
