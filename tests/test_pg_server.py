"""The throwaway PostgreSQL server the tests start themselves (see pg_server.py)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pg_server import PostgresServer, find_pg_bin

pytestmark = pytest.mark.postgres


def _pg_bin() -> Path:
    bin_dir = find_pg_bin()
    if bin_dir is not None:
        return bin_dir
    if os.environ.get("CI"):
        pytest.fail(
            "PostgreSQL binaries (initdb, pg_ctl) not found on CI: .ci/run must apt-install postgresql"
        )
    pytest.skip(
        "PostgreSQL binaries (initdb, pg_ctl) not found: install Debian's postgresql "
        "package or set AMP_SYNC_PG_BIN"
    )


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    with PostgresServer(_pg_bin()) as server:
        yield server


@pytest.fixture
def engine(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    engine = sa.create_engine(pg_server.create_database(f"db_{request.node.name}"))
    yield engine
    engine.dispose()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_url_names_the_server(pg_server: PostgresServer) -> None:
    assert pg_server.url() == f"postgresql+psycopg://postgres@127.0.0.1:{pg_server.port}/postgres"
    assert pg_server.url("x", driver="postgresql").startswith("postgresql://postgres@127.0.0.1:")


def test_roundtrip_rows(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL)"))
        conn.execute(
            sa.text("INSERT INTO users VALUES (:id, :name)"),
            [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}, {"id": 3, "name": "zoë"}],
        )
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, name FROM users ORDER BY id")).all()
        database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    assert [tuple(row) for row in rows] == [(1, "ada"), (2, "grace"), (3, "zoë")]
    assert database == "db_test_roundtrip_rows"


def test_server_side_cursor_streams(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE numbers AS SELECT generate_series(1, 1000) AS n"))
    numbers = sa.table("numbers", sa.column("n"))
    # A Core select (or text().columns()): with a bare text(), SQLAlchemy 2.1 still uses a
    # server-side cursor but does not apply yield_per as the partition size.
    query = sa.select(numbers.c.n).order_by(numbers.c.n)
    with engine.connect() as conn:
        partitions = conn.execution_options(yield_per=100).execute(query).partitions()
        first = next(partitions)
        # The rows not fetched yet sit behind a named cursor on the server.
        others = sa.text("SELECT name FROM pg_cursors WHERE statement NOT LIKE '%pg_cursors%'")
        open_cursors = conn.execute(others).all()
        parts = [first, *partitions]
    assert [len(part) for part in parts] == [100] * 10
    assert [row.n for part in parts for row in part] == list(range(1, 1001))
    assert len(open_cursors) == 1


def test_stop_frees_port_and_removes_directory() -> None:
    server = PostgresServer(_pg_bin()).start()
    port, root = server.port, server.root
    assert port is not None and root is not None
    assert not _port_is_free(port)
    server.stop()
    assert _port_is_free(port)
    assert not root.exists()
    assert server.port is None
    server.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not started"):
        server.url()
