"""Read a model from any SQLAlchemy warehouse: one read-only statement, streamed in chunks."""

from __future__ import annotations

import contextlib
import glob as globlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from amp_sync import readonly
from amp_sync.errors import WarehouseError
from amp_sync.readonly import Checked
from amp_sync.values import load_json

CHUNK_ROWS = 10_000
# DuckDB's words when a model reaches for a file or URL it may not (see _lock_duckdb).
_DENIED = re.compile(r'Cannot access (?:file|directory) "(?P<path>[^"]*)" - file system operations')
# Dialects that decode JSON columns with a json_deserializer of ours: a value too deep for Python's
# json module becomes a rejected row (values.load_json) instead of an error that stops the read.
_JSON_DIALECTS = ("postgresql", "sqlite", "mysql", "mariadb")
# Characters that make a `read_files` entry a glob, expanded to the files it matches.
_GLOB = re.compile(r"[*?\[]")


def check_read_only(sql: str, url: str) -> Checked:
    """Accept exactly one query, read by the grammar of the engine behind `url`."""
    try:
        backend = make_url(url).get_backend_name()
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise WarehouseError(f"cannot use the warehouse URL {describe_url(url)}") from None
    return readonly.check_read_only(sql, backend)


def describe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(an unparsable URL)"


def _check_file_exists(parsed: sa.URL) -> None:
    # SQLite and DuckDB create a missing file on connect: a mistyped path must not leave one behind.
    backend = parsed.get_backend_name()
    database = parsed.database or ""
    if backend not in ("sqlite", "duckdb") or database in ("", ":memory:") or database.startswith("file:"):
        return
    if not Path(database).exists():
        raise WarehouseError(
            f"there is no {backend} file at {Path(database).resolve()}: check the path "
            "(three slashes then a relative path, four for an absolute one)"
        )


def create_engine(url: str, read_files: Sequence[str] = ()) -> sa.Engine:
    """An engine for `url`; DuckDB opens files read-only and locked down (see `_lock_duckdb`)."""
    try:
        parsed = make_url(url)
        _check_file_exists(parsed)
        backend = parsed.get_backend_name()
        if backend == "duckdb":
            return _duckdb_engine(parsed, read_files)
        kwargs = {"json_deserializer": load_json} if backend in _JSON_DIALECTS else {}
        return sa.create_engine(parsed, **kwargs)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise WarehouseError(
            f"cannot use the warehouse URL {describe_url(url)}: {exc}. "
            "Examples: duckdb:///warehouse.duckdb, sqlite:///data.db, "
            "postgresql+psycopg://user:password@host/db"
        ) from None
    except ImportError as exc:
        raise WarehouseError(f"the driver for {describe_url(url)} is not installed: {exc.name}") from None


def _duckdb_engine(parsed: sa.URL, read_files: Sequence[str]) -> sa.Engine:
    # Extensions are neither downloaded nor loaded behind the model's back.
    config = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    connect_args: dict[str, Any] = {"config": config}
    if parsed.database not in (None, "", ":memory:"):
        connect_args["read_only"] = True  # so other readers are not locked out
    engine = sa.create_engine(parsed, connect_args=connect_args, json_deserializer=load_json)
    allowed = file_permissions(read_files)
    own = str(Path(parsed.database).resolve()) if parsed.database and "read_only" in connect_args else None
    sa.event.listen(engine, "connect", lambda dbapi, _record: _lock_duckdb(dbapi, allowed, own))
    return engine


@dataclass(frozen=True, slots=True)
class FilePermissions:
    """The files and folders a DuckDB model may read, as DuckDB's allowed_paths and allowed_directories."""

    paths: tuple[str, ...] = ()
    directories: tuple[str, ...] = ()


