"""Models are streamed in chunks, with errors in the database's words (what may run: test_read_only.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from support import Warehouse

from amp_sync.errors import WarehouseError
from amp_sync.warehouse import create_engine, describe_url, execute_read_only, read_model, sample


def test_rows_stream_in_chunks(warehouse: Warehouse) -> None:
    warehouse.execute("create table n (i integer)")
    warehouse.execute("insert into n (i) values (:i)", rows=[{"i": i} for i in range(2_500)])
    with read_model(warehouse.url, "select i from n order by i", chunk_rows=1_000) as stream:
        sizes = [len(chunk) for chunk in stream.chunks]
        assert stream.columns == ["i"]
    assert sizes == [1_000, 1_000, 500]


def test_the_model_never_commits(warehouse: Warehouse) -> None:
    warehouse.execute("create table n (i integer)")
    with read_model(warehouse.url, "select count(*) from n") as stream:
        assert [tuple(r) for c in stream.chunks for r in c] == [(0,)]
    got = sample(warehouse.url, "select i from n")
    assert got.row_count == 0 and got.columns == ["i"]


@pytest.mark.postgres
def test_postgres_runs_the_model_in_a_read_only_transaction(postgres) -> None:
    wh = Warehouse("postgresql", postgres.create_database("readonly_check"))
    wh.execute("create sequence s")
    with pytest.raises(WarehouseError, match="calls nextval"):
        sample(wh.url, "select nextval('s')")
    engine = create_engine(wh.url)  # past the parser, the transaction itself refuses the write
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
        execute_read_only(conn, "select nextval('s')")
    engine.dispose()


def test_sqlite_connections_refuse_writes_as_a_second_guard(sqlite_warehouse: Warehouse) -> None:

    from amp_sync.warehouse import _make_read_only, create_engine

    sqlite_warehouse.execute("create table n (i integer)")
    engine = create_engine(sqlite_warehouse.url)
    with engine.connect() as conn:
        _make_read_only(conn)
        with pytest.raises(sa.exc.OperationalError, match="readonly"):
            conn.exec_driver_sql("insert into n values (1)")
    engine.dispose()


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("select * from no_such_table", "no such table"),
        ("select nope from n", "no such column"),
    ],
)
def test_database_errors_are_shown_in_its_words(sqlite_warehouse: Warehouse, sql: str, words: str) -> None:
    sqlite_warehouse.execute("create table n (i integer)")
    with pytest.raises(WarehouseError, match=words) as err:
        sample(sqlite_warehouse.url, sql)
    assert str(err.value).startswith("the warehouse refused the model")


def test_an_unreachable_warehouse_hides_its_password(tmp_path) -> None:
    url = "postgresql+psycopg://analyst:hunter2-secret@127.0.0.1:9/db"
    with pytest.raises(WarehouseError) as err:
        sample(url, "select 1")
    assert "hunter2-secret" not in str(err.value) and "***" in str(err.value)
    assert "cannot connect" in str(err.value)
    assert "hunter2" not in describe_url(url)


@pytest.mark.parametrize(
    ("url", "words"),
    [("nosuchdb://x", "cannot use the warehouse URL"), ("not a url", "cannot use the warehouse URL")],
)
def test_bad_urls_explain_with_examples(url: str, words: str) -> None:
    with pytest.raises(WarehouseError, match=words) as err:
        sample(url, "select 1")
    assert "duckdb:///" in str(err.value)


def test_a_duckdb_file_is_opened_read_only_so_others_can_read_it(tmp_path) -> None:
    import duckdb

    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create table t as select 42 as x")
    con.close()
    url = f"duckdb:///{path}"
    with read_model(url, "select x from t") as first, read_model(url, "select x from t") as second:
        assert [r[0] for c in first.chunks for r in c] == [42] == [r[0] for c in second.chunks for r in c]


@pytest.mark.parametrize("scheme", ["sqlite", "duckdb"])
def test_a_missing_file_is_reported_and_never_created(tmp_path, scheme: str) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(WarehouseError, match=r"there is no .* file at"):
        sample(f"{scheme}:///{path}", "select 1")
    assert not path.exists()


def test_schema_of_a_duckdb_warehouse(tmp_path) -> None:
    import duckdb

    from amp_sync.warehouse import list_tables

    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create table users (user_id varchar, ltv decimal(12,2))")
    con.execute("create view v as select user_id from users")
    con.close()
    tables = list_tables(f"duckdb:///{path}")
    assert tables["users"] == [("user_id", "VARCHAR"), ("ltv", "DECIMAL(12,2)")]
    assert tables["v"] == [("user_id", "VARCHAR")]
