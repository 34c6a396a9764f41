"""The HTTP interface: endpoints, parameters, auth, errors, multipart, sessions."""

from __future__ import annotations

import base64
import re
import socket
import threading

from helpers import AUTH, PASSWORD, multipart

ERROR_RE = r"Code: {code}\. DB::Exception: .*\({name}\) \(version \d+(\.\d+)+ \(chdb\)\)\n\Z"


def assert_error(resp, status: int, code: int, name: str) -> None:
    assert resp.status == status, (resp.status, resp.body)
    assert resp.header("X-ClickHouse-Exception-Code") == str(code)
    assert re.match(ERROR_RE.format(code=code, name=name), resp.body.decode(), re.S), resp.body


def test_ping_and_root(server):
    for path in ("/ping", "/"):
        resp = server.get(path)
        assert (resp.status, resp.body) == (200, b"Ok.\n")
    resp = server.get("/nope")
    assert resp.status == 404


def test_authentication_methods(server):
    sql = b"SELECT 1"
    assert server.request("POST", body=sql, headers=AUTH).body == b"1\n"
    basic = base64.b64encode(f"default:{PASSWORD}".encode()).decode()
    assert server.request("POST", body=sql, headers={"Authorization": f"Basic {basic}"}).body == b"1\n"
    assert server.request("POST", params={"user": "default", "password": PASSWORD}, body=sql).body == b"1\n"
    assert_error(server.request("POST", body=sql), 403, 516, "AUTHENTICATION_FAILED")
    wrong = server.request("POST", body=sql, headers={"X-ClickHouse-User": "bob", "X-ClickHouse-Key": PASSWORD})
    assert_error(wrong, 403, 516, "AUTHENTICATION_FAILED")
    assert wrong.body.startswith(b"Code: 516. DB::Exception: bob: Authentication failed")


def test_query_sources_and_formats(server):
    assert server.get("/", params={"query": "SELECT 1+1"}, headers=AUTH).body == b"2\n"
    assert server.ok("SELECT 'a' AS x, 2 AS y") == b"a\t2\n"
    # query parameter and body are joined by a newline, as ClickHouse reads them
    assert server.ok("42 AS answer", params={"query": "SELECT"}) == b"42\n"
    resp = server.post("SELECT 1 AS a", params={"default_format": "JSONEachRow"})
    assert (resp.body, resp.header("X-ClickHouse-Format")) == (b'{"a":1}\n', "JSONEachRow")
    assert resp.header("Content-Type") == "application/json; charset=UTF-8"
    # a FORMAT clause wins over default_format
    resp = server.post("SELECT 1 AS a FORMAT CSVWithNames", params={"default_format": "JSONEachRow"})
    assert (resp.body, resp.header("X-ClickHouse-Format")) == (b'"a"\n1\n', "CSVWithNames")
    resp = server.post("SELECT toUInt8(7) AS n", params={"default_format": "RowBinaryWithNamesAndTypes"})
    assert resp.body == b"\x01\x01n\x05UInt8\x07"
    assert resp.header("Content-Type") == "application/octet-stream"
    assert server.post("SELECT 1", headers={"X-ClickHouse-Format": "JSONCompactEachRow"}).body == b"[1]\n"
    resp = server.post("SELECT 1", params={"query_id": "my-query-1"})
    assert resp.header("X-ClickHouse-Query-Id") == "my-query-1"
    assert resp.header("X-ClickHouse-Timezone")
    assert server.post("SELECT 1", params={"default_format": "DataFrame"}).status == 404


def test_errors(server):
    assert_error(server.post("SELECT * FROM nope_table"), 404, 60, "UNKNOWN_TABLE")
    assert_error(server.post("SELEC 1"), 400, 62, "SYNTAX_ERROR")
    assert_error(server.post("SELECT 1; SELECT 2"), 400, 62, "SYNTAX_ERROR")
    assert server.ok("SELECT 1;") == b"1\n"  # a trailing ';' is one statement
    assert server.ok("SELECT ';' AS s -- ; SELECT 2") == b";\n"
    assert_error(server.post(""), 400, 62, "SYNTAX_ERROR")
    assert_error(server.post("SELECT 1", params={"no_such_setting": "1"}), 404, 115, "UNKNOWN_SETTING")
    assert_error(server.post("SELECT 1", params={"max_threads": "many"}), 400, 27,
                 "CANNOT_PARSE_INPUT_ASSERTION_FAILED")
    assert_error(server.post("SELECT 1", params={"database": "no_such_db"}), 404, 81, "UNKNOWN_DATABASE")
    get = server.get("/", params={"query": "CREATE TABLE ro_t (a UInt8) ENGINE = Memory"}, headers=AUTH)
    assert_error(get, 500, 164, "READONLY")
    assert b"method GET implies readonly" in get.body
    assert_error(server.post("SELECT {x:UInt8}"), 500, 456, "UNKNOWN_QUERY_PARAMETER")