def file_permissions(read_files: Sequence[str]) -> FilePermissions:
    """`read_files` entries (absolute files, folders or globs) as DuckDB permissions.

    A glob allows the files it matches now; a folder allows everything under it, globs in the
    model's SQL included; any other entry allows that one file.
    """
    paths: list[str] = []
    directories: list[str] = []
    for entry in read_files:
        if _GLOB.search(entry):
            paths += sorted(str(Path(p).resolve()) for p in globlib.glob(entry, recursive=True))
        elif entry.endswith(("/", "\\")) or Path(entry).is_dir():
            directories.append(str(Path(entry).resolve()).rstrip("/") + "/")
        else:
            paths.append(str(Path(entry).resolve()))
    return FilePermissions(tuple(dict.fromkeys(paths)), tuple(dict.fromkeys(directories)))


def _lock_duckdb(dbapi: Any, allowed: FilePermissions, database: str | None) -> None:
    """No file, network, ATTACH or extension access beyond `allowed`, and no way to change that.

    https://duckdb.org/docs/stable/operations_manual/securing_duckdb/overview
    DuckDB shares one database instance between connections to the same file in a process: a
    second concurrent read finds the first one's locked settings, which are kept if they match.
    """
    with _LOCKING:  # two connections of one process must not both find it unlocked
        _lock_once(dbapi, allowed, database)


# Held while a connection checks and locks its DuckDB instance's configuration.
_LOCKING = threading.Lock()


def _lock_once(dbapi: Any, allowed: FilePermissions, database: str | None) -> None:
    if _setting(dbapi, "lock_configuration"):
        if _setting(dbapi, "enable_external_access") or _granted(dbapi, database) != allowed:
            raise WarehouseError(
                "another model is reading this DuckDB file with other file permissions right now: "
                "try again when it has finished"
            )
        return
    # DuckDB draws a progress bar on stdout for queries over 2 s: it would corrupt --json. In
    # Jupyter it refuses the setting without ipywidgets; there is no --json to protect there.
    with contextlib.suppress(duckdb.Error):
        dbapi.execute("SET enable_progress_bar = false")
    dbapi.execute("SET allowed_paths = ?", [list(allowed.paths)])
    dbapi.execute("SET allowed_directories = ?", [list(allowed.directories)])
    dbapi.execute("SET enable_external_access = false")
    dbapi.execute("SET lock_configuration = true")


def _setting(dbapi: Any, name: str) -> Any:
    return dbapi.execute("select current_setting(?)", [name]).fetchone()[0]


def _granted(dbapi: Any, database: str | None) -> FilePermissions:
    """What the locked instance allows, less the database's own files, which DuckDB adds itself."""
    own = (database or "\0",)
    paths, directories = (
        tuple(p for p in _setting(dbapi, n) or [] if not p.startswith(own))
        for n in ("allowed_paths", "allowed_directories")
    )
    return FilePermissions(paths, directories)


@dataclass(slots=True)
class ModelStream:
    """An open model: its column names and an iterator of row chunks."""

    columns: list[str]
    chunks: Iterator[Sequence[Sequence[Any]]]


@contextmanager
def read_model(
    url: str, sql: str, chunk_rows: int = CHUNK_ROWS, *, read_files: Sequence[str] = ()
) -> Iterator[ModelStream]:
    """Run the model in a transaction that is never committed and stream its rows.

    Only the one statement `check_read_only` accepted runs. On PostgreSQL it runs through a
    server-side cursor, which PostgreSQL prepares as one statement ("cannot insert multiple
    commands into a prepared statement"); SQLite's driver runs one statement per call; DuckDB gets
    the statement its own parser cut out. `read_files` are the files a DuckDB model may read.
    """
    engine = create_engine(url, read_files)  # first, so a bad URL is told as one
    statement = check_read_only(sql, url)
    try:
        with _errors(url), engine.connect() as conn:
            result = execute_read_only(conn, statement.sql, chunk_rows)
            columns = list(result.keys())
            yield ModelStream(columns, _chunks(result, url, chunk_rows))
            conn.rollback()
    finally:
        engine.dispose()


def execute_read_only(conn: Connection, sql: str, chunk_rows: int = CHUNK_ROWS) -> sa.CursorResult[Any]:
    """Run one checked statement, streamed, with the engine's own read-only guard on."""
    _make_read_only(conn)
    result = conn.execution_options(stream_results=True, yield_per=chunk_rows).exec_driver_sql(sql)
    if not result.returns_rows:
        raise WarehouseError("the model returned no result set: write a SELECT")
    return result


