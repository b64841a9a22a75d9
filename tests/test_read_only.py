"""A model only reads: hidden statements, file reads and keyword-named columns, engine by engine.

Each trick here once walked past a hand-written lexer. The checks look at the files and
databases themselves: nothing written, attached, dropped or installed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from support import Warehouse, sync_file_text

from amp_sync.cli import main
from amp_sync.errors import WarehouseError
from amp_sync.readonly import check_read_only
from amp_sync.warehouse import create_engine, execute_read_only, sample

USERS = "select user_id, plan, ltv from users"

# Ways to hide a second statement from a lexer that does not read SQL as the engine does.
DUCKDB_TRICKS = {
    "a -- comment ended by a carriage return": USERS + " -- note\r; {payload}",
    "a list literal holding ]": "select ['x]' ] as l, user_id, plan, ltv from users; {payload}",
    "an escape string E'\\''": "select E'\\'' as q, user_id, plan, ltv from users; {payload}",
    "a dollar quote whose tag holds a digit": "select $a1$ ; $a1$ as q, user_id, plan from users; {payload}",
    "a nested block comment": "select /* a /* b */ c */ user_id, plan, ltv from users; {payload}",
    "a semicolon in a quoted name": 'select 1 as "x;y", user_id, plan, ltv from users; {payload}',
    "a no-break space before the payload": USERS + ";\u00a0{payload}",
}


def duckdb_file(path: Path, sql: str) -> str:
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()
    return f"duckdb:///{path}"


@pytest.fixture
def users_duckdb(tmp_path: Path) -> str:
    return duckdb_file(
        tmp_path / "warehouse.duckdb",
        "create table users as select * from (values ('alice-001', 'pro', 10), ('bobby-002', 'free', 0)) "
        "t(user_id, plan, ltv)",
    )


def sync_file(tmp_path: Path, url: str, endpoint: str, sql: str, source_extra: str = "") -> Path:
    text = sync_file_text(url, endpoint, sql="MODEL_SQL").replace('"""MODEL_SQL"""', json.dumps(sql))
    text = text.replace("[destination]", f"{source_extra}\n[destination]", 1)
    path = tmp_path / "sync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def preview(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["preview", str(path)])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out + out.err


@pytest.mark.parametrize("trick", DUCKDB_TRICKS)
def test_duckdb_hidden_copy_writes_no_file(trick, users_duckdb, tmp_path, sandbox, home, capsys) -> None:
    stolen = tmp_path / "stolen.csv"
    sql = DUCKDB_TRICKS[trick].format(payload=f"COPY users TO '{stolen}'")
    code, said = preview(sync_file(tmp_path, users_duckdb, sandbox.url, sql), capsys)
    assert code == 2 and ("statements" in said or "Parser Error" in said)
    assert not stolen.exists()
    assert sandbox.store.requests() == []


@pytest.mark.parametrize("trick", DUCKDB_TRICKS)
def test_duckdb_hidden_attach_drops_nothing_elsewhere(
    trick, users_duckdb, tmp_path, sandbox, home, capsys
) -> None:
    other = tmp_path / "other.duckdb"
    duckdb_file(other, "create table keep as select 1 as x")
    payload = f"ATTACH '{other}' AS o (READ_WRITE); DROP TABLE o.keep"
    code, _ = preview(
        sync_file(tmp_path, users_duckdb, sandbox.url, DUCKDB_TRICKS[trick].format(payload=payload)), capsys
    )
    assert code == 2
    with duckdb.connect(str(other), read_only=True) as con:
        assert con.execute("select x from keep").fetchall() == [(1,)]


def httpfs_installed() -> bool:
    with duckdb.connect(":memory:") as con:
        row = con.execute("select installed from duckdb_extensions() where extension_name = 'httpfs'")
        return bool(row.fetchone()[0])


@pytest.mark.parametrize("trick", DUCKDB_TRICKS)
def test_duckdb_hidden_install_installs_nothing(trick, users_duckdb, tmp_path, sandbox, home, capsys) -> None:
    before = httpfs_installed()
    code, said = preview(
        sync_file(tmp_path, users_duckdb, sandbox.url, DUCKDB_TRICKS[trick].format(payload="INSTALL httpfs")),
        capsys,
    )
    assert code == 2 and "amp-sync:" in said
    assert httpfs_installed() == before


SQLITE_TRICKS = {
    "a -- comment ended by a carriage return": USERS + " -- note\r; {payload}",
    "a semicolon in a string": "select 'a;b' as s, user_id, plan, ltv from users; {payload}",
    "a semicolon in a quoted name": 'select 1 as "x;y", user_id, plan, ltv from users; {payload}',
    "a block comment holding a semicolon": "select /* ; */ user_id, plan, ltv from users; {payload}",
    "a no-break space before the payload": USERS + ";\u00a0{payload}",
}


@pytest.fixture
def users_sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("create table users (user_id text, plan text, ltv integer)")
        db.execute("insert into users values ('alice-001', 'pro', 10), ('bobby-002', 'free', 0)")
        db.commit()
    return path


@pytest.mark.parametrize(
    "payload", ["ATTACH '{tmp}/attached.db' AS a", "DELETE FROM users", "DROP TABLE users"]
)
@pytest.mark.parametrize("trick", SQLITE_TRICKS)
def test_sqlite_hidden_statements_attach_and_delete_nothing(
    trick, payload, users_sqlite, tmp_path, sandbox, home, capsys
) -> None:
    sql = SQLITE_TRICKS[trick].format(payload=payload.format(tmp=tmp_path))
    code, said = preview(sync_file(tmp_path, f"sqlite:///{users_sqlite}", sandbox.url, sql), capsys)
    if "carriage return" in trick:  # SQLite ends a -- comment at a newline only: one honest query
        assert code == 0 and "2 rows read" in said
    else:
        assert code == 2 and "statements" in said
    assert not (tmp_path / "attached.db").exists()
    with contextlib.closing(sqlite3.connect(users_sqlite)) as db:
        assert db.execute("select count(*) from users").fetchone() == (2,)


def test_an_in_memory_duckdb_cannot_attach_the_warehouse_and_delete_its_rows(
    users_duckdb, tmp_path, sandbox, home, capsys
) -> None:
    path = users_duckdb.removeprefix("duckdb:///")
    sql = (
        "select 'alice-001' as user_id, 'pro' as plan, 1 as ltv -- \r; "
        f"ATTACH '{path}' AS w; COMMIT; DELETE FROM w.users"
    )
    code, _ = preview(sync_file(tmp_path, "duckdb:///:memory:", sandbox.url, sql), capsys)
    assert code == 2
    with duckdb.connect(path, read_only=True) as con:
        assert con.execute("select count(*) from users").fetchone() == (2,)


@pytest.mark.parametrize(
    "statement",
    [
        "COPY users TO '{tmp}/out.csv'",
        "ATTACH '{tmp}/new.duckdb' AS n",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM read_csv('{tmp}/data.csv')",
        "SELECT * FROM glob('{tmp}/*')",
        "EXPORT DATABASE '{tmp}/export'",
    ],
)
@pytest.mark.parametrize("memory", [False, True], ids=["file", "memory"])
def test_the_duckdb_connection_itself_refuses_files_attach_and_extensions(
    statement, memory, users_duckdb, tmp_path
) -> None:
    """Defence in depth: even a statement that got past the parser finds the engine locked."""
    (tmp_path / "data.csv").write_text("a\n1\n")
    engine = create_engine("duckdb:///:memory:" if memory else users_duckdb)
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError):
            conn.exec_driver_sql(statement.format(tmp=tmp_path))
    finally:
        engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "warehouse.duckdb"]


# The parsers of every other engine: the same tricks, read with each dialect's grammar.
ACCEPTED = [
    ("postgresql", "select 'a;b' as s, \"c;d\" from t"),
    ("postgresql", "select $a1$ ; delete from t $a1$ as s"),
    ("postgresql", "select E'\\'' as q -- ; delete from t"),
    ("postgresql", "/* a /* nested; delete from t */ still a comment */ select 1"),
    ("postgresql", "select 1\u00a0as\u2003x"),
    ("postgresql", "select 1 as load, 2 as import, 3 as call, 4 as copy, 5 as set, 6 as attach"),
    ("postgresql", "values (1, 'a'), (2, 'b')"),
    ("postgresql", "table users"),
    ("postgresql", "(select 1) union all (select 2) order by 1"),
    ("postgresql", "with x as (select 1 as a) select * from x"),
    ("sqlite", "select load, import, call, pragma from t"),
    ("sqlite", "select 'x; drop table t' as s"),
    ("mysql", "select `a;b`, 'it\\'s' from t"),
    ("bigquery", "select 'it\\'s; delete from t' as s"),
    ("snowflake", "select $$ ; delete from t $$ as s"),
    ("redshift", "select 1 as copy"),
    ("databricks", "select `x;y` from t"),
    ("trino", 'select 1 as "call"'),
    ("mssql", "select top 1 [a;b] from t"),
]


@pytest.mark.parametrize(("backend", "sql"), ACCEPTED)
def test_honest_models_are_accepted(backend: str, sql: str) -> None:
    assert check_read_only(sql, backend).sql


REFUSED = [
    ("postgresql", "select 1; delete from t", "2 statements"),
    ("postgresql", "select 1 -- note\r; delete from t", "2 statements"),
    ("postgresql", "select E'\\''; delete from t", "2 statements"),
    ("postgresql", "select $a1$x$a1$; delete from t", "2 statements"),
    ("postgresql", "select 1;\u00a0delete from t", "2 statements"),
    ("postgresql", "with d as (delete from t returning *) select * from d", "contains DELETE"),
    ("postgresql", "with i as (insert into t values (1) returning *) select * from i", "contains INSERT"),
    ("postgresql", "select * into backup from t", "contains INTO"),
    ("postgresql", "select * from t for update", "locks rows"),
    ("postgresql", "explain analyze delete from t", "not EXPLAIN"),
    ("postgresql", "copy t to '/tmp/x'", "not COPY"),
    ("postgresql", "set search_path = evil", "not SET"),
    ("postgresql", "select lo_export(1, '/tmp/x')", "lo_export"),
    ("postgresql", "select pg_read_file('/etc/passwd')", "pg_read_file"),
    ("postgresql", "select set_config('transaction_read_only', 'off', true)", "set_config"),
    ("postgresql", "select (", "cannot parse the model as postgres"),
    ("postgresql", "", "empty"),
    ("postgresql", "-- only a comment", "empty"),
    ("sqlite", "pragma writable_schema = 1", "not PRAGMA"),
    ("sqlite", "attach 'x.db' as x", "not ATTACH"),
    ("sqlite", "select load_extension('evil')", "load_extension"),
    ("mysql", "select 'it\\'s'; drop table t", "2 statements"),
    ("mysql", "select load_file('/etc/passwd')", "load_file"),
    ("bigquery", "select 'it\\'s'; delete from t where true", "2 statements"),
    ("bigquery", "select 'a\\\\'; delete from t where true; select '1'", "3 statements"),
    ("snowflake", "select 1; call system$wait(1)", "2 statements"),
    ("snowflake", "create table t2 as select 1", "not CREATE"),
    ("trino", "insert into t select 1", "not INSERT"),
    ("duckdb", "pragma version", "not PRAGMA"),
    ("duckdb", "call pragma_version()", "not CALL"),
    ("duckdb", "export database 'x'", "not EXPORT"),
    ("duckdb", "install httpfs", "not INSTALL"),
    ("duckdb", "load httpfs", "not LOAD"),
    ("duckdb", "set enable_external_access = true", "not SET"),
    ("duckdb", "with d as (delete from t returning *) select * from d", "contains DELETE"),
    ("duckdb", "select 1 from", "refused the model: Parser Error"),
    ("nosuchdb", "select 1", "cannot read nosuchdb SQL"),
]


@pytest.mark.parametrize(("backend", "sql", "words"), REFUSED)
def test_anything_else_is_refused_with_words(backend: str, sql: str, words: str) -> None:
    with pytest.raises(WarehouseError, match=words):
        check_read_only(sql, backend)


def test_duckdb_models_run_exactly_the_statement_duckdb_parsed() -> None:
    assert check_read_only("  select 1 as x ;  ", "duckdb").sql == "select 1 as x"


def test_a_dialect_without_a_trusted_driver_runs_the_text_sqlglot_wrote_back() -> None:
    """Snowflake, BigQuery and the others run what was checked, whatever their drivers allow."""
    assert check_read_only("select 'it\\'s' as s", "bigquery").sql == "SELECT 'it\\'s' AS s"


# Real engines: keyword-named columns, and the drivers' own one-statement guard.


def test_keyword_named_columns_work_on_each_engine(warehouse: Warehouse) -> None:
    warehouse.execute("create table t (load integer, import text, call integer)")
    warehouse.execute("insert into t values (1, 'x', 2)")
    got = sample(warehouse.url, "select load, import, call, 3 as copy from t")
    assert got.columns == ["load", "import", "call", "copy"] and got.rows == [(1, "x", 2, 3)]


def test_sqlite_runs_one_statement_per_call_even_past_the_parser(sqlite_warehouse: Warehouse) -> None:
    sqlite_warehouse.execute("create table t (i integer)", "insert into t values (1)")
    engine = create_engine(sqlite_warehouse.url)
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="one statement"):
        execute_read_only(conn, "select 1; delete from t")
    engine.dispose()
    path = sqlite_warehouse.url.removeprefix("sqlite:///")
    assert sqlite3.connect(path).execute("select count(*) from t").fetchone() == (1,)


@pytest.mark.postgres
def test_postgres_runs_one_statement_even_past_the_parser(postgres) -> None:
    """A server-side cursor is prepared: PostgreSQL refuses COMMIT; DELETE hidden behind a SELECT."""
    wh = Warehouse("postgresql", postgres.create_database("one_statement"))
    wh.execute("create table t (i integer)", "insert into t values (1)")
    engine = create_engine(wh.url)
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="multiple commands"):
        execute_read_only(conn, "select 1; commit; delete from t")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from t").scalar() == 1
    engine.dispose()


@pytest.mark.postgres
def test_postgres_hidden_statements_change_nothing(postgres, tmp_path, sandbox, home, capsys) -> None:
    wh = Warehouse("postgresql", postgres.create_database("hidden_statements"))
    wh.execute("create table users (user_id text, plan text, ltv integer)")
    wh.execute("insert into users values ('alice-001', 'pro', 1)")
    for sql in (
        USERS + " -- note\r; commit; delete from users",
        "select E'\\'' as q, user_id, plan, ltv from users; commit; delete from users",
        "select $a1$ ; $a1$ as q, user_id, plan, ltv from users; commit; delete from users",
        "with d as (delete from users returning *) select user_id, plan, ltv from d",
    ):
        code, _ = preview(sync_file(tmp_path, wh.url, sandbox.url, sql), capsys)
        assert code == 2
    assert sample(wh.url, "select count(*) from users").rows == [(1,)]


# Files: a DuckDB model reads none unless the sync file allows it.


def test_a_model_cannot_send_a_local_file_to_the_sync_files_endpoint(
    users_duckdb, tmp_path, sandbox, home, capsys
):
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    sql = f"select 'alice-001' as user_id, content as plan, 1 as ltv from read_text('{secret}')"
    code = main(["run", str(sync_file(tmp_path, users_duckdb, sandbox.url, sql))])
    said = capsys.readouterr().err
    assert code == 2 and f"the model reads {secret}, which the sync does not allow" in said
    assert "read_files" in said and sandbox.store.requests() == []


def test_allowed_files_are_read_and_shown_in_the_preview(
    users_duckdb, tmp_path, sandbox, home, capsys
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "plans.csv").write_text("user_id,plan,ltv\ncarol-003,team,5\n")
    (tmp_path / "data" / "other.csv").write_text("user_id,plan,ltv\nmallory-9,x,1\n")
    path = sync_file(
        tmp_path, users_duckdb, sandbox.url, f"select * from read_csv('{tmp_path}/data/plans.csv')",
        source_extra='read_files = ["data/plans.csv"]',
    )  # fmt: skip
    code, said = preview(path, capsys)
    assert code == 0 and f"may read these files (read_files): {tmp_path}/data/plans.csv" in said
    assert main(["run", str(path)]) == 0
    assert sandbox.store.profile(user_id="carol-003")["user_properties"]["plan"] == "team"
    other = sync_file(
        tmp_path, users_duckdb, sandbox.url, f"select * from read_csv('{tmp_path}/data/other.csv')",
        source_extra='read_files = ["data/plans.csv"]',
    )  # fmt: skip
    code, said = preview(other, capsys)
    assert code == 2 and "does not allow" in said


def test_an_allowed_folder_lets_the_model_glob_in_it_and_nowhere_else(users_duckdb, tmp_path) -> None:
    (tmp_path / "exports").mkdir()
    for n in (1, 2):
        (tmp_path / "exports" / f"part{n}.csv").write_text(f"n\n{n}\n")
    (tmp_path / "secret.txt").write_text("s3cret")
    folder = [f"{tmp_path}/exports/"]
    got = sample(users_duckdb, f"select sum(n) from read_csv('{tmp_path}/exports/*.csv')", read_files=folder)
    assert got.rows == [(3,)]
    with pytest.raises(WarehouseError, match="does not allow"):
        sample(
            users_duckdb, f"select * from read_text('{tmp_path}/exports/../secret.txt')", read_files=folder
        )


def test_read_files_must_be_a_list_of_paths(tmp_path, home, capsys) -> None:
    path = sync_file(tmp_path, "duckdb:///:memory:", "http://127.0.0.1:9", USERS, 'read_files = "data.csv"')
    assert main(["preview", str(path)]) == 2
    assert "[source].read_files must be a list of paths" in capsys.readouterr().err


def test_concurrent_reads_of_one_duckdb_file_all_lock_it_and_all_succeed(users_duckdb) -> None:
    """DuckDB shares one instance per file in a process: readers racing to lock it must not clash."""
    from concurrent.futures import ThreadPoolExecutor

    def read(_: int) -> list[tuple]:
        return sample(users_duckdb, "select user_id from users order by user_id").rows

    for _ in range(5):
        with ThreadPoolExecutor(8) as pool:
            assert all(rows == [("alice-001",), ("bobby-002",)] for rows in pool.map(read, range(16)))