def test_post_without_length_is_411(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-ClickHouse-Key: " + PASSWORD.encode() + b"\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
    head = data.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 411")
    assert "X-ClickHouse-Exception-Code: 381" in head


def test_settings_pass_through_and_ignored_params(server):
    params = {"max_threads": "1", "wait_end_of_query": "1", "send_progress_in_http_headers": "1",
              "buffer_size": "1048576", "role": "reader", "client_protocol_version": "0"}
    assert server.ok("SELECT getSetting('max_threads')", params=params) == b"1\n"
    # settings are per request: the next request has the default again
    assert server.ok("SELECT getSetting('max_threads') = 1") == b"0\n"
    assert server.ok("SELECT getSetting('insert_deduplication_token')",
                     params={"insert_deduplication_token": "it's"}) == b"it\\'s\n"
    # chdb's implicit_select is off, as on a server: a bare expression is a syntax error
    assert server.post("1 + 1").status == 400


def test_database_param_and_header(server, db):
    server.ok("CREATE TABLE t (a UInt8) ENGINE = Memory", params={"database": db})
    server.ok("INSERT INTO t VALUES (5)", params={"database": db})
    assert server.ok("SELECT a, currentDatabase() FROM t", params={"database": db}) == f"5\t{db}\n".encode()
    assert server.post("SELECT a FROM t", headers={"X-ClickHouse-Database": db}).body == b"5\n"
    assert server.post("SELECT currentDatabase()").body == b"default\n"


def test_query_parameters(server):
    params = {
        "param_s": "it\\'s a\\\\b\\tc",  # escaped text form, as the crate sends it
        "param_a": "['x','y\\'z']",
        "param_n": "\\N",
        "param_t": "2024-01-02 03:04:05.678",
    }
    body = server.ok("SELECT {s:String}, length({s:String}), {a:Array(String)}, {n:Nullable(Int32)}, "
                     "toUnixTimestamp64Milli({t:DateTime64(3)})", params=params)
    assert body == b"it\\'s a\\\\b\\tc\t10\t['x','y\\'z']\t\\N\t1704164645678\n"
    assert server.ok("SELECT count() FROM {tbl:Identifier}", params={"param_tbl": "one"},
                     headers={"X-ClickHouse-Database": "system"}) == b"1\n"
    assert server.post("SELECT 1", params={"param_a-b": "1"}).status == 400


def test_multipart_params_like_the_crate(server):
    body, ctype = multipart([("query", "SELECT {a:String} AS a, {b:UInt32} + 1 AS b"),
                             ("param_a", "x\\'y"), ("param_b", "41")])
    resp = server.post(body, headers={"Content-Type": ctype})
    assert (resp.status, resp.body) == (200, b"x\\'y\t42\n")
    # URL parameters still apply alongside form fields
    resp = server.post(body, params={"default_format": "JSONEachRow"}, headers={"Content-Type": ctype})
    assert resp.body == b'{"a":"x\'y","b":42}\n'
    file_part = (b"--B\r\nContent-Disposition: form-data; name=\"t\"; filename=\"t.tsv\"\r\n\r\n1\r\n--B--\r\n")
    assert_error(server.post(file_part, headers={"Content-Type": "multipart/form-data; boundary=B"}),
                 501, 48, "NOT_IMPLEMENTED")
    unterminated = b"--B\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\nSELECT 1\r\n"
    assert_error(server.post(unterminated, headers={"Content-Type": "multipart/form-data; boundary=B"}),
                 400, 36, "BAD_ARGUMENTS")


def test_keep_alive_across_errors(server):
    conn = server.connection()
    try:
        assert server.request("POST", body=b"SELECT 1", headers=AUTH, conn=conn).body == b"1\n"
        assert server.request("POST", body=b"SELECT * FROM nope", headers=AUTH, conn=conn).status == 404
        assert server.request("POST", body=b"SELECT 2", headers=AUTH, conn=conn, chunk_size=3).body == b"2\n"
    finally:
        conn.close()


def test_http_sessions(server):
    sid = {"session_id": "s-1"}
    server.ok("CREATE TEMPORARY TABLE tmp (i Int32)", params=sid)
    server.ok("INSERT INTO tmp VALUES (42)", params=sid)
    assert server.ok("SELECT i FROM tmp", params={**sid, "session_check": "1"}) == b"42\n"
    server.ok("SET max_threads = 1", params=sid)
    assert server.ok("SELECT getSetting('max_threads')", params=sid) == b"1\n"
    assert_error(server.post("SELECT 1", params={"session_id": "unknown", "session_check": "1"}),
                 500, 372, "SESSION_NOT_FOUND")
    assert_error(server.post("SELECT 1", params={"session_id": "s-2", "session_timeout": "100000"}),
                 500, 374, "INVALID_SESSION_TIMEOUT")
    # without session_id, the temporary table is not visible
    assert server.post("SELECT i FROM tmp").status == 404
    # close_session drops it
    server.ok("SELECT 1", params={**sid, "close_session": "1"})
    assert server.post("SELECT 1", params={**sid, "session_check": "1"}).status == 500


def test_session_is_locked_while_in_use(server):
    sid = {"session_id": "s-lock"}
    server.ok("SELECT 1", params=sid)
    results = {}

    def slow():
        results["slow"] = server.post("SELECT sleep(2)", params=sid).status

    thread = threading.Thread(target=slow)
    thread.start()
    threading.Event().wait(0.5)  # let the 2-second query take the session first
    for _ in range(100):
        resp = server.post("SELECT 1", params=sid)
        if resp.status != 200:
            break
        threading.Event().wait(0.02)
    thread.join()
    assert results["slow"] == 200
    assert_error(resp, 500, 373, "SESSION_IS_LOCKED")


def test_concurrent_requests(server, db):
    server.ok("CREATE TABLE c (k UInt64) ENGINE = MergeTree ORDER BY k", params={"database": db})
    errors = []

    def worker(w):
        for i in range(15):
            got = server.post(f"SELECT sum(number) FROM numbers({w * 1000 + i})").body
            n = w * 1000 + i
            if got != f"{n * (n - 1) // 2}\n".encode():
                errors.append((w, i, got))
            ins = server.post(f"INSERT INTO c SELECT {w * 100 + i}", params={"database": db})
            if ins.status != 200:
                errors.append((w, i, ins.body))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert server.ok("SELECT count(), sum(k) FROM c", params={"database": db}) == \
        f"{8 * 15}\t{sum(w * 100 + i for w in range(8) for i in range(15))}\n".encode()