def _chunks(result: sa.CursorResult[Any], url: str, rows: int) -> Iterator[Sequence[Sequence[Any]]]:
    # An explicit size: SQLAlchemy applies yield_per to partitions() only for Core selects.
    with _errors(url):
        yield from result.partitions(rows)


def _make_read_only(conn: Connection) -> None:
    # Belt and braces after check_read_only: ask the engine itself to refuse writes.
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    elif dialect == "sqlite":
        conn.exec_driver_sql("PRAGMA query_only = ON")
    elif dialect in ("mysql", "mariadb", "redshift"):
        # Applies to the transaction the model's statement starts (autocommit is off).
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")


@contextmanager
def _errors(url: str) -> Iterator[None]:
    """Database errors in the database's own words, never a traceback."""
    try:
        yield
    except DBAPIError as exc:
        raise WarehouseError(_words(exc, url)) from None
    except SQLAlchemyError as exc:
        raise WarehouseError(f"the warehouse at {describe_url(url)} failed: {exc}") from None


def _words(exc: DBAPIError, url: str) -> str:
    text = str(exc.orig).strip() or type(exc.orig).__name__
    # One line, as the CLI promises: DuckDB and PostgreSQL add "LINE 1: ..." and a caret line.
    lines = [line.strip() for line in text.splitlines() if line.strip().strip("^")] or [text]
    first = lines[0] if exc.connection_invalidated else " — ".join(lines[:2])
    if isinstance(exc, sa.exc.OperationalError) and _is_connect_error(text):
        return f"cannot connect to the warehouse at {describe_url(url)}: {first}"
    if denied := _DENIED.search(text):
        return (
            f"the model reads {denied['path']}, which the sync does not allow: DuckDB models read no "
            "file, folder or URL unless it is listed in [source].read_files of the sync file (or in "
            "the warehouse's Files the models may read, in the app)"
        )
    return f"the warehouse refused the model: {first}"


def _is_connect_error(text: str) -> bool:
    needles = ("connection", "could not connect", "unable to open", "no such host", "timeout")
    return any(n in text.lower() for n in needles)


# duckdb-engine's get_columns joins pg_catalog.pg_collation, which DuckDB 2 does not have.
_DUCKDB_COLUMNS = (
    "select table_name, column_name, data_type from information_schema.columns "
    "where table_schema = current_schema() order by table_name, ordinal_position"
)


def list_tables(url: str) -> dict[str, list[tuple[str, str]]]:
    """Tables (and views) with their columns and types, for schema browsing."""
    if make_url(url).get_backend_name() == "duckdb":
        tables: dict[str, list[tuple[str, str]]] = {}
        with read_model(url, _DUCKDB_COLUMNS) as stream:
            for chunk in stream.chunks:
                for table, column, type_ in chunk:
                    tables.setdefault(table, []).append((column, type_))
        return tables
    engine = create_engine(url)
    try:
        with _errors(url), engine.connect() as conn:
            inspector = sa.inspect(conn)
            names = inspector.get_table_names() + inspector.get_view_names()
            return {
                name: [(c["name"], str(c["type"])) for c in inspector.get_columns(name)]
                for name in sorted(set(names))
            }
    finally:
        engine.dispose()


@dataclass(frozen=True, slots=True)
class Sample:
    """The first rows of a model, with the total row count and how long reading took."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    row_count: int
    seconds: float


def sample(url: str, sql: str, limit: int = 200, *, read_files: Sequence[str] = ()) -> Sample:
    """Run a model to the end, keeping its first `limit` rows (for grids and previews)."""
    started = time.monotonic()
    rows: list[tuple[Any, ...]] = []
    count = 0
    with read_model(url, sql, read_files=read_files) as stream:
        for chunk in stream.chunks:
            count += len(chunk)
            rows.extend(tuple(r) for r in chunk[: max(0, limit - len(rows))])
        columns = stream.columns
    return Sample(columns, rows, count, time.monotonic() - started)
