"""Read a model from any SQLAlchemy warehouse: one read-only statement, streamed in chunks."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from amp_sync.errors import WarehouseError

CHUNK_ROWS = 10_000

# Statements a model may not contain, checked outside strings, quoted names and comments.
_WRITES = (
    "insert", "update", "delete", "merge", "upsert", "create", "drop", "alter", "truncate",
    "grant", "revoke", "copy", "attach", "detach", "pragma", "install", "load", "call",
    "vacuum", "into", "checkpoint", "export", "import", "lock", "refresh", "reindex",
)  # fmt: skip
_LEXEMES = re.compile(
    r"""
      (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<string>'(?:[^']|'')*'|\$(?P<tag>[A-Za-z_]*)\$.*?\$(?P=tag)\$)
    | (?P<quoted>"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\])
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<semi>;)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Statement:
    """A model's SQL once checked: the text to run and its words outside literals."""

    sql: str
    words: tuple[str, ...]


def check_read_only(sql: str) -> Statement:
    """Accept exactly one SELECT or WITH statement; refuse anything that could write."""
    words: list[str] = []
    statements = 0
    pending = False
    for m in _LEXEMES.finditer(sql):
        kind = m.lastgroup
        if kind == "semi":
            statements += pending
            pending = False
        elif kind == "word":
            words.append(m.group().lower())
            pending = True
        elif kind in ("string", "quoted", "other") and not m.group().isspace():
            pending = True
    statements += pending
    if statements == 0:
        raise WarehouseError("the model is empty: write one SELECT statement")
    if statements > 1:
        raise WarehouseError("the model has several statements: a model is exactly one SELECT")
    if not words or words[0] not in ("select", "with"):
        first = words[0].upper() if words else sql.strip()[:20]
        raise WarehouseError(f"the model must be a SELECT or WITH query, not {first}: models only read")
    for word in words:
        if word in _WRITES:
            raise WarehouseError(
                f"the model contains {word.upper()}, which can change data: models only read "
                '(if it is a column name, quote it: "name")'
            )
    return Statement(sql.strip().rstrip(";").strip(), tuple(words))


def describe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
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


def create_engine(url: str) -> sa.Engine:
    """An engine for `url`; DuckDB files open read-only so other readers are not locked out."""
    try:
        parsed = make_url(url)
        _check_file_exists(parsed)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "duckdb" and parsed.database not in (None, "", ":memory:"):
            kwargs["connect_args"] = {"read_only": True}
        return sa.create_engine(parsed, **kwargs)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise WarehouseError(
            f"cannot use the warehouse URL {describe_url(url)}: {exc}. "
            "Examples: duckdb:///warehouse.duckdb, sqlite:///data.db, "
            "postgresql+psycopg://user:password@host/db"
        ) from None
    except ImportError as exc:
        raise WarehouseError(f"the driver for {describe_url(url)} is not installed: {exc.name}") from None


@dataclass(slots=True)
class ModelStream:
    """An open model: its column names and an iterator of row chunks."""

    columns: list[str]
    chunks: Iterator[Sequence[Sequence[Any]]]


@contextmanager
def read_model(url: str, sql: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[ModelStream]:
    """Run the model in a transaction that is never committed and stream its rows."""
    statement = check_read_only(sql)
    engine = create_engine(url)
    try:
        with _errors(url), engine.connect() as conn:
            _make_read_only(conn)
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).exec_driver_sql(
                statement.sql
            )
            if not result.returns_rows:
                raise WarehouseError("the model returned no result set: write a SELECT")
            columns = list(result.keys())
            yield ModelStream(columns, _chunks(result, url, chunk_rows))
            conn.rollback()
    finally:
        engine.dispose()


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
    elif dialect == "duckdb":
        # DuckDB draws a progress bar on stdout for queries over 2 s: it would corrupt --json.
        conn.exec_driver_sql("SET enable_progress_bar = false")


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


def sample(url: str, sql: str, limit: int = 200) -> Sample:
    """Run a model to the end, keeping its first `limit` rows (for grids and previews)."""
    started = time.monotonic()
    rows: list[tuple[Any, ...]] = []
    count = 0
    with read_model(url, sql) as stream:
        for chunk in stream.chunks:
            count += len(chunk)
            rows.extend(tuple(r) for r in chunk[: max(0, limit - len(rows))])
        columns = stream.columns
    return Sample(columns, rows, count, time.monotonic() - started)
